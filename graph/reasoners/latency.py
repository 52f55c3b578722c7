"""Latency: a route whose p95 is far above its reference, with its median slower too (and not
made of failures)."""

from __future__ import annotations

from payops.models import Category
from payops.signals.baseline import BASELINE_MIN_WINDOWS
from payops.signals.events import LATENCY_BUCKET_GROWTH
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import pct
from .findings import COLD_START_PENALTY, CONFIDENCE_CAP, FIRST_WINDOW_PENALTY, Finding
from .findings import first_window as _first_window
from .reference import BASELINE_MEMORY_WINDOWS

# Latency: a route whose p95 is this many times its reference is degraded.
LATENCY_FACTOR = 2.5
# A median over attempts of which this share failed can be a failure's latency, not a payment's.
SLOW_FAILURE_SHARE = 0.5
# A latency reference is a p95: the 5 slowest of every 100 attempts. Read from fewer attempts than this it is
# a handful of payments (a route at 15 a minute, four minutes into a run: its "p95" of 420 ms, beside
# payments of 1.1 s every minute, made one 22 s time-out an autonomous reroute in a healthy minute).
LATENCY_REFERENCE_MIN_ATTEMPTS = 100


def latency_candidates(snapshot: WindowSnapshot, context: ReasoningContext) -> list[tuple[SegmentStats, float]]:
    reference_total = snapshot.total.baseline_latency_p95_ms or snapshot.total.latency_p50_ms * 3
    out = []
    for seg in snapshot.by_dimension("route"):
        if seg.attempts < context.thresholds.min_segment_attempts:
            continue
        reference = seg.baseline_latency_p95_ms or reference_total
        # A slow tail (a few timeouts) is not a slow route: the median payment must be slower than
        # the old 95th percentile too, by more than the latency histogram's resolution (one bucket:
        # a median in the bucket of the old p95 is not slower, it is the same figure rounded).
        if (reference and seg.latency_p95_ms >= LATENCY_FACTOR * reference
                and seg.latency_p50_ms >= LATENCY_BUCKET_GROWTH * reference):
            out.append((seg, seg.latency_p95_ms / reference))
    return sorted(out, key=lambda x: -x[1])

def slow_not_failing(latency: list[tuple[SegmentStats, float]]) -> list[tuple[SegmentStats, float]]:
    """The slow routes whose slowness is their own. When at least half of a route's attempts failed,
    its median may be a failure's time-out: the slowness is the failures' symptom, and the failures
    (attributed where they concentrate: a bank, a scheme, a terminal) are the finding."""
    return [(seg, factor) for seg, factor in latency if seg.failure_rate < SLOW_FAILURE_SHARE]


def young_reference(seg: SegmentStats, context: ReasoningContext) -> bool:
    """No latency reference of its own, or one read from fewer windows than a baseline needs (the first
    minutes of a run: a route's 265 ms over a dozen attempts is no proof its payments ever take that long),
    or from fewer attempts than a p95 needs (LATENCY_REFERENCE_MIN_ATTEMPTS)."""
    if seg.baseline_latency_p95_ms is None or len(context.history) < BASELINE_MIN_WINDOWS:
        return True
    read_from = (seg.baseline_volume or 0.0) * min(len(context.history), BASELINE_MEMORY_WINDOWS)
    return read_from < LATENCY_REFERENCE_MIN_ATTEMPTS


def latency_finding(latency: list[tuple[SegmentStats, float]],
                    snapshot: WindowSnapshot, context: ReasoningContext,
                    every_slow: list[tuple[SegmentStats, float]] | None = None) -> Finding:
    """`latency`: the slow routes to name (slow_not_failing); `every_slow`: all slow routes, those whose
    slowness their failures explain too. Routes slow beside this one, failing or not, say the slowness
    is not this route's alone (the platform's gateway timing out everywhere, failing half of each)."""
    seg, factor = latency[0]
    routes = snapshot.by_dimension("route")
    t = context.thresholds
    conf = 0.62 + 0.07 * min(factor, 5.0)
    others = [(s, f) for s, f in (every_slow or latency) if s.key != seg.key]
    mixed = len(latency) > 1 or bool(others)
    if mixed:
        conf -= 0.2  # several routes slow at once: probably not the route (a bank, the platform)
    if seg.attempts < 3 * t.min_segment_attempts:
        conf -= 0.1  # a p95 over few attempts is a handful of slow payments
    if young_reference(seg, context):
        conf -= COLD_START_PENALTY
    if _first_window(context):
        conf -= FIRST_WINDOW_PENALTY
    reference = seg.baseline_latency_p95_ms
    evidence = (
        f"{seg.key}: p95 latency {seg.latency_p95_ms:.0f} ms, {factor:.1f}x its reference"
        + (f" ({reference:.0f} ms)" if reference else ""),
        f"{seg.key}: p50 {seg.latency_p50_ms:.0f} ms, p99 {seg.latency_p99_ms:.0f} ms over {seg.attempts} attempts "
        f"({pct(seg.traffic_share)} of traffic)",
        f"{seg.key}: {seg.failures}/{seg.attempts} failed ({pct(seg.failure_rate)}) vs expected "
        f"{pct(seg.expected_failure_rate)}",
        f"all traffic p95 {snapshot.total.latency_p95_ms:.0f} ms; other routes: " + ", ".join(
            f"{r.key} {r.latency_p95_ms:.0f} ms" for r in routes if r.key != seg.key)[:300],
    )
    alts = tuple(f"{s.key}: also slow ({f:.1f}x) — the slowness may not be the route's" for s, f in others[:3])
    if not mixed:
        alts += ("a bank or the platform: they would slow every route, and the other routes are at their usual "
                 "latency",)
    return Finding(Category.NETWORK, seg, round(min(CONFIDENCE_CAP, conf), 3),
                   f"Latency degradation on {seg.key}.", evidence, alts, "latency")
