"""What each segment is judged against: the reference failure rate behind its z and excess.

The window (signals/window.py) gives a segment its trusted EWMA baseline, or, while it has
none, the failure rate of the rest of traffic (its peers). Two corrections, both made once
per tick before any rule reads the snapshot (`prepared`):

1. A young or thin baseline is shrunk toward the platform's rate (`SHRINK_ATTEMPTS`).
2. A segment the agent has watched for several windows but never trusted is judged on its
   own recent record, not on its peers. The window's baseline learns only windows that
   look normal, and "normal" for an untrusted segment means "like its peers": a segment
   that differs from its peers by nature (cards decline more than instant rails, a scheme
   fails more than a rail) is "anomalous" in every window, is never learned, and reads as
   an incident for its first half hour. An operator knows better: card has declined 12%
   every minute since we started watching; 12% now is card's normal, 30% would not be.
   New traffic (a segment absent from the recent windows) keeps its peers as reference.
"""

from __future__ import annotations

from dataclasses import replace

from payops.signals.baseline import BASELINE_ALPHA, BASELINE_MIN_WINDOWS, binomial_z
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import CONFIG_CODES, code_count, judged_on_own_history, retryable_failures

# Prior weight, in attempts, of the platform's failure rate behind a segment's reference:
# a terminal with 300 attempts of history is pulled halfway to it.
SHRINK_ATTEMPTS = 300
BASELINE_MEMORY_WINDOWS = round(1.0 / BASELINE_ALPHA)  # windows an EWMA baseline effectively remembers
# A segment's own record stands in for its missing baseline once it covers this many earlier
# windows (the window's own rule for trusting a baseline)...
OWN_RECORD_MIN_WINDOWS = BASELINE_MIN_WINDOWS
# ...learning, like the baseline does, only windows that did not stand out from the record so far
# (an incident under way must not become its own reference). A window stands out at this z.
OWN_RECORD_OUTLIER_Z = 3.0
# A window above its reference is not learned as the segment's nature when at least this share of its
# failures is technical (retryable or configuration codes): that is a fault, whenever it started.
NATURE_TECHNICAL_SHARE = 0.5


def own_record(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext) -> tuple[float, int, int] | None:
    """(failure rate, attempts, windows) of the segment's normal-looking earlier windows, or None
    when it was seen in fewer than OWN_RECORD_MIN_WINDOWS of them (new or rare traffic)."""
    learned = normal_windows(seg, snapshot, context)
    attempts = sum(s.attempts for s in learned)
    if len(learned) < OWN_RECORD_MIN_WINDOWS or attempts == 0:
        return None
    return sum(s.failures for s in learned) / attempts, attempts, len(learned)


def normal_windows(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext) -> list[SegmentStats]:
    """The segment in the earlier windows that looked normal for it: its own record, learned as the
    window's baseline learns, skipping windows that stood out from the record so far."""
    failures = attempts = 0
    learned: list[SegmentStats] = []
    for h in context.history:
        if h.window_end >= snapshot.window_end:
            continue
        past = h.segment(**seg.target)
        if past is None or past.attempts == 0:
            continue
        if len(learned) >= OWN_RECORD_MIN_WINDOWS - 1 and binomial_z(past.failures,
                                                                     past.attempts,
                                                                     failures / attempts) >= OWN_RECORD_OUTLIER_Z:
            continue  # a window that stood out from the record so far is not learned
        if past.z >= OWN_RECORD_OUTLIER_Z and _fault_type(past):
            continue  # above its window's reference with technical codes: a fault, not its nature
        failures += past.failures
        attempts += past.attempts
        learned.append(past)
    return learned


def own_code_rate(seg: SegmentStats, codes: frozenset[str], snapshot: WindowSnapshot,
                   context: ReasoningContext) -> float | None:
    """The segment's rate of `codes` per attempt over the earlier windows that looked normal for it
    (reference.normal_windows), or None when it was seen in fewer than BASELINE_MIN_WINDOWS of them."""
    learned = normal_windows(seg, snapshot, context)
    attempts = sum(s.attempts for s in learned)
    if len(learned) < BASELINE_MIN_WINDOWS or attempts == 0:
        return None
    return sum(code_count(s, codes) for s in learned) / attempts


def _fault_type(seg: SegmentStats) -> bool:
    """Most of the segment's failures are technical (time-outs, outages, rejections, unknown codes):
    what sets a segment apart by nature is its customers' declines (card declines more than a rail),
    never its technical failures (a method misrouted since it first appeared fails with
    ROUTE_NOT_SUPPORTED, whenever it started)."""
    technical = retryable_failures(seg) + code_count(seg, CONFIG_CODES)
    return seg.failures > 0 and technical >= NATURE_TECHNICAL_SHARE * seg.failures


def _rejudged(seg: SegmentStats, p: float) -> SegmentStats:
    return replace(seg, expected_failure_rate=p, baseline_failure_rate=p,
                   excess_failures=seg.failures - seg.attempts * p,
                   z=binomial_z(seg.failures, seg.attempts, p))


def prepared(snapshot: WindowSnapshot, context: ReasoningContext) -> WindowSnapshot:
    """The snapshot with young or thin references shrunk toward the platform's, and untrusted
    segments with a record of their own judged on it (see the module docstring).

    A segment's baseline rests on its attempts per window times the windows seen
    (at most the EWMA's memory). Early in a run, or for a small segment, that is a
    few hundred attempts, and such baselines come out biased (a terminal at 0% after
    five minutes, palm at half its real decline rate), which reads noise as an
    incident. The platform's own reference is the prior, worth SHRINK_ATTEMPTS attempts.
    """
    total = snapshot.total
    adjusted = tuple(prepared_segment(seg, snapshot, context) for seg in snapshot.segments)
    return WindowSnapshot(snapshot.window_start, snapshot.window_end, total, adjusted,
                          snapshot.quality, snapshot.vocab_sizes, usual_errors(snapshot, context))


def prepared_segment(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext) -> SegmentStats:
    """One segment of `snapshot` judged as `prepared` judges it. An earlier window's segment is judged
    with the history before that window (`as_of`): evidence pooled over windows must add up references
    of one kind, not this window's shrunk one and the raw ones the history keeps."""
    if judged_on_own_history(seg) and seg.baseline_volume is not None:
        weight = seg.baseline_volume * max(1, min(len(context.history), BASELINE_MEMORY_WINDOWS))
        reference = snapshot.total.expected_failure_rate
        return _rejudged(seg, (weight * seg.expected_failure_rate + SHRINK_ATTEMPTS * reference)
                         / (weight + SHRINK_ATTEMPTS))
    record = own_record(seg, snapshot, context) if seg.attempts else None
    if record is None:
        return seg
    rate, n, _ = record
    # Shrunk toward the peers' rate this window: a thin record is pulled to what the window said.
    return _rejudged(seg, (n * rate + SHRINK_ATTEMPTS * seg.expected_failure_rate) / (n + SHRINK_ATTEMPTS))


def as_of(earlier: WindowSnapshot, context: ReasoningContext) -> ReasoningContext:
    """The context the reasoner had when `earlier` was the current window (its history before it)."""
    return replace(context, history=tuple(h for h in context.history if h.window_end < earlier.window_end))


def usual_errors(snapshot: WindowSnapshot, context: ReasoningContext) -> dict[str, int]:
    """Failure codes of all traffic over the recent windows that did not stand out (z below
    OWN_RECORD_OUTLIER_Z): the codes a normal minute fails with. A surge is then read against them:
    month-end's extra INSUFFICIENT_FUNDS beside the usual handful of time-outs is a decline surge,
    not a mixed bag (counting every usual time-out as excess made it one)."""
    counts: dict[str, int] = {}
    for h in context.history[-BASELINE_MEMORY_WINDOWS:]:
        if h.window_end >= snapshot.window_end or h.total.z >= OWN_RECORD_OUTLIER_Z:
            continue
        for code, n in h.total.errors.items():
            counts[code] = counts.get(code, 0) + n
    return counts
