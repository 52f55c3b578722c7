"""Shadow mode: on a recorded or live feed with no orchestrator, the agent records what it would do.

A recorded feed cannot respond to a move: judging a reroute on it makes the reroute look
harmful, and a lesson learned from that lowers the confidence of the next identical
incident. In shadow mode nothing is judged and nothing is learned from such moves, yet a
move "made" stays in force for cooldowns, TTLs and "already mitigated".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payops.cli import _register_subcommands, app
from payops.graph.services import build_services
from payops.memory.lessons import LessonStore
from payops.render import decision_line, render_cycle
from payops.scheduling import close_agent
from payops.settings import Settings
from payops.signals.simulator import Simulator, build_scenario, default_network, write_stream
from payops.tools.control_plane import STATEFUL_TOOLS, ShadowControlPlane, SimulatedControlPlane
from payops.wiring import PlaneChoiceError, agent_services, durable_agent, plane_for_source

_register_subcommands()
runner = CliRunner()


def recorded_outage(path: Path, seed: int = 3) -> Path:
    """A route outage written to a file, as a collector would have recorded it (nothing obeys the agent)."""
    net = default_network()
    sim = Simulator(build_scenario("route_outage", net), net, seed=seed)
    with path.open("wb") as out:
        write_stream(sim, sim.start_ts + 15 * 60.0, out)
    return path


def run_file(state_dir: Path, events: Path, deployment: str, **kwargs) -> tuple[list[dict], object]:
    settings = Settings(state_dir=state_dir, deployment=deployment)
    services = agent_services(settings, str(events), "demo", 7, **kwargs)
    agent = durable_agent(services)
    states = []
    try:
        while True:
            result = agent.tick()
            if result is None:
                break
            states.append(result.state)
            if services.source.exhausted:
                break
    finally:
        lessons = LessonStore(services.lessons.store).list()
        outcomes = [e for e in services.audit.entries() if e.kind == "outcome"]
        close_agent(agent, services)
    return states, {"lessons": lessons, "outcomes": outcomes, "plane": services.control_plane}


def first_reroute(states: list[dict]) -> dict:
    return next(s for s in states if s["proposal"]["tool"] == "reroute_traffic")


def test_a_recorded_feed_teaches_no_lesson_and_the_next_identical_incident_keeps_its_confidence(tmp_path: Path) -> None:
    events = recorded_outage(tmp_path / "outage.jsonl")
    first, seen = run_file(tmp_path / "state", events, "trial-1")
    reroute = first_reroute(first)
    assert reroute["execution"]["status"] == "executed"
    assert seen["outcomes"] == [] and seen["lessons"] == []  # nothing judged, nothing learned
    # the reroute was not rolled back as "harmful": it stays in force until its TTL
    after = first[first.index(reroute) + 1:]
    assert all(n["op"] not in ("rollback", "outcome") for s in after for n in s.get("housekeeping") or [])
    second, _ = run_file(tmp_path / "state", events, "trial-2")
    again = first_reroute(second)
    assert again["diagnosis"]["confidence"] == reroute["diagnosis"]["confidence"] >= 0.8
    assert again["execution"]["status"] == "executed"
    assert not again.get("track_record")


def test_a_shadow_move_prints_would_execute_and_counts_as_already_mitigated(tmp_path: Path) -> None:
    events = recorded_outage(tmp_path / "outage.jsonl")
    states, seen = run_file(tmp_path / "state", events, "trial", )
    assert isinstance(seen["plane"], ShadowControlPlane)
    reroute = first_reroute(states)
    text = render_cycle(reroute)
    assert "Outcome: WOULD EXECUTE (shadow) — " in text and "EXECUTED" not in text.replace("WOULD EXECUTE", "")
    assert reroute["execution"]["plane"] == "shadow"
    later = states[states.index(reroute) + 1]
    assert later["proposal"]["tool"] == "no_action"
    assert "already mitigated" in later["proposal"]["args"]["reason"]
    assert [a["action_id"] for a in later["in_force"]] == [reroute["decision_id"]]


def test_replay_is_shadow_by_default_and_says_so_beside_executed(tmp_path: Path) -> None:
    events = recorded_outage(tmp_path / "outage.jsonl")
    out = tmp_path / "d.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    executed = [line for line in lines if line["executed"]]
    assert executed and all(line["plane"] == "shadow" for line in executed)
    assert all("plane" not in line for line in lines if not line["executed"])
    # no harm judged on the recorded feed: the reroute is never followed by an escalated repeat
    assert not any(line["escalated"] for line in lines)


def test_replay_with_the_simulated_plane_keeps_the_old_closed_loop_judgement(tmp_path: Path) -> None:
    events = recorded_outage(tmp_path / "outage.jsonl")
    out = tmp_path / "d.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--out", str(out), "--control-plane", "simulated"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["plane"] for line in lines if line["executed"]} == {"simulated"}


def test_the_simulator_keeps_its_closed_loop_by_default(tmp_path: Path) -> None:
    services = agent_services(Settings(state_dir=tmp_path), "simulator", "route_outage", 3, in_memory=True)
    assert type(services.control_plane) is SimulatedControlPlane
    assert services.source.simulator.policy is services.control_plane


@pytest.mark.parametrize(("source", "url", "asked", "plane"), [
    ("simulator", None, None, "simulated"),
    ("events.jsonl", None, None, "shadow"),
    ("-", None, None, "shadow"),
    ("events.jsonl", "http://orch.local", None, "http"),
    ("simulator", "http://orch.local", None, "http"),
    ("events.jsonl", None, "simulated", "simulated"),
    ("simulator", None, "shadow", "shadow"),
    ("simulator", "http://orch.local", "shadow", "shadow"),
    (["nats://127.0.0.1:4222/PAY?subject=payments.>"], None, None, "shadow"),
    (["palm", "events.jsonl"], None, None, "shadow"),
    (["simulator"], None, None, "simulated"),
    (None, None, None, "simulated"),
])
def test_the_control_plane_follows_the_source_unless_named(
        source, url: str | None, asked: str | None, plane: str) -> None:
    assert plane_for_source(source, Settings(orchestrator_url=url), asked) == plane


def test_the_http_plane_without_an_orchestrator_url_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(PlaneChoiceError, match="PAYOPS_ORCHESTRATOR_URL"):
        plane_for_source("simulator", Settings(orchestrator_url=None), "http")
    events = recorded_outage(tmp_path / "outage.jsonl")
    for args in (["replay", str(events), "--out", str(tmp_path / "d.jsonl")],
                 ["run", "--source", str(events), "--ticks", "1"],
                 ["tick", "--source", str(events)]):
        result = runner.invoke(app, [*args, "--control-plane", "http"], env={"PAYOPS_ORCHESTRATOR_URL": "",
                                                                           "PAYOPS_STATE_DIR": str(tmp_path / "s")})
        assert result.exit_code == 2, (args, result.output)
        assert "PAYOPS_ORCHESTRATOR_URL" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "d.jsonl"),
                                 "--control-plane", "sideways"])
    assert result.exit_code == 2
    assert result.output.strip() == ("payops: error: --control-plane must be one of simulated, shadow, http, "
                                     "not 'sideways'")


def test_the_shadow_plane_moves_no_simulated_traffic_and_keeps_ttls() -> None:
    from payops.tools.actions import validate_proposal

    plane = ShadowControlPlane()
    action = validate_proposal("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0},
                                                   "percent": 95.0, "ttl_seconds": 600.0})
    result = plane.apply(action, "d-1", 1000.0)
    assert result.status == "executed" and result.plane == "shadow"
    assert plane.reroute({"route": "psp_a", "bank": "FNB"}, {"psp_a": 1.0}, 0.1) is None  # traffic is not moved
    assert [a.action_id for a in plane.in_force()] == ["d-1"]
    assert [a.action_id for a in plane.expire(1600.0)] == ["d-1"] and plane.in_force() == []
    assert "reroute_traffic" in STATEFUL_TOOLS


def test_a_decision_line_names_the_plane_only_for_executed_actions() -> None:
    base = {"window_end": 60.0, "decision_id": "d-1",
            "diagnosis": {"category": "network", "confidence": 0.9, "evidence": []},
            "proposal": {"tool": "reroute_traffic", "target": {"route": "a"}, "args": {}}}
    executed = decision_line({**base, "execution": {"status": "executed", "detail": "", "plane": "shadow"}})
    escalated = decision_line({**base, "execution": {"status": "escalated", "detail": ""}})
    assert executed["plane"] == "shadow" and "plane" not in escalated


def test_in_memory_services_still_default_to_the_simulated_plane() -> None:
    assert type(build_services(Settings(), in_memory=True).control_plane) is SimulatedControlPlane


def test_why_says_a_shadow_action_is_not_measured(tmp_path: Path) -> None:
    from payops.memory.audit import AuditLog
    from payops.memory.explain import explain_decision

    events = recorded_outage(tmp_path / "outage.jsonl")
    states, _ = run_file(tmp_path / "state", events, "trial")
    reroute = first_reroute(states)
    audit = AuditLog(tmp_path / "state" / "audit.db")
    text = explain_decision(audit.get(reroute["decision_id"]))
    audit.close()
    assert "Outcome so far: shadow mode: recorded as what would have run; nothing moved" in text
    assert "under evaluation" not in text


def test_the_api_names_the_plane_of_an_executed_decision(tmp_path: Path) -> None:
    from payops.api.records import decision_from
    from payops.memory.audit import AuditLog

    events = recorded_outage(tmp_path / "outage.jsonl")
    states, _ = run_file(tmp_path / "state", events, "trial")
    reroute = first_reroute(states)
    audit = AuditLog(tmp_path / "state" / "audit.db")
    decisions = {e.decision_id: decision_from(e) for e in audit.entries("decision")}
    audit.close()
    assert decisions[reroute["decision_id"]].executed and decisions[reroute["decision_id"]].plane == "shadow"
    assert all(d.plane is None for d in decisions.values() if not d.executed)


def test_a_shadow_palm_operation_replayed_under_its_key_is_recorded_once() -> None:
    from payops.models import ProposedAction
    from payops.tools.control_plane import ShadowControlPlane

    plane = ShadowControlPlane()
    action = ProposedAction(tool="suspend_palm_link", target={"palm_pay_id": "pp_1"}, args={"reason": "spoofs"})
    first = plane.apply(action, "d-1", 100.0)
    again = plane.apply(action, "d-1", 160.0)  # the tick re-run after a kill
    assert first.status == again.status == "executed" and "idempotent replay" in again.detail
    assert [h["op"] for h in plane.history] == ["record"]
