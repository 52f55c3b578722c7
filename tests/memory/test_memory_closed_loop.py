"""Outcome verdicts on closed-loop simulated incidents: the simulator obeys the control plane,
so an action really changes the windows the agent measures afterwards."""

from __future__ import annotations

import pytest

from payops.graph.reasoners.base import Decision, ReasoningContext
from payops.graph.reasoners.rules import RuleReasoner
from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.guardrails.notify import ListNotifier
from payops.memory.outcomes import EVAL_WINDOWS
from payops.models import Category, target_key
from payops.render import render_cycle, risk_assessment
from payops.settings import Settings
from payops.signals.simulator import Scenario, Simulator, build_scenario, default_network
from payops.signals.sources import SimulatorSource
from payops.tools.actions import validate_proposal
from payops.tools.control_plane import SimulatedControlPlane
from payops.wiring import simulator_for


class ConfidentRules(RuleReasoner):
    """The rule reasoner with its confidence pinned at 0.9 on incidents: these tests are about what
    happens after an action runs, not about the reasoner's calibration (tested elsewhere)."""

    def decide(self, snapshot, context: ReasoningContext) -> Decision:
        d = super().decide(snapshot, context)
        if d.diagnosis.category is Category.HEALTHY:
            return d
        return Decision(d.diagnosis.model_copy(update={"confidence": 0.9}), d.proposal, d.llm_calls, d.notes)


class ScriptedReasoner:
    """The rules' diagnosis, but a chosen action on the incident's target (a mistake an operator might make)."""

    name = "scripted"

    def __init__(self, tool: str, args: dict) -> None:
        self.rules = RuleReasoner()
        self.tool, self.args = tool, args

    def decide(self, snapshot, context: ReasoningContext) -> Decision:
        d = self.rules.decide(snapshot, context)
        if d.diagnosis.category is Category.HEALTHY:
            return d
        if any(a.tool == self.tool and a.target == d.diagnosis.target for a in context.in_force):
            return Decision(d.diagnosis, validate_proposal("no_action", {"reason": "already in force"}))
        return Decision(d.diagnosis.model_copy(update={"confidence": 0.9}),
                        validate_proposal(self.tool, {**self.args, "target": d.diagnosis.target}))


def closed_loop(scenario: str | Scenario, seed: int, reasoner=None):
    reasoner = reasoner or ConfidentRules()
    control_plane = SimulatedControlPlane()
    if isinstance(scenario, str):
        sim = simulator_for(scenario, seed, control_plane, 20)
    else:
        sim = Simulator(scenario, default_network(), seed=seed, policy=control_plane)
    notifier = ListNotifier()
    services = build_services(Settings(deployment=f"test-{seed}"), source=SimulatorSource(sim), in_memory=True,
                              control_plane=control_plane, notifier=notifier, reasoner=reasoner)
    return Agent(services), services, control_plane, notifier


def run(agent: Agent, ticks: int) -> list[dict]:
    return [agent.tick().state for _ in range(ticks)]


def outcomes(services) -> list[dict]:
    return [e.record for e in services.audit.entries("outcome")]


@pytest.mark.parametrize("seed", [1, 3])
def test_a_reroute_away_from_a_failing_route_helped(seed):
    agent, services, control_plane, notifier = closed_loop("route_outage", seed)
    states = run(agent, 6 + EVAL_WINDOWS + 1)
    acted = [s for s in states if s["proposal"]["tool"] == "reroute_traffic" and s["execution"]["status"] == "executed"]
    assert len(acted) == 1
    decision_id = acted[0]["decision_id"]
    [outcome] = outcomes(services)
    assert outcome["decision_id"] == decision_id and outcome["verdict"] == "helped"
    assert outcome["windows"] == EVAL_WINDOWS and outcome["rollback"] is None
    before, after = outcome["before"]["platform"], outcome["after"]["platform"]
    assert after["failure_rate"] < before["failure_rate"] / 2  # the traffic went to a healthy route
    assert any(a.action_id == decision_id for a in control_plane.in_force())  # it stays in force
    lesson = services.lessons.find(decision_id)
    assert lesson is not None and lesson.verdict == "helped" and lesson.tool == "reroute_traffic"
    assert (lesson.category, lesson.target_dims) == ("network", "route")
    assert lesson.target == acted[0]["proposal"]["target"]
    assert lesson.before == outcome["before"] and lesson.after == outcome["after"]
    assert lesson.created_at == acted[0]["window_end"] and lesson.concluded_at > lesson.applied_at
    news = [p for kind, p in notifier.messages if kind == "outcome"]
    assert [p["decision_id"] for p in news] == [decision_id]
    assert news[0]["summary"].startswith("outcome of reroute_traffic")
    # While it is still in force, its own lesson is this incident's mitigation, never a "similar past incident".
    after = [s for s in states if s["window_end"] >= lesson.concluded_at]
    assert after and all(decision_id not in [lesson["decision_id"] for lesson in s["lessons_consulted"]] for s in after)


@pytest.mark.parametrize("seed", [1, 4])
def test_capping_retries_at_the_default_on_a_down_issuer_had_no_effect(seed):
    # The platform already allows two attempts: "tightening" to two changes nothing for a bank that is down.
    reasoner = ScriptedReasoner("adjust_retry_policy", {"max_attempts": 2, "backoff_ms": 500.0})
    agent, services, control_plane, _ = closed_loop("issuer_outage", seed, reasoner)
    states = run(agent, 6 + EVAL_WINDOWS + 1)
    [outcome] = outcomes(services)
    assert outcome["verdict"] == "no_effect", outcome["detail"]
    assert outcome["tool"] == "adjust_retry_policy" and outcome["rollback"] is None
    assert services.lessons.find(outcome["decision_id"]).verdict == "no_effect"
    # The evidence is on the target, which kept its traffic.
    assert outcome["after"]["target"]["attempts"] >= outcome["before"]["target"]["attempts"] * EVAL_WINDOWS * 0.5
    assert any(s["decision_id"] == outcome["decision_id"] and s["execution"]["status"] == "executed" for s in states)


@pytest.mark.parametrize("seed", [1, 2])
def test_loosening_retries_on_a_down_issuer_harmed_and_was_rolled_back_then_not_repeated_alone(seed):
    reasoner = ScriptedReasoner("adjust_retry_policy", {"max_attempts": 5, "backoff_ms": 0.0})
    agent, services, control_plane, notifier = closed_loop("issuer_outage", seed, reasoner)
    states = run(agent, 6 + EVAL_WINDOWS + 2)
    [outcome] = outcomes(services)
    decision_id = outcome["decision_id"]
    assert outcome["verdict"] == "harmed", outcome["detail"]
    assert "platform failure rate rose" in outcome["detail"] or "attempts per payment rose" in outcome["detail"]
    # Rolled back through the control plane, recorded, alerted.
    assert outcome["rollback"]["status"] == "executed"
    assert all(a.action_id != decision_id for a in control_plane.in_force())
    assert any(h["op"] == "rollback" and h["id"] == decision_id and h["reason"].startswith("harmed")
               for h in control_plane.history)
    alerts = [p for kind, p in notifier.messages if kind == "alert" and p.get("decision_id") == decision_id]
    assert alerts and "rolled back" in alerts[0]["summary"] and alerts[0]["severity"] == "critical"
    concluded_at = next(s for s in states if any(h.get("op") == "outcome" for h in s.get("housekeeping") or []))
    assert any(h["op"] == "rollback" and h["action_id"] == decision_id for h in concluded_at["housekeeping"])
    lesson = services.lessons.find(decision_id)
    assert lesson.verdict == "harmed" and lesson.rolled_back
    # The reasoner proposes the same thing again: its record forces a human in the loop.
    later = [s for s in states
             if s["window_end"] >= concluded_at["window_end"] and s["proposal"]["tool"] == "adjust_retry_policy"
             and s["proposal"]["target"] == outcome["target"]]
    assert later, "the scripted reasoner proposes the harmful action again"
    again = later[0]
    assert again["track_record"]["forced_approval"] and decision_id in again["track_record"]["harmed_ids"]
    assert again["diagnosis"]["confidence"] < services.settings.confidence_threshold
    assert again["execution"]["status"] == "escalated"
    assert "not taken autonomously" in risk_assessment(again)
    assert "Human approval required" in render_cycle(again, services.settings.confidence_threshold)


def test_a_second_similar_incident_uses_the_first_ones_lesson():
    net = default_network()
    first = build_scenario("route_outage", net, lead_in=300.0, duration=300.0)
    second = build_scenario("route_outage", net, lead_in=2400.0, duration=300.0)
    twice = Scenario("route_outage_twice", "the same route fails twice", faults=first.faults + second.faults)
    agent, services, _, _ = closed_loop(twice, 5)
    states = run(agent, 45)
    acted = [s for s in states if s["proposal"]["tool"] == "reroute_traffic" and s["execution"]["status"] == "executed"]
    assert len(acted) == 2
    one, two = acted
    assert one.get("track_record") is None
    track = two["track_record"]
    assert track is not None and track["lessons"] == [one["decision_id"]] and track["counts"]["helped"] == 1
    assert track["adjusted"] > track["prior"]  # a record of helping raises confidence
    assert two["diagnosis"]["confidence"] == pytest.approx(track["adjusted"], abs=1e-3)
    assert one["decision_id"] in [lesson["decision_id"] for lesson in two["lessons_consulted"]]
    assert "1 helped" in risk_assessment(two)
    assert any("past outcomes of reroute_traffic" in e for e in two["diagnosis"]["evidence"])
    # The audit record keeps the adjustment for `payops why`.
    record = services.audit.get(two["decision_id"])[0].record
    assert record["track_record"] == track


def test_the_reasoner_receives_similar_lessons_in_its_context():
    seen: list[tuple] = []

    class Spy(ConfidentRules):
        def decide(self, snapshot, context):
            seen.append(context.lessons)
            return super().decide(snapshot, context)

    net = default_network()
    twice = Scenario("twice", "twice", faults=build_scenario("route_outage", net, 300.0, 300.0).faults
                     + build_scenario("route_outage", net, 2400.0, 300.0).faults)
    agent, services, _, _ = closed_loop(twice, 5, Spy())
    states = run(agent, 45)
    first_id = next(s["decision_id"] for s in states if s["proposal"]["tool"] == "reroute_traffic")
    with_lessons = [c for c in seen if c]
    assert with_lessons and with_lessons[0][0]["decision_id"] == first_id and with_lessons[0][0]["verdict"] == "helped"
    healthy_ticks = [s for s in states if s["diagnosis"]["category"] == "healthy"]
    assert healthy_ticks and all(not s["lessons_consulted"] for s in healthy_ticks)


def test_outcome_watch_survives_in_the_checkpointed_state():
    agent, services, _, _ = closed_loop("route_outage", 1)
    states = run(agent, 7)
    acted = next(s for s in states if s["proposal"]["tool"] == "reroute_traffic")
    watching = agent.last_state()["watching"]
    assert [w["decision_id"] for w in watching] == [acted["decision_id"]]
    assert watching[0]["before"]["target"]["attempts"] > 0
    assert watching[0]["signature"]["target_key"] == target_key(acted["proposal"]["target"])
