"""The deterministic, embedded reasoner: explaining-away attribution plus named rules.

Attribution: of all segments whose failures are significantly above their
reference, take the largest excess; among segments that explain at least
EXPLAIN_SHARE of it, blame the smallest one. A failing bank raises every route
it uses, but the bank alone explains the excess; a failing route across banks
is the route; when nothing smaller than the whole platform explains it, it is
system-wide. Error codes then say what kind of trouble it is, read in the light
of where they concentrate.
"""

from __future__ import annotations

from dataclasses import dataclass

from payops.models import Category, Diagnosis, ProposedAction, target_key
from payops.signals.window import SegmentStats, WindowSnapshot
from payops.tools.actions import validate_proposal

from .base import ActionView, Decision, ReasoningContext

# A smaller segment is blamed when it carries at least this share of the largest excess.
EXPLAIN_SHARE = 0.8
# Latency: a route whose p95 is this many times its reference is degraded.
LATENCY_FACTOR = 2.5
# Retry storm: attempts per payment this far above normal (and at least RETRY_STORM_MIN),
# with payments running out of attempts (RETRY_EXHAUSTED). An outage under a sane
# policy raises attempts too, but never exhausts a budget of one retry.
RETRY_STORM_FACTOR = 1.15
RETRY_STORM_MIN = 1.2
NORMAL_ATTEMPTS_PER_PAYMENT = 1.05  # before a baseline exists
# Suppressing an issuer loses its remaining successes: only when most attempts fail.
SUPPRESS_MIN_FAILURE_RATE = 0.5
# A segment a reroute may send traffic to must fail at most this much above its reference.
HEALTHY_MARGIN = 0.05
CONFIDENCE_CAP = 0.97

USER_CODES = frozenset({
    "USER_DECLINED", "INSUFFICIENT_FUNDS", "INCORRECT_PIN", "EXPIRED_CARD", "PALM_PAY_DAILY_LIMIT",
    "PALM_PAY_TRANSACTION_LIMIT", "PALM_PAY_LINK_INACTIVE", "PALM_PAY_VERIFICATION_EXPIRED", "PALM_PAY_NOT_REGISTERED",
})
ISSUER_CODES = frozenset({"ISSUER_DOWN", "BANK_TIMEOUT", "DO_NOT_HONOR"})
NETWORK_CODES = frozenset({"GATEWAY_TIMEOUT", "NETWORK_ERROR", "SYSTEM_ERROR"})
CONFIG_CODES = frozenset({"ROUTE_NOT_SUPPORTED", "RETRY_EXHAUSTED"})
SECURITY_CODES = frozenset({"SUSPECTED_FRAUD", "PALM_PAY_SPOOF_DETECTED", "PALM_PAY_DUPLICATE_PALM"})
FAMILIES = {"user": USER_CODES, "issuer": ISSUER_CODES, "network": NETWORK_CODES, "config": CONFIG_CODES, "security": SECURITY_CODES}
# Codes that point at a device when they concentrate on one terminal.
DEVICE_CODES = frozenset({"PALM_PAY_NOT_REGISTERED"})


# When two segments carry the same attempts, blame the one an operator can act on.
DIMENSION_PREFERENCE = ("terminal_id", "route", "bank", "method", "merchant_id", "issuer", "region")


def _dimension_rank(seg: SegmentStats) -> tuple[int, ...]:
    return tuple(sorted(DIMENSION_PREFERENCE.index(k) if k in DIMENSION_PREFERENCE else 99 for k, _ in seg.dims))


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def family_shares(seg: SegmentStats) -> dict[str, float]:
    total = sum(seg.errors.values()) or 1
    shares = {name: sum(seg.errors.get(c, 0) for c in codes) / total for name, codes in FAMILIES.items()}
    shares["unknown"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def describe(seg: SegmentStats) -> str:
    return (f"{seg.key}: {seg.failures}/{seg.attempts} failed ({pct(seg.failure_rate)}) vs expected "
            f"{pct(seg.expected_failure_rate)}; z={seg.z:.1f}; {seg.excess_failures:.0f} excess failures")


def error_mix(seg: SegmentStats, top: int = 3) -> str:
    if not seg.failures:
        return "no failures"
    ranked = sorted(seg.errors.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return ", ".join(f"{code} {count / seg.failures:.0%}" for code, count in ranked)


@dataclass(frozen=True)
class Finding:
    category: Category
    segment: SegmentStats | None
    confidence: float
    summary: str
    evidence: tuple[str, ...]
    alternatives: tuple[str, ...]
    kind: str  # finer shape: route, issuer, issuer_route, system, terminal, latency, retry, routing, user, security, healthy


class RuleReasoner:
    name = "rules"

    def decide(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Decision:
        finding = self.diagnose(snapshot, context)
        diagnosis = Diagnosis(
            category=finding.category,
            target=finding.segment.target if finding.segment is not None and finding.category is not Category.HEALTHY else {},
            summary=finding.summary,
            evidence=finding.evidence,
            alternatives=finding.alternatives,
            confidence=finding.confidence,
            reasoner=self.name,
        )
        return Decision(diagnosis, choose_action(finding, snapshot, context))

    # -- diagnosis ------------------------------------------------------------
    def candidates(self, snapshot: WindowSnapshot, context: ReasoningContext) -> list[SegmentStats]:
        t = context.thresholds
        pool = (snapshot.total, *snapshot.segments)
        return [s for s in pool if s.attempts >= t.min_segment_attempts and s.excess_failures >= t.min_excess_failures and s.z >= t.significance_z]

    def diagnose(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Finding:
        t = context.thresholds
        total = snapshot.total
        if total.attempts == 0:
            if total.baseline_volume and total.baseline_volume >= t.min_segment_attempts:
                return Finding(Category.NETWORK, total, 0.7, "No payments at all in the window where traffic is normal.",
                               (f"0 attempts vs baseline {total.baseline_volume:.0f} per window",), (), "system")
            return Finding(Category.HEALTHY, None, 0.5, "No traffic in the window.", ("0 attempts",), (), "healthy")

        storm = self._retry_storm(total, t.min_segment_attempts, t.min_excess_failures)
        if storm is not None:
            return storm

        cands = self.candidates(snapshot, context)
        latency = self._latency_candidates(snapshot, context)
        if not cands and latency:
            return self._latency_finding(latency, snapshot)
        if not cands:
            conf = 0.9 if total.attempts >= t.min_segment_attempts else 0.6
            return Finding(Category.HEALTHY, None, conf, "Traffic within normal bounds.",
                           (f"all traffic: {total.failures}/{total.attempts} failed ({pct(total.failure_rate)}), "
                            f"p95 latency {total.latency_p95_ms:.0f} ms; no segment significantly above its reference",), (), "healthy")

        top = max(cands, key=lambda s: s.excess_failures)
        eligible = [s for s in cands if s.excess_failures >= EXPLAIN_SHARE * top.excess_failures]
        chosen = min(eligible, key=lambda s: (s.attempts, len(s.dims), _dimension_rank(s), s.key))
        alternatives = tuple(
            f"{s.key}: explains {s.excess_failures / top.excess_failures:.0%} of the largest excess"
            + (" (broader; explained by the blamed segment)" if s in eligible else " (too little)")
            for s in sorted(cands, key=lambda s: -s.excess_failures)[:5] if s is not chosen
        )
        return self._classify(chosen, top, snapshot, alternatives, context)

    def _retry_storm(self, total: SegmentStats, min_attempts: int, min_exhausted: int) -> Finding | None:
        normal = total.baseline_attempts_per_payment or NORMAL_ATTEMPTS_PER_PAYMENT
        apm = total.attempts_per_payment
        exhausted = total.errors.get("RETRY_EXHAUSTED", 0)
        if total.attempts < min_attempts or apm < max(RETRY_STORM_MIN, RETRY_STORM_FACTOR * normal) or exhausted < min_exhausted:
            return None
        exhausted_share = exhausted / total.failures if total.failures else 0.0
        strength = min(1.0, 2.0 * (apm / normal - 1.0))
        conf = min(CONFIDENCE_CAP, 0.6 + 0.2 * strength + 0.2 * min(1.0, exhausted_share * 3))
        evidence = (
            f"attempts per payment {apm:.2f} vs normal {normal:.2f}; {pct(total.retry_share)} of attempts are retries",
            f"RETRY_EXHAUSTED on {exhausted} attempts ({pct(exhausted_share)} of failures)",
            f"all traffic: {total.failures}/{total.attempts} failed ({pct(total.failure_rate)})",
        )
        return Finding(Category.CONFIG, total, round(conf, 3),
                       "Retry storm: the retry policy multiplies attempts per payment (retry misconfiguration).",
                       evidence, ("an issuer or route outage alone would not raise attempts per payment this far",), "retry")

    def _latency_candidates(self, snapshot: WindowSnapshot, context: ReasoningContext) -> list[tuple[SegmentStats, float]]:
        reference_total = snapshot.total.baseline_latency_p95_ms or snapshot.total.latency_p50_ms * 3
        out = []
        for seg in snapshot.by_dimension("route"):
            if seg.attempts < context.thresholds.min_segment_attempts:
                continue
            reference = seg.baseline_latency_p95_ms or reference_total
            if reference and seg.latency_p95_ms >= LATENCY_FACTOR * reference:
                out.append((seg, seg.latency_p95_ms / reference))
        return sorted(out, key=lambda x: -x[1])

    def _latency_finding(self, latency: list[tuple[SegmentStats, float]], snapshot: WindowSnapshot) -> Finding:
        seg, factor = latency[0]
        conf = min(CONFIDENCE_CAP, 0.7 + 0.05 * min(factor, 5.0) - (0.1 if len(latency) > 1 else 0.0))
        reference = seg.baseline_latency_p95_ms
        evidence = (
            f"{seg.key}: p95 latency {seg.latency_p95_ms:.0f} ms, {factor:.1f}x its reference"
            + (f" ({reference:.0f} ms)" if reference else ""),
            f"{seg.key}: p50 {seg.latency_p50_ms:.0f} ms, p99 {seg.latency_p99_ms:.0f} ms over {seg.attempts} attempts ({pct(seg.traffic_share)} of traffic)",
            f"all traffic p95 {snapshot.total.latency_p95_ms:.0f} ms",
        )
        alts = tuple(f"{s.key}: also slow ({f:.1f}x)" for s, f in latency[1:4])
        return Finding(Category.NETWORK, seg, round(conf, 3), f"Latency degradation on {seg.key}.", evidence, alts, "latency")

    def _classify(self, seg: SegmentStats, top: SegmentStats, snapshot: WindowSnapshot,
                  alternatives: tuple[str, ...], context: ReasoningContext) -> Finding:
        t = context.thresholds
        shares = family_shares(seg)
        family = max(shares, key=shares.__getitem__)
        purity = shares[family]
        dims = set(seg.target)
        dominant = seg.dominant_error() or "UNKNOWN"

        if family == "user" and "terminal_id" in dims and seg.error_share(*DEVICE_CODES) >= 0.5:
            category, kind, summary = Category.NETWORK, "terminal", f"Device fault: palm scanner at {seg.key} fails to read palms."
        elif family == "user":
            category, kind, summary = Category.USER, "user", f"User-related surge ({dominant}) on {seg.key}; not an operational fault."
        elif family == "security":
            category, kind, summary = Category.SECURITY, "security", f"Security: {dominant} burst concentrated on {seg.key}."
        elif family == "config" and seg.error_share("ROUTE_NOT_SUPPORTED") >= 0.5:
            category, kind, summary = Category.CONFIG, "routing", f"Routing misconfiguration: {seg.key} rejects traffic sent to it (ROUTE_NOT_SUPPORTED)."
        elif family == "config":
            category, kind, summary = Category.CONFIG, "retry", f"Retry misconfiguration on {seg.key} (RETRY_EXHAUSTED)."
        elif "bank" in dims or ("issuer" in dims and "route" not in dims):
            both = "route" in dims
            category, kind = Category.ISSUER, "issuer_route" if both else "issuer"
            summary = f"Issuer degradation: {seg.key} failing" + (" on this route only." if both else " across routes.")
        elif not dims:
            category, kind, summary = Category.NETWORK, "system", "System-wide failure: no single bank, route or device explains it."
        elif "terminal_id" in dims:
            category, kind, summary = Category.NETWORK, "terminal", f"Device fault at {seg.key}."
        else:
            category, kind, summary = Category.NETWORK, "route", f"Route/processor failure on {seg.key} across banks."

        explain = seg.excess_failures / top.excess_failures if top.excess_failures else 1.0
        size = min(1.0, seg.excess_failures / (3.0 * t.min_excess_failures))
        strength = min(1.0, seg.z / (2.0 * t.significance_z))
        confidence = 0.35 + 0.3 * purity + 0.15 * explain + 0.1 * size + 0.1 * strength
        slow = seg.baseline_latency_p95_ms and seg.latency_p95_ms >= LATENCY_FACTOR * seg.baseline_latency_p95_ms
        if kind == "route" and slow:
            confidence += 0.1  # failures and latency point at the same route
        if context.previous is not None and context.previous.category is Category.HEALTHY:
            confidence -= 0.03  # first window after onset: less history behind the verdict
        confidence = round(min(CONFIDENCE_CAP, confidence), 3)

        evidence = [
            describe(seg),
            f"{seg.key}: errors {error_mix(seg)}; {pct(purity)} of its failures are {family}-type codes",
            f"{seg.key}: {pct(seg.traffic_share)} of traffic; p95 latency {seg.latency_p95_ms:.0f} ms"
            + (f" (baseline {seg.baseline_latency_p95_ms:.0f} ms)" if seg.baseline_latency_p95_ms else ""),
        ]
        if seg is not snapshot.total:
            evidence.append(f"all traffic: {snapshot.total.failures}/{snapshot.total.attempts} failed ({pct(snapshot.total.failure_rate)})")
        return Finding(category, seg, confidence, summary, tuple(evidence), alternatives, kind)

    def hypotheses(self, snapshot: WindowSnapshot, context: ReasoningContext, limit: int = 5) -> list[dict[str, object]]:
        """Candidate explanations for an LLM to weigh (segments, not raw events)."""
        out = []
        for seg in sorted(self.candidates(snapshot, context), key=lambda s: -s.excess_failures)[:limit]:
            shares = family_shares(seg)
            out.append({"target": seg.target, "evidence": describe(seg), "errors": error_mix(seg),
                        "family_shares": {k: round(v, 2) for k, v in shares.items() if v}})
        return out


# -- action selection ------------------------------------------------------------

def route_health(snapshot: WindowSnapshot, significance_z: float) -> dict[str, tuple[bool, frozenset[str], float]]:
    """route -> (healthy, methods it carried successfully, failure rate)."""
    out = {}
    for seg in snapshot.by_dimension("route"):
        route = seg.target["route"]
        methods = frozenset(
            p.target["method"] for p in snapshot.by_dimension("method", "route")
            if p.target["route"] == route and p.successes > 0
        )
        healthy = seg.z < significance_z and seg.failure_rate <= seg.expected_failure_rate + HEALTHY_MARGIN
        out[route] = (healthy, methods, seg.failure_rate)
    return out


def segment_methods(snapshot: WindowSnapshot, target: dict[str, str]) -> set[str]:
    if "method" in target:
        return {target["method"]}
    route = target.get("route")
    methods = set()
    for p in snapshot.by_dimension("method", "route"):
        if route is None or p.target["route"] == route:
            methods.add(p.target["method"])
    if "bank" in target and route is None:
        return methods
    return methods


def alternative_routes(snapshot: WindowSnapshot, target: dict[str, str], significance_z: float) -> dict[str, float]:
    """Healthy routes that carry every method of the target, weighted by their current volume."""
    health = route_health(snapshot, significance_z)
    methods = segment_methods(snapshot, target)
    avoid = target.get("route")
    out = {}
    for route, (healthy, carried, _rate) in sorted(health.items()):
        if route == avoid or not healthy or not methods or not methods <= carried:
            continue
        seg = snapshot.segment(route=route)
        out[route] = float(seg.attempts if seg else 1)
    total = sum(out.values())
    return {r: round(w / total, 3) for r, w in out.items()} if total else {}


def _in_force(context: ReasoningContext, tool: str, target: dict[str, str]) -> ActionView | None:
    key = target_key(target)
    return next((a for a in context.in_force if a.tool == tool and target_key(a.target) == key), None)


def _covered(context: ReasoningContext, target: dict[str, str]) -> ActionView | None:
    """An action in force whose target contains this one (e.g. bank suppressed, bank x route failing)."""
    for a in context.in_force:
        if a.tool in ("reroute_traffic", "suppress_path") and all(target.get(k) == v for k, v in a.target.items()) and a.target:
            return a
    return None


def choose_action(f: Finding, snapshot: WindowSnapshot, context: ReasoningContext) -> ProposedAction:
    ttl = context.thresholds.action_ttl_seconds
    seg = f.segment
    target = seg.target if seg is not None else {}
    z = context.thresholds.significance_z

    def propose(tool: str, rationale: str, **args: object) -> ProposedAction:
        if tool not in ("no_action",):
            existing = _in_force(context, tool, target) or _covered(context, target)
            if existing is not None and tool != "alert_ops":
                return validate_proposal("no_action", {"reason": f"already mitigated: {existing.tool} on {target_key(existing.target)} in force"})
        payload = dict(args)
        if tool != "no_action":
            payload["target"] = target
        return validate_proposal(tool, payload, rationale)

    def alert(severity: str, why: str) -> ProposedAction:
        return propose("alert_ops", why, severity=severity, summary=f.summary[:500], evidence=list(f.evidence[:5]))

    if f.category is Category.HEALTHY:
        return validate_proposal("no_action", {"reason": "traffic healthy"})
    if f.category is Category.USER:
        return validate_proposal("no_action", {"reason": "user-related failures; no operational action helps"})
    if f.kind == "retry":
        return propose("adjust_retry_policy", "cap retries to stop amplifying failures", max_attempts=2, backoff_ms=500.0, ttl_seconds=ttl)
    if f.kind == "system":
        return alert("critical", "platform-wide: nothing to reroute to")
    if f.category is Category.SECURITY:
        if "terminal_id" in target:
            return propose("suppress_path", "stop palm payments at the attacked terminal; card stays available", fallback="card", ttl_seconds=ttl)
        return alert("critical", "security incident needs investigation")
    if f.kind == "terminal":
        return propose("suppress_path", "take the faulty device's palm path out; card stays available", fallback="card", ttl_seconds=ttl)
    if f.kind == "issuer":
        if seg is not None and seg.failure_rate >= SUPPRESS_MIN_FAILURE_RATE:
            return propose("suppress_path", "most of this issuer's attempts fail on every route; ask customers for another instrument",
                           fallback=None, ttl_seconds=ttl)
        return alert("warning", "issuer degraded but still mostly succeeding; rerouting cannot help an issuer")
    if f.kind in ("route", "issuer_route", "routing", "latency"):
        routes = alternative_routes(snapshot, target, z)
        if routes:
            return propose("reroute_traffic", "move traffic to healthy routes that carry it", to_routes=routes, percent=100.0, ttl_seconds=ttl)
        return alert("critical", "no healthy alternative route carries this traffic")
    return alert("warning", "unclassified anomaly")
