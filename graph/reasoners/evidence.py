"""Evidence over window segments: how well a segment explains the excess failures, and of what kind.

Pure functions over `SegmentStats`; no decisions here. The attribution statistic is a
scan statistic: under "this one segment fails at an elevated rate, everything else
is normal", the log-likelihood ratio against "nothing is wrong" is highest for the
segment that really carries the fault. A broader segment dilutes the elevated rate
with healthy traffic; a narrower one misses part of the excess. So a failing bank
beats each of its bank x route pairs, a failing route beats its banks, and when
every route fails the whole platform beats any part of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from payops.signals.baseline import FAILURE_RATE_FLOOR, binomial_tail_z, binomial_z
from payops.signals.window import SEGMENT_PAIRS, SegmentStats, WindowSnapshot

USER_CODES = frozenset({
    "USER_DECLINED", "INSUFFICIENT_FUNDS", "INCORRECT_PIN", "EXPIRED_CARD", "PALM_PAY_DAILY_LIMIT",
    "PALM_PAY_TRANSACTION_LIMIT", "PALM_PAY_LINK_INACTIVE", "PALM_PAY_VERIFICATION_EXPIRED", "PALM_PAY_NOT_REGISTERED",
})
ISSUER_CODES = frozenset({"ISSUER_DOWN", "BANK_TIMEOUT", "DO_NOT_HONOR"})
NETWORK_CODES = frozenset({"GATEWAY_TIMEOUT", "NETWORK_ERROR", "SYSTEM_ERROR"})
CONFIG_CODES = frozenset({"ROUTE_NOT_SUPPORTED", "RETRY_EXHAUSTED"})
SECURITY_CODES = frozenset({"SUSPECTED_FRAUD", "PALM_PAY_SPOOF_DETECTED", "PALM_PAY_DUPLICATE_PALM"})
FAMILIES: dict[str, frozenset[str]] = {
    "user": USER_CODES, "issuer": ISSUER_CODES, "network": NETWORK_CODES, "config": CONFIG_CODES,
    "security": SECURITY_CODES,
}
UNKNOWN = "unknown"
# Dimensions the window pairs with others (bank x route, ...): containment among them is read from the pairs.
PAIRED_DIMENSIONS = frozenset(d for pair in SEGMENT_PAIRS for d in pair)
# Codes a broken device produces for every customer alike: a palm scanner that cannot
# read a hand reports the palm as not registered.
DEVICE_CODES = frozenset({"PALM_PAY_NOT_REGISTERED"})
# Share of a segment's failures such codes must make for it to read as an attack or a device fault.
DEVICE_BURST_SHARE = 0.6
# Failures a retry may cure (an outage, a timeout). Under a sane policy every retry
# follows one of these; retries beyond them mean declines are being retried. DO_NOT_HONOR
# is an issuer's hard decline: no sane policy retries it.
RETRYABLE_CODES = frozenset({"ISSUER_DOWN", "BANK_TIMEOUT"}) | NETWORK_CODES
# Below this many failures outside a segment, the rest of traffic is too thin to say
# what normal failures look like; normal failures are then taken to be declines.
BACKGROUND_MIN_FAILURES = 20
# A segment's excess is a place's fault (not customers' declines) when this share of it is other codes
# (as a decline surge needs USER_SURGE_PURITY of declines to be one)...
PLACE_FAULT_SHARE = 0.75
# ...of the kinds (code families) that each hold this share of it.
FAULT_KIND_SHARE = 0.25


def family_of(code: str) -> str:
    for name, codes in FAMILIES.items():
        if code in codes:
            return name
    return UNKNOWN


def family_counts(errors: Mapping[str, int], failures: int | None = None) -> dict[str, float]:
    """Failures per code family; failures without a code count as unknown."""
    out = {name: 0.0 for name in (*FAMILIES, UNKNOWN)}
    for code, count in errors.items():
        out[family_of(code)] += count
    if failures is not None:
        out[UNKNOWN] += max(0.0, failures - sum(errors.values()))
    return out


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in counts.items()}


def llr(seg: SegmentStats) -> float:
    """Log-likelihood ratio of "this segment fails at its own observed rate" vs "at its expected rate"."""
    n, x = seg.attempts, seg.failures
    if n <= 0:
        return 0.0
    p0 = min(max(seg.expected_failure_rate, FAILURE_RATE_FLOOR), 0.99)
    q = x / n
    if q <= p0:
        return 0.0
    gain = x * math.log(q / p0)
    if n > x:
        gain += (n - x) * math.log((1.0 - q) / (1.0 - p0))
    return gain


def contains(broad: SegmentStats, narrow: SegmentStats) -> bool:
    """True when `broad` names a strict subset of `narrow`'s dimensions with the same values."""
    b, n = set(broad.dims), set(narrow.dims)
    return b < n


def within(broad: SegmentStats, narrow: SegmentStats, snapshot: WindowSnapshot | None = None) -> bool:
    """`narrow` lies inside `broad`: by its dimensions (`contains`), or because its route carries one method
    only in this window, so that naming the route names that method too: a bank on a card acquirer is part
    of the bank's cards, though no bank x method x route segment says so."""
    if contains(broad, narrow):
        return True
    if snapshot is None or "method" in narrow.target or "route" not in narrow.target:
        return False
    extra = set(broad.dims) - set(narrow.dims)
    if len(extra) != 1 or next(iter(extra))[0] != "method":
        return False  # `broad` must name `narrow`'s other dimensions (some of them) and a method
    route, method = narrow.target["route"], broad.target["method"]
    carried, whole = snapshot.segment(method=method, route=route), snapshot.segment(route=route)
    return carried is not None and whole is not None and carried.attempts == whole.attempts


def nested(inner: SegmentStats, outer: SegmentStats) -> bool:
    """`inner` plausibly lies inside `outer` though no pair segment says so.

    Only for dimensions the window never pairs (a terminal, a merchant, a region):
    a terminal's payments all travel one route, but there is no terminal x route
    segment. Consistent containment: fewer attempts and, code by code, no more
    failures than the outer segment.
    """
    if (len(inner.dims) != 1 or inner.dims[0][0] in PAIRED_DIMENSIONS or not outer.dims
            or inner.dims[0][0] in dict(outer.dims)):
        return False  # the same dimension under another value is other traffic (merchant A is not in B)
    if inner.attempts > outer.attempts or inner.failures > outer.failures:
        return False
    return all(outer.errors.get(code, 0) >= count for code, count in inner.errors.items())


@dataclass(frozen=True)
class Rest:
    """What is left of a broader segment once a narrower one is taken out of it."""

    attempts: int
    failures: int
    expected_rate: float

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def excess(self) -> float:
        return self.failures - self.attempts * self.expected_rate

    @property
    def z(self) -> float:
        return binomial_z(self.failures, self.attempts, self.expected_rate)


def rest_of(broad: SegmentStats, narrow: SegmentStats) -> Rest:
    n = broad.attempts - narrow.attempts
    x = broad.failures - narrow.failures
    if narrow.expected_failure_rate < FAILURE_RATE_FLOOR or narrow.baseline_failure_rate is None:
        # A reference of ~0% is a small segment's thin history, not a fact: subtracting it would
        # load all of the broad segment's normal failures onto the rest. Traffic never seen before (a
        # method pushed onto a route that never carried it) has its peers' reference, no part of the
        # broad segment's history: that history is all the rest's, and subtracting the newcomer's
        # expected failures would leave the rest expecting none.
        rate = broad.expected_failure_rate
    else:
        expected = broad.expected_failure_rate * broad.attempts - narrow.expected_failure_rate * narrow.attempts
        rate = min(max(expected / n, 0.0), 1.0) if n > 0 else 0.0
    return Rest(max(n, 0), max(x, 0), rate)


def fault_kinds(seg: SegmentStats, snapshot: WindowSnapshot) -> frozenset[str]:
    """The code families that make up the segment's excess failures when most of it is a place's fault
    (time-outs, bank-side codes), not customers' declines; empty otherwise. A family counts when it holds
    FAULT_KIND_SHARE of the excess (a scheme failing with ISSUER_DOWN and NETWORK_ERROR has two)."""
    excess = excess_by_family(seg, background_mix(snapshot, seg))
    total = sum(excess.values())
    if total <= 0 or total - excess.get("user", 0.0) < PLACE_FAULT_SHARE * total:
        return frozenset()
    return frozenset(k for k, v in excess.items() if k != "user" and v >= FAULT_KIND_SHARE * total)


def fault_codes(seg: SegmentStats, kinds: frozenset[str]) -> frozenset[str]:
    """The codes `seg` fails with that are of `kinds` (its fault_kinds): what its fault looks like, code by code."""
    return frozenset(c for c in seg.errors if family_of(c) in kinds)


def code_excess(seg: SegmentStats, snapshot: WindowSnapshot, codes: frozenset[str]) -> float:
    """Failures of `codes` in `seg` beyond their usual share of its expected failures: the share in recent normal
    windows where there are enough of them, else among the failures outside `seg`, else none (background_mix)."""
    usual: Mapping[str, int] = snapshot.usual_errors
    if sum(usual.values()) < BACKGROUND_MIN_FAILURES:
        usual = {c: max(0, n - seg.errors.get(c, 0)) for c, n in snapshot.total.errors.items()} if seg.dims else {}
    known = sum(usual.values())
    share = sum(usual.get(c, 0) for c in codes) / known if known >= BACKGROUND_MIN_FAILURES else 0.0
    return sum(seg.errors.get(c, 0) for c in codes) - seg.attempts * seg.expected_failure_rate * share


def kind_failures(seg: SegmentStats, kinds: frozenset[str]) -> float:
    counts = family_counts(seg.errors, seg.failures)
    return sum(counts[k] for k in kinds)


def kind_rest(broad: SegmentStats, narrow: SegmentStats, snapshot: WindowSnapshot,
              every_place_kind: bool = False, kinds: frozenset[str] | None = None) -> Rest | None:
    """The rest of `broad` outside `narrow`, counting only failures of `narrow`'s fault kinds against their
    usual share: a route's other scheme failing 4 of 19 is a weak rise in all failures but plain in time-outs,
    which it rarely returns otherwise; a method's other route with a few more declines (or soft refusals)
    than usual shows no time-outs at all. None when `narrow`'s excess is declines (fault_kinds).
    `every_place_kind`: count every kind but declines (is there a place's fault in the rest at all?).
    `kinds`: `narrow`'s fault_kinds when the caller has them already."""
    kinds = fault_kinds(narrow, snapshot) if kinds is None else kinds
    if not kinds or not narrow.errors:
        return None  # declines, or a feed without codes: no kind to read (all failures are counted instead)
    if every_place_kind:
        kinds = frozenset(k for k in (*FAMILIES, UNKNOWN) if k != "user")
    rest = rest_of(broad, narrow)
    failures = kind_failures(broad, kinds) - kind_failures(narrow, kinds)
    return Rest(rest.attempts, max(0, int(failures)), rest.expected_rate * usual_kind_share(snapshot, narrow, kinds))


def usual_kind_share(snapshot: WindowSnapshot, seg: SegmentStats, kinds: Iterable[str]) -> float:
    """The share of normal failures that are of `kinds`: read from normal windows where there are enough of them
    (the traffic outside `seg` may hold a rest under test, and a fault everywhere would make itself look usual),
    else from the failures outside `seg` (background_mix)."""
    mix = usual_mix(snapshot) or background_mix(snapshot, seg)
    return sum(mix.get(k, 0.0) for k in kinds)


def usual_mix(snapshot: WindowSnapshot) -> dict[str, float] | None:
    """The code-family mix of the platform's failures in recent normal windows, or None when they are too few."""
    if sum(snapshot.usual_errors.values()) < BACKGROUND_MIN_FAILURES:
        return None
    return shares(family_counts(snapshot.usual_errors))


def background_mix(snapshot: WindowSnapshot, seg: SegmentStats) -> dict[str, float]:
    """The code-family mix of normal failures: read from the traffic outside `seg`; for all traffic,
    which has no outside, from the platform's usual failures in recent normal windows. Without
    either, every expected failure is taken for a decline (the most common kind)."""
    if seg.dims:
        inside = family_counts(seg.errors)
        outside = {k: max(0.0, v - inside[k]) for k, v in family_counts(snapshot.total.errors).items()}
        if sum(outside.values()) >= BACKGROUND_MIN_FAILURES:
            return shares(outside)
        return {"user": 1.0}
    return usual_mix(snapshot) or {"user": 1.0}


def excess_by_family(seg: SegmentStats, background: Mapping[str, float]) -> dict[str, float]:
    """Failures beyond what the segment's reference predicts, by code family.

    The expected failures are taken out in the background's mix, so a segment with
    its usual declines plus a burst of timeouts reads as a timeout problem.
    """
    counts = family_counts(seg.errors, seg.failures)
    expected = seg.attempts * seg.expected_failure_rate
    out = {k: max(0.0, v - expected * background.get(k, 0.0)) for k, v in counts.items()}
    return out if sum(out.values()) > 0 else counts


def judged_on_own_history(seg: SegmentStats) -> bool:
    """The window compared this segment with its own trusted baseline (its reference is the
    baseline), not with its peers."""
    return seg.baseline_failure_rate is not None and abs(seg.expected_failure_rate - seg.baseline_failure_rate) <= 1e-9


def code_count(seg: SegmentStats, codes: Iterable[str]) -> int:
    return sum(seg.errors.get(c, 0) for c in codes)


def device_burst_codes(seg: SegmentStats) -> frozenset[str] | None:
    """The code family that makes most of the segment's failures an attack or a device fault
    (spoofed palms anywhere; misreads at a terminal), or None."""
    if not seg.failures:
        return None
    for codes, applies in ((SECURITY_CODES, True), (DEVICE_CODES, "terminal_id" in seg.target)):
        if applies and seg.error_share(*codes) >= DEVICE_BURST_SHARE:
            return codes
    return None


def device_fault_codes(seg: SegmentStats) -> frozenset[str] | None:
    """NETWORK_CODES when most of a terminal's failures are time-outs and system errors: a device (or
    its link) that fails its customers, material in a handful like a burst of misreads. Unlike
    misreads these codes also come from the routes behind the device, so they do not make the device
    the explanation on their own (`device_burst_codes`): only the bar to be a candidate is lower."""
    if "terminal_id" in seg.target and seg.failures and seg.error_share(*NETWORK_CODES) >= DEVICE_BURST_SHARE:
        return NETWORK_CODES
    return None


def pool(stats: Iterable[SegmentStats]) -> SegmentStats | None:
    """One segment over several windows: counts add up, the reference is attempt-weighted."""
    items = [s for s in stats if s.attempts > 0]
    if not items:
        return None
    n = sum(s.attempts for s in items)
    x = sum(s.failures for s in items)
    errors: dict[str, int] = {}
    for s in items:
        for code, count in s.errors.items():
            errors[code] = errors.get(code, 0) + count
    expected = sum(s.expected_failure_rate * s.attempts for s in items) / n
    last = items[-1]
    firsts = [s.first_attempt_failures for s in items]
    # The pooled reference is the segment's own history only if every window's was.
    trusted = all(judged_on_own_history(s) for s in items)
    return replace(
        last, attempts=n, failures=x, errors=errors, expected_failure_rate=expected,
        baseline_failure_rate=expected if trusted else last.baseline_failure_rate,
        first_attempt_failures=None if None in firsts else sum(firsts),  # type: ignore[arg-type]
        traffic_share=sum(s.traffic_share * s.attempts for s in items) / n,
        low_amount_attempts=sum(s.low_amount_attempts for s in items),
        low_amount_failures=sum(s.low_amount_failures for s in items),
        excess_failures=x - n * expected, z=binomial_z(x, n, expected),
    )


def first_attempts(seg: SegmentStats) -> float:
    return seg.attempts / seg.attempts_per_payment if seg.attempts_per_payment > 0 else float(seg.attempts)


# Prior behind the peers' rate of a code: a code no peer shows in this many attempts is
# taken to run at about 1%, rare but not impossible (a spoof or misread can happen anywhere).
PEER_PRIOR_ATTEMPTS = 50


def peer_rate(count: int, attempts: int) -> float:
    """The rate of a code among peers' `attempts`, a code they never show taken to run at about 1%."""
    return (count + 0.5) / (attempts + PEER_PRIOR_ATTEMPTS)


def code_burst_z(seg: SegmentStats, codes: Iterable[str], snapshot: WindowSnapshot) -> float:
    """How unusual the segment's count of `codes` is next to its peers (the other terminals of a
    terminal), as the normal score of the exact binomial tail. Peers, because a device or an
    attack is told apart by comparison with devices like it; exact, because such counts are tiny."""
    return code_burst_zs((seg,), codes, snapshot)[seg.key]


def code_burst_zs(segs: Iterable[SegmentStats], codes: Iterable[str], snapshot: WindowSnapshot) -> dict[str, float]:
    """`code_burst_z` of many segments, their peers summed once per dimension (a finding checked against
    thousands of terminals stays linear). A segment's peers are its dimension's segments in the snapshot
    but its own (the snapshot's, which a segment pooled over windows is not)."""
    codes = frozenset(codes)
    sums: dict[tuple[str, ...], tuple[int, int]] = {}
    out: dict[str, float] = {}
    for seg in segs:
        if not seg.dims:
            out[seg.key] = math.inf  # all traffic has no peers: its own significance test stands
            continue
        names = tuple(k for k, _ in seg.dims)
        if names not in sums:
            peers = snapshot.by_dimension(*names)
            sums[names] = (sum(p.attempts for p in peers), sum(code_count(p, codes) for p in peers))
        n, x = sums[names]
        if (mine := snapshot.segment(**seg.target)) is not None:
            n, x = n - mine.attempts, x - code_count(mine, codes)
        out[seg.key] = binomial_tail_z(code_count(seg, codes), seg.attempts, peer_rate(x, n))
    return out


def repeat_retries(seg: SegmentStats) -> float:
    """Retries beyond one per failed first attempt: at least this many were a payment's second,
    third... retry (every retry follows a failure). 0 when the window did not measure it."""
    if seg.first_attempt_failures is None:
        return 0.0
    return max(0.0, (seg.attempts - first_attempts(seg)) - seg.first_attempt_failures)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def describe(seg: SegmentStats) -> str:
    return (f"{seg.key}: {seg.failures}/{seg.attempts} failed ({pct(seg.failure_rate)}) vs expected "
            f"{pct(seg.expected_failure_rate)}; z={seg.z:.1f}; {seg.excess_failures:.0f} excess failures")


def error_mix(seg: SegmentStats, top: int = 3) -> str:
    if not seg.failures:
        return "no failures"
    ranked = sorted(seg.errors.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return ", ".join(f"{code} {count / seg.failures:.0%}" for code, count in ranked)


def retryable_failures(seg: SegmentStats) -> float:
    """Failures a sane policy would retry: transient codes, plus codes outside the vocabulary."""
    known = sum(count for code, count in seg.errors.items() if family_of(code) != UNKNOWN)
    unknown = seg.failures - known
    return sum(seg.errors.get(code, 0) for code in RETRYABLE_CODES) + max(0.0, unknown)
