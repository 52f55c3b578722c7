"""Long-term memory: one JSON lesson per concluded action, in a LangGraph BaseStore, no vectors.

Namespace ("lessons", <category>), key = decision id. Any BaseStore works
(SqliteStore by default, PostgresStore when configured, InMemoryStore for
replays): retrieval uses only `search(prefix, filter=...)` with `$eq` on
top-level string fields, because nested keys and numeric comparisons behave
differently per backend (STACK-NOTES). Numbers are ranked in Python.

Similar lessons: candidates are the union of a few `$eq` queries on the
signature (a store filter is an AND, and `$in` is not supported; see the tiers
below), ranked in Python by `similarity` x `recency`.

Using them: `track_record` turns the similar lessons of one tool into a Beta
posterior on "this action helps here", and flags past harm.

Imported lessons (`payops lessons import`) are another deployment's word: they are marked
`origin="imported"` and weigh IMPORTED_TRUST of an own lesson in retrieval and in the track
record, and an imported "harmed" never forces approval — unless their decision id is in this
deployment's audit trail (`verified`), when they count as the agent's own.
"""

from __future__ import annotations

import builtins
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.store.base import BaseStore, PutOp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payops.errors import BadInput

NAMESPACE = "lessons"
SCHEMA_VERSION = 1

ConcludedVerdict = Literal["helped", "no_effect", "harmed", "inconclusive"]

# Magnitude buckets of the target's failure rate, as strings so stores compare them with $eq.
MAGNITUDE_BUCKETS: tuple[tuple[float, str], ...] = ((0.1, "minor"), (0.3, "moderate"), (0.6, "major"))
MAGNITUDE_ORDER = ("minor", "moderate", "major", "severe")


def magnitude_bucket(failure_rate: float) -> str:
    """Coarse size of an incident."""
    for limit, name in MAGNITUDE_BUCKETS:
        if failure_rate < limit:
            return name
    return "severe"


class Signature(BaseModel):
    """What an incident looked like, in fields a store can filter on with $eq."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str
    target_key: str  # "bank=FNB,route=psp_a"; "*" for all traffic
    target_dims: str  # "bank,route": the shape of the target, similar across names
    dominant_error: str  # the most frequent error code of the target ("NONE" without failures)
    error_codes: str = ""  # the top codes, comma-joined in order of frequency
    magnitude: str = "minor"
    method_mix: str = ""  # methods the target carried, sorted and comma-joined ("card,payshap")


class Lesson(BaseModel):
    """One concluded action: what it looked like, what was done, what it did."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    decision_id: str = Field(..., min_length=1, max_length=200)
    # signature (top-level strings: filterable in every store)
    category: str = Field(..., min_length=1)
    target_key: str
    target_dims: str
    dominant_error: str
    error_codes: str = ""
    magnitude: str = "minor"
    method_mix: str = ""
    # the action
    tool: str = Field(..., min_length=1)
    target: dict[str, str] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    status: str = "executed"  # executed (autonomously) | approved (by a human)
    approver: str | None = None
    # the outcome
    verdict: ConcludedVerdict
    reasons: list[str] = Field(default_factory=list)
    before: dict[str, Any] = Field(default_factory=dict)  # scope -> figures (memory.outcomes.Scopes.to_json)
    after: dict[str, Any] = Field(default_factory=dict)
    windows: int = 0
    rolled_back: bool = False
    # when (event time, epoch seconds)
    created_at: float  # the decision's window end
    applied_at: float | None = None
    concluded_at: float | None = None
    # where it came from: the agent's own outcome, or `payops lessons import` (trusted less)
    origin: Literal["agent", "imported"] = "agent"
    verified: bool = False  # imported, and its decision id is in this deployment's audit trail
    imported_at: float | None = None

    @property
    def trust(self) -> float:
        return lesson_trust(self.model_dump(include={"origin", "verified"}))

    @property
    def signature(self) -> Signature:
        return Signature(category=self.category, target_key=self.target_key, target_dims=self.target_dims,
                         dominant_error=self.dominant_error, error_codes=self.error_codes, magnitude=self.magnitude,
                         method_mix=self.method_mix)

    def brief(self, score: float | None = None) -> dict[str, Any]:
        """The compact form reasoners, the audit record and the chat see."""
        out: dict[str, Any] = {
            "decision_id": self.decision_id, "category": self.category, "tool": self.tool, "target": self.target_key,
            "verdict": self.verdict, "dominant_error": self.dominant_error, "magnitude": self.magnitude,
            "at": self.created_at,
            "failure_rate_before": (self.before.get("platform") or {}).get("failure_rate"),
            "failure_rate_after": (self.after.get("platform") or {}).get("failure_rate"),
        }
        if score is not None:
            out["similarity"] = round(score, 3)
        if self.origin == "imported":  # only then: own lessons' briefs (and the prompts they reach) are unchanged
            out["imported"] = True
            out["verified"] = self.verified
        return out


# -- similarity ---------------------------------------------------------------------

# Weights of the signature fields (the category must match: it is the namespace).
# The same segment says most; the same kind of segment and the same dominant
# error say almost as much; the rest refines. They add up to 1.
SIMILARITY_WEIGHTS: dict[str, float] = {
    "target_key": 0.30,  # the very same route / bank / terminal
    "target_dims": 0.20,  # the same kind of segment (a route; a bank on one route; a terminal)
    "dominant_error": 0.20,
    "error_codes": 0.10,  # Jaccard overlap of the top codes
    "magnitude": 0.10,  # same bucket; half for the adjacent one
    "method_mix": 0.10,  # Jaccard overlap of the methods carried
}
# Below this a lesson is not "similar": the same kind of segment with the same
# dominant error (0.40) qualifies; a shared error code alone does not.
MIN_SIMILARITY = 0.4
# Recency: half-life 30 days (routes and issuers change; old outcomes count less),
# floored so a harm is never forgotten entirely.
RECENCY_HALF_LIFE_SECONDS = 30 * 24 * 3600.0
RECENCY_FLOOR = 0.25
# Retrieval tiers, strongest first, each one `$eq` filter (a store filter is an AND; there
# is no OR or $in). A lesson can reach MIN_SIMILARITY only if it shares the target kind or
# the dominant error (the other fields add at most 0.3), so these four cover every similar
# lesson. The two strong tiers (similarity >= 0.4 by construction) are read completely;
# the two weak ones (at most 0.5) are capped, since a store returns matches in no
# particular order and a busy category can hold thousands.
WEAK_TIER_CAP = 200


def _jaccard(a: str, b: str) -> float:
    sa, sb = {x for x in a.split(",") if x}, {x for x in b.split(",") if x}
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def similarity(lesson: Lesson | Signature | dict[str, Any], sig: Signature) -> float:
    """Weighted agreement of two signatures in [0, 1]; 0 across categories.

    Accepts a lesson's raw JSON too, so candidates are ranked before any is validated.
    """
    get = lesson.get if isinstance(lesson, dict) else lambda name, default="": getattr(lesson, name, default)
    if get("category", "") != sig.category:
        return 0.0
    w = SIMILARITY_WEIGHTS
    score = 0.0
    score += w["target_key"] * (get("target_key", "") == sig.target_key)
    score += w["target_dims"] * (get("target_dims", "") == sig.target_dims)
    score += w["dominant_error"] * (get("dominant_error", "") == sig.dominant_error)
    score += w["error_codes"] * _jaccard(str(get("error_codes", "")), sig.error_codes)
    magnitude = get("magnitude", "")
    if magnitude == sig.magnitude:
        score += w["magnitude"]
    elif magnitude in MAGNITUDE_ORDER and sig.magnitude in MAGNITUDE_ORDER and \
            abs(MAGNITUDE_ORDER.index(magnitude) - MAGNITUDE_ORDER.index(sig.magnitude)) == 1:
        score += w["magnitude"] / 2
    score += w["method_mix"] * _jaccard(str(get("method_mix", "")), sig.method_mix)
    return round(score, 6)


# An imported lesson whose decision this deployment never saw counts a quarter of an own one: a
# file can say anything (a fabricated "harmed" lesson once forced escalation of a good reroute),
# yet a genuine export from a sister deployment should still nudge, not be thrown away.
IMPORTED_TRUST = 0.25


def lesson_trust(raw: dict[str, Any]) -> float:
    """1 for the agent's own lessons and verified imports; IMPORTED_TRUST for other imports."""
    return IMPORTED_TRUST if raw.get("origin") == "imported" and not raw.get("verified") else 1.0


def recency(created_at: float, now: float) -> float:
    age = max(0.0, now - created_at)
    return RECENCY_FLOOR + (1.0 - RECENCY_FLOOR) * 0.5 ** (age / RECENCY_HALF_LIFE_SECONDS)


@dataclass(frozen=True)
class ScoredLesson:
    lesson: Lesson
    similarity: float
    score: float  # similarity x recency x trust: the ranking key and the evidence weight


# -- using lessons: a Beta posterior on "this action helps here" ----------------------

# Prior: Beta(c*s, (1-c)*s) with mean c = the reasoner's own confidence and strength
# s = 4: the reasoner's reading of the window counts as much as four fully similar,
# recent past outcomes. Each similar lesson of the same tool adds its score (<= 1)
# to "helped" or to "did not help" (no_effect, harmed); inconclusive adds nothing.
PRIOR_STRENGTH = 4.0
# Never certain, as the rule reasoner caps its own confidence.
MAX_ADJUSTED_CONFIDENCE = 0.97
# When the tool harmed on a similar incident, confidence is held just under the
# approval threshold so the confidence guardrail asks a human.
BELOW_THRESHOLD = 0.001


@dataclass(frozen=True)
class TrackRecord:
    tool: str
    prior: float  # the reasoner's confidence
    helped: float  # weighted evidence
    not_helped: float
    posterior: float  # the Beta posterior mean, capped
    adjusted: float  # what the agent uses (posterior, held below the threshold after a past harm)
    lessons: tuple[ScoredLesson, ...]
    harmed_ids: tuple[str, ...]
    forced_approval: bool

    @property
    def changed(self) -> bool:
        return bool(self.lessons) and abs(self.adjusted - self.prior) >= 0.0005

    def to_json(self) -> dict[str, Any]:
        counts = {v: sum(1 for s in self.lessons if s.lesson.verdict == v)
                  for v in ("helped", "no_effect", "harmed", "inconclusive")}
        return {
            "tool": self.tool,
            "prior": round(self.prior, 3),
            "helped_weight": round(self.helped, 3),
            "not_helped_weight": round(self.not_helped, 3),
            "posterior": round(self.posterior, 3),
            "adjusted": round(self.adjusted, 3),
            "counts": counts,
            "prior_strength": PRIOR_STRENGTH,
            "lessons": [s.lesson.decision_id for s in self.lessons],
            "harmed_ids": list(self.harmed_ids),
            "forced_approval": self.forced_approval,
        }


def track_record(tool: str, confidence: float, similar: Iterable[ScoredLesson], threshold: float) -> TrackRecord:
    """Beta posterior of "helps" from the similar lessons of `tool`; a past harm holds it below `threshold`."""
    mine = tuple(s for s in similar if s.lesson.tool == tool)
    helped = sum(s.score for s in mine if s.lesson.verdict == "helped")
    not_helped = sum(s.score for s in mine if s.lesson.verdict in ("no_effect", "harmed"))
    alpha = confidence * PRIOR_STRENGTH + helped
    beta = (1.0 - confidence) * PRIOR_STRENGTH + not_helped
    posterior = min(MAX_ADJUSTED_CONFIDENCE, alpha / (alpha + beta)) if mine else confidence
    # Only a trusted harm holds confidence below the threshold; an unverified import only weighs in.
    harmed = tuple(s.lesson.decision_id for s in mine if s.lesson.verdict == "harmed" and s.lesson.trust == 1.0)
    adjusted = posterior
    forced = False
    if harmed:
        forced = True
        adjusted = min(posterior, threshold - BELOW_THRESHOLD)
    return TrackRecord(tool, confidence, helped, not_helped, posterior, max(0.0, adjusted), mine, harmed, forced)


# -- the store --------------------------------------------------------------------------


class LessonImportError(BadInput, ValueError):
    """A lesson file that cannot be imported; nothing was stored."""


class LessonStore:
    """Lessons in any LangGraph BaseStore (no embedding index needed)."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self._memo: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}

    @staticmethod
    def _ns(category: str) -> tuple[str, str]:
        return (NAMESPACE, category)

    def put(self, lesson: Lesson) -> None:
        self._memo.clear()
        self.store.put(self._ns(lesson.category), lesson.decision_id, lesson.model_dump(mode="json"), index=False)

    def get(self, category: str, decision_id: str) -> Lesson | None:
        item = self.store.get(self._ns(category), decision_id)
        return Lesson.model_validate(item.value) if item else None

    def find(self, decision_id: str) -> Lesson | None:
        """By decision id (or an unambiguous prefix of one) in any category."""
        exact = [lesson for lesson in self.list() if lesson.decision_id == decision_id]
        if exact:
            return exact[0]
        prefixed = [lesson for lesson in self.list() if lesson.decision_id.startswith(decision_id)]
        return prefixed[0] if len(prefixed) == 1 else None

    def _search(self, category: str | None, filter: dict[str, Any] | None) -> Iterable[Any]:
        prefix = self._ns(category) if category else (NAMESPACE,)
        offset, page = 0, 200
        while True:
            batch = self.store.search(prefix, filter=filter, limit=page, offset=offset)
            yield from batch
            if len(batch) < page:
                return
            offset += page

    def list(self, category: str | None = None, verdict: str | None = None, tool: str | None = None) -> list[Lesson]:
        where = {k: {"$eq": v} for k, v in (("verdict", verdict), ("tool", tool)) if v}
        lessons = [Lesson.model_validate(i.value) for i in self._search(category, where or None)]
        return sorted(lessons, key=lambda lesson: (lesson.created_at, lesson.decision_id))

    def _candidates(self, sig: Signature, tool: str | None) -> dict[str, dict[str, Any]]:
        tiers: tuple[tuple[dict[str, str], bool], ...] = (
            ({"target_key": sig.target_key}, True),  # the same segment
            ({"target_dims": sig.target_dims, "dominant_error": sig.dominant_error}, True),  # same kind, same error
            ({"target_dims": sig.target_dims}, False),
            ({"dominant_error": sig.dominant_error}, False),
        )
        found: dict[str, dict[str, Any]] = {}
        for fields, complete in tiers:
            where: dict[str, Any] = {k: {"$eq": v} for k, v in fields.items()}
            if tool:
                where["tool"] = {"$eq": tool}
            items = (
                self._search(sig.category, where)
                if complete
                else self.store.search(self._ns(sig.category), filter=where, limit=WEAK_TIER_CAP)
            )
            for item in items:
                found.setdefault(item.key, item.value)
        return found

    def similar(
        self,
        sig: Signature,
        now: float,
        *,
        tool: str | None = None,
        limit: int = 5,
        min_similarity: float = MIN_SIMILARITY,
    ) -> builtins.list[ScoredLesson]:  # `list` below LessonStore.list is the method
        """Lessons of the same category ranked by similarity x recency (newer first on ties).

        Memoized per (signature, tool, now): one tick asks for the same incident more than once.
        """
        key = (sig, tool, now)
        if key not in self._memo:
            if len(self._memo) > 16:
                self._memo.clear()
            self._memo[key] = self._candidates(sig, tool)
        ranked = []
        for raw in self._memo[key].values():
            sim = similarity(raw, sig)
            if sim >= min_similarity:
                created = float(raw.get("created_at", 0.0))
                score = round(sim * recency(created, now) * lesson_trust(raw), 6)
                ranked.append((score, sim, created, str(raw.get("decision_id", "")), raw))
        ranked.sort(key=lambda r: (-r[0], -r[2], r[3]))
        # Only the winners are validated into Lessons.
        return [ScoredLesson(Lesson.model_validate(raw), sim, score) for score, sim, _, _, raw in ranked[:limit]]

    def export(self) -> builtins.list[dict[str, Any]]:
        return [lesson.model_dump(mode="json") for lesson in self.list()]

    def import_(self, records: Any, **options: Any) -> int:
        """`import_lessons`, returning how many were stored."""
        return self.import_lessons(records, **options).count

    def import_lessons(
        self,
        records: Any,
        *,
        at: float | None = None,
        known_tools: Iterable[str] | None = None,
        in_audit: Callable[[Lesson], bool] | None = None,
    ) -> ImportResult:
        """All or nothing: every record is validated first, then all are written in one batch.

        Every lesson is stored as `origin="imported"` whatever the file says, `verified` when
        `in_audit(lesson)` finds its decision (same tool) in this deployment's audit trail.
        """
        lessons = validate_import(records, known_tools)
        at = time.time() if at is None else at
        stored = [
            lesson.model_copy(
                update={"origin": "imported", "imported_at": at, "verified": bool(in_audit and in_audit(lesson))}
            )
            for lesson in lessons
        ]
        ops = [
            PutOp(self._ns(lesson.category), lesson.decision_id, lesson.model_dump(mode="json"), index=False)
            for lesson in stored
        ]
        if ops:
            self._memo.clear()
            self.store.batch(ops)  # one transaction in SqliteStore / PostgresStore
        return ImportResult(len(stored), sum(1 for lesson in stored if lesson.verified))


@dataclass(frozen=True)
class ImportResult:
    count: int
    verified: int  # of them, found in this deployment's audit trail (trusted as its own)


# Categories a lesson can have: an action concluded on a diagnosed incident (never "healthy").
LESSON_CATEGORIES = ("user", "issuer", "network", "config", "security")
# Decision ids as the agent writes them ("d-<hex>"), with room for other deployments' schemes;
# no spaces or control characters (they reach the console and prompts).
DECISION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")
# A file bigger than this is not a lesson export of one deployment (a lesson is ~1 KB).
MAX_IMPORT_LESSONS = 100_000


def validate_import(records: Any, known_tools: Iterable[str] | None = None) -> list[Lesson]:
    """The lessons of an import file, or LessonImportError naming the first problem (#N, field, why)."""
    if not isinstance(records, list):
        raise LessonImportError("a lesson file holds a JSON list of lessons; nothing was imported")
    if not records:
        raise LessonImportError("the file holds no lessons; nothing was imported")
    if len(records) > MAX_IMPORT_LESSONS:
        raise LessonImportError(f"{len(records):,} lessons is more than {MAX_IMPORT_LESSONS:,}; nothing was imported")
    tools = set(known_tools) if known_tools is not None else None
    lessons: list[Lesson] = []
    seen: set[str] = set()
    for i, raw in enumerate(records, start=1):

        def bad(why: str, i: int = i) -> LessonImportError:  # bound now, not when called
            return LessonImportError(f"lesson #{i}: {why}; nothing was imported")

        if not isinstance(raw, dict):
            raise bad("not a JSON object")
        try:
            lesson = Lesson.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise bad(f"{'.'.join(str(p) for p in err['loc']) or 'lesson'}: {err['msg']}") from None
        if lesson.schema_version > SCHEMA_VERSION:
            raise bad(f"schema_version {lesson.schema_version} (this payops reads up to {SCHEMA_VERSION})")
        if not DECISION_ID.match(lesson.decision_id):
            raise bad("decision_id must be 1-200 letters, digits or . _ : @ - (no spaces)")
        if lesson.category not in LESSON_CATEGORIES:
            raise bad(f"category '{lesson.category[:40]}' is not one of {', '.join(LESSON_CATEGORIES)}")
        if tools is not None and lesson.tool not in tools:
            raise bad(f"tool '{lesson.tool[:40]}' is not an action this agent has")
        times = {"created_at": lesson.created_at, "applied_at": lesson.applied_at, "concluded_at": lesson.concluded_at}
        for name, value in times.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise bad(f"{name} must be a positive epoch time")
        if lesson.decision_id in seen:
            raise bad(f"repeats decision id {lesson.decision_id}")
        seen.add(lesson.decision_id)
        lessons.append(lesson)
    return lessons


def summarize(lessons: Iterable[Lesson]) -> dict[str, int]:
    counts = {v: 0 for v in ("helped", "no_effect", "harmed", "inconclusive")}
    for lesson in lessons:
        counts[lesson.verdict] = counts.get(lesson.verdict, 0) + 1
    return counts
