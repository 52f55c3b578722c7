"""Durable human approval: a request per decision on its own thread, answered from any process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from guardrails_helpers import START, Clock, StubReasoner, write_events
from langgraph.types import Command
from pydantic import ValidationError

from payops.graph.approval import ApprovalExpired, ApprovalNotPending, resume, thread_for
from payops.graph.services import Context
from payops.guardrails.notify import ListNotifier
from payops.memory.approvals import APPLIED, EXPIRED, PENDING, REJECTED, VOIDED
from payops.tools.actions import validate_proposal
from payops.tools.control_plane import SimulatedControlPlane

# Authenticated operators (API key principals): the graph refuses a typed name as an approver.
ALICE, BOB = "operator:a11ce0a11ce0", "operator:b0b0b0b0b0b0"
CAROL, LATE = "operator:ca201ca201ca", "operator:1a7e1a7e1a7e"

HERE = Path(__file__).resolve().parent
REROUTE = validate_proposal("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}})
NOTHING = validate_proposal("no_action", {"reason": "quiet"})


def low_confidence() -> StubReasoner:
    return StubReasoner(REROUTE, confidence=0.6)  # below 0.8: a human must approve


def env() -> dict[str, str]:
    """The child processes import this folder's helpers and the same payops as this process."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), e.get("PYTHONPATH", "")) if p)
    return e


def _operator_key(state_dir: Path, name: str) -> tuple[str, str]:
    """An operator API key in the deployment's key store: (its principal, the key)."""
    from payops.api.keys import ApiKeyStore

    store = ApiKeyStore.in_state_dir(state_dir)
    try:
        record, key = store.create(name, "operator")
        return record.principal, key
    finally:
        store.close()


def payops_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "payops"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "payops.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=120)


FIRST_PROCESS = textwrap.dedent("""
    import sys
    from guardrails_helpers import StubReasoner
    from payops.graph.runner import Agent
    from payops.graph.services import build_services
    from payops.settings import Settings
    from payops.signals.sources import open_jsonl
    from payops.tools.actions import validate_proposal

    proposal = validate_proposal("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}})
    services = build_services(Settings(state_dir=sys.argv[1]), source=open_jsonl(sys.argv[2]),
                              reasoner=StubReasoner(proposal, confidence=0.6))
    state = Agent.durable(services).tick().state
    print(state["decision_id"], state["execution"]["status"])
""")


def test_approval_from_a_second_process_after_the_first_exited(tmp_path: Path, events: Path, make_agent) -> None:
    state_dir = tmp_path / "state"
    first = subprocess.run([sys.executable, "-c", FIRST_PROCESS, str(state_dir), str(events)], cwd=tmp_path, env=env(),
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    decision_id, status = first.stdout.split()
    assert status == "escalated"

    listed = payops_cli("pending", "--state-dir", str(state_dir), cwd=tmp_path)
    assert listed.returncode == 0 and decision_id in listed.stdout and "confidence 0.600 < threshold" in listed.stdout

    alice, key = _operator_key(state_dir, "alice")
    approved = payops_cli("approve", decision_id[:10], "--api-key", key, "--note", "psp_b has headroom",
                          "--state-dir", str(state_dir), cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    assert f"{decision_id}: approved" in approved.stdout
    again = payops_cli("approve", decision_id, "--api-key", key, "--state-dir", str(state_dir), cwd=tmp_path)
    assert again.returncode == 2 and "no longer pending" in again.stderr

    # A third process (this one) resumes the deployment: its next tick applies the action, once.
    control_plane = SimulatedControlPlane()
    agent = make_agent(StubReasoner(NOTHING), control_plane=control_plane)
    ticks = [agent.tick().state for _ in range(3)]
    applied = [n for t in ticks for n in t["housekeeping"] if n["op"] == "approved_action_applied"]
    assert len(applied) == 1 and applied[0]["decision_id"] == decision_id and applied[0]["approver"] == alice
    assert applied[0] in ticks[0]["housekeeping"]  # on the very next tick
    assert [h["id"] for h in control_plane.history if h["op"] == "apply"] == [decision_id]
    assert [a.action_id for a in control_plane.in_force()] == [decision_id]
    svc = agent.services
    assert svc.approvals.get(decision_id).status == APPLIED
    kinds = [e.kind for e in svc.audit.get(decision_id)]
    assert kinds == ["decision", "approval", "approved_action"]
    approval = svc.audit.get(decision_id)[1].record
    assert (approval["status"], approval["approver"], approval["note"]) == ("approved", alice, "psp_b has headroom")
    # the approved action counts in the history (not as autonomous) for cooldowns
    assert any(h["decision_id"] == decision_id and h["autonomous"] is False for h in ticks[-1]["history"])


def test_agent_keeps_ticking_while_a_request_waits(make_agent) -> None:
    agent = make_agent(low_confidence())
    first = agent.tick().state
    assert first["execution"]["status"] == "escalated"
    later = [agent.tick().state for _ in range(3)]
    assert [s["tick"] for s in later] == [2, 3, 4]
    assert all(s["proposal"]["tool"] == "no_action" and first["decision_id"] in s["proposal"]["args"]["reason"]
               for s in later)
    assert agent.services.approvals.get(first["decision_id"]).status == PENDING


def test_request_carries_what_the_operator_needs(make_agent) -> None:
    notifier = ListNotifier()
    agent = make_agent(low_confidence())
    agent.services.notifier = notifier
    state = agent.tick().state
    request = agent.services.approvals.get(state["decision_id"]).request
    assert request["action"] == "reroute_traffic" and request["target"] == {"route": "psp_a"}
    assert request["evidence"] and request["alternatives"]
    assert any("confidence" in why for why in request["why_approval"])
    assert request["expires_at"] == pytest.approx(request["created_at"] + agent.services.settings.approval_ttl_seconds)
    kinds = [k for k, _ in notifier.drain()]
    assert kinds == ["approval_requested"]


def test_expiry_rejects_and_records(make_agent) -> None:
    clock = Clock()
    notifier = ListNotifier()
    agent = make_agent(low_confidence(), clock=clock, approval_ttl_seconds=600)
    agent.services.notifier = notifier
    decision_id = agent.tick().state["decision_id"]
    clock.now += 599
    agent.services.reasoner = StubReasoner(NOTHING)
    agent.tick()
    assert agent.services.approvals.get(decision_id).status == PENDING
    clock.now += 1  # now exactly at expires_at
    state = agent.tick().state
    assert {"op": "approval_expired", "decision_id": decision_id} in state["housekeeping"]
    assert agent.services.approvals.get(decision_id).status == EXPIRED
    record = [e.record for e in agent.services.audit.get(decision_id) if e.kind == "approval"]
    assert record and record[0]["status"] == "expired" and record[0]["approver"] == "system"
    assert "approval_expired" in [k for k, _ in notifier.drain()]
    with pytest.raises(ApprovalNotPending):
        resume(agent.services, decision_id, {"approved": True, "approver": LATE})
    assert agent.services.control_plane.in_force() == []


def test_an_answer_after_expiry_does_not_count(make_agent) -> None:
    clock = Clock()
    agent = make_agent(low_confidence(), clock=clock, approval_ttl_seconds=600)
    decision_id = agent.tick().state["decision_id"]
    clock.now += 601  # expired, and the agent has not ticked since
    with pytest.raises(ApprovalExpired):
        resume(agent.services, decision_id, {"approved": True, "approver": BOB})
    assert agent.services.approvals.get(decision_id).status == EXPIRED
    agent.services.reasoner = StubReasoner(NOTHING)
    state = agent.tick().state
    assert not [n for n in state["housekeeping"] if n["op"].startswith("approved_action")]
    assert agent.services.control_plane.in_force() == []


@pytest.mark.parametrize("answer", [
    {"approved": "perhaps", "approver": "alice"},
    {"approved": True, "approver": ""},
    {"approved": True},
    {"approved": True, "approver": "alice", "extra": 1},
    {"approved": True, "approver": "alice"},  # a typed name is not an authenticated operator
    {"approved": True, "approver": "operator"},
    {"approved": True, "approver": "system"},  # the expiry's marker rejects, never approves
    {"approved": True, "approver": "terminal:0123456789ab"},
])
def test_bad_resume_value_keeps_the_request_pending(make_agent, answer) -> None:
    agent = make_agent(low_confidence())
    svc = agent.services
    decision_id = agent.tick().state["decision_id"]
    with pytest.raises(ValidationError):
        resume(svc, decision_id, answer)
    # straight at the graph too: interrupt(response_schema=...) refuses it and the thread stays paused
    with pytest.raises(ValidationError):
        svc.approval_graph.invoke(Command(resume=answer), thread_for(decision_id), context=Context(services=svc))
    assert len(svc.approval_graph.get_state(thread_for(decision_id)).interrupts) == 1
    assert svc.approvals.get(decision_id).status == PENDING
    assert [e.kind for e in svc.audit.get(decision_id)] == ["decision"]
    # and a good answer still goes through afterwards
    assert resume(svc, decision_id, {"approved": True, "approver": ALICE}) == "approved"


def test_cli_answers_only_with_an_operator_key_never_a_typed_name(tmp_path: Path, make_agent) -> None:
    agent = make_agent(low_confidence())
    decision_id = agent.tick().state["decision_id"]
    state = str(tmp_path / "state")
    typed = payops_cli("approve", decision_id, "--as", "alice", "--state-dir", state, cwd=tmp_path)
    assert typed.returncode == 2
    no_key = payops_cli("approve", decision_id, "--state-dir", state, cwd=tmp_path)
    assert no_key.returncode == 2 and "operator API key" in no_key.stderr
    from payops.api.keys import ApiKeyStore

    store = ApiKeyStore.in_state_dir(tmp_path / "state")
    viewer = store.create("watcher", "viewer")[1]
    store.close()
    for key in (viewer, "payops_000000000000_" + "x" * 43):
        bad = payops_cli("approve", decision_id, "--api-key", key, "--state-dir", state, cwd=tmp_path)
        assert bad.returncode == 2 and "API key" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert agent.services.approvals.get(decision_id).status == PENDING


def test_rejection_is_recorded_and_nothing_runs(make_agent) -> None:
    agent = make_agent(low_confidence())
    decision_id = agent.tick().state["decision_id"]
    answer = {"approved": False, "approver": CAROL, "note": "not at peak"}
    assert resume(agent.services, decision_id, answer) == "rejected"
    agent.services.reasoner = StubReasoner(NOTHING)
    agent.tick()
    assert agent.services.approvals.get(decision_id).status == REJECTED
    assert agent.services.control_plane.in_force() == []
    record = [e.record for e in agent.services.audit.get(decision_id) if e.kind == "approval"][0]
    assert (record["approver"], record["note"]) == (CAROL, "not at peak")


def test_approved_reroute_into_a_route_that_turned_unhealthy_is_not_applied(tmp_path: Path, make_agent) -> None:
    events = write_events(tmp_path / "turning.jsonl", minutes=2, failing={"psp_a": 0.9})
    write_events(events, minutes=10, failing={"psp_a": 0.9, "psp_b": 0.9}, start=START + 120, append=True)
    agent = make_agent(low_confidence(), source=events)
    decision_id = agent.tick().state["decision_id"]  # minute 0: psp_b healthy, escalated
    agent.services.reasoner = StubReasoner(NOTHING)
    agent.tick()  # minute 1
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE})
    state = agent.tick().state  # minute 2: psp_b fails too
    void = [n for n in state["housekeeping"] if n["decision_id"] == decision_id]
    assert void and void[0]["op"] == "approved_action_void" and "psp_b is unhealthy" in void[0]["result"]
    assert agent.services.approvals.get(decision_id).status == VOIDED
    assert agent.services.control_plane.in_force() == []
    assert [e.kind for e in agent.services.audit.get(decision_id)] == ["decision", "approval", "approved_action"]


def _outage_then_recovery(path: Path) -> Path:
    """Five healthy minutes, psp_a failing for two, then healthy again: the incident ends by itself."""
    write_events(path, minutes=5)
    write_events(path, minutes=2, failing={"psp_a": 0.9}, start=START + 300, append=True)
    write_events(path, minutes=10, start=START + 420, append=True)
    return path


def _escalated_reroute(agent) -> dict:
    for _ in range(8):
        state = agent.tick().state
        if state["execution"]["status"] == "escalated":
            return state
    raise AssertionError("the outage was never escalated")


def test_an_approval_given_after_the_incident_ended_is_voided_with_a_note_and_the_operator_told(
        tmp_path: Path, make_agent) -> None:
    from payops.graph.reasoners.rules import RuleReasoner
    from payops.render import render_cycle

    notifier = ListNotifier()
    control_plane = SimulatedControlPlane()
    # a human approves every action (threshold above the rules' confidence): the reroute waits for one
    agent = make_agent(RuleReasoner(), source=_outage_then_recovery(tmp_path / "e.jsonl"), control_plane=control_plane,
                       confidence_threshold=0.99)
    agent.services.notifier = notifier
    escalated = _escalated_reroute(agent)
    decision_id = escalated["decision_id"]
    assert escalated["proposal"]["tool"] == "reroute_traffic"
    categories = [agent.tick().state["diagnosis"]["category"] for _ in range(5)]  # the request waits
    assert categories[-3:] == ["healthy"] * 3  # traffic healthy again
    notifier.drain()
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE, "note": "late answer"})
    state = agent.tick().state
    void = [n for n in state["housekeeping"] if n.get("decision_id") == decision_id]
    assert [n["op"] for n in void] == ["approved_action_void"]
    assert void[0]["voided"].startswith("the finding has cleared since the decision (route=psp_a: ")
    assert agent.services.approvals.get(decision_id).status == VOIDED
    assert control_plane.in_force() == [] and not [h for h in control_plane.history if h["op"] == "apply"]
    record = [e.record for e in agent.services.audit.get(decision_id) if e.kind == "approved_action"]
    assert len(record) == 1 and record[0]["execution"]["status"] == "denied"
    assert "finding has cleared" in record[0]["voided"]
    assert (f"note: approval of {decision_id} voided, reroute_traffic not applied: the finding has cleared"
            in render_cycle(state))
    told = [(kind, payload) for kind, payload in notifier.drain() if kind == "approved_action_void"]
    assert told and told[0][1]["decision_id"] == decision_id and "finding has cleared" in told[0][1]["result"]


def test_an_approval_given_while_the_incident_lasts_is_applied(tmp_path: Path, make_agent) -> None:
    from payops.graph.reasoners.rules import RuleReasoner

    control_plane = SimulatedControlPlane()
    agent = make_agent(RuleReasoner(), source=_outage_then_recovery(tmp_path / "e.jsonl"), control_plane=control_plane,
                       confidence_threshold=0.99)
    decision_id = _escalated_reroute(agent)["decision_id"]
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE})
    state = agent.tick().state  # the next window: psp_a still failing
    assert [n["op"] for n in state["housekeeping"]
            if n.get("decision_id") == decision_id] == ["approved_action_applied"]
    assert [a.action_id for a in control_plane.in_force()] == [decision_id]


def test_a_late_approval_is_voided_also_when_every_tick_is_a_new_process(tmp_path: Path, make_agent) -> None:
    """Cron ticks keep no windows in memory: what the request saw while waiting is in the checkpoint."""
    from payops.graph.reasoners.rules import RuleReasoner

    control_plane = SimulatedControlPlane()
    agent = make_agent(RuleReasoner(), source=_outage_then_recovery(tmp_path / "e.jsonl"), control_plane=control_plane,
                       confidence_threshold=0.99)

    def fresh_tick() -> dict:
        agent.services.recent_windows.clear()  # a new process remembers no earlier window
        return agent.tick().state

    decision_id = _escalated_reroute(agent)["decision_id"]
    categories = [fresh_tick()["diagnosis"]["category"] for _ in range(5)]
    assert categories[-3:] == ["healthy"] * 3
    waiting = agent.last_state()["awaiting"]
    assert [len(w["seen"]) for w in waiting if w["decision_id"] == decision_id] == [3]  # bounded
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE})
    state = fresh_tick()
    assert [n["op"] for n in state["housekeeping"] if n.get("decision_id") == decision_id] == ["approved_action_void"]
    assert control_plane.in_force() == []


def test_an_approval_applied_before_a_kill_is_finished_not_voided_when_the_finding_has_since_cleared(
        tmp_path: Path, make_agent) -> None:
    from payops.graph.reasoners.rules import RuleReasoner
    from payops.memory.approvals import APPLIED

    control_plane = SimulatedControlPlane()
    agent = make_agent(RuleReasoner(), source=_outage_then_recovery(tmp_path / "e.jsonl"), control_plane=control_plane,
                       confidence_threshold=0.99)
    decision_id = _escalated_reroute(agent)["decision_id"]
    for _ in range(5):
        agent.tick()  # the request waits while the incident clears
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE})
    # A process applied it and wrote its record, then was killed before the book and the checkpoint said
    # so: the book still says approved, the checkpoint still holds the windows seen while it waited.
    agent.services.audit.append(decision_id, "approved_action", 0.0, {
        "decision_id": decision_id, "tool": "reroute_traffic", "approver": ALICE,
        "execution": {"status": "executed", "detail": "rerouted", "action_id": decision_id}})
    state = agent.tick().state
    ops = [n["op"] for n in state["housekeeping"] if n.get("decision_id") == decision_id]
    assert ops == ["approved_action_applied"]  # finished, not re-judged: the action is out there
    assert agent.services.approvals.get(decision_id).status == APPLIED
    assert [a.action_id for a in control_plane.in_force()] == [decision_id]


def _key_store(tmp_path: Path):
    from payops.api.keys import ApiKeyStore

    return ApiKeyStore(tmp_path / "api_keys.db")


def test_answer_records_the_authenticated_operator(tmp_path: Path, make_agent) -> None:
    from payops.graph.approval import answer

    agent = make_agent(low_confidence())
    decision_id = agent.tick().state["decision_id"]
    keys = _key_store(tmp_path)
    alice, _ = keys.create("alice", "operator")
    done = answer(agent.services, decision_id[:12], approved=True, approver=alice.principal, note="ok", operators=keys)
    assert (done.decision_id, done.status, done.approver) == (decision_id, "approved", alice.principal)
    assert agent.services.approvals.get(decision_id).approver == alice.principal


@pytest.mark.parametrize("who", ["alice", "unknown", "revoked", "viewer", "terminal"])
def test_answer_refuses_anyone_but_an_active_operator_key(tmp_path: Path, make_agent, who: str) -> None:
    from payops.graph.approval import ApproverRefused, answer

    agent = make_agent(low_confidence())
    decision_id = agent.tick().state["decision_id"]
    keys = _key_store(tmp_path)
    if who == "alice":
        approver = "alice"
    elif who == "unknown":
        approver = "operator:0123456789ab"
    elif who == "revoked":
        key, _ = keys.create("gone", "operator")
        keys.revoke(key.key_id)
        approver = key.principal
    else:
        key, _ = keys.create(who, who)
        approver = f"operator:{key.key_id}"  # a viewer's / terminal's key id passed off as an operator's
    with pytest.raises(ApproverRefused):
        answer(agent.services, decision_id, approved=True, approver=approver, note=None, operators=keys)
    assert agent.services.approvals.get(decision_id).status == PENDING
    assert [e.kind for e in agent.services.audit.get(decision_id)] == ["decision"]


def test_one_answer_function_serves_the_cli_and_the_http_api() -> None:
    import inspect

    from payops import cli_ops
    from payops.api import ops_routes

    for entrypoint in (cli_ops._answer, ops_routes._answer):
        source = inspect.getsource(entrypoint)
        assert "approval.answer(" in source and "resume(" not in source
