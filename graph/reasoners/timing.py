"""When within the window a segment's failures happened: over, young or fading (a 30 s blip or an outage).

The window counts each segment's attempts and failures in its lead and tail thirds (signals.window.TAIL_SHARE).
Failures gone from the tail are over (no traffic move at all); failures mostly in the tail are seconds old;
failures plainly fewer in the tail than before it may be passing (both put to a human). Used by
selection.choose_action before a traffic move. Pure functions over window segments.
"""

from __future__ import annotations

from payops.signals.baseline import binomial_tail_z, binomial_z
from payops.signals.window import SegmentStats

from .evidence import Rest
from .findings import rest_clean

# A part of the window is "clean" (or "plainly less") below this z against the reference it is tested on.
BURST_CLEAN_Z = 2.0
# A fault "began within the window" when the part of the window before it shows at most this share of
# the excess rate after it (it covered at most half of that part); more is a steady fault that wobbles.
YOUNG_BEFORE_SHARE = 0.5


def _parts(seg: SegmentStats) -> tuple[tuple[int, int], ...]:
    """(attempts, failures) of the window's lead third, the rest after it, the head before the tail, the tail."""
    lead, tail = (seg.lead_attempts, seg.lead_failures), (seg.tail_attempts, seg.tail_failures)
    return (lead, (seg.attempts - lead[0], seg.failures - lead[1]),
            (seg.attempts - tail[0], seg.failures - tail[1]), tail)


def _fell(before: tuple[int, int], after: tuple[int, int], p: float, min_attempts: int) -> bool:
    """`before` (attempts, failures) fails well above `p` and `after` plainly less: a test against
    `before`'s rate, so an `after` too thin to show the fault never passes it. An `after` under
    `min_attempts` is judged on the exact binomial tail (its successes beyond what `before`'s rate
    leaves), at the same z: 0 of 9 where a route was failing 78 % is plain; 0 of 2 is not."""
    (n0, f0), (n1, f1) = before, after
    if n0 < min_attempts or f0 <= 0 or n1 <= 0 or binomial_z(f0, n0, p) < BURST_CLEAN_Z:
        return False
    if n1 >= min_attempts:
        return binomial_z(f1, n1, f0 / n0) <= -BURST_CLEAN_Z
    return binomial_tail_z(n1 - f1, n1, 1.0 - f0 / n0) >= BURST_CLEAN_Z


def burst_over(seg: SegmentStats, min_attempts: int, min_excess: float) -> bool:
    """The segment's failures stood out early in the window and are back to normal after (judged as a
    clean rest is): in its tail (a burst over before the window's end), or already after its lead third
    (the last seconds of a burst that began in the window before)."""
    lead, rest, head, tail = _parts(seg)
    p = seg.expected_failure_rate
    return any(_fell(before, after, p, min_attempts) and rest_clean(Rest(*after, p), min_excess)
               for before, after in ((head, tail), (lead, rest)))


def burst_young(seg: SegmentStats, min_attempts: int) -> bool:
    """The segment's failures began within the window: the part of the window before them (its lead
    third, or everything before its tail) fails plainly less than the part after, which fails well
    above the segment's reference. A fault that has not yet lasted a window is as likely a blip as
    an outage's onset (the next window tells)."""
    lead, rest, head, tail = _parts(seg)
    return any(_began_within(before, after, seg.expected_failure_rate, min_attempts)
               for before, after in ((lead, rest), (head, tail)))


def _began_within(before: tuple[int, int], after: tuple[int, int], p: float, min_attempts: int) -> bool:
    """`after` (attempts, failures) fails well above `p`, `before` plainly less than `after` (not noise).
    "Plainly less" is a test against `after`'s rate: a `before` too thin to show the fault never passes it."""
    (n0, f0), (n1, f1) = before, after
    # The fall of a burst read backwards (`_fell` from after to before), and the fault filled at most this
    # share of the part before: it began late in it, not a steady fault whose rate wobbles.
    return _fell(after, before, p, min_attempts) and f0 / n0 - p <= YOUNG_BEFORE_SHARE * (f1 / n1 - p)


def burst_fading(seg: SegmentStats, min_attempts: int) -> bool:
    """The segment failed before the window's tail and plainly less in it, though not yet back to its
    reference (burst_over): the fault may be passing. A traffic move then waits for a human or the
    next window."""
    _, _, head, tail = _parts(seg)
    return _fell(head, tail, seg.expected_failure_rate, min_attempts)
