"""Whether the rest of a broader segment shares a part's fault: the tests that move blame up or down.

Explaining-away (rules.py) compares a part of a segment with the rest of it. Counting all failures, a
rest with a few more customers' declines than usual looks like the same fault spreading, and a rest
with a handful of time-outs it never otherwise shows looks clean. Read by the part's kind of failure
(`evidence.kind_rest`) they say what an operator would: the declines are customers, the time-outs are
the route. Early attribution (a ramp's first minute) is here too: it asks the same question at low counts, in one
window or over the windows the part has been failing in.
Pure functions over window segments.
"""

from __future__ import annotations

from payops.signals.baseline import binomial_tail_z, binomial_z
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext, Thresholds
from .evidence import (
    Rest,
    code_excess,
    contains,
    fault_codes,
    fault_kinds,
    kind_failures,
    kind_rest,
    llr,
    rest_of,
    usual_kind_share,
)
from .findings import REST_CLEAN_Z, SAME_FAULT_RATE_SHARE, Scored
from .pooling import failing_run, pooled_view

# Early attribution: while a pair's excess is under this many times the minimum (low counts),
# its single-dimension parent takes the blame when the parent's rest is plainly elevated too
# (REST_CLEAN_Z, this many excess failures, at least this multiple of its expected rate): the
# part of a ramp that shows first is not the fault, the route it runs on is. The usual climb
# also asks the rest for half the pair's rate, which a ramp's first minute rarely shows...
EARLY_EXCESS_FACTOR = 3.0
EARLY_REST_EXCESS = 2.0
EARLY_REST_RATE_FACTOR = 2.0
# ...unless the pair fits clearly better than the parent (scan statistic ratio).
CHILD_CLEARLY_BETTER = 1.5
# Failures of a part's kind (time-outs, bank codes) that its broader segment's rest may show beyond their
# usual share while the fault has not reached it: one is a stray, two are the fault reaching the rest.
KIND_STRAYS = 1.0


def rest_same_kind(parent: SegmentStats, seg: SegmentStats, snapshot: WindowSnapshot | None,
                   kinds: frozenset[str] | None = None) -> bool:
    """The rest of a broader name shows a place's fault too (any kind but declines: acquirers report one
    outage under different codes): a route's time-outs beside a few more declines than usual on the
    method's other route are the route's, not the method's (kind_rest). `kinds`: `seg`'s fault_kinds
    when the caller weighs several parents of one part."""
    rest = kind_rest(parent, seg, snapshot, every_place_kind=True, kinds=kinds) if snapshot is not None else None
    return rest is None or kind_reaches(rest)


def kind_reaches(rest: Rest) -> bool:
    """The part's kind of failure reaches the rest: more than a stray, and plainly above its usual share,
    read on the exact tail: a kind's usual count in a rest is a handful or less, where the normal score is
    far too bold (3 refusals in 66 payments where 0.94 are usual scored z 2.1, chance gives it one time in 23:
    a route's ramp was named at the scheme whose other route had them)."""
    return (rest.excess > KIND_STRAYS
            and binomial_tail_z(rest.failures, rest.attempts, rest.expected_rate) >= REST_CLEAN_Z)


def rest_fails_in_kind(broad: SegmentStats, part: SegmentStats, snapshot: WindowSnapshot, thresholds: Thresholds,
                       z_bar: float, kinds: frozenset[str] | None = None) -> bool:
    """`findings.rest_fails` read in the part's kinds of failure: the rest of the broad segment fails significantly
    in them (z_bar, half the minimum excess) and has risen in them at least half as far as the part. A route's ramp
    reaching its second scheme: 14 time-outs in 486 where 3 are usual, beside the first scheme's 51 in 1,096,
    while the second scheme's customers' declines are a few fewer than usual (all failures: z 1.6)."""
    rest = kind_rest(broad, part, snapshot, kinds=kinds)
    return (rest is not None and rest.attempts >= thresholds.min_segment_attempts
            and rest.excess >= thresholds.min_excess_failures / 2.0 and rest.z >= z_bar
            and not rises_less_in_kind(broad, part, snapshot, kinds))


def rest_declines_only(broad: SegmentStats, part: SegmentStats, snapshot: WindowSnapshot,
                       thresholds: Thresholds) -> bool:
    """Outside the part, failures of the part's kinds are at most a stray beyond their usual share and
    plainly rarer than in the part: whatever else the rest shows is customers' declines. Two codes that
    never come otherwise (an ACS outage's on the bank's other route) are the same fault, not strays."""
    if broad.attempts - part.attempts < thresholds.min_segment_attempts:
        return False
    kinds = fault_kinds(part, snapshot)
    rest = kind_rest(broad, part, snapshot, kinds=kinds)
    places = kind_rest(broad, part, snapshot, every_place_kind=True, kinds=kinds)
    if rest is None or places is None or kind_reaches(places):
        return False  # the rest shows a place's fault of its own kind: not declines only
    part_rate = kind_failures(part, kinds) / part.attempts
    return binomial_z(rest.failures, rest.attempts, part_rate) <= -REST_CLEAN_Z


def carries_the_kind(broad: SegmentStats, part: SegmentStats, snapshot: WindowSnapshot, share: float,
                     thresholds: Thresholds) -> bool:
    """The broad segment's excess holds a place's kinds of failure (time-outs, bank-side codes) in earnest (half
    the minimum excess), the part fails in them beyond their usual share (the exact tail, significance bar) and
    holds `share` of them: a scheme's link failing 6 of 8 in time-outs on a route whose other scheme has a few
    more customers' declines than usual carries all of the route's time-outs, though only half of its excess
    failures. A few DO_NOT_HONOR beside a month-end decline surge are no place's fault to carry. Held is read
    in the part's own codes (evidence.fault_codes): a scheme's 8 time-outs and bank outages all on one acquirer
    are carried there though the scheme's other acquirers show 4 refusals (DO_NOT_HONOR, of the same family)."""
    kinds = fault_kinds(part, snapshot)
    if not kinds:
        return False
    codes = fault_codes(part, kinds)
    held = code_excess(broad, snapshot, codes)
    if held < thresholds.min_excess_failures / 2.0:
        return False
    usual = part.expected_failure_rate * usual_kind_share(snapshot, part, kinds)
    if binomial_tail_z(int(kind_failures(part, kinds)), part.attempts, usual) < thresholds.significance_z:
        return False
    return code_excess(part, snapshot, codes) >= share * held


def early_parents(chosen: Scored, snapshot: WindowSnapshot) -> list[Scored]:
    """At low counts a pair (issuer x route) is blamed on a handful of failures while its parent's
    rest shows the same rise too thinly to pass the usual test (a route's ramp, first tick).
    The parent explains the pair when its rest leans the same way at a comparable rate, unless
    the pair fits clearly better (the rest is plainly clean, or far weaker)."""
    return [Scored(p, llr(p)) for p in snapshot.segments if parent_explains(p, chosen, None, snapshot)]


def parent_explains(parent: SegmentStats, child: Scored, min_excess: float | None = None,
                    snapshot: WindowSnapshot | None = None) -> bool:
    """The rest leans the same way: in the pair's kinds of failure when they are a place's (kind_rest), in
    all failures when the pair's are declines. A route's other scheme with 4 time-outs in 19 explains its
    first scheme's; a method's other route with a few more declines than usual does not explain one
    route's time-outs."""
    seg = child.seg
    if len(parent.dims) != 1 or len(seg.dims) != 2 or not contains(parent, seg):
        return False
    if min_excess is not None and seg.excess_failures >= EARLY_EXCESS_FACTOR * min_excess:
        return False
    if child.fit >= CHILD_CLEARLY_BETTER * llr(parent):
        return False
    kind = kind_rest(parent, seg, snapshot) if snapshot is not None else None
    if kind is not None:
        return kind_reaches(kind)
    rest = rest_of(parent, seg)
    return (rest.z >= REST_CLEAN_Z and rest.excess >= EARLY_REST_EXCESS
            and rest.failure_rate >= EARLY_REST_RATE_FACTOR * rest.expected_rate)


def explains_over_the_run(parent: SegmentStats, child: Scored, snapshot: WindowSnapshot,
                          context: ReasoningContext, pooled: int = 1) -> bool:
    """Early attribution when the parent's rest is too thin to read in this window (a route's second
    scheme, 3 attempts this minute): the rest read over the windows the part has been failing in. A
    ramp's first scheme to show is not the fault when the route's other scheme failed the same way a
    minute before. Evidence already pooled (`pooled` > 1) is not pooled again."""
    seg = child.seg
    if (pooled > 1 or len(parent.dims) != 1 or len(seg.dims) != 2 or not contains(parent, seg)
            or seg.excess_failures >= EARLY_EXCESS_FACTOR * context.thresholds.min_excess_failures
            or rest_of(parent, seg).attempts >= context.thresholds.min_segment_attempts):
        return False
    depth = failing_run(seg, snapshot, context)
    if depth < 2:
        return False
    view = pooled_view(snapshot, context, depth, only=(seg.key, parent.key))
    part, whole = view.segment(**seg.target), view.segment(**parent.target)
    return part is not None and whole is not None and parent_explains(whole, Scored(part, llr(part)), None, view)


def sibling_shares_fault(parent: SegmentStats, part: SegmentStats, ranked: list[Scored], snapshot: WindowSnapshot,
                         kinds: frozenset[str] | None = None) -> bool:
    """Another pair under `parent`, differing from `part` in its other dimension only, is a finding of its own
    (a candidate) failing with the same kind of place's fault: the two are one fault, the parent's. An ACS
    outage fails a bank's cards on each acquirer that carries them; the bank's wallet on its own rail, which
    dilutes the bank's rest below the part's rate, does not."""
    if len(parent.dims) != 1 or len(part.dims) != 2 or not contains(parent, part):
        return False
    kinds = fault_kinds(part, snapshot) if kinds is None else kinds
    if not kinds:
        return False  # customers' declines follow customers; siblings rising in them are not one place's fault
    other = next(d for d, v in part.dims if (d, v) not in parent.dims)
    return any(c.seg.key != part.key and len(c.seg.dims) == 2 and contains(parent, c.seg)
               and other in dict(c.seg.dims) and fault_kinds(c.seg, snapshot) & kinds for c in ranked)


def rises_less_in_kind(broad: SegmentStats, part: SegmentStats, snapshot: WindowSnapshot,
                       kinds: frozenset[str] | None = None) -> bool:
    """`findings.rises_less` read in the part's kinds of failure (evidence.kind_rest), when they are a place's:
    a route's other scheme failing 9 of 28, every one a time-out it rarely shows, beside its first scheme's
    156 of 281 has risen in time-outs as far as the part has, though in all failures a hair under half as
    far. True (no objection) when the part's excess is declines or the feed carries no codes. `kinds`: the
    part's fault_kinds when the caller weighs several parents of one part."""
    kinds = fault_kinds(part, snapshot) if kinds is None else kinds
    rest = kind_rest(broad, part, snapshot, kinds=kinds)
    if rest is None or part.attempts <= 0:
        return True
    usual = part.expected_failure_rate * usual_kind_share(snapshot, part, kinds)
    part_rise = kind_failures(part, kinds) / part.attempts - usual
    return rest.failure_rate - rest.expected_rate < SAME_FAULT_RATE_SHARE * part_rise
