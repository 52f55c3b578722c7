"""A shop's traffic several times its usual whose added failures are customers' declines: a billing run.

A subscription merchant charges its cards on file once a month: for a few minutes it sends several times
its usual attempts, and many are declined for funds or expired cards. Below the significance bar (21 of
110 failing where 10 are usual) attribution finds nothing and all traffic reads "within normal bounds",
which is not what an operator sees: a shop eight times as busy as usual, its customers declined. Named
as what it is (customers, no action), it is neither paged nor left unexplained. Card testing, the burst
that is an attack, is read before this (patterns.card_testing: fraud codes or small charges).
Pure functions over window segments.
"""

from __future__ import annotations

from payops.models import Category
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import background_mix, describe, error_mix, excess_by_family, pct, shares
from .findings import REST_CLEAN_Z, USER_SURGE_PURITY, Finding
from .patterns import BURST_VOLUME_FACTOR, MAX_ATTEMPTS_PER_PAYMENT, added_the_failures

# The dimensions whose traffic a billing run (or a sale) adds to: the shop sends it.
SURGE_DIMENSIONS = ("merchant_id",)
# Plainly above the shop's reference (REST_CLEAN_Z), with half the minimum excess: a surge is named,
# not acted on, so it need not clear the bar an action needs.
SURGE_Z = REST_CLEAN_Z
# Customers' surges are asserted at the watch floor's height and no higher: nothing to do, nothing to page.
SURGE_CONFIDENCE = 0.7
# A shop's billing run explains a rise of all traffic when it holds at least this share of the excess failures:
# then the rise is not "unexplained" (read before that reading; below it, the rise is read first).
SURGE_EXPLAINS_SHARE = 0.5


def explains_the_rise(surge: Finding | None, total: SegmentStats) -> bool:
    """The shop's surge holds most of all traffic's excess failures: a subscription run at 10x its usual, 20 of
    the platform's 25 excess failures, read "unexplained anomaly" and paged, though its declines say customers."""
    return (surge is not None and surge.segment is not None
            and surge.segment.excess_failures >= SURGE_EXPLAINS_SHARE * max(0.0, total.excess_failures))


def customers_surge(snapshot: WindowSnapshot, context: ReasoningContext) -> Finding | None:
    """The busiest-failing shop whose volume is BURST_VOLUME_FACTOR its usual, whose added attempts (new payments,
    each tried about once: a retry storm repeats its payments) carry its excess failures, and whose excess is
    customers' declines; or None."""
    t = context.thresholds
    found = []
    for seg in snapshot.segments:
        if (len(seg.dims) != 1 or seg.dims[0][0] not in SURGE_DIMENSIONS
                or (seg.volume_ratio or 0.0) < BURST_VOLUME_FACTOR
                or seg.z < SURGE_Z or seg.excess_failures < t.min_excess_failures / 2.0
                or seg.attempts_per_payment > MAX_ATTEMPTS_PER_PAYMENT  # retries, not new cards: a storm's
                or not added_the_failures(seg, t.significance_z)):
            continue
        fam = shares(excess_by_family(seg, background_mix(snapshot, seg)))
        if fam.get("user", 0.0) >= USER_SURGE_PURITY:
            found.append((seg.excess_failures, seg.key, seg, fam["user"]))
    if not found:
        return None
    _, _, seg, user = max(found)
    evidence = (
        describe(seg),
        f"{seg.key}: {seg.attempts} attempts, {seg.volume_ratio:.1f}x its usual volume; errors {error_mix(seg)}; "
        f"{pct(user)} of its excess failures are customers' declines",
        f"all traffic: {snapshot.total.failures}/{snapshot.total.attempts} failed "
        f"({pct(snapshot.total.failure_rate)}) vs expected {pct(snapshot.total.expected_failure_rate)}",
    )
    alternatives = ("card testing: it would show fraud codes or small charges over new cards (read first)",
                    "an outage at the shop: its failures would be time-outs or errors, not declines")
    return Finding(Category.USER, seg, SURGE_CONFIDENCE,
                   f"Customers' surge at {seg.key}: {seg.volume_ratio:.1f}x its usual attempts (a billing run or a "
                   "sale), the added failures customers' declines; no operational fault.",
                   evidence, alternatives, "user")
