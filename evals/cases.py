"""The incident case format: evals/incidents/<id>/case.yaml + events.jsonl.gz.

A case says what happened (events, CONTRACT.md §1), when it started (onset, in
event time) and what a good operator would conclude and do (expected category,
acceptable actions with their targets, forbidden actions). Cases made with the
simulator also keep the generator spec so the closed-loop score can re-run them
with the agent in control.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from payops.errors import BadInput
from payops.models import Category, target_key

CASE_FILE = "case.yaml"
EVENTS_FILE = "events.jsonl.gz"
# The corpus ships inside the package (package data), so `payops eval` works from an
# installed wheel as well as from a checkout; --corpus points anywhere else.
DEFAULT_CORPUS = Path(__file__).resolve().parent / "incidents"

Difficulty = Literal["easy", "medium", "hard"]
Origin = Literal["simulator", "hand-edited", "recorded", "generated"]  # generated: evals/independent


class CaseError(BadInput, ValueError):
    """A case folder that cannot be used: missing files, bad YAML, labels that break the format."""


class ActionSpec(BaseModel):
    """One tool with the target it must name; `target: null` means any target (for forbidden actions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str
    target: dict[str, str] | None = None

    def matches(self, tool: str, target: dict[str, str]) -> bool:
        return tool == self.tool and (self.target is None or target_key(self.target) == target_key(target))

    def label(self) -> str:
        return self.tool + ("" if self.target is None else f"[{target_key(self.target)}]")


class Expected(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    category: Category
    target: dict[str, str] = Field(default_factory=dict)  # the segment at fault; {} = all traffic / none
    acceptable_actions: tuple[ActionSpec, ...] = ()
    forbidden_actions: tuple[ActionSpec, ...] = ()
    facts: tuple[str, ...] = ()  # what a good explanation mentions (for the optional LLM judge)

    @model_validator(mode="after")
    def _consistent(self) -> Expected:
        if self.category is not Category.HEALTHY and not self.acceptable_actions:
            raise ValueError("an incident needs at least one acceptable action")
        return self

    def acceptable(self, tool: str, target: dict[str, str]) -> bool:
        return any(a.matches(tool, target) for a in self.acceptable_actions)

    def forbidden(self, tool: str, target: dict[str, str]) -> bool:
        return any(a.matches(tool, target) for a in self.forbidden_actions)


class Generator(BaseModel):
    """How a simulator-made case was generated; enough to re-run it closed-loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario: str
    seed: int
    lead_in: float
    duration: float
    minutes: float
    start_ts: float
    network: dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)  # scenario knobs (confounders)


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    description: str
    origin: Origin = "simulator"
    edits: tuple[str, ...] = ()  # what was changed by hand, when origin is hand-edited
    tags: tuple[str, ...] = ()
    difficulty: Difficulty = "medium"
    palm: bool = False
    control: bool = False  # a no-fault control: the right answer is to stay quiet
    onset: float | None = None  # event time (epoch s) the incident starts; None for controls
    end: float | None = None  # event time it stops (None: until the file ends)
    expected: Expected
    window_seconds: float = 60.0
    tick_seconds: float = 60.0
    generator: Generator | None = None

    path: Path | None = Field(default=None, exclude=True)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ ") or v.startswith("."):
            raise ValueError("case id must be a plain folder name (no slashes or spaces)")
        return v

    @model_validator(mode="after")
    def _labels(self) -> Case:
        if self.control:
            if self.expected.category is not Category.HEALTHY:
                raise ValueError("a no-fault control expects the 'healthy' category")
        elif self.onset is None:
            raise ValueError("an incident case needs an onset time")
        return self

    @property
    def all_tags(self) -> tuple[str, ...]:
        """Explicit tags plus the implied ones: category, difficulty, palm, control."""
        implied = [self.expected.category.value, self.difficulty, self.origin]
        if self.palm:
            implied.append("palm")
        if self.control:
            implied.append("control")
        return tuple(dict.fromkeys((*implied, *self.tags)))

    @property
    def events_path(self) -> Path:
        if self.path is None:
            raise CaseError(f"case {self.id} has no folder")
        return self.path / EVENTS_FILE

    def has_tags(self, wanted: Iterable[str]) -> bool:
        """True when the case carries every wanted tag (a tag 'a|b' matches either)."""
        mine = set(self.all_tags)
        return all(any(alt in mine for alt in w.split("|")) for w in wanted)


def _yaml_ready(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _yaml_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_yaml_ready(v) for v in data]
    return data


def dump_case(case: Case) -> str:
    data = _yaml_ready(case.model_dump(mode="json", exclude_none=True))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def load_case(folder: Path) -> Case:
    path = folder / CASE_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseError(f"{folder}: no {CASE_FILE}") from None
    except yaml.YAMLError as exc:
        raise CaseError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise CaseError(f"{path}: expected a mapping at the top level")
    try:
        case = Case.model_validate(raw)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "case"
        raise CaseError(f"{path}: {where}: {first['msg']}") from None
    if case.id != folder.name:
        raise CaseError(f"{path}: id '{case.id}' differs from its folder name '{folder.name}'")
    if not (folder / EVENTS_FILE).is_file():
        raise CaseError(f"{folder}: no {EVENTS_FILE}")
    return case.model_copy(update={"path": folder})


def discover(corpus: Path | None = None, tags: Iterable[str] = ()) -> list[Case]:
    """Every case under the corpus folder (sorted by id), filtered by tags."""
    root = corpus or DEFAULT_CORPUS
    if not root.is_dir():
        raise CaseError(f"no corpus folder at {root}")
    wanted = [t for t in tags if t]
    cases = [load_case(d) for d in sorted(root.iterdir()) if d.is_dir() and (d / CASE_FILE).exists()]
    return [c for c in cases if c.has_tags(wanted)]


def write_case(case: Case, events: Iterable[bytes], root: Path, overwrite: bool = False) -> Path:
    """Write case.yaml and the gzip'd events (one JSON line each) to root/<id>/."""
    folder = root / case.id
    if folder.exists() and not overwrite and (folder / CASE_FILE).exists():
        raise CaseError(f"case {case.id} already exists at {folder} (use --overwrite)")
    folder.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same events give byte-identical files (a re-generated corpus diffs clean).
    with open(folder / EVENTS_FILE, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        for line in events:
            gz.write(line if line.endswith(b"\n") else line + b"\n")
    (folder / CASE_FILE).write_text(dump_case(case), encoding="utf-8")
    return folder


def open_events(path: Path) -> Any:
    """A binary line stream of a case's events (gzip or plain)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_lines(path: Path) -> Iterator[bytes]:
    with open_events(path) as stream:
        yield from stream
