"""Guardrails: pure functions over typed data, each returning allow / needs_approval / deny.

`evaluate` runs them all and combines most-restrictive-wins. A policy outcome is
never an exception; every verdict carries its reason for the audit trail.

The rules (each has a truth-table test in tests/guardrails):
- known_tool: only typed tools run (deny otherwise);
- confidence: below the threshold (0.8) a human approves;
- permission: the tool's level (palm-pay levels from the spec); human_required needs a human;
- blast_radius: an action touching more than MAX_AUTONOMOUS_VOLUME of current traffic needs a human;
- human_checkpoint: the spec's checkpoints (sensitive fields, terminal states);
- escalation_trigger: the spec's triggers (metrics defined in guardrails.metrics);
- irreversible: what cannot be undone always needs a human;
- already_in_force: the same action on the same target is not applied twice (deny);
- anti_flapping: no reversal of an executed action within the cooldown;
- action_rate: at most N autonomous actions per hour;
- safe_destination: never reroute into an unhealthy route or one that does not carry the traffic (deny).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from payops.models import Diagnosis, GuardrailResult, ProposedAction, Verdict, VerdictKind, target_key
from payops.tools.actions import ACTIONS, Permission
from payops.tools.permissions import PermissionTable

ALLOW, APPROVE, DENY = VerdictKind.ALLOW, VerdictKind.NEEDS_APPROVAL, VerdictKind.DENY
# Tools that only inform or deliberately do nothing cannot hurt payments.
HARMLESS_TOOLS = frozenset({"no_action", "alert_ops"})


@dataclass(frozen=True)
class RouteHealth:
    healthy: bool
    methods: frozenset[str]  # methods the route carried successfully in the window
    failure_rate: float = 0.0
    # Set for a route that carried nothing in this window: seconds since the recent window its health and
    # methods were read from (a method misrouted away leaves its own route empty).
    quiet_for: float | None = None


@dataclass(frozen=True)
class PastAction:
    tool: str
    target: Mapping[str, str]
    args: Mapping[str, object]
    at: float
    autonomous: bool


@dataclass(frozen=True)
class Rejection:
    """A move an operator rejected: the request, the confidence it was asked at, when the hold ends."""

    request: str
    confidence: float
    until: float  # epoch seconds


# Asked again during the hold only when the confidence grew by this much: re-reading the same evidence
# moves it by a few hundredths, and an operator who said no should not be asked every minute.
REASK_CONFIDENCE_GAIN = 0.05


@dataclass(frozen=True)
class GuardContext:
    now: float
    permissions: PermissionTable
    confidence_threshold: float = 0.8
    max_autonomous_volume: float = 0.5
    cooldown_seconds: float = 300.0
    max_autonomous_actions_per_hour: int = 6
    blast_radius: float = 0.0  # share of current traffic the action touches (guardrails.metrics.action_blast_radius)
    in_force: tuple[PastAction, ...] = ()
    history: tuple[PastAction, ...] = ()  # executed actions, newest last (includes those in force)
    routes: Mapping[str, RouteHealth] = field(default_factory=dict)
    target_methods: frozenset[str] = frozenset()
    target_failure_rate: float | None = None  # failure rate of the traffic a reroute would move
    palm_metrics: Mapping[str, float] = field(default_factory=dict)
    harmed_before: tuple[str, ...] = ()  # decisions where this action harmed a similar incident
    # (tool, target key) -> what an operator rejected recently (graph.guarding.REJECTION_HOLD_SECONDS)
    rejected: Mapping[tuple[str, str], Rejection] = field(default_factory=dict)


Policy = Callable[[ProposedAction, Diagnosis, GuardContext], GuardrailResult]


def _r(rule: str, verdict: VerdictKind, reason: str) -> GuardrailResult:
    return GuardrailResult(rule=rule, verdict=verdict, reason=reason)


def confidence(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    if p.tool == "no_action":
        return _r("confidence", ALLOW, "doing nothing needs no confidence")
    if d.confidence < c.confidence_threshold:
        return _r("confidence", APPROVE, f"confidence {d.confidence:.3f} < threshold {c.confidence_threshold:.2f}")
    return _r("confidence", ALLOW, f"confidence {d.confidence:.3f} >= {c.confidence_threshold:.2f}")


def known_tool(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    if p.tool not in ACTIONS:
        return _r("known_tool", DENY, f"'{p.tool}' is not an action this agent may take")
    return _r("known_tool", ALLOW, "typed tool")


def permission(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    spec = ACTIONS.get(p.tool)
    if spec is None:
        return _r("permission", DENY, "no permission for an unknown tool")
    level = c.permissions.level(spec)
    origin = f" (palm-pay spec unreadable: {c.permissions.error})" if spec.palm and c.permissions.error else ""
    if level is Permission.HUMAN_REQUIRED:
        return _r("permission", APPROVE, f"{p.tool} is human_required{origin}")
    return _r("permission", ALLOW, f"{p.tool} is {level.value}")


def blast_radius(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    spec = ACTIONS.get(p.tool)
    if spec is None or spec.blast_scope == "none":
        return _r("blast_radius", ALLOW, "touches no payments")
    share = c.blast_radius
    if share > c.max_autonomous_volume:
        return _r("blast_radius", APPROVE, f"touches {share:.0%} of traffic > limit {c.max_autonomous_volume:.0%}")
    return _r("blast_radius", ALLOW, f"touches {share:.0%} of traffic <= limit {c.max_autonomous_volume:.0%}")


def human_checkpoints(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    spec = ACTIONS.get(p.tool)
    hit = c.permissions.checkpoints(spec) if spec else []
    if hit:
        return _r("human_checkpoint", APPROVE, "human checkpoint: " + "; ".join(hit))
    return _r("human_checkpoint", ALLOW, "no human checkpoint crossed")


def escalation_triggers(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    """The spec's triggers apply to palm-pay operations; metrics are defined in guardrails.metrics."""
    spec = ACTIONS.get(p.tool)
    if spec is None or spec.palm_transition_to is None:
        return _r("escalation_trigger", ALLOW, "not a palm-pay operation")
    fired = [
        t.expression for t in c.permissions.triggers if t.metric in c.palm_metrics and t.fires(c.palm_metrics[t.metric])
    ]
    # A trigger on a metric this agent does not measure cannot be ruled out: fail closed.
    fired += [f"{t.expression} (metric not measured)" for t in c.permissions.triggers if t.metric not in c.palm_metrics]
    if fired:
        figures = ", ".join(f"{k}={v:g}" for k, v in sorted(c.palm_metrics.items()))
        return _r("escalation_trigger", APPROVE, f"escalation trigger fired: {'; '.join(fired)} ({figures})")
    return _r("escalation_trigger", ALLOW, "no escalation trigger fired")


def irreversible(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    spec = ACTIONS.get(p.tool)
    if spec is not None and not c.permissions.reversible(spec):
        return _r("irreversible", APPROVE, f"{p.tool} cannot be undone")
    return _r("irreversible", ALLOW, "reversible")


def already_in_force(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    key = target_key(p.target)
    for a in c.in_force:
        if a.tool == p.tool and target_key(a.target) == key and dict(a.args) == {k: v for k, v in p.args.items()}:
            return _r("already_in_force", DENY, f"{p.tool} on {key} is already in force")
    return _r("already_in_force", ALLOW, "not a repeat")


def anti_flapping(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    """No reversal of an executed action within the cooldown. A reversal is:

    - a reroute into a route that an earlier reroute moved traffic away from, or away
      from a route that an earlier reroute moved traffic into;
    - the declared undo tool of an earlier action on the same target (suspend <-> reactivate).
    """
    key = target_key(p.target)
    destinations = set(p.args.get("to_routes", {})) if p.tool == "reroute_traffic" else set()
    source = p.target.get("route") if p.tool == "reroute_traffic" else None
    for a in reversed(c.history):
        age = c.now - a.at
        if age >= c.cooldown_seconds or age < 0:
            continue
        earlier = ACTIONS.get(a.tool)
        if p.tool == "reroute_traffic" and a.tool == "reroute_traffic":
            if a.target.get("route") in destinations:
                return _r(
                    "anti_flapping", APPROVE, f"would reverse the reroute away from {a.target['route']} {age:.0f}s ago"
                )
            to_routes = a.args.get("to_routes") or {}
            if source is not None and isinstance(to_routes, dict) and source in to_routes:
                return _r(
                    "anti_flapping",
                    APPROVE,
                    f"would move traffic away from {source}, where a reroute sent it {age:.0f}s ago",
                )
        if earlier is not None and earlier.undo_tool == p.tool and target_key(a.target) == key:
            return _r(
                "anti_flapping",
                APPROVE,
                f"would undo {a.tool} on {key} from {age:.0f}s ago (cooldown {c.cooldown_seconds:.0f}s)",
            )
    return _r("anti_flapping", ALLOW, "no recent reversal")


# One hour: the period the autonomous-action cap counts over.
RATE_PERIOD_SECONDS = 3600.0


def action_rate(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    spec = ACTIONS.get(p.tool)
    if spec is None or p.tool in HARMLESS_TOOLS:
        return _r("action_rate", ALLOW, "not counted")
    recent = sum(
        1
        for a in c.history
        if a.autonomous and a.tool not in HARMLESS_TOOLS and 0 <= c.now - a.at < RATE_PERIOD_SECONDS
    )
    if recent >= c.max_autonomous_actions_per_hour:
        return _r(
            "action_rate",
            APPROVE,
            f"{recent} autonomous actions in the last hour (cap {c.max_autonomous_actions_per_hour})",
        )
    return _r("action_rate", ALLOW, f"{recent} autonomous actions in the last hour")


# Traffic failing less than this is not being moved for its failures (a latency move,
# a probe): comparing destinations by failure rate would then only compare noise.
FAILURE_DRIVEN_MOVE_RATE = 0.15


def safe_destination(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    if p.tool != "reroute_traffic":
        return _r("safe_destination", ALLOW, "not a reroute")
    quiet = []
    for route in p.args.get("to_routes", {}):
        health = c.routes.get(route)
        if health is None:
            return _r("safe_destination", DENY, f"destination route {route} carried no traffic in the window")
        if not health.healthy:
            return _r(
                "safe_destination", DENY, f"destination route {route} is unhealthy ({health.failure_rate:.0%} failing)"
            )
        missing = c.target_methods - health.methods
        if missing:
            return _r(
                "safe_destination", DENY, f"destination route {route} does not carry {', '.join(sorted(missing))}"
            )
        if route == p.target.get("route"):
            return _r("safe_destination", DENY, f"destination {route} is the route being moved away from")
        # Health is judged against peers; when every route fails alike, all look "healthy".
        # A destination failing at least as often as the traffic being moved is no refuge.
        moved_rate = c.target_failure_rate
        if moved_rate is not None and FAILURE_DRIVEN_MOVE_RATE <= moved_rate <= health.failure_rate:
            return _r(
                "safe_destination",
                DENY,
                f"destination route {route} is unhealthy: fails as often "
                f"({health.failure_rate:.0%}) as the traffic being moved ({moved_rate:.0%})",
            )
        if health.quiet_for is not None:
            quiet.append(f"{route} ({health.quiet_for:.0f} s ago)")
    if quiet:
        # Healthy a minute or two ago and empty now: its traffic went elsewhere (a routing change) or stopped
        # arriving (a black hole). The window cannot tell which; a human confirms before traffic goes there.
        return _r("safe_destination", APPROVE, "destination carried no traffic in the window, healthy when last "
                                                "seen: " + ", ".join(quiet))
    return _r("safe_destination", ALLOW, "destinations healthy and support the traffic")


def past_harm(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    """An action that made a similar incident worse is never taken autonomously again."""
    if c.harmed_before:
        return _r("past_harm", APPROVE, f"{p.tool} harmed similar incident(s): {', '.join(c.harmed_before[:3])}")
    return _r("past_harm", ALLOW, "no record of harm on similar incidents")


def human_said_no(p: ProposedAction, d: Diagnosis, c: GuardContext) -> GuardrailResult:
    """A move an operator rejected is not made on the agent's own authority during the hold, and not put
    to them again on the same evidence: only a clearly stronger reading asks again (a human decides)."""
    r = c.rejected.get((p.tool, target_key(p.target)))
    if r is None:
        return _r("human_said_no", ALLOW, "no recent rejection of this move")
    until = datetime.fromtimestamp(r.until, tz=UTC).strftime("%H:%M UTC")
    said = f"an operator rejected {p.tool} on {target_key(p.target)} ({r.request}, confidence {r.confidence:.2f})"
    if d.confidence >= r.confidence + REASK_CONFIDENCE_GAIN:
        return _r("human_said_no", APPROVE, f"{said}; the evidence grew to {d.confidence:.2f}: asked again, "
                                            "not done alone")
    return _r("human_said_no", DENY, f"{said}; not proposed again on the same evidence before {until}")


POLICIES: tuple[Policy, ...] = (
    known_tool,
    confidence,
    permission,
    blast_radius,
    human_checkpoints,
    escalation_triggers,
    irreversible,
    already_in_force,
    anti_flapping,
    action_rate,
    safe_destination,
    past_harm,
    human_said_no,
)


def evaluate(proposal: ProposedAction, diagnosis: Diagnosis, context: GuardContext) -> Verdict:
    results = tuple(policy(proposal, diagnosis, context) for policy in POLICIES)
    if proposal.tool in HARMLESS_TOOLS:
        # Alerting or doing nothing is always allowed; the verdicts are still recorded.
        results = tuple(
            r if r.verdict is ALLOW or r.rule == "known_tool" else _r(r.rule, ALLOW, r.reason + " (harmless action)")
            for r in results
        )
    worst = max((r.verdict for r in results), key=lambda v: v.severity)
    return Verdict(verdict=worst, results=results)
