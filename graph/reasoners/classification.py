"""Classification: the code families of the *excess* failures of the blamed segment, read in the
light of where they concentrate (declines at one terminal are a device, timeouts across every bank
on one route are the route, the same timeouts at one bank are the bank), with the confidence, the
evidence lines and the alternatives an operator would weigh.
"""

from __future__ import annotations

from payops.models import Category
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import (
    DEVICE_CODES,
    FAMILIES,
    ISSUER_CODES,
    RETRYABLE_CODES,
    UNKNOWN,
    background_mix,
    code_burst_zs,
    code_count,
    contains,
    describe,
    error_mix,
    excess_by_family,
    family_of,
    pct,
    rest_of,
    shares,
)
from .findings import (
    COLD_START_PENALTY,
    CONFIDENCE_CAP,
    FIRST_WINDOW_PENALTY,
    REST_CLEAN_Z,
    TIE_TOLERANCE,
    Finding,
    Scored,
    rest_fails,
)
from .findings import (
    clip as _clip,
)
from .findings import (
    cold as _cold,
)
from .findings import (
    first_window as _first_window,
)
from .tiebreaks import HOLDER_SHARE

# Confidence: components (weights add to 1 with the base) and penalties.
CONF_BASE = 0.4
CONF_PURITY = 0.3  # share of the excess failures in the winning code family
CONF_STRENGTH = 0.1  # z against twice the significance bar
CONF_SIZE = 0.1  # excess failures against three times the minimum
CONF_MARGIN = 0.1  # how much better the blamed segment fits than the best rival
POOLED_PENALTY = 0.1  # evidence needed several windows: small sample
UNEXPLAINED_CODES_PENALTY = 0.1  # the failures carry codes outside the vocabulary
MIXED_EVIDENCE_PENALTY = 0.15  # no code family carries MIXED_PURITY of the excess: no single kind of fault
MIXED_PURITY = 0.5
# Outages and time-outs at one place name the same verdict there whichever side reports them (the place
# decides the kind: a scheme's network, a route, a bank): a scheme outage answering ISSUER_DOWN to some and
# NETWORK_ERROR to others is one kind of fault, not mixed evidence. DO_NOT_HONOR is not one of them: it is
# also the commonest customer decline (card beside instant rails in a cold start reads as "mixed").
OPERATIONAL_FAMILIES = ("issuer", "network")
SYSTEM_NOT_SPREAD_PENALTY = 0.2  # "system-wide" while fewer than two routes fail
# Codes outside the vocabulary mean what the place that alone shows them is (CONTRACT.md §1: "the same code
# means different things depending on where it concentrates"): a bank's, an acquirer's, a device's failure.
# Read in this order (a bank on a route is the bank's link: its codes are the bank's).
PLACE_FAMILY = (("bank", "issuer"), ("terminal_id", "network"), ("route", "network"))


def read_by_place(excess: dict[str, float], seg: SegmentStats, snapshot: WindowSnapshot,
                  significance_z: float) -> tuple[dict[str, float], str | None]:
    """The excess by family with codes outside the vocabulary counted in the family of the place that shows
    them far more than its peers do (a bank's 3-D Secure server answering a code of its acquirer's making),
    and the evidence line that says so; unchanged where the place implies no family or its peers show them too."""
    unknown = excess.get(UNKNOWN, 0.0)
    family = next((f for d, f in PLACE_FAMILY if d in seg.target), None)
    if unknown <= 0.0 or family is None:
        return excess, None
    codes = sorted(c for c in seg.errors if family_of(c) == UNKNOWN)
    if code_burst_zs((seg,), codes, snapshot)[seg.key] < significance_z:
        return excess, None
    held = code_count(seg, codes)
    if any(HOLDER_SHARE * held <= code_count(p, codes)
           for d in ("merchant_id", "terminal_id") if d not in seg.target for p in snapshot.by_dimension(d)):
        return excess, None  # nearly all from one shop or device: theirs, not the place's (a merchant's
        # INVALID_MERCHANT on the acquirer that carries it)
    read = {k: v for k, v in excess.items() if k != UNKNOWN}
    read[family] = read.get(family, 0.0) + unknown
    return read, (f"{seg.key}: {', '.join(codes)} (outside the vocabulary) seen here far more than at its peers: "
                  f"read as {family}-type, where they concentrate")


def _outage_share(fam_shares: dict[str, float], seg: SegmentStats) -> float:
    """Share of the excess that is outages and time-outs (RETRYABLE_CODES), the issuer family's part of it
    in proportion to its outage codes among its failures."""
    issuer = code_count(seg, ISSUER_CODES)
    outages = code_count(seg, RETRYABLE_CODES & ISSUER_CODES) / issuer if issuer else 0.0
    return fam_shares.get("network", 0.0) + fam_shares.get("issuer", 0.0) * outages


def classify(chosen: Scored, ranked: list[Scored], snapshot: WindowSnapshot, context: ReasoningContext,
              pooled: int, latency: list[tuple[SegmentStats, float]]) -> Finding:
    t = context.thresholds
    seg = chosen.seg
    total = snapshot.total
    excess, placed = read_by_place(excess_by_family(seg, background_mix(snapshot, seg)), seg, snapshot,
                                   t.significance_z)
    fam_shares = shares(excess)
    family = max(fam_shares, key=lambda k: (fam_shares[k], k))
    purity = fam_shares[family]
    dims = set(seg.target)
    dominant = max((c for c in seg.errors if family == UNKNOWN or c in FAMILIES.get(family, ())
                    or (placed and family_of(c) == UNKNOWN)),
                   key=lambda c: seg.errors[c], default=seg.dominant_error() or "UNKNOWN")
    penalty = 0.0

    if family == "security":
        category, kind = Category.SECURITY, "security"
        summary = f"Security: {dominant} burst concentrated on {seg.key}."
    elif family == "user" and "terminal_id" in dims and seg.error_share(*DEVICE_CODES) >= 0.5:
        # Customers are independent: one device "declining" everyone with read failures is the device.
        category, kind = Category.NETWORK, "terminal"
        summary = f"Device fault at {seg.key}: the device fails customers with {dominant} at an implausible rate."
    elif family == "user":
        category, kind = Category.USER, "user"
        summary = f"User-related surge ({dominant}) on {seg.key}; not an operational fault."
    elif family == "config" and seg.error_share("ROUTE_NOT_SUPPORTED") >= seg.error_share("RETRY_EXHAUSTED"):
        category, kind = Category.CONFIG, "routing"
        summary = f"Routing misconfiguration: {seg.key} rejects traffic sent to it (ROUTE_NOT_SUPPORTED)."
    elif family == "config":
        category, kind = Category.CONFIG, "retry"
        summary = f"Retry misconfiguration on {seg.key}: payments run out of attempts (RETRY_EXHAUSTED)."
    elif not dims:
        category, kind = Category.NETWORK, "system"
        summary = "System-wide failure: no single bank, route or device explains it."
    elif "terminal_id" in dims:
        category, kind = Category.NETWORK, "terminal"
        summary = f"Device fault at {seg.key} ({dominant})."
    elif "bank" in dims:
        both = "route" in dims
        category, kind = Category.ISSUER, "issuer_route" if both else "issuer"
        summary = f"Issuer degradation: {seg.key} failing ({dominant})" + (" on this route only." if both
                                                                           else " across routes.")
    elif "issuer" in dims and not dims & {"method", "merchant_id", "region"}:
        # The event field `issuer` holds the card scheme or rail (CONTRACT.md §1), not the payer's bank:
        # a scheme failing across banks is its network; on one acquirer only, the link between them.
        both = "route" in dims
        category, kind = Category.NETWORK, "scheme_route" if both else "scheme"
        summary = (f"Scheme/acquirer link failure: {seg.key} failing ({dominant}) on this route only; "
                   "the scheme works through other routes." if both
                   else f"Card scheme or rail failure: {seg.key} failing ({dominant}) across banks and routes.")
    elif "route" in dims:
        category, kind = Category.NETWORK, "route"
        summary = f"Route/processor failure on {seg.key} across banks ({dominant})."
    elif dims == {"method"}:
        category, kind = Category.NETWORK, "method"
        summary = f"Every route carrying {seg.key} fails ({dominant})."
    else:
        category, kind = Category.NETWORK, "segment"
        summary = f"Failures concentrated on {seg.key} ({dominant})."
    if family == UNKNOWN:
        penalty += UNEXPLAINED_CODES_PENALTY
    kind_purity = max(purity, _outage_share(fam_shares, seg)) if family in OPERATIONAL_FAMILIES else purity
    if kind_purity < MIXED_PURITY:
        penalty += MIXED_EVIDENCE_PENALTY
    spread_note = None
    if not dims and category is not Category.USER:
        routes = [r for r in snapshot.by_dimension("route") if r.attempts >= t.min_segment_attempts]
        failing = [r for r in routes if r.z >= REST_CLEAN_Z]
        spread_note = f"failing on {len(failing)} of {len(routes)} routes with traffic"
        if len(failing) < min(2, len(routes)):
            penalty += SYSTEM_NOT_SPREAD_PENALTY  # "platform-wide" with one route or none failing is not

    rivals = [c for c in ranked if c is not chosen and not (c.fit >= (1.0 - TIE_TOLERANCE) * chosen.fit)]
    runner_up = rivals[0].fit if rivals else 0.0
    margin = _clip(1.0 - runner_up / chosen.fit) if chosen.fit > 0 else 0.0
    confidence = (CONF_BASE + CONF_PURITY * purity
                  + CONF_STRENGTH * _clip(seg.z / (2.0 * t.significance_z))
                  + CONF_SIZE * _clip(seg.excess_failures / (3.0 * t.min_excess_failures))
                  + CONF_MARGIN * margin - penalty)
    slow = any(s.key == seg.key for s, _ in latency)
    if kind == "route" and slow:
        confidence += 0.05  # failures and latency point at the same route
    if _cold(seg, context):
        confidence -= COLD_START_PENALTY
    if pooled > 1:
        confidence -= POOLED_PENALTY
    if _first_window(context):
        confidence -= FIRST_WINDOW_PENALTY
    confidence = round(_clip(min(CONFIDENCE_CAP, confidence)), 3)

    evidence = [
        describe(seg) + (f" (pooled over the last {pooled} windows)" if pooled > 1 else ""),
        f"{seg.key}: errors {error_mix(seg)}; {pct(purity)} of its excess failures are {family}-type codes",
        f"{seg.key}: {pct(seg.traffic_share)} of traffic; p95 latency {seg.latency_p95_ms:.0f} ms"
        + (f" (baseline {seg.baseline_latency_p95_ms:.0f} ms)" if seg.baseline_latency_p95_ms else ""),
    ]
    if placed:
        evidence.append(placed)
    evidence += spread(seg, snapshot)
    if spread_note:
        evidence.append(f"all traffic: {spread_note}: " + ", ".join(
            f"{r.target['route']} {pct(r.failure_rate)}" for r in sorted(snapshot.by_dimension("route"),
                                                                         key=lambda r: -r.attempts)[:6]))
    if seg.dims and pooled == 1:
        rest = rest_of(total, seg)
        evidence.append(f"all traffic outside {seg.key}: {rest.failures}/{rest.attempts} failed "
                        f"({pct(rest.failure_rate)}) "
                        f"vs expected {pct(rest.expected_rate)}")
    alternatives = weigh_alternatives(chosen, ranked, snapshot, category, fam_shares, context)
    return Finding(category, seg, confidence, summary, tuple(evidence), alternatives, kind, pooled)

def spread(seg: SegmentStats, snapshot: WindowSnapshot) -> list[str]:
    """How the blamed segment fails across the next dimension down (every route? one route?)."""
    if len(seg.dims) != 1:
        return []
    groups: dict[str, list[SegmentStats]] = {}
    for s in snapshot.segments:
        if contains(seg, s) and len(s.dims) == 2 and s.attempts >= 3:
            other = next(k for k, _ in s.dims if k not in seg.target)
            groups.setdefault(other, []).append(s)
    if not groups:
        return []
    dim, parts = max(groups.items(), key=lambda kv: (len(kv[1]), kv[0]))
    failing = [p for p in parts
               if p.failures - p.attempts * p.expected_failure_rate
               > 2.0 * (p.attempts * max(p.expected_failure_rate, 0.01)) ** 0.5]
    listed = ", ".join(f"{p.target[dim]} {pct(p.failure_rate)}" for p in sorted(parts, key=lambda p: -p.attempts)[:6])
    return [f"{seg.key} fails on {len(failing)} of {len(parts)} {dim} values: {listed}"]

def weigh_alternatives(chosen: Scored, ranked: list[Scored], snapshot: WindowSnapshot, category: Category,
                  fam_shares: dict[str, float], context: ReasoningContext) -> tuple[str, ...]:
    seg = chosen.seg
    out: list[str] = []
    # Rivals of other dimensions first (what explaining away is about), then the rest.
    rivals = sorted(ranked[:10], key=lambda c: (bool(set(dict(c.seg.dims)) & set(seg.target)), -c.fit))
    for other in rivals:
        o = other.seg
        if o.key == seg.key:
            continue
        if o.attempts == seg.attempts and other.fit >= (1.0 - TIE_TOLERANCE) * chosen.fit:
            out.append(f"{o.key}: the same traffic under another name (fit {other.fit:.0f}); {seg.key} is the one to "
                       "act on")
        elif contains(o, seg):
            rest = rest_of(o, seg)
            out.append(f"{o.key}: broader; without {seg.key} it fails {rest.failures}/{rest.attempts} "
                       f"({pct(rest.failure_rate)} vs expected {pct(rest.expected_rate)}): explained by {seg.key}")
        elif contains(seg, o):
            share = o.excess_failures / seg.excess_failures if seg.excess_failures > 0 else 0.0
            out.append(f"{o.key}: narrower; carries {share:.0%} of {seg.key}'s excess, which fails beyond it")
        elif (inter := snapshot.segment(**{**o.target, **seg.target})) is not None and contains(o, inter):
            # Explaining away across dimensions: the route without the bank's share of it.
            rest = rest_of(o, inter)
            if rest.attempts == 0:
                out.append(f"{o.key}: all of its traffic lies inside {seg.key}; "
                           f"fit {other.fit:.0f} vs {chosen.fit:.0f}")
                continue
            verdict = "explained by" if not rest_fails(rest, seg, context) else "fails beyond"
            out.append(f"{o.key}: {pct(o.failure_rate)} failing; without {inter.key} it fails "
                       f"{rest.failures}/{rest.attempts} "
                       f"({pct(rest.failure_rate)} vs expected {pct(rest.expected_rate)}): {verdict} {seg.key}")
        else:
            out.append(f"{o.key}: weaker fit ({other.fit:.0f} vs {chosen.fit:.0f}); overlaps the same failing traffic")
        if len(out) >= 6:
            break
    user_share = fam_shares.get("user", 0.0)
    if category is not Category.USER and user_share < 0.5:
        out.append(f"user-related: only {pct(user_share)} of the excess failures are declines or limits")
    elif user_share >= 0.5 and "terminal_id" in seg.target:
        peers = [t for t in snapshot.by_dimension("terminal_id") if t.key != seg.key and t.attempts]
        rate = sum(t.failures for t in peers) / max(1, sum(t.attempts for t in peers))
        out.append(f"user-related: the codes are customer-type, but customers are independent; this device fails "
                   f"{pct(seg.failure_rate)} while the other terminals fail {pct(rate)}")
    if category is Category.USER:
        out.append(f"operational fault: only {pct(1.0 - user_share)} of the excess failures are infrastructure codes")
    out.append(f"chance: {seg.failures} failures where {seg.attempts * seg.expected_failure_rate:.1f} were expected "
               f"(z={seg.z:.1f})")
    return tuple(out)
