"""Evidence pooled over recent windows, for segments too thin to show their trouble in one.

At 40 payments a minute a bank's cards on one acquirer are a handful of attempts per window:
failing every one of them is not yet "significant and material". Pooled over the last few
windows while the segment keeps failing, it is. The attribution that follows (which name
explains the failures, which place holds the codes, what kind of fault it is) then reads the
same windows for every segment (`pooled_view`): a scheme's failures pooled over four minutes
set beside a bank's failures of the last minute alone would blame the scheme for the bank's
time-outs because the bank's were not added up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import pool
from .reference import as_of, prepared_segment

# Evidence pooled over at most this many recent windows when one window is too thin...
POOL_WINDOWS = 5
# ...only while the segment keeps pointing the same way: this z in the current window
# and POOL_HINT_Z in each earlier one (an incident that ended is not pooled into a new one).
POOL_NOW_Z = 2.0
# Only thin segments are pooled: fewer attempts per window than this many times the
# minimum excess, so even a 50% failure rate cannot clear the bar in one window.
POOL_THIN_FACTOR = 2.0
POOL_HINT_Z = 1.0


def _earlier(snapshot: WindowSnapshot, context: ReasoningContext,
             windows: int) -> list[tuple[WindowSnapshot, dict[str, SegmentStats], ReasoningContext]]:
    """The `windows` windows before this one, newest first, each with the context it was judged in:
    its references as they were then (`prepared` shrinks and replaces the raw ones the history keeps)."""
    recent = [h for h in context.history if h.window_end < snapshot.window_end][-windows:] if windows > 0 else []
    return [(h, {s.key: s for s in (h.total, *h.segments)}, as_of(h, context)) for h in reversed(recent)]


def _as_judged(raw: SegmentStats, earlier: WindowSnapshot, then: ReasoningContext) -> SegmentStats:
    return prepared_segment(raw, earlier, then) if raw.dims else raw


def pooled_candidates(snapshot: WindowSnapshot, context: ReasoningContext,
                      clears_bar: Callable[[SegmentStats, WindowSnapshot], bool]) -> tuple[list[SegmentStats], int]:
    """Thin segments failing now, pooled over the run of recent windows in which they kept failing,
    that clear the bar pooled; and the longest such run (1 when none)."""
    earlier = _earlier(snapshot, context, POOL_WINDOWS - 1)
    if not earlier:
        return [], 1
    pooled, depth = [], 1
    thin = POOL_THIN_FACTOR * context.thresholds.min_excess_failures
    for seg in (snapshot.total, *snapshot.segments):
        if seg.attempts >= thin:
            continue  # one window can show this segment's trouble: nothing to pool
        if seg.z < POOL_NOW_Z or seg.excess_failures < 1.0:
            continue  # not failing now: nothing ongoing to pool
        run = [seg]
        for earlier_snapshot, by_key, then in earlier:
            if earlier_snapshot.total.z >= context.thresholds.significance_z:
                break  # everything failed then: a thin segment's share of a platform incident is not its own
            raw = by_key.get(seg.key)
            if raw is None:
                continue  # a thin segment may see no traffic for a window
            prev = _as_judged(raw, earlier_snapshot, then)
            if prev.z < POOL_HINT_Z or clears_bar(prev, earlier_snapshot):
                # The run of thin failing windows starts after this one (a window that
                # cleared the bar alone was already seen; pooling it would drag a past
                # incident's evidence into the present).
                break
            run.append(prev)
        if len(run) < 2:
            continue
        merged = pool(reversed(run))
        if merged is not None and clears_bar(merged, snapshot):
            pooled.append(merged)
            depth = max(depth, len(run))
    return pooled, depth


def pooled_view(snapshot: WindowSnapshot, context: ReasoningContext, depth: int,
                only: Collection[str] | None = None) -> WindowSnapshot:
    """This window and the `depth - 1` before it as one: every segment's counts, codes and references
    added up over the same windows, so that a part and its whole, or two overlapping names, compare
    like with like (rests, code holders, fault kinds). Segments seen earlier but not now are left out:
    they are not what is failing now. `only`: the keys of the segments a caller reads (all traffic is
    always pooled): each earlier window's segment is judged as of its time, which is not free."""
    earlier = _earlier(snapshot, context, depth - 1)
    if not earlier:
        return snapshot

    def pooled(seg: SegmentStats) -> SegmentStats:
        runs = [seg] + [_as_judged(s, h, then) for h, by_key, then in earlier if (s := by_key.get(seg.key)) is not None]
        return pool(reversed(runs)) or seg

    return WindowSnapshot(earlier[-1][0].window_start, snapshot.window_end, pooled(snapshot.total),
                          tuple(pooled(s) for s in snapshot.segments if only is None or s.key in only),
                          snapshot.quality, snapshot.vocab_sizes,
                          snapshot.usual_errors)


def failing_run(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext) -> int:
    """Consecutive windows, this one included, in which `seg` kept pointing the same way (z at least
    POOL_HINT_Z, as judged then), at most POOL_WINDOWS: how far back its incident's evidence reaches."""
    depth = 1
    for earlier_snapshot, by_key, then in _earlier(snapshot, context, POOL_WINDOWS - 1):
        raw = by_key.get(seg.key)
        if raw is None:
            continue  # a thin segment may see no traffic for a window
        if _as_judged(raw, earlier_snapshot, then).z < POOL_HINT_Z:
            break
        depth += 1
    return depth
