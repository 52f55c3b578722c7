"""Per-tick figures an operator's chart needs, compactly: the blamed segment and the top segments.

Kept with each decision record (the console draws a segment's failure rate and volume against its
reference around a decision from them). A handful of segments with five numbers each: ~1 KB a tick.
"""

from __future__ import annotations

from typing import Any

from .window import SegmentStats, WindowSnapshot

TOP_SEGMENTS = 5  # by excess failures: the ones an operator would look at next


def _figures(s: SegmentStats) -> dict[str, Any]:
    return {"attempts": s.attempts, "failures": s.failures, "expected_rate": round(s.expected_failure_rate, 4),
            "p95_ms": round(s.latency_p95_ms, 1),
            "baseline_volume": None if s.baseline_volume is None else round(s.baseline_volume, 1)}


def tick_figures(snapshot: WindowSnapshot, blamed: dict[str, str] | None) -> dict[str, Any]:
    """{"segments": {key: figures}} for the blamed segment and the top segments by excess failures."""
    chosen: dict[str, SegmentStats] = {}
    if blamed:
        seg = snapshot.segment(**blamed)
        if seg is not None:
            chosen[seg.key] = seg
    for seg in sorted(snapshot.segments, key=lambda s: -s.excess_failures)[:TOP_SEGMENTS]:
        if seg.excess_failures > 0:
            chosen.setdefault(seg.key, seg)
    return {"segments": {key: _figures(seg) for key, seg in chosen.items()}}
