"""A move held for a human because its evidence was young or marginal runs on its own once the
guardrails allow it a window later, and closes the waiting request first: never both, never neither.

Before this, the waiting request blocked the same move ("awaiting human approval") for as long as
nobody answered, so the persistence rule's "in the second consecutive window it may run" never ran.
"""

from __future__ import annotations

import pytest
from test_core_graph import make_agent, run

from payops.graph import nodes
from payops.graph.approval import ApprovalNotPending, supersede
from payops.memory.approvals import APPROVED, PENDING, SUPERSEDED


def _held_then_lasting(tmp_path):  # type: ignore[no-untyped-def]
    # The simulator's latency scenario: the first window of the slowdown is held (young), the next is not.
    agent = make_agent("latency_degradation", durable=True, state_dir=tmp_path / "s")
    return agent, run(agent, 8)


def test_the_held_move_runs_on_its_own_in_the_next_window_and_closes_its_request(tmp_path) -> None:
    agent, states = _held_then_lasting(tmp_path)
    statuses = [s["execution"]["status"] for s in states]
    held = statuses.index("escalated")
    request = states[held]["decision_id"]
    acted = states[held + 1]
    assert acted["execution"]["status"] == "executed", statuses
    assert (acted["proposal"]["tool"], acted["proposal"]["target"]) == (
        states[held]["proposal"]["tool"], states[held]["proposal"]["target"])
    assert f"supersedes approval request {request}" in acted["execution"]["detail"]
    book = agent.services.approvals
    assert book.get(request).status == SUPERSEDED and book.by_status(PENDING) == []
    # the request's audit record says who closed it and why; the executed move is recorded once
    record = agent.services.audit.get(request)
    closed = [e.record for e in record if e.kind == "approval"]
    assert closed and closed[-1]["status"] == SUPERSEDED and closed[-1]["approver"] == "system"
    assert acted["decision_id"] in closed[-1]["note"]
    assert [a.tool for a in agent.services.control_plane.in_force()] == [acted["proposal"]["tool"]]
    assert statuses.count("executed") == 1, statuses


def test_a_human_cannot_approve_a_request_the_agent_already_superseded(tmp_path) -> None:
    agent, states = _held_then_lasting(tmp_path)
    request = next(s["decision_id"] for s in states if s["execution"]["status"] == "escalated")
    with pytest.raises(ApprovalNotPending):
        nodes.resume_approval(agent.services, request, {"approved": True, "approver": "op-alice", "note": None})
    assert agent.services.approvals.get(request).status == SUPERSEDED


def test_a_request_a_human_answered_first_is_not_repeated_on_the_agents_own_authority(tmp_path) -> None:
    agent = make_agent("latency_degradation", durable=True, state_dir=tmp_path / "s")
    states = run(agent, 6)
    request = next(s["decision_id"] for s in states if s["execution"]["status"] == "escalated")
    # The human's answer lands between the agent reading the book and closing the request.
    assert agent.services.approvals.decide(request, APPROVED, "op-alice", None, agent.services.clock())
    refusal = supersede(agent.services, request, "d-next")
    assert refusal is not None and "answered first (approved)" in refusal
    assert agent.services.approvals.get(request).status == APPROVED  # the human's answer stands


def test_a_move_an_operator_rejected_is_asked_again_not_made_alone(tmp_path) -> None:
    # Before: the request was rejected ("known maintenance") and the very next window made the same
    # reroute on the agent's own authority, because the evidence had become strong enough.
    agent = make_agent("latency_degradation", durable=True, state_dir=tmp_path / "s")
    states = run(agent, 6)
    held = next(s for s in states if s["execution"]["status"] == "escalated")
    nodes.resume_approval(agent.services, held["decision_id"],
                          {"approved": False, "approver": "operator:0123456789ab", "note": "known maintenance"})
    again = agent.tick().state
    assert (again["proposal"]["tool"], again["proposal"]["target"]) == (
        held["proposal"]["tool"], held["proposal"]["target"])
    assert again["execution"]["status"] == "escalated", again["execution"]
    said_no = next(r for r in again["verdict"]["results"] if r["rule"] == "human_said_no")
    assert said_no["verdict"] == "needs_approval" and held["decision_id"] in said_no["reason"]
    assert agent.services.control_plane.in_force() == []
    later = run(agent, 2)
    assert all(s["execution"]["status"] != "executed" for s in later)  # the new request waits for a human
    # Rejected again, at the confidence it was asked at: the same move is denied, not put to them every minute.
    nodes.resume_approval(agent.services, again["decision_id"],
                          {"approved": False, "approver": "operator:0123456789ab", "note": "still maintenance"})
    after = run(agent, 2)
    assert [s["execution"]["status"] for s in after] == ["denied", "denied"], [s["execution"] for s in after]
    assert agent.services.approvals.by_status("pending") == [] and agent.services.control_plane.in_force() == []


def test_an_answer_the_trail_missed_in_a_kill_is_written_from_the_book(tmp_path) -> None:
    # The approval graph writes the book, then the trail: a kill between them left the trail without it.
    agent = make_agent("latency_degradation", durable=True, state_dir=tmp_path / "s")
    states = run(agent, 6)
    held = next(s for s in states if s["execution"]["status"] == "escalated")["decision_id"]
    svc = agent.services
    assert svc.approvals.decide(held, SUPERSEDED, "system", "superseded: at d-next", svc.clock())
    assert not [e for e in svc.audit.get(held) if e.kind == "approval"]
    agent.tick()
    records = [e.record for e in svc.audit.get(held) if e.kind == "approval"]
    assert [(r["status"], r["approver"]) for r in records] == [(SUPERSEDED, "system")]
    agent.tick()
    assert len([e for e in svc.audit.get(held) if e.kind == "approval"]) == 1  # written once


def test_an_approval_the_trail_missed_is_written_once_when_housekeeping_applies_it(tmp_path) -> None:
    # An operator's "yes" reached the book, not the trail: housekeeping applies it and records the answer
    # (waiting-request check and application share one writer, so it is written once).
    agent = make_agent("latency_degradation", durable=True, state_dir=tmp_path / "s")
    states = run(agent, 6)
    held = next(s for s in states if s["execution"]["status"] == "escalated")["decision_id"]
    svc = agent.services
    assert svc.approvals.decide(held, APPROVED, "operator:0123456789ab", None, svc.clock())
    agent.tick()
    agent.tick()
    records = [e.record for e in svc.audit.get(held) if e.kind == "approval"]
    assert [(r["status"], r["approver"]) for r in records] == [(APPROVED, "operator:0123456789ab")]


def test_the_losing_answer_of_a_race_is_not_written_as_the_answer(tmp_path) -> None:
    from types import SimpleNamespace

    from payops.graph.approval import record_decision
    from payops.graph.services import Context

    agent = make_agent("latency_degradation", durable=True, state_dir=tmp_path / "s")
    states = run(agent, 6)
    held = next(s for s in states if s["execution"]["status"] == "escalated")
    svc = agent.services
    # The operator's answer closed the request (book and trail) while the agent's supersession was under way.
    nodes.resume_approval(svc, held["decision_id"],
                          {"approved": True, "approver": "operator:0123456789ab", "note": None})
    lost = record_decision({"request": {"decision_id": held["decision_id"], "proposal": held["proposal"]},
                            "answer": {"approved": False, "approver": "system", "note": "superseded"},
                            "status": SUPERSEDED},
                           SimpleNamespace(context=Context(services=svc)))
    assert lost == {"status": APPROVED}
    records = [e.record for e in svc.audit.get(held["decision_id"]) if e.kind == "approval"]
    assert [(r["status"], r["approver"]) for r in records] == [(APPROVED, "operator:0123456789ab")]


def test_an_expired_request_is_not_a_human_no(tmp_path) -> None:
    agent, states = _held_then_lasting(tmp_path)  # the request superseded (system), then the move ran
    assert [s["execution"]["status"] for s in states].count("executed") == 1
    verdicts = [r for s in states for r in s["verdict"]["results"] if r["rule"] == "human_said_no"]
    assert verdicts and all(r["verdict"] == "allow" for r in verdicts)
