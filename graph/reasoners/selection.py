"""Action selection: from a finding and what is already in force to one proposed tool call.

The same `ProposedAction` vocabulary the LLM gets through `bind_tools`; every proposal
is built through `validate_proposal`, so a rule can never emit a malformed call.
"""

from __future__ import annotations

from collections.abc import Callable

from payops.models import Category, ProposedAction, target_key
from payops.signals.baseline import wilson_lower_bound
from payops.signals.window import TAIL_SHARE, SegmentStats, WindowSnapshot
from payops.tools.actions import validate_proposal

from .base import ActionView, ReasoningContext
from .evidence import (
    BACKGROUND_MIN_FAILURES,
    SECURITY_CODES,
    USER_CODES,
    code_count,
    device_burst_codes,
    fault_kinds,
    kind_failures,
    pct,
    pool,
)
from .findings import Finding, plain_rise
from .retry import excess_retries
from .timing import burst_fading, burst_over, burst_young

# A route a reroute may send traffic to must fail at most this much above its reference.
# An absolute margin, not a significance test: at thousands of attempts a route a point
# above a young baseline is "significant" yet a perfectly good destination.
HEALTHY_MARGIN = 0.05
# Failure codes that are an answer: the payment reached the bank (or the fraud screen) and was declined.
ANSWER_CODES = USER_CODES | SECURITY_CODES | frozenset({"DO_NOT_HONOR"})
# A misrouted method goes back to a route that carried it within this many recent windows (former_routes).
FORMER_ROUTE_WINDOWS = 5
# A reroute leaves this share of the segment on its path as a probe: the agent can then
# see the cause clear and recommend the rollback, at the price of a few failures.
PROBE_PERCENT = 5.0
# Suppressing an issuer drops its remaining successes (rerouting cannot help an issuer):
# only when almost nothing gets through, so customers stop waiting on timeouts.
SUPPRESS_ISSUER_MIN_FAILURE_RATE = 0.95
# Retry storm: one retry covers transient errors; backoff spreads the rest.
RETRY_CAP_ATTEMPTS = 2
RETRY_CAP_BACKOFF_MS = 500.0
# The cause behind an action counts as cleared when the target's traffic since the
# action is within this many standard errors of its reference.
CLEARED_Z = 2.0
# ...over at least this many windows since the action (no flapping on one good minute).
CLEARED_MIN_WINDOWS = 3
# Below this confidence a finding is recorded and watched, not put to anyone: paging ops
# or asking for approval on a coin flip trains people to ignore the agent.
WATCH_BELOW = 0.6
# Tools whose cause can be watched for clearing (the probe left on the old path).
WATCHABLE_TOOLS = frozenset({"reroute_traffic", "suppress_path"})
TRAFFIC_TOOLS = frozenset({"reroute_traffic", "suppress_path", "adjust_retry_policy"})
ROLLBACK_NOTE = "rollback"  # Decision.notes entries "rollback:<tool>:<target key>"
# Persistence: evidence below either bar is marginal (a 30 s blip: z 4.3, 15 excess failures).
# A traffic move on marginal evidence seen in one window only goes to a human; in the second
# consecutive window it may run. Strong evidence (an outage) acts at once. A device's path is
# the exception when its own codes say so (spoofs, misreads): a terminal never carries enough traffic
# to clear these bars, pausing it costs little (its customers are offered another method), and a
# spoofing attacker or a dead scanner given another minute keeps failing customers (rules.SECURITY_MIN_*
# make the same trade). A device's time-outs may come from the route behind it: they wait.
STRONG_Z_FACTOR = 2.0  # times the significance bar
# Duration within the window (timing.py): strong evidence in one window acts at once only when it has
# lasted, steady through the window: an outage, not a 30 s blip, which at its decision is either young,
# fading or over.
STRONG_EXCESS_FACTOR = 3.0  # times the minimum excess failures
# Decision.notes entries asking the reasoner to hold the diagnosis's confidence below the
# autonomy threshold, so the guardrails put the proposal to a human.
HOLD_NOTE = "hold"  # "hold:<why>"
# A volume drop is rerouted only when the healthy routes can take the load: they carry at
# least this multiple of the vanished route's usual volume now (they then at most double).
REROUTE_CAPACITY_FACTOR = 1.0
# Alert-only answers that are reviewed once the incident outlives the review (alert_review_ticks):
# the mitigation options are recomputed every tick (a healthy route may have come back, a method
# may move on its own), and when still none helps, ops are paged again as critical, saying how
# long it has lasted. Suppressing a path that still carries successes is not such a mitigation:
# in the closed loop it cost more payments than it saved (issuer outages at 60%: -5..-235).
REVIEWED_KINDS = frozenset({"issuer", "issuer_route", "scheme", "scheme_route", "route", "latency", "routing",
                            "segment", "method", "system",
                            "security", "terminal", "card_testing", "card_testing_volume", "volume"})


def route_health(snapshot: WindowSnapshot, significance_z: float) -> dict[str, tuple[bool, frozenset[str], float]]:
    """route -> (healthy, methods it carried, failure rate). `significance_z` is kept for callers. A method
    counts as carried when a payment of it went through or was declined (`failing_path`: an answer)."""
    pairs = snapshot.by_dimension("method", "route")
    out = {}
    for seg in snapshot.by_dimension("route"):
        route = seg.target["route"]
        methods = frozenset(p.target["method"] for p in pairs if p.target["route"] == route
                            and (p.successes > 0 or code_count(p, ANSWER_CODES) > 0))
        out[route] = (not failing_path(seg, snapshot), methods, seg.failure_rate)
    return out


def failing_path(seg: SegmentStats, snapshot: WindowSnapshot) -> bool:
    """The path fails the traffic it carries: its failures that are not an answer (time-outs, errors, a bank or
    a method unreachable through it) are, at the lower end of their interval (one failure in eleven attempts is
    no verdict), above their usual share of its reference by more than HEALTHY_MARGIN. A decline is an answer
    (the customer's funds, the bank's "do not honour", the fraud screen): the path worked. The few payments still
    completing on a route a method was just misrouted away from, some declined, do not make it a bad place to
    send the method back to."""
    usual = snapshot.usual_errors
    if sum(usual.values()) < BACKGROUND_MIN_FAILURES:
        usual = {c: k - seg.errors.get(c, 0) for c, k in snapshot.total.errors.items()}  # this window, elsewhere
    counted = sum(usual.values())
    path_share = 1.0 - sum(k for c, k in usual.items() if c in ANSWER_CODES) / counted \
        if counted >= BACKGROUND_MIN_FAILURES else 1.0
    failed = seg.failures - code_count(seg, ANSWER_CODES)
    return wilson_lower_bound(failed, seg.attempts) > seg.expected_failure_rate * path_share + HEALTHY_MARGIN


def segment_methods(snapshot: WindowSnapshot, target: dict[str, str]) -> set[str]:
    """Methods the target's traffic uses (what a destination route must carry)."""
    if "method" in target:
        return {target["method"]}
    route = target.get("route")
    return {p.target["method"] for p in snapshot.by_dimension("method", "route") if route is None
            or p.target["route"] == route}


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


def former_routes(snapshot: WindowSnapshot, target: dict[str, str], history: tuple[WindowSnapshot, ...],
                  min_attempts: int) -> dict[str, float]:
    """Where a misrouted method came from: routes that carried it successfully in the recent windows,
    healthy then and not failing now, weighted by what they carried. A method sent to a route that
    rejects it leaves its own route empty, so that route is absent from this window's health; an
    operator sends the method back where it worked a minute ago."""
    method, avoid = target.get("method"), target.get("route")
    if not method or not avoid:
        return {}
    out: dict[str, float] = {}
    for h in reversed(history[-FORMER_ROUTE_WINDOWS:]):
        if h.window_end >= snapshot.window_end:
            continue
        for p in h.by_dimension("method", "route"):
            route = p.target["route"]
            if p.target["method"] != method or route == avoid or route in out or p.successes == 0:
                continue
            then, now = h.segment(route=route), snapshot.segment(route=route)
            # (what little still reaches it now is judged only when there is enough of it to judge)
            if any(s is not None and s.attempts >= (1 if s is then else min_attempts)
                   and failing_path(s, h if s is then else snapshot) for s in (then, now)):
                continue
            out[route] = float(p.attempts)
    total = sum(out.values())
    return {r: round(w / total, 3) for r, w in sorted(out.items())} if total else {}


def fallback_method(snapshot: WindowSnapshot, seg: SegmentStats | None, significance_z: float) -> str | None:
    """The busiest healthy method the failing segment's excess does not live on (what customers are offered)."""
    methods = sorted(snapshot.by_dimension("method"), key=lambda m: (-m.attempts, m.key))
    for m in methods:
        carries_the_fault = (seg is not None and seg.excess_failures > 0
                             and m.excess_failures >= 0.5 * seg.excess_failures)
        if not carries_the_fault and m.z < significance_z:
            return m.target["method"]
    return None


def in_force(context: ReasoningContext, tool: str, target: dict[str, str]) -> ActionView | None:
    key = target_key(target)
    return next((a for a in context.in_force if a.tool == tool and target_key(a.target) == key), None)


def covering(context: ReasoningContext, target: dict[str, str]) -> ActionView | None:
    """An action in force whose target contains this one (e.g. route rerouted, bank x route failing)."""
    for a in context.in_force:
        if (a.tool in ("reroute_traffic", "suppress_path") and a.target
                and all(target.get(k) == v for k, v in a.target.items())):
            return a
    return None


def cause_status(action: ActionView, snapshot: WindowSnapshot, context: ReasoningContext) -> tuple[str, str]:
    """("cleared" | "persisting" | "unknown", evidence) for the cause behind an action in force.

    Only windows that started after the action count: they show the traffic the action
    left on the old path (a reroute's probe). A suppressed path carries nothing, so its
    cause cannot be seen to clear; its TTL is the probe.
    """
    key = target_key(action.target)
    if action.tool not in WATCHABLE_TOOLS:
        return "unknown", f"{action.tool} on {key} masks its own cause; its TTL is the probe"
    if action.tool == "reroute_traffic" and "route" not in action.target:
        return "unknown", f"the reroute moved all of {key}: nothing is left on the old path to watch"
    return cleared_since(action.target, action.applied_at, snapshot, context, "the action")


def cleared_since(target: dict[str, str], since: float, snapshot: WindowSnapshot, context: ReasoningContext,
                  what: str = "the decision", latest: int | None = None) -> tuple[str, str]:
    """("cleared" | "persisting" | "unknown", evidence): has the finding on `target` cleared in the
    windows that started at or after `since` (only the `latest` of them when given)? The test
    behind a rollback (above), and behind voiding an approval given after the incident ended
    (graph.nodes: there the latest windows, as a request may wait through the incident's end)."""
    t = context.thresholds
    key = target_key(target)
    windows = [h for h in (*context.history, snapshot) if h.window_start >= since]
    if latest is not None:
        windows = windows[-latest:]
    if len(windows) < CLEARED_MIN_WINDOWS:
        needs = "a rollback needs" if what == "the action" else "clearing needs"
        return "unknown", f"{key}: {len(windows)} window(s) since {what}; {needs} {CLEARED_MIN_WINDOWS}"
    merged = pool(s for s in ((h.segment(**target) if target else h.total) for h in windows) if s is not None)
    if merged is None or merged.attempts < t.min_segment_attempts:
        n = merged.attempts if merged else 0
        return "unknown", f"{key}: {n} attempts since {what}, too few to tell whether the cause cleared"
    figures = (f"{key}: {merged.failures}/{merged.attempts} failed ({pct(merged.failure_rate)}) since {what} vs "
               "expected "
               f"{pct(merged.expected_failure_rate)} over {len(windows)} window(s)")
    current = snapshot.segment(**target) if target else snapshot.total
    slow = (current is not None and current.baseline_latency_p95_ms and current.attempts >= t.min_segment_attempts
            and current.latency_p95_ms >= 2.5 * current.baseline_latency_p95_ms)
    if merged.z < CLEARED_Z and merged.excess_failures < t.min_excess_failures and not slow:
        return "cleared", figures
    return "persisting", figures + ("; still slow" if slow else "")


def choose_action(f: Finding,
                  snapshot: WindowSnapshot, context: ReasoningContext) -> tuple[ProposedAction, tuple[str, ...]]:
    t = context.thresholds
    seg = f.segment
    target = f.target
    notes: list[str] = []

    def nothing(reason: str) -> ProposedAction:
        return validate_proposal("no_action", {"reason": reason[:500]})

    def propose(tool: str, rationale: str, **args: object) -> ProposedAction:
        existing = in_force(context, tool, target) or covering(context, target)
        if existing is not None and tool != "alert_ops":
            return nothing(f"already mitigated: {existing.tool} on {target_key(existing.target)} in force")
        if existing is not None:
            return nothing(f"already mitigated: {existing.tool} on {target_key(existing.target)} in force; no alert "
                           "needed")
        return validate_proposal(tool, {**args, "target": target}, rationale)

    def alert(severity: str, why: str) -> ProposedAction:
        return propose("alert_ops", why, severity=severity, summary=f.summary[:500], evidence=list(f.evidence[:5]))

    if f.kind == "anomaly":
        return alert("warning", "significant rise that no rule explains: a human should look"), tuple(notes)
    if f.kind == "no_data":
        if f.confidence < WATCH_BELOW:
            return nothing(f"watching: {f.summary}"), tuple(notes)
        return alert("critical", "the payment feed is silent: the collector or the platform has stopped"), tuple(notes)

    if f.category in (Category.HEALTHY, Category.USER):
        cleared = []
        for a in context.in_force:
            if a.tool in TRAFFIC_TOOLS:
                status, why = cause_status(a, snapshot, context)
                notes.append(f"{a.tool} on {target_key(a.target)}: cause {status} ({why})")
                if status == "cleared":
                    cleared.append((a, why))
        if cleared:
            notes += [f"{ROLLBACK_NOTE}:{a.tool}:{target_key(a.target)}" for a, _ in cleared]
            first, why = next(((a, w) for a, w in cleared if a.action_id), cleared[0])
            if first.action_id:  # one action per tick: the oldest cleared one first
                reason = f"cause cleared: {first.tool} on {target_key(first.target)} ({why})"
                return validate_proposal("rollback_action", {"action_id": first.action_id, "reason": reason[:500]},
                                         "the cause has cleared on the probe traffic"), tuple(notes)
            listed = "; ".join(f"roll back {a.tool} on {target_key(a.target)} ({why})" for a, why in cleared)
            return nothing(f"cause cleared: {listed}"), tuple(notes)
        if f.category is Category.USER and f.confidence < WATCH_BELOW:
            return nothing(f"watching, not asserting: {f.summary} "
                           f"(confidence {f.confidence:.2f} < {WATCH_BELOW:.2f})"), tuple(notes)
        if f.category is Category.USER:
            return nothing("user-related failures (declines, funds, limits); no operational action helps"), tuple(notes)
        return nothing("traffic healthy"), tuple(notes)

    if f.confidence < WATCH_BELOW:
        if seg is not None and f.pooled_windows == 1 and plain_rise(seg, context):
            # Unsure of the name, not of the rise: a rise this plain is paged even when no rule names it
            # (patterns.unexplained), so a named one is not kept from ops for its name's doubt.
            notes.append(f"plain rise: {seg.key} z={seg.z:.1f}, {seg.excess_failures:.0f} excess; the cause is "
                         f"uncertain (confidence {f.confidence:.2f})")
            return alert("warning", f"a plain rise on {seg.key}; its cause is uncertain "
                                    f"(confidence {f.confidence:.2f}): a human should look"), tuple(notes)
        return nothing(f"watching, not acting: {f.summary} "
                       f"(confidence {f.confidence:.2f} < {WATCH_BELOW:.2f})"), tuple(notes)
    proposal = _mitigation(f, snapshot, context, propose, alert)
    if proposal.tool == "alert_ops" and f.kind in REVIEWED_KINDS and seg is not None:
        ticks = persisting_windows(seg, snapshot, context)
        if ticks >= t.alert_review_ticks:
            # "Already alerted" is not a final state: the incident outlived its alert and no
            # mitigation fits yet, so ops hear it again, as critical, with its age.
            notes.append(f"review: present for {ticks} windows; no mitigation fits yet")
            return propose("alert_ops", f"still present after {ticks} windows; no automatic mitigation fits",
                           severity="critical", summary=f"Still present after {ticks} windows: {f.summary}"[:500],
                           evidence=list(f.evidence[:5])), tuple(notes)
    # A device's own codes (spoofs, misreads) act at once (the exception above); its time-outs may be the
    # route behind it (evidence.device_fault_codes) and wait like any other marginal evidence.
    device_own = "terminal_id" in proposal.target and seg is not None and device_burst_codes(seg) is not None
    moves = (proposal.tool in TRAFFIC_TOOLS and f.kind != "volume" and not device_own and seg is not None)
    # The tail tells the duration of failures; a slow route (latency), a vanished one (volume) or a retry storm
    # (retries multiply attempts; failures may stay as usual) is not read by it.
    timed = moves and f.pooled_windows == 1 and f.kind not in ("latency", "retry")
    if timed and seg is not None and burst_over(seg, t.min_segment_attempts, t.min_excess_failures):
        # Over within its window (a 30 s blip): a healthy period again. Nothing to move; ops hear of it.
        notes.append(f"burst over: {seg.key} failed {seg.tail_failures}/{seg.tail_attempts} in the window's last "
                     f"{TAIL_SHARE:.0%}, as usual; no traffic move")
        return propose("alert_ops", "a burst of failures that is already over: no traffic move, ops should know",
                       severity="warning", summary=f"Over within the window: {f.summary}"[:500],
                       evidence=list(f.evidence[:5])), tuple(notes)
    if timed and seg is not None and burst_young(seg, t.min_segment_attempts):
        notes.append(f"{HOLD_NOTE}:{seg.key} began failing within the window ({seg.lead_failures}/"
                     f"{seg.lead_attempts} in its first {TAIL_SHARE:.0%}, {seg.tail_failures}/{seg.tail_attempts} in "
                     "its last): seconds old, it may be a blip; a human confirms before traffic moves")
    elif timed and seg is not None and burst_fading(seg, t.min_segment_attempts):
        notes.append(f"{HOLD_NOTE}:{seg.key} fails plainly less in the window's last {TAIL_SHARE:.0%} "
                     f"({seg.tail_failures}/{seg.tail_attempts}) than before it: it may be passing; a human "
                     "confirms before traffic moves")
    elif moves and seg is not None and f.pooled_windows > 1 and not failing_now(seg, snapshot):
        notes.append(f"{HOLD_NOTE}:{seg.key} shows none of its kind of failure in this window (the evidence is "
                     f"pooled over {f.pooled_windows}): it may be over; a human confirms before traffic moves")
    elif moves and seg is not None and marginal(z := strength(f, seg), context) and not confirmed(f, context):
        notes.append(f"{HOLD_NOTE}:marginal evidence (z={z[0]:.1f}, {z[1]:.0f} excess {z[2]}) in one window: "
                     "a human confirms before traffic moves")
    return proposal, tuple(notes)


def failing_now(seg: SegmentStats, snapshot: WindowSnapshot) -> bool:
    """The current window shows the (pooled) finding's kind of failure at all: at a handful of attempts a
    minute the evidence is pooled over recent windows, and a route that failed 40 % for four of them and
    returns only customers' declines now has most likely recovered (0 time-outs in 12: about 1 in 500)."""
    now = snapshot.segment(**seg.target) if seg.dims else snapshot.total
    kinds = fault_kinds(seg, snapshot)
    return not kinds or (now is not None and kind_failures(now, kinds) > 0)


def strength(f: Finding, seg: SegmentStats) -> tuple[float, float, str]:
    """The finding's evidence: z and excess of what it counts (a retry storm counts retries beyond the usual;
    its failures may be as usual), and what that is."""
    if f.kind == "retry":
        retries, expected, z = excess_retries(seg)
        return z, retries - expected, "retries"
    return seg.z, seg.excess_failures, "failures"


def marginal(evidence: tuple[float, float, str], context: ReasoningContext) -> bool:
    """Evidence (`strength`) under the strong bar."""
    t = context.thresholds
    z, excess, _ = evidence
    return z < STRONG_Z_FACTOR * t.significance_z or excess < STRONG_EXCESS_FACTOR * t.min_excess_failures


def confirmed(f: Finding, context: ReasoningContext) -> bool:
    """The previous window's diagnosis found the same trouble: a finding on the same or an overlapping
    target (at marginal counts the name may move between a route and its issuer x route pair), asserted:
    a reading the agent only watched (under WATCH_BELOW) is not the first of two windows. A merchant's
    outage at 54/min showed on its acquirer, watched one minute, then moved the acquirer's traffic."""
    prev = context.previous
    if prev is None or prev.category is Category.HEALTHY or not prev.target or prev.confidence < WATCH_BELOW:
        return False
    a, b = set(prev.target.items()), set(f.target.items())
    return a <= b or b <= a


def persisting_windows(seg: SegmentStats, snapshot: WindowSnapshot, context: ReasoningContext) -> int:
    """Consecutive windows, this one included, in which the segment failed significantly."""
    bar = context.thresholds.significance_z
    count = 1
    for h in reversed(context.history):
        if h.window_end >= snapshot.window_end:
            continue
        s = h.segment(**seg.target) if seg.target else h.total
        if s is None or s.z < bar:
            break
        count += 1
    return count


def _mitigation(f: Finding, snapshot: WindowSnapshot, context: ReasoningContext,
                propose: Callable[..., ProposedAction], alert: Callable[[str, str], ProposedAction]) -> ProposedAction:
    """The one action that helps most for this finding (an alert when nothing automatic fits)."""
    t = context.thresholds
    ttl = t.action_ttl_seconds
    seg = f.segment
    target = f.target
    z = t.significance_z
    if f.kind == "card_testing":
        if target.keys() & {"merchant_id", "terminal_id"}:
            return propose("suppress_path",
                           "stop the card-testing traffic at its merchant or terminal; permissions decide who approves",
                           fallback=None, ttl_seconds=ttl)
        return alert("critical", "card testing beyond one merchant or terminal: fraud team to block the source")
    if f.kind == "card_testing_volume":
        return alert("critical", "card testing suspected from a burst of volume without amounts (a billing run looks "
                                 "alike): fraud team to confirm and block the source")
    if f.kind == "volume":
        routes = alternative_routes(snapshot, target, z) if "route" in target else {}
        usual = seg.baseline_volume if seg is not None and seg.baseline_volume else 0.0
        capacity = sum(s.attempts for r in routes if (s := snapshot.segment(route=r)) is not None)
        if routes and capacity >= REROUTE_CAPACITY_FACTOR * usual:
            return propose("reroute_traffic",
                           "the route loses requests: send its traffic to healthy routes that carry its methods; "
                           "a probe stays to show recovery", to_routes=routes,
                           percent=100.0 - PROBE_PERCENT, ttl_seconds=ttl)
        return alert("critical", "traffic vanished on this segment and no healthy route can take its load")
    if f.kind == "retry":
        return propose("adjust_retry_policy", "cap retries so failures are not multiplied; backoff spreads the retries",
                       max_attempts=RETRY_CAP_ATTEMPTS, backoff_ms=RETRY_CAP_BACKOFF_MS, ttl_seconds=ttl)
    if f.kind == "system":
        return alert("critical", "platform-wide: no healthy path to move traffic to")
    if f.kind in ("security", "terminal"):
        if "terminal_id" in target:
            fallback = fallback_method(snapshot, seg, z)
            why = ("stop payments at the attacked terminal; customers are offered another method"
                   if f.kind == "security"
                   else "take the faulty device's path out; customers are offered another method")
            return propose("suppress_path", why, fallback=fallback, ttl_seconds=ttl)
        return alert("critical", "security incident beyond one device needs investigation")
    if f.kind in ("issuer", "scheme"):
        what = "issuer" if f.kind == "issuer" else "scheme"
        if seg is not None and seg.failure_rate >= SUPPRESS_ISSUER_MIN_FAILURE_RATE:
            return propose("suppress_path",
                           f"almost nothing gets through this {what} on any route; stop the futile waits",
                           fallback=None, ttl_seconds=ttl)
        return alert("warning" if f.kind == "issuer" else "critical",
                     f"{what} degraded on every route: rerouting cannot help and suppressing would drop its remaining "
                     "successes")
    if f.kind in ("route", "issuer_route", "scheme_route", "routing", "latency"):
        routes = alternative_routes(snapshot, target, z)
        if not routes and f.kind == "routing":
            routes = former_routes(snapshot, target, context.history, t.min_segment_attempts)
        if routes:
            # A wrongly routed method never comes back to the route on its own: no probe there.
            percent = 100.0 if f.kind == "routing" else 100.0 - PROBE_PERCENT
            return propose("reroute_traffic",
                           "move the traffic to healthy routes that carry its methods; a probe stays to show recovery"
                           if percent < 100 else "move the traffic to healthy routes that carry its methods",
                           to_routes=routes, percent=percent, ttl_seconds=ttl)
        split = _narrowed_reroute(f, snapshot, context)
        if split is not None:
            return split
        return alert("critical", "no healthy alternative route carries this traffic")
    return alert("warning", f"{f.kind} failure: no automatic action fits; ops should look")


def _narrowed_reroute(f: Finding, snapshot: WindowSnapshot, context: ReasoningContext) -> ProposedAction | None:
    """The blamed route carries several methods and no route takes them all: reroute, method by
    method, those that have a healthy destination (busiest first). Once they are all moved, the
    rest is alerted (the caller's alert: the methods left have nowhere to go)."""
    target = f.target
    if f.kind not in ("route", "latency") or set(target) != {"route"}:
        return None
    t = context.thresholds
    route = target["route"]
    pairs = sorted((p for p in snapshot.by_dimension("method", "route") if p.target["route"] == route),
                   key=lambda p: (-p.attempts, p.key))
    for pair in pairs:
        narrowed = pair.target
        if in_force(context, "reroute_traffic", narrowed) is not None:
            continue
        routes = alternative_routes(snapshot, narrowed, t.significance_z)
        if not routes:
            continue
        action = validate_proposal("reroute_traffic", {"to_routes": routes, "percent": 100.0 - PROBE_PERCENT,
                                                       "ttl_seconds": t.action_ttl_seconds, "target": narrowed},
                                   f"{pair.target['method']} has healthy routes elsewhere: move it; the route's other "
                                   "methods "
                                   "have none and are alerted")
        return action
    return None
