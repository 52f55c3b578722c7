"""The oracle: what a perfect operator would conclude and do, and from when.

A scenario's Expectations are its ground truth (category, the segment to blame,
the acceptable tools, onset and end in seconds after the simulation start).
Outside every expectation the truth is "healthy, no action". The evaluation
harness asks per instant (`oracle_at`) or per decision window (`oracle_for_window`:
the incident must fill enough of the window to be visible at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .scenarios import Expectation, Scenario

# An incident is expected to be seen once it fills this share of the decision
# window: a 60 s window with 10 s of an outage in it shows little of it yet.
MIN_WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class OracleAnswer:
    category: str  # CONTRACT.md §2
    target: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[str, ...] = ("no_action",)  # any of these is right
    expectation: Expectation | None = None  # None: nothing is wrong

    @property
    def healthy(self) -> bool:
        return self.expectation is None

    def accepts(self, tool: str) -> bool:
        return tool in self.actions


HEALTHY = OracleAnswer("healthy")


def _answer(expectation: Expectation) -> OracleAnswer:
    return OracleAnswer(expectation.category, dict(expectation.target), tuple(expectation.actions), expectation)


def oracle_at(scenario: Scenario, t: float) -> OracleAnswer:
    """Ground truth at `t` seconds after the simulation start (the latest-begun incident wins)."""
    active = [x for x in scenario.expectations if x.onset <= t < x.end]
    if not active:
        return HEALTHY
    return _answer(max(active, key=lambda x: x.onset))


def oracle_for_window(scenario: Scenario, start: float, end: float,
                      min_overlap: float = MIN_WINDOW_OVERLAP) -> OracleAnswer:
    """Ground truth for a decision over [start, end) (seconds after the simulation start):
    the incident covering most of the window, if it covers at least `min_overlap` of it."""
    length = end - start
    if length <= 0:
        raise ValueError("a window needs end > start")
    best, best_overlap = None, 0.0
    for x in scenario.expectations:
        overlap = max(0.0, min(end, x.end) - max(start, x.onset))
        if overlap > best_overlap:
            best, best_overlap = x, overlap
    if best is None or best_overlap < min_overlap * length:
        return HEALTHY
    return _answer(best)


def oracle_timeline(scenario: Scenario, duration: float, tick: float = 60.0,
                    window: float = 60.0) -> list[tuple[float, OracleAnswer]]:
    """(window end, answer) for every tick of a run of `duration` seconds, as `payops replay` ticks."""
    out = []
    end = tick
    while end <= duration + 1e-9:
        out.append((end, oracle_for_window(scenario, max(0.0, end - window), end)))
        end += tick
    return out
