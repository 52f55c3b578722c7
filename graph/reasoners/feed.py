"""A silent feed: the collector or the platform has stopped. "No data", never "healthy".

Pure functions over window snapshots; rules.py asks `near_silent` first of every window.
"""

from __future__ import annotations

from payops.models import Category
from payops.signals.window import TAIL_SHARE, SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .findings import Finding

# A window that brought at most this share of the platform's usual attempts is as good as silent: a
# collector that died delivers nothing, one coming back a second before the window closed delivers a
# handful, while the deepest lull customers make (a night) keeps a quarter or more. A silence of
# 170 s ended by one event a second before the tick read "healthy" beside 2,900 usual attempts.
NEAR_SILENT_SHARE = 0.02


def near_silent(total: SegmentStats) -> bool:
    """The window is empty, or brought at most NEAR_SILENT_SHARE of the platform's usual attempts."""
    usual = total.baseline_volume or 0.0
    return total.attempts == 0 or total.attempts <= NEAR_SILENT_SHARE * usual


def _last_traffic(window: WindowSnapshot) -> float | None:
    """The latest its last event can have come, read in thirds of the window (signals' lead and tail
    columns); None for an empty window. An upper bound: silence measured from it is never overstated."""
    t = window.total
    if t.attempts == 0:
        return None
    third = TAIL_SHARE * (window.window_end - window.window_start)
    if t.tail_attempts:
        return window.window_end
    return window.window_end - third if t.attempts > t.lead_attempts else window.window_start + third


def no_data(snapshot: WindowSnapshot, context: ReasoningContext) -> Finding:
    """An empty (or near-silent) window: the feed stopped (or never started). Never "healthy".

    The silence is measured from the latest the last event can have come (`_last_traffic`): a feed dying in
    the first seconds of a window (24 events where 2,330 are usual) was silent from then; a trickle only in
    this window's last third is the feed coming back, silent until that third. Never overstated."""
    t = context.thresholds
    span = snapshot.window_end - snapshot.window_start
    now, here = snapshot.total, _last_traffic(snapshot)
    resuming = here is not None and now.tail_attempts == now.attempts
    before = [last for h in context.history if h.window_end < snapshot.window_end
              if (last := _last_traffic(h)) is not None]
    count = f"{now.attempts} attempt(s) in the window, at most {NEAR_SILENT_SHARE:.0%} of the usual"
    if here is not None and not resuming:
        silence = snapshot.window_end - here
        seen = f"{count}, none in its last {silence:.0f} s"
    elif before:
        silence = snapshot.window_end - (TAIL_SHARE * span if resuming else 0.0) - max(before)
        seen = (f"{count}, all in its last third: no events for at least {silence:.0f} s before them (the feed "
                "coming back)" if resuming else f"0 attempts in the window; no events for at least {silence:.0f} s")
    else:
        silence = span * (1 + sum(1 for h in context.history if h.window_end < snapshot.window_end))
        seen = f"{count if now.attempts else '0 attempts in the window'}; no events in any of the last {silence:.0f} s"
    usual = snapshot.total.baseline_volume
    evidence = (seen, f"usual volume {usual:.0f} per window" if usual else "no usual volume learned yet")
    alternatives = ("a quiet period: traffic this far down to zero for this long is the feed, not the customers",)
    if silence >= t.no_data_seconds:
        said = (f"No data: the payment feed was silent for {silence:.0f} s; events are coming back." if resuming
                else f"No data: the payment feed has been silent for {silence:.0f} s.")
        return Finding(Category.NETWORK, snapshot.total, 0.8, said, evidence, alternatives, "no_data")
    # Below the setting: said and watched (low confidence), not paged yet.
    return Finding(Category.NETWORK, snapshot.total, 0.4,
                   f"No data for {silence:.0f} s; alerting after {t.no_data_seconds:.0f} s.",
                   evidence, alternatives, "no_data")
