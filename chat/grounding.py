"""Ops chat, the grounding check: does a model's answer say only what its records say?

Deterministic and strict, whatever the model: every decision id in the answer (a full id, a
`d-` prefix, or a bare hex prefix such as `9f3a1c`) must name a decision the answer was built from,
and every figure in it (a number: a rate, a count, a latency, a time) must appear in the text the
model was given (the question, the tool results, the records of those decisions), as printed or
rounded, or as a fraction printed as a percentage. An answer that fails is not shown: the caller
answers from the records instead and says so (payops.chat.llm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

# An id as the records print it (`d-` and 16 hex digits) or any prefix of 4 or more.
ID_WITH_PREFIX = re.compile(r"\bd-[0-9a-f]{4,}\b", re.I)
# A bare prefix: 6+ hex digits with at least one digit and one letter (so "2026" and "facade" are not ids).
BARE_ID = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{6,16}\b", re.I)
# A number on its own: not inside a name such as T3 or psp_2, nor the digits of an id.
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")
MAX_DECIMALS = 4


@dataclass(frozen=True)
class Grounding:
    """What an answer says that its records do not."""

    unknown_ids: tuple[str, ...] = ()
    unverified_figures: tuple[str, ...] = ()

    @property
    def holds(self) -> bool:
        return not self.unknown_ids and not self.unverified_figures

    def reason(self) -> str:
        parts = []
        if self.unknown_ids:
            parts.append("decision id(s) not in the records it was given: " + ", ".join(self.unknown_ids))
        if self.unverified_figures:
            parts.append("figure(s) not in those records: " + ", ".join(self.unverified_figures))
        return "; ".join(parts)


def cited_ids(text: str) -> list[str]:
    """Every id or id prefix the text names, as written (lower case), in order of first mention."""
    found = [m.lower() for m in ID_WITH_PREFIX.findall(text)]
    found += ["d-" + m.lower() for m in BARE_ID.findall(ID_WITH_PREFIX.sub(" ", text))]
    return list(dict.fromkeys(found))


def _known_numbers(known_text: str) -> dict[int, set[str]]:
    """Decimals printed -> every way a number in the records may be printed with that many decimals."""
    values = {float(x) for x in NUMBER.findall(ID_WITH_PREFIX.sub(" ", known_text))}
    values |= {float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:[eE]-?\d+)?", known_text) if "e" in x.lower()}
    shown: dict[int, set[str]] = {}
    for d in range(MAX_DECIMALS + 1):
        shown[d] = {f"{v:.{d}f}" for v in values} | {f"{100 * v:.{d}f}" for v in values if v <= 1.0}
    return shown


def check(answer: str, source_ids: Iterable[str], known_text: str) -> Grounding:
    """Compare an answer with the decisions it was built from and the text the model was given."""
    sources = [s.lower() for s in source_ids]
    unknown = [i for i in cited_ids(answer) if not any(s.startswith(i) for s in sources)]
    shown = _known_numbers(known_text)
    without_ids = BARE_ID.sub(" ", ID_WITH_PREFIX.sub(" ", answer))
    unverified = []
    for raw in NUMBER.findall(without_ids):
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        printed = f"{float(raw):.{decimals}f}"
        if decimals > MAX_DECIMALS or printed not in shown[decimals]:
            unverified.append(raw)
    return Grounding(tuple(unknown), tuple(dict.fromkeys(unverified)))
