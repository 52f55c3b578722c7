"""Ops chat, the grounding check: does a model's answer say only what its records say?

Deterministic and strict, whatever the model: every decision id in the answer (a full id, a
`d-` prefix, or a bare hex prefix such as `9f3a1c`) must name a decision the answer was built from,
and every figure in it must be in the text the model was given (the question, the tool results, the
records of those decisions): a time of day one that text shows, a percentage a share it shows (printed,
or a fraction), any other number one it holds as printed or rounded. An answer that fails is not
shown: the caller answers from the records instead and says so (payops.chat.llm).

What it cannot see: claims in words ("approved by the board"), and a number the records hold for
another reason (a "2" that is a count elsewhere). The sources listed under a shown answer are
rendered from the records, so the operator can compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# An id as the records print it (`d-` and 16 hex digits) or any prefix of 4 or more.
ID_WITH_PREFIX = re.compile(r"\bd-[0-9a-f]{4,}\b", re.I)
# A bare prefix: 6+ hex digits with at least one digit and one letter (so "2026" and "facade" are not ids).
BARE_ID = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{6,16}\b", re.I)
# A number on its own: not inside a name such as T3 or psp_2, nor the digits of an id.
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")
MAX_DECIMALS = 4
# A time of day: 14:05, 14:05:30, 2:05 pm.
CLOCK = re.compile(r"(?<![\w.:])(\d{1,2}):(\d{2})(?::\d{2})?(?:\s*([ap]m)\b)?", re.I)


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
    raws = NUMBER.findall(ID_WITH_PREFIX.sub(" ", known_text))
    values = {float(x) for x in raws}
    values |= {float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:[eE]-?\d+)?", known_text) if "e" in x.lower()}
    # A share is a fraction written with a decimal point (0.75): the records' counts and flags (0, 1) are not
    # shares, or "100" and "0" would pass whatever the answer meant by them.
    fractions = {float(x) for x in raws if "." in x and float(x) <= 1.0}
    shown: dict[int, set[str]] = {}
    for d in range(MAX_DECIMALS + 1):
        shown[d] = {f"{v:.{d}f}" for v in values} | {f"{100 * v:.{d}f}" for v in fractions}
    return shown


def _clock_times(text: str) -> set[str]:
    """Times of day in a text, as HH:MM (24-hour)."""
    out = set()
    for h, m, half in CLOCK.findall(text):
        hour = int(h) % 12 + (12 if half.lower() == "pm" else 0) if half else int(h)
        out.add(f"{hour:02d}:{m}")
    return out


def _percentages(text: str) -> set[float]:
    """What a text shows as a share: printed percentages, and fractions (0..1) read as percentages."""
    found = {float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*%", text)}
    return found | {100 * float(x) for x in NUMBER.findall(text) if "." in x and float(x) <= 1.0}


def _shown_as(value: float, raw: str, candidates: set[float]) -> bool:
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    return any(f"{c:.{decimals}f}" == f"{value:.{decimals}f}" for c in candidates)


def check(answer: str, source_ids: Iterable[str], known_text: str) -> Grounding:
    """Compare an answer with the decisions it was built from and the text the model was given.

    A time of day must be one the text shows (so "1:30" is not passed by an "11:30" and a "30"); a
    percentage must be a share the text shows (so "60%" is not passed by a 60-second window); any other
    number must appear in the text as printed or rounded."""
    sources = [s.lower() for s in source_ids]
    unknown = [i for i in cited_ids(answer) if not any(s.startswith(i) for s in sources)]
    known_clean = ID_WITH_PREFIX.sub(" ", known_text)
    without_ids = BARE_ID.sub(" ", ID_WITH_PREFIX.sub(" ", answer))
    unverified = []
    times = _clock_times(known_clean)
    for match in CLOCK.finditer(without_ids):
        if not _clock_times(match.group(0)) <= times:
            unverified.append(match.group(0).strip())
    without_times = CLOCK.sub(" ", without_ids)
    shares = _percentages(known_clean)
    for raw in re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)\s*%", without_times):
        if not _shown_as(float(raw), raw, shares):
            unverified.append(f"{raw}%")
    without_times = re.sub(r"(?<![\w.])\d+(?:\.\d+)?\s*%", " ", without_times)
    shown = _known_numbers(known_text)
    for raw in NUMBER.findall(without_times):
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        printed = f"{float(raw):.{decimals}f}"
        if decimals > MAX_DECIMALS or printed not in shown[decimals]:
            unverified.append(raw)
    return Grounding(tuple(unknown), tuple(dict.fromkeys(unverified)))
