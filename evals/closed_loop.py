"""Closed-loop score: the simulator obeys a control plane, so what the agent does changes later traffic.

For a simulator-made case, four runs of the same seeded world:

- **none** — nobody acts: the cost of the incident;
- **static** — the classic set-up: a static-threshold alert on the platform failure
  rate or p95 latency pages the on-call, who applies the oracle's best action
  `HUMAN_RESPONSE_SECONDS` later (an optimistic human: right answer, human speed);
- **agent** — the real graph ticking over the live simulator
  (`Simulator(..., policy=services.control_plane)`); escalations are approved by the
  same on-call after the same response time;
- **oracle** — the simulator's `Expectation`: a perfect operator applies an
  acceptable action at the onset (the best of them, when several are acceptable).

Payments saved = paid − paid with nobody acting, over the whole run (every
variant sees the same lead-in). The same seed drives every run, so traffic is
identical until the first action; after it the random streams diverge, so savings
below `MIN_ORACLE_SAVED` are noise and no share of the oracle is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from payops.graph.reasoners.base import Reasoner
from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.guardrails.notify import ListNotifier
from payops.models import ProposedAction, target_key
from payops.settings import Settings
from payops.signals.simulator import NetworkConfig, Simulator
from payops.signals.sources import SimulatorSource
from payops.tools.actions import MAX_TTL_SECONDS, ProposalError, validate_proposal
from payops.tools.control_plane import SimulatedControlPlane

from .cases import Case
from .networks import network_from_dict
from .runner import eval_settings, rules_factory
from .scenarios import simulator

# Incident length for the closed loop: long enough that acting in minute 1 and
# acting in minute 6 (a human) differ, short enough for CI.
CLOSED_LOOP_INCIDENT_SECONDS = 600.0
# Volume cap for the closed loop (the corpus tops out at 2,000/min): each case runs the
# simulator 4-5 times, so a 100,000/min case recorded by hand would cost minutes.
CLOSED_LOOP_MAX_PPM = 2000.0
# Time for a paged human to acknowledge, diagnose and act (a fast on-call).
HUMAN_RESPONSE_SECONDS = 300.0
# Static alert rules as a classic dashboard has them: platform-wide, fixed numbers.
STATIC_FAILURE_RATE = 0.10  # more than 1 in 10 attempts failing over 60 s
STATIC_P95_MS = 3000.0  # p95 latency over 3 s
STATIC_MIN_ATTEMPTS = 20  # too few attempts to judge below this
# Below this many payments an oracle's saving is within the noise of diverging random streams.
MIN_ORACLE_SAVED = 20
STEP_SECONDS = 60.0


@dataclass
class Outcome:
    variant: str
    paid: int = 0
    payments: int = 0
    diverted: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    mitigated_after_s: float | None = None  # seconds from onset to an acceptable action in force
    action: str | None = None
    notes: list[str] = field(default_factory=list)

    def count(self, events: Any) -> None:
        self.attempts += len(events)
        self.failed_attempts += int(failed_mask(events).sum())

    def finish(self, sim: Simulator) -> None:
        self.paid, self.payments, self.diverted = sim.paid, sim.payments, sim.diverted


@dataclass
class ClosedLoopResult:
    case_id: str
    scenario: str
    volume: float
    onset_s: float
    incident_s: float
    outcomes: dict[str, Outcome]
    error: str | None = None

    def saved(self, variant: str) -> int | None:
        if variant not in self.outcomes or "none" not in self.outcomes:
            return None
        return self.outcomes[variant].paid - self.outcomes["none"].paid

    def attempts_avoided(self, variant: str) -> int | None:
        if variant not in self.outcomes or "none" not in self.outcomes:
            return None
        return self.outcomes["none"].failed_attempts - self.outcomes[variant].failed_attempts

    def share_of_oracle(self, variant: str) -> float | None:
        oracle, mine = self.saved("oracle"), self.saved(variant)
        if oracle is None or mine is None or oracle < MIN_ORACLE_SAVED:
            return None
        return round(mine / oracle, 4)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"case_id": self.case_id, "scenario": self.scenario, "volume": self.volume,
                               "onset_s": self.onset_s, "incident_s": self.incident_s, "error": self.error,
                               "outcomes": {k: asdict(v) for k, v in self.outcomes.items()}}
        for v in ("agent", "static", "oracle"):
            out[f"saved_{v}"] = self.saved(v)
            out[f"failed_attempts_avoided_{v}"] = self.attempts_avoided(v)
        out["share_agent"] = self.share_of_oracle("agent")
        out["share_static"] = self.share_of_oracle("static")
        return out


def failed_mask(events: Any) -> np.ndarray:
    """Failed attempts of a simulator step: an EventBatch (columns) or a list of PaymentEvents."""
    failed = getattr(events, "failed", None)
    if failed is not None and not callable(failed):
        return np.asarray(failed, dtype=bool)
    return np.fromiter((e.status != "success" for e in events), bool, len(events))


def latencies(events: Any) -> np.ndarray:
    column = getattr(events, "latency_ms", None)
    if isinstance(column, np.ndarray):
        return column
    return np.fromiter((e.latency_ms for e in events), float, len(events))


# -- concrete actions for the oracle and the on-call human ---------------------------------

def _route_methods(net: NetworkConfig, target: dict[str, str]) -> set[str]:
    if "method" in target:
        return {target["method"]}
    if "route" in target and target["route"] in net.routes:
        return set(net.routes[target["route"]].methods)
    if "terminal_id" in target:
        return {"palm"}
    return set(net.methods)


def concrete_action(tool: str, target: dict[str, str], net: NetworkConfig) -> ProposedAction | None:
    """The arguments a competent operator would give an acceptable tool; None when it cannot apply."""
    args: dict[str, Any] = {"target": dict(target)}
    if tool == "reroute_traffic":
        methods = _route_methods(net, target)
        avoid = target.get("route")
        dest = {r: spec.weight for r, spec in sorted(net.routes.items()) if r != avoid and methods <= set(spec.methods)}
        if not dest:
            return None
        args.update(to_routes=dest, percent=100.0, ttl_seconds=MAX_TTL_SECONDS)
    elif tool == "suppress_path":
        # Palm paths fall back to card; an issuer or route has no fallback that would not hit the same fault.
        args.update(fallback="card" if "terminal_id" in target or target.get("method") == "palm" else None,
                    ttl_seconds=MAX_TTL_SECONDS)
    elif tool == "adjust_retry_policy":
        args.update(max_attempts=2, backoff_ms=500.0, ttl_seconds=MAX_TTL_SECONDS)
    elif tool == "alert_ops":
        args.update(severity="critical", summary="incident (evaluation oracle)")
    elif tool == "no_action":
        args = {"reason": "nothing operational helps"}
    else:
        return None
    try:
        return validate_proposal(tool, args, "evaluation oracle")
    except ProposalError:
        return None


# -- the four variants ---------------------------------------------------------------------

def _world(case: Case, policy: Any) -> Simulator:
    assert case.generator is not None
    gen = case.generator
    net = network_from_dict(gen.network)
    if net.payments_per_minute > CLOSED_LOOP_MAX_PPM:
        gen = gen.model_copy(update={"network": {**gen.network, "payments_per_minute": CLOSED_LOOP_MAX_PPM}})
    return simulator(gen, policy, duration=CLOSED_LOOP_INCIDENT_SECONDS)


def _horizon(case: Case) -> tuple[float, float]:
    gen = case.generator
    assert gen is not None
    onset = gen.start_ts + gen.lead_in
    return onset, onset + CLOSED_LOOP_INCIDENT_SECONDS


@dataclass(frozen=True)
class Step:
    """One minute of traffic as a static dashboard sees it."""

    end: float
    attempts: int
    failure_rate: float
    p95_ms: float


def _scripted(case: Case, variant: str, action: ProposedAction | None, act_at: float | None,
              steps: list[Step] | None = None) -> Outcome:
    """A run where one known action is applied at a known time (or never); `steps` collects per-minute figures."""
    plane = SimulatedControlPlane()
    sim = _world(case, plane)
    onset, end = _horizon(case)
    out = Outcome(variant, action=None if action is None else f"{action.tool}[{target_key(action.target)}]")
    t = sim.start_ts
    applied = False
    while t < end:
        nxt = min(t + STEP_SECONDS, end)
        if action is not None and act_at is not None and not applied and act_at < nxt:
            if act_at > t:
                out.count(sim.advance(act_at))
            plane.apply(action, f"{variant}-{case.id}", act_at)
            applied = True
            out.mitigated_after_s = round(act_at - onset, 1)
        events = sim.advance(nxt)
        out.count(events)
        if steps is not None and len(events):
            steps.append(Step(nxt, len(events), float(failed_mask(events).mean()),
                              float(np.percentile(latencies(events), 95))))
        t = nxt
    out.finish(sim)
    return out


def static_alert_time(steps: list[Step], onset: float) -> float | None:
    """When the static rules first page someone after the onset (alerts before it are dismissed as noise)."""
    for step in steps:
        if step.end > onset and step.attempts >= STATIC_MIN_ATTEMPTS and (
                step.failure_rate > STATIC_FAILURE_RATE or step.p95_ms > STATIC_P95_MS):
            return step.end
    return None


class _CountingSource(SimulatorSource):
    def __init__(self, sim: Simulator, outcome: Outcome) -> None:
        super().__init__(sim)
        self.outcome = outcome

    def read_until(self, end_ts: float) -> Any:
        events = super().read_until(end_ts)
        self.outcome.count(events)
        return events


def agent_run(case: Case, factory: Callable[[Settings], Reasoner] = rules_factory,
              approve_after: float | None = HUMAN_RESPONSE_SECONDS) -> Outcome:
    """The real graph over the live simulator; the simulator obeys the agent's control plane."""
    settings = eval_settings(case)
    plane = SimulatedControlPlane()
    sim = _world(case, plane)
    out = Outcome("agent")
    source = _CountingSource(sim, out)
    services = build_services(settings, source=source, in_memory=True, control_plane=plane, notifier=ListNotifier(),
                              reasoner=factory(settings))
    agent = Agent(services)
    onset, end = _horizon(case)
    exp = case.expected
    pending: list[tuple[float, ProposedAction, str]] = []  # escalations: (approve at, action, decision id)
    window_end = sim.start_ts + settings.tick_seconds
    while window_end <= end:
        for due, action, key in [p for p in pending if p[0] <= window_end - settings.tick_seconds]:
            pending.remove((due, action, key))
            plane.apply(action, key, due)  # the on-call approves; the graph sees it in force next tick
            out.notes.append(f"approved {action.tool}[{target_key(action.target)}] at +{due - onset:.0f}s")
            if out.mitigated_after_s is None and due >= onset and exp.acceptable(action.tool, action.target):
                out.mitigated_after_s = round(due - onset, 1)
                out.action = f"{action.tool}[{target_key(action.target)}] (approved)"
        result = agent.tick(window_end)
        assert result is not None
        state = result.state
        proposal = ProposedAction.model_validate(state["proposal"])
        status = state["execution"]["status"]
        if (status == "escalated" and approve_after is not None and proposal.tool != "no_action"
                and not any(p[2] == state["decision_id"] for p in pending)):
            pending.append((window_end + approve_after, proposal, "approved-" + state["decision_id"]))
        if status == "executed" and proposal.tool != "no_action":
            out.notes.append(f"executed {proposal.tool}[{target_key(proposal.target)}] at +{window_end - onset:.0f}s")
            if out.mitigated_after_s is None and window_end > onset and exp.acceptable(proposal.tool, proposal.target):
                out.mitigated_after_s = round(window_end - onset, 1)
                out.action = f"{proposal.tool}[{target_key(proposal.target)}]"
        window_end += settings.tick_seconds
    out.finish(sim)
    services.audit.close()
    return out


def oracle_actions(case: Case) -> list[ProposedAction]:
    assert case.generator is not None
    net = network_from_dict(case.generator.network)
    out = []
    for spec in case.expected.acceptable_actions:
        action = concrete_action(spec.tool, spec.target or {}, net)
        if action is not None and action.tool not in ("no_action",):
            out.append(action)
    return out


def closed_loop(case: Case, factory: Callable[[Settings], Reasoner] = rules_factory) -> ClosedLoopResult:
    if case.generator is None or case.control or case.onset is None:
        raise ValueError(f"case {case.id} has no simulator generator (or is a control): no closed loop")
    gen = case.generator
    onset, _end = _horizon(case)
    volume = min(float(gen.network.get("payments_per_minute", 0.0)), CLOSED_LOOP_MAX_PPM)
    result = ClosedLoopResult(case.id, gen.scenario, volume, gen.lead_in, CLOSED_LOOP_INCIDENT_SECONDS, {})
    try:
        steps: list[Step] = []
        result.outcomes["none"] = _scripted(case, "none", None, None, steps)
        candidates = [_scripted(case, "oracle", a, onset) for a in oracle_actions(case)]
        best = max(candidates, key=lambda o: o.paid, default=None)
        oracle = best or replace(result.outcomes["none"], variant="oracle", mitigated_after_s=0.0, action="no_action")
        if best is not None and best.paid < result.outcomes["none"].paid:
            # Every acceptable action costs payments here (e.g. suppressing a half-working issuer):
            # the perfect operator only alerts, which changes no traffic.
            oracle = replace(result.outcomes["none"], variant="oracle", mitigated_after_s=0.0,
                             action="alert_ops / no_action",
                             notes=[f"{o.action} would lose {result.outcomes['none'].paid - o.paid} payments"
                                    for o in candidates])
        result.outcomes["oracle"] = oracle
        alert_at = static_alert_time(steps, onset)
        oracle_action = next((a for a in oracle_actions(case)
                              if best is not None and best.action == f"{a.tool}[{target_key(a.target)}]"), None)
        if alert_at is None:
            static = replace(result.outcomes["none"], variant="static", notes=["the static thresholds never fired"])
        elif oracle_action is None or oracle.action and oracle.action.startswith("alert_ops"):
            # Paged, nothing to change: the page itself is the mitigation when alerting is what the oracle does.
            alerting = any(a.tool == "alert_ops" for a in case.expected.acceptable_actions)
            static = replace(
                result.outcomes["none"],
                variant="static",
                mitigated_after_s=round(alert_at - onset, 1) if alerting else None,
                notes=[f"paged at +{alert_at - onset:.0f}s; nothing to change"],
            )
        else:
            static = _scripted(case, "static", oracle_action, alert_at + HUMAN_RESPONSE_SECONDS)
            static.notes.append(f"paged at +{alert_at - onset:.0f}s")
        result.outcomes["static"] = static
        result.outcomes["agent"] = agent_run(case, factory)
    except Exception as exc:  # one broken world must not stop the others
        result.error = f"{type(exc).__name__}: {exc}"
    return result
