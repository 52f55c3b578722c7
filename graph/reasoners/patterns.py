"""Shapes that per-segment failure attribution cannot see on its own: card testing, traffic
that vanishes, a feed that stops, and a rise that nothing explains.

Pure functions over window snapshots; each returns a `Finding` or None. rules.py runs
them at the points where attribution alone would answer wrongly: card testing before
declines are read as customers', volume and "no data" when no failures stand out, and
the unexplained anomaly last, so that a significant rise is never reported healthy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from payops.models import Category
from payops.signals.baseline import BASELINE_MIN_WINDOWS, VOLUME_DROP_SHARE, expected_volume
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import (
    background_mix,
    code_count,
    contains,
    describe,
    error_mix,
    excess_by_family,
    llr,
    nested,
    pct,
    shares,
    within,
)
from .findings import DIMENSION_PREFERENCE, USER_SURGE_PURITY, Finding, elevated, plain_rise
from .reference import own_code_rate
from .rests import KIND_STRAYS
from .selection import WATCHABLE_TOOLS

# -- card testing ------------------------------------------------------------------
# What a card tester's attempts come back with: a stolen or guessed card is flagged,
# has the wrong PIN, has expired, or the issuer refuses it outright.
ENUMERATION_CODES = frozenset({"SUSPECTED_FRAUD", "INCORRECT_PIN", "DO_NOT_HONOR", "EXPIRED_CARD"})
# Where an attack concentrates (the tester's merchant account, terminal, route or region);
# banks are where it is spread, since every card comes from another bank.
ATTACK_DIMENSIONS = ("merchant_id", "terminal_id", "route", "method", "region")
# Share of the segment's excess failures that must be such codes for the excess to be an
# attack rather than an outage with a few declines mixed in.
ENUMERATION_SHARE = 0.6
# A burst of small charges: this share of the enumeration excess is low-amount failures beyond what
# the segment's other charges' failure rate predicts for them (a shop whose baskets are small has
# small declines every day; a tester's small charges fail far more than its customers' purchases)...
LOW_AMOUNT_SHARE = 0.5
# ...or, when the feed carries no amounts (or the tester's charges are above the currency's bar),
# attempts at this multiple of the segment's usual volume (the attack adds traffic; a decline surge
# among real customers does not)...
BURST_VOLUME_FACTOR = 2.0
# ...or attempts beyond the usual volume, beyond chance (the significance bar, read on a Poisson count),
# enough to carry this share of the excess failures at least: the failures arrived with traffic that
# was not there before (a busy shop's 1.2x is a burst of hundreds; the usual volume is itself an estimate,
# hence not all of them). Customers' declines come from the usual traffic.
ADDED_TRAFFIC_SHARE = 0.5
# A tester does not know the card's PIN or CVV and trips the issuers' fraud screens: this share of the
# enumeration excess at least is those two codes beyond their usual share (an attack spread over the four
# codes holds about half). A merchant's billing run over cards on file is declined for funds, expiry and
# refusals, these two only at their usual rate: customers, no attack.
FRAUD_SIGNATURE_CODES = frozenset({"SUSPECTED_FRAUD", "INCORRECT_PIN"})
FRAUD_SIGNATURE_SHARE = 0.25
# ...or, without them (testing online has no PIN, and many issuers answer a guessed card "do not honor"),
# small charges that mostly fail: a tester's cards are stolen or guessed; a billing run declines a minority
# of its customers (a quarter to a third), at whatever its basket is.
TESTER_DECLINE_RATE = 0.5
# Many distinct payments: a tester tries each card about once. A decline retried again
# and again is one customer (and a retry storm, checked elsewhere).
MAX_ATTEMPTS_PER_PAYMENT = 1.3
# Spread across banks: no single bank carries this share of the excess failures of all
# banks together (one bank's cards failing is that bank's fraud screen or outage).
BANK_CONCENTRATION = 0.7
# A narrower segment inside the best-scoring one that carries this share of its enumeration excess is the
# attack's place (the merchant inside its region or acquirer).
ATTACK_DESCEND_SHARE = 0.7
ATTACK_STRAYS = 2  # a seat's attack-type declines outside the place the attack was found (strays)
SEAT_RANK = {"terminal_id": 0, "merchant_id": 1}  # narrower first; routes, methods, regions carry them


def _seat_of(seat: SegmentStats, place: SegmentStats, min_failures: int) -> bool:
    """`seat` (a terminal or merchant) is where the attack found at `place` is sent from: it has no more of
    the attack's decline codes than the place (but for strays), or it sends every small charge the place
    declined (a busy merchant's ordinary sales on its other acquirers add declines, never the tester's
    small charges), when those are enough to read (`min_failures`)."""
    kind, where = seat.dims[0][0], place.dims[0][0] if place.dims else ""
    if kind not in SEAT_RANK or SEAT_RANK[kind] >= SEAT_RANK.get(where, len(SEAT_RANK)):
        return False
    strays = sum(max(0, seat.errors.get(c, 0) - place.errors.get(c, 0)) for c in ENUMERATION_CODES)
    small = place.low_amount_failures
    return strays <= ATTACK_STRAYS or (small >= min_failures and seat.low_amount_failures >= small - ATTACK_STRAYS)


def added_the_failures(seg: SegmentStats, significance_z: float) -> bool:
    """The segment's attempts beyond its usual volume are beyond chance and enough to carry half its
    excess failures at least (`ADDED_TRAFFIC_SHARE`)."""
    if seg.volume_ratio is None or seg.volume_ratio <= 1.0:
        return False
    usual = seg.attempts / seg.volume_ratio
    added = seg.attempts - usual
    return added >= ADDED_TRAFFIC_SHARE * seg.excess_failures and added >= significance_z * math.sqrt(usual)


def _code_excess(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext,
                 codes: frozenset[str] = ENUMERATION_CODES) -> float:
    """Failures with `codes` beyond what the segment usually shows of them: its own rate of them over its
    recent windows that did not stand out, or, without that record, the share they hold of the failures
    outside it. Its own, because traffic differs by nature: a method's cards are refused "do not honour"
    every minute where the instant rails beside it never are."""
    usual = own_code_rate(seg, codes, snapshot, context)
    if usual is not None:
        return code_count(seg, codes) - seg.attempts * usual
    total = snapshot.total
    rest_failures = total.failures - seg.failures
    rest_codes = code_count(total, codes) - code_count(seg, codes)
    share = rest_codes / rest_failures if rest_failures > 0 else 0.0
    return code_count(seg, codes) - seg.attempts * seg.expected_failure_rate * share


def _low_amount_excess(seg: SegmentStats, min_attempts: int) -> float:
    """Low-amount failures beyond what the segment's reference, or its other charges' failure rate when
    they are enough to read one (a tester's shop may sell once a minute), predict for them."""
    others = seg.attempts - seg.low_amount_attempts
    rate = seg.expected_failure_rate
    if others >= min_attempts:
        rate = max(rate, (seg.failures - seg.low_amount_failures) / others)
    return seg.low_amount_failures - seg.low_amount_attempts * rate


def _spread_across_banks(snapshot: WindowSnapshot) -> tuple[bool, str]:
    banks = [b for b in snapshot.by_dimension("bank") if b.excess_failures > 0]
    excess = sum(b.excess_failures for b in banks)
    if len(banks) < 2 or excess <= 0:
        return False, "the excess sits at one bank or none"
    top = max(banks, key=lambda b: b.excess_failures)
    share = top.excess_failures / excess
    return share < BANK_CONCENTRATION, (f"{len(banks)} banks share the excess; the largest, {top.key}, "
                                        f"carries {pct(share)}")


def card_testing(snapshot: WindowSnapshot, context: ReasoningContext,
                 clears_bar: Callable[[SegmentStats], bool]) -> Finding | None:
    """A burst of small charges over many cards, declined with card-validity and fraud codes,
    concentrated at one merchant, terminal or route while spread across banks."""
    t = context.thresholds
    total = snapshot.total
    spread, spread_note = _spread_across_banks(snapshot)
    if not spread:
        return None
    found: list[tuple[float, SegmentStats, float, str, bool]] = []
    alike: list[tuple[float, SegmentStats, float, str, bool]] = []  # the attack's declines, not its burst
    for seg in snapshot.segments:
        if len(seg.dims) != 1 or seg.dims[0][0] not in ATTACK_DIMENSIONS or not clears_bar(seg):
            continue
        enum = _code_excess(seg, snapshot, context)
        if enum < t.min_excess_failures or enum < ENUMERATION_SHARE * seg.excess_failures:
            continue
        mostly_declined = (seg.low_amount_attempts >= t.min_segment_attempts
                           and seg.low_amount_failures >= TESTER_DECLINE_RATE * seg.low_amount_attempts)
        signature = _code_excess(seg, snapshot, context, FRAUD_SIGNATURE_CODES)
        if signature < FRAUD_SIGNATURE_SHARE * enum and not mostly_declined:
            continue
        if seg.attempts_per_payment > MAX_ATTEMPTS_PER_PAYMENT:
            continue
        low = _low_amount_excess(seg, t.min_segment_attempts) >= LOW_AMOUNT_SHARE * enum
        burst = ((seg.volume_ratio or 0.0) >= BURST_VOLUME_FACTOR
                 or added_the_failures(seg, t.significance_z))
        how = (f"{seg.low_amount_failures} of its failures are low-amount charges ({seg.low_amount_attempts} "
               "low-amount attempts)"
               if low else f"volume {seg.volume_ratio or 0.0:.1f}x its usual"
               + ("" if burst else ", inside a place whose burst is past the bar"))
        (found if low or burst else alike).append((llr(seg), seg, enum, how, low))
    if not found:
        return None
    fit, seg, enum, how, low = max(found, key=lambda f: (f[0], -len(f[1].key)))
    # The most specific place that carries most of the attack: a merchant inside the region or the
    # acquirer that scores best is where the tester sits, and the path to stop (the broader segment
    # only holds the merchant's traffic plus healthy neighbours).
    # A burst of volume alone (no amounts) is weaker evidence, and a merchant's own billing run looks
    # like it: it names the place all the same (an alert at the merchant, not at the acquirer carrying it,
    # is what the fraud team can use) but earns no suppression (kind "card_testing_volume").
    # A merchant or terminal is where testers sit: one holding most of the attack is named though its own
    # ordinary sales run on other acquirers too (it is not inside the acquirer carrying the attack, only
    # its attack is): narrower by nature (a terminal in a merchant, a merchant behind an acquirer) and its
    # card-validity and fraud declines, but for a stray or two, among the broader place's.
    # The burst shown by the broader place is the attack's: the shop holding its declines need not show it
    # past the bar alone (an acquirer 1.17x its usual beside its one merchant's 1.15x, 91 attempts added
    # where 100 were needed; the acquirer was named, the merchant is where the tester sits).
    inner = [f for f in found + [a for a in alike if a[1].dims[0][0] in SHOP_DIMENSIONS] if f[1] is not seg
             and (contains(seg, f[1]) or nested(f[1], seg) or _seat_of(f[1], seg, t.min_excess_failures))
             and f[2] >= ATTACK_DESCEND_SHARE * enum]
    if inner:
        fit, seg, enum, how, low = min(inner, key=lambda f: (f[1].attempts, f[1].key))
    conf = 0.75 + 0.1 * min(1.0, enum / (3.0 * t.min_excess_failures)) + 0.05 * (seg.z >= 2 * t.significance_z)
    evidence = (
        describe(seg),
        f"{seg.key}: errors {error_mix(seg, top=4)}; {enum:.0f} excess card-validity/fraud declines "
        f"({', '.join(sorted(ENUMERATION_CODES))})",
        f"{seg.key}: {how}; {seg.attempts_per_payment:.2f} attempts per payment (each card tried about once)",
        f"spread across banks: {spread_note}",
        f"all traffic: {total.failures}/{total.attempts} failed ({pct(total.failure_rate)}) vs expected "
        f"{pct(total.expected_failure_rate)}",
    )
    alternatives = (
        "user-related declines: customers' declines do not arrive as a burst of small charges over many cards at one "
        "place",
        "an issuer's outage or fraud screen: that would concentrate on one bank, and the excess is spread across banks",
    )
    return Finding(Category.SECURITY, seg, round(min(0.95, conf), 3),
                   f"Card testing suspected at {seg.key}: a burst of {'small ' if low else ''}charges over many cards, "
                   "declined across banks.",
                   evidence, alternatives, "card_testing" if low else "card_testing_volume")


# -- volume ------------------------------------------------------------------------
# Dimensions whose traffic can vanish on its own (a processor black-holing requests, a
# merchant's integration down); pairs are left out: their parents say it more plainly.
VOLUME_DIMENSIONS = ("route", "terminal_id", "merchant_id", "method", "bank", "issuer", "region")
# A segment's volume varies from window to window by at least Poisson noise (variance = its mean)
# and by as much as it did over its recent windows (customers arrive in bursts: a bank's
# 30 +- 8): the drop is judged against the larger. Read over at least this many earlier windows.
VOLUME_SPREAD_WINDOWS = 3
# Without that record, a segment expected to see fewer attempts than this in a window is not judged
# (the floor every segment had before the spread was read).
VOLUME_MIN_EXPECTED_UNKNOWN_SPREAD = 30.0
# Missing attempts are added up over at most this many consecutive windows (as rules.POOL_WINDOWS):
# an acquirer, bank or method carries many shops' customers, and its minutes are alike.
VOLUME_POOL_WINDOWS = 5
# One shop's traffic (a merchant, a terminal) is its customers walking in: a quiet spell of a terminal
# that sees 2 a minute is lunch, not an outage, whatever Poisson arithmetic over five minutes says.
# Its run is two windows, the persistence rule's "found in two consecutive windows".
SHOP_DIMENSIONS = ("merchant_id", "terminal_id")
SHOP_POOL_WINDOWS = 2
# Two segments missing nearly the same attempts are the same traffic under two names.
VOLUME_TIE = 0.05
# The actions that move traffic away from a segment (a retry-policy change does not): selection's set.
MOVING_TOOLS = WATCHABLE_TOOLS


@dataclass(frozen=True)
class Drop:
    """A segment's missing attempts this window, what was expected, and how long it has been missing."""

    missing: float
    seg: SegmentStats
    expected: float
    peers_ratio: float
    run: str


def _moved_by_us(seg_dims: dict[str, str], context: ReasoningContext) -> bool:
    """A segment whose traffic an action in force moves (rerouted or suppressed): its drop is ours."""
    for a in context.in_force:
        if a.tool in MOVING_TOOLS and (not a.target or set(a.target.items()) & set(seg_dims.items())):
            return True
    return False


def _volume_variance(seg: SegmentStats, before: float, context: ReasoningContext) -> float | None:
    """How much the segment's attempts varied over its windows ending by `before` (None: too few to say)."""
    counts = [float(past.attempts) for h in context.history if h.window_end <= before
              if (past := h.segment(**seg.target)) is not None]
    return statistics.variance(counts) if len(counts) >= VOLUME_SPREAD_WINDOWS else None


def _vanished(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext,
              present: dict[str, SegmentStats], recent: Sequence[WindowSnapshot],
              share: float = VOLUME_DROP_SHARE) -> Drop | None:
    """The segment's drop when at most `share` of its expected attempts arrived and the shortfall is
    significant against its usual spread, added up over the `recent` windows (oldest first) it kept
    missing in; else None."""
    total = snapshot.total
    now = present[seg.key].attempts if seg.key in present else 0
    usual = seg.baseline_volume or 0.0
    here = expected_volume(usual, now, total.attempts, total.baseline_volume or 0.0)
    if here is None:
        return None  # the segment is all traffic: a platform-wide change, not this segment's
    expected, peers_ratio = here
    if now > share * expected:
        return None  # this window must itself have lost most of its traffic (the run may be read wider)
    # Significant against the segment's usual spread, over the windows it has been missing from (a
    # route of 20 a minute losing 90% is plain after two minutes, not in one). A segment too thin to
    # be significant even when all of it vanishes is never called (a tiny bank's quiet minutes).
    # "Most of its traffic" is read over the run, each earlier window of it below its usual: at 17 a minute
    # a black-holed route's minutes brought 5, 1, 5, 1 — one of them 31% of its usual, which broke a
    # window-by-window run, and the route was never called. The run read is the strongest. This window must
    # have lost most of its own: a route coming back after our reroute was rolled back (19, then 12 of its
    # usual 28) pooled with the minutes the reroute had emptied read as a black hole and was rerouted again.
    window = max(1.0, snapshot.window_end - snapshot.window_start)
    depth = SHOP_POOL_WINDOWS if seg.dims[0][0] in SHOP_DIMENSIONS else VOLUME_POOL_WINDOWS
    runs, run_expected, run_now, since = [], float(expected), float(now), snapshot.window_start
    for h in [None, *reversed(recent[-(depth - 1):] if depth > 1 else [])]:
        if h is not None:
            past = h.segment(**seg.target)
            then = past.attempts if past is not None else 0
            back_then = (expected_volume(past.baseline_volume or usual if past is not None else usual, then,
                                         h.total.attempts, h.total.baseline_volume)
                         if h.total.baseline_volume else None)
            if back_then is None or then >= back_then[0]:
                break
            run_expected, run_now, since = run_expected + back_then[0], run_now + then, h.window_start
        if run_now > share * run_expected:
            continue
        # The window before the run is left out: a drop that began within it (half its traffic gone) would
        # make a steady acquirer's 440 +- 5 read as 440 +- 95.
        variance = _volume_variance(seg, since - window, context)
        windows = round((snapshot.window_end - since) / window)
        if variance is None:
            # No record of how this segment's volume varies (the first minutes of a run): one window
            # alone is judged, on Poisson noise, and only for a busy segment (a terminal's 6, 11, 1, 2...
            # is no Poisson process; a thin segment's quiet minute is not a drop).
            if windows > 1 or expected < VOLUME_MIN_EXPECTED_UNKNOWN_SPREAD:
                continue
            variance = 0.0
        z = (run_expected - run_now) / math.sqrt(max(run_expected, windows * variance))
        runs.append((z, windows, run_now, run_expected))
    if not runs or max(runs)[0] < context.thresholds.significance_z:
        return None
    _, windows, run_now, run_expected = max(runs)
    run = (f"missing for {windows} windows: {run_now:.0f} attempts arrived of {run_expected:.0f} expected"
           if windows > 1 else "missing this window")
    return Drop(expected - now, seg, expected, peers_ratio, run)


def _part_that_lost_it(drop: Drop, found: list[Drop], snapshot: WindowSnapshot, context: ReasoningContext,
                       present: dict[str, SegmentStats]) -> Drop:
    """A broader segment's drop that one of its parts, vanished too, accounts for up to noise: the part. Cards
    missing 430 of 601 attempts while their one black-holed acquirer misses 402 of 431 (the other acquirers 28
    of 170, within their noise) are that acquirer (VOLUME_TIE read with the noise it allows)."""
    broad = present.get(drop.seg.key)
    if broad is None:
        return drop
    z = context.thresholds.significance_z
    parts = [d for d in found if d is not drop and d.seg.key in present and d.expected < drop.expected
             and (within(broad, present[d.seg.key], snapshot) or nested(present[d.seg.key], broad))
             and drop.missing - d.missing < z * math.sqrt(max(1.0, drop.expected - d.expected))]
    return max(parts, key=lambda d: (d.missing, d.seg.key)) if parts else drop


def _route_behind_the_shop(drop: Drop, candidates: list[SegmentStats], snapshot: WindowSnapshot,
                           context: ReasoningContext, present: dict[str, SegmentStats]) -> Drop:
    """A shop (merchant, terminal) whose traffic vanished while a route plausibly carrying it (`nested`) lost
    significantly more than the shop's attempts, though not most of its traffic: the route. A black-holing
    acquirer's first window shows its busiest kiosk past the bar before the acquirer (73% beside 60%). A
    shop's own outage leaves the rest of its route's traffic in place (on Poisson noise)."""
    seg = drop.seg
    if seg.dims[0][0] not in SHOP_DIMENSIONS or seg.key not in present:
        return drop
    z = context.thresholds.significance_z
    routes = [d for r in candidates if r.dims[0][0] == "route" and r.key in present
              and nested(present[seg.key], present[r.key])
              and (d := _vanished(r, snapshot, context, present, (), share=1.0)) is not None  # this window
              and d.missing - drop.missing >= z * math.sqrt(max(1.0, d.expected - drop.expected))]
    return max(routes, key=lambda d: (d.missing, d.seg.key)) if routes else drop


def volume_drop(snapshot: WindowSnapshot, context: ReasoningContext) -> Finding | None:
    """The segment whose traffic vanished while its peers kept theirs, or None."""
    t = context.thresholds
    total = snapshot.total
    if total.baseline_volume is None or not total.baseline_volume or total.volume_ratio is None:
        return None
    present = {s.key: s for s in snapshot.segments}
    candidates: list[SegmentStats] = [s for s in snapshot.segments if len(s.dims) == 1
                                      and s.dims[0][0] in VOLUME_DIMENSIONS
                                      and s.volume_ratio is not None]
    # A segment that vanished altogether is absent from this window: its last appearance in the
    # recent windows gives its usual volume (it stays an incident for as long as it stays away).
    gone: dict[str, SegmentStats] = {}
    for earlier in reversed(context.history):
        for s in earlier.segments:
            if (len(s.dims) == 1 and s.dims[0][0] in VOLUME_DIMENSIONS and s.volume_ratio is not None
                    and s.key not in present and s.key not in gone):
                gone[s.key] = s
    candidates = [s for s in (*candidates, *gone.values()) if not _moved_by_us(s.target, context)]
    recent = [h for h in context.history if h.window_end < snapshot.window_end][-(VOLUME_POOL_WINDOWS - 1):]
    found = [d for s in candidates if (d := _vanished(s, snapshot, context, present, recent)) is not None]
    if not found:
        return None
    most = max(f.missing for f in found)
    ties = [f for f in found if f.missing >= (1.0 - VOLUME_TIE) * most]

    def rank(s: SegmentStats) -> int:
        return min((DIMENSION_PREFERENCE.index(k) if k in DIMENSION_PREFERENCE else 99) for k, _ in s.dims)

    chosen = _part_that_lost_it(min(ties, key=lambda f: (rank(f.seg), f.seg.key)), found, snapshot, context, present)
    chosen = _route_behind_the_shop(chosen, candidates, snapshot, context, present)
    seg, expected, peers_ratio, run = chosen.seg, chosen.expected, chosen.peers_ratio, chosen.run
    now = present[seg.key].attempts if seg.key in present else 0
    share = now / expected if expected else 0.0
    conf = 0.62 + 0.25 * (1.0 - share) + 0.05 * (total.attempts >= t.min_segment_attempts)
    current = present.get(seg.key, seg)
    evidence = (
        f"{seg.key}: {now} attempts vs {expected:.0f} expected ({pct(share)}): its usual {seg.baseline_volume:.0f} per "
        "window "
        f"scaled by its peers' volume ({pct(peers_ratio)} of their usual); {run}",
        f"{seg.key}: {current.failures if seg.key in present else 0} failed of what arrived; the missing attempts "
        "failed nowhere: "
        "they never arrived",
        f"all traffic: {total.attempts} attempts vs usual {total.baseline_volume:.0f}; failure rate "
        f"{pct(total.failure_rate)} "
        f"vs expected {pct(total.expected_failure_rate)}",
    )
    alternatives = (
        "a platform-wide lull (night, holiday): it would lower every segment alike, and the peers keep their volume",
        "customers choosing differently: a shift this large within one window is a fault, not a preference",
    )
    return Finding(Category.NETWORK, seg, round(min(0.92, conf), 3),
                   f"Traffic on {seg.key} vanished: {pct(1.0 - share)} of its expected attempts never arrived.",
                   evidence, alternatives, "volume")


# -- unexplained anomaly -----------------------------------------------------------
# A rise the rules could not attribute is still reported when it is elevated (findings.elevated:
# significant and well above its reference), for a single segment plainly so (findings.plain_rise).
# An unattributed rise whose excess is customers' declines: the codes say what it is, nothing says where;
# asserted at the watch floor (selection.WATCH_BELOW), not above it.
DECLINE_SURGE_CONFIDENCE = 0.6
UNEXPLAINED_CONFIDENCE = 0.45  # "something is wrong, we do not know what": low by design
FAMILY_CATEGORY = {"security": Category.SECURITY, "issuer": Category.ISSUER, "config": Category.CONFIG,
                   "network": Category.NETWORK, "user": Category.USER, "unknown": Category.NETWORK}


def declines_beyond_strays(excess: Mapping[str, float]) -> float:
    """The share of an excess that is customers' declines once every other kind is allowed a stray failure
    (rests.KIND_STRAYS): month-end's 9 insufficient-funds declines beside one refusal, one time-out and one
    fraud flag in 81 payments are customers (66% counting each stray as a kind's excess, 100% without)."""
    user = max(0.0, excess.get("user", 0.0))
    places = sum(max(0.0, v - KIND_STRAYS) for k, v in excess.items() if k != "user")
    return user / (user + places) if user + places > 0 else 0.0


def unexplained(snapshot: WindowSnapshot, context: ReasoningContext) -> Finding | None:
    """The platform, or a segment, failing well above its own reference with no attribution."""
    t = context.thresholds
    total = snapshot.total
    if total.attempts < t.min_segment_attempts or len(context.history) < BASELINE_MIN_WINDOWS:
        return None  # a reference of a window or two is no reference (the first minutes of a run)
    seg: SegmentStats | None = total if elevated(total, t.significance_z, t.min_excess_failures) else None
    if seg is None:
        strong = [s for s in snapshot.segments if plain_rise(s, context)]
        if not strong:
            return None
        seg = max(strong, key=lambda s: (llr(s), -len(s.dims), s.key))
    excess = excess_by_family(seg, background_mix(snapshot, seg))
    fam = shares(excess)
    family = max(fam, key=lambda k: (fam[k], k))
    declines = declines_beyond_strays(excess)
    where = sorted((s for s in snapshot.segments if len(s.dims) == 1 and s.excess_failures > 0),
                   key=lambda s: (-s.excess_failures, s.key))[:4]
    evidence = (
        describe(seg),
        f"{seg.key}: errors {error_mix(seg, top=4)}; excess by code family: "
        + ", ".join(f"{k} {pct(v)}" for k, v in sorted(fam.items(), key=lambda kv: -kv[1]) if v >= 0.05),
        "where the excess concentrates: " + (", ".join(f"{s.key} {s.failures}/{s.attempts} ({pct(s.failure_rate)}, "
                                                         f"{s.excess_failures:.0f} excess)" for s in where)
                                                         or "nowhere in particular"),
        "no single segment, code family or known pattern explains it",
    )
    if declines >= USER_SURGE_PURITY:
        # Customers' declines (funds, expired cards, refusals) lift the figure but name no place, and
        # counted per payment (a declined card retried) were not material where they concentrate: a
        # decline surge, visible as one, with nothing to page anyone about (a billing run, month-end).
        # Card testing, the decline burst that is an attack, is read before this (card_testing).
        return Finding(Category.USER, seg, DECLINE_SURGE_CONFIDENCE,
                       f"Decline surge: {seg.key} fails {pct(seg.failure_rate)} vs expected "
                       f"{pct(seg.expected_failure_rate)}, {pct(declines)} of the excess customers' declines; "
                       "not an operational fault.", evidence[:3],
                       ("an unexplained anomaly: the codes explain it (customers' declines), the place does not "
                        "matter for the response",), "user")
    return Finding(FAMILY_CATEGORY.get(family, Category.NETWORK), seg, UNEXPLAINED_CONFIDENCE,
                   f"Unexplained anomaly: {seg.key} fails {pct(seg.failure_rate)} vs expected "
                   f"{pct(seg.expected_failure_rate)}; "
                   "no attribution explains it.", evidence,
                   ("healthy: the rise is significant and well above the reference, so 'all is well' would be "
                    "wrong",), "anomaly")
