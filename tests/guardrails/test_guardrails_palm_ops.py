"""Palm-pay tools run through PalmPayService (not the traffic control plane), once per decision,
with the backend's consecutive failures feeding the spec's escalation trigger."""

from __future__ import annotations

import pytest
from guardrails_helpers import StubReasoner

from payops.graph.approval import resume
from payops.palmpay import PalmPayError
from payops.tools.actions import validate_proposal
from payops.tools.control_plane import SimulatedControlPlane
from payops.tools.palm_ops import ACTOR, PalmOps

ALICE = "operator:a11ce0000001"  # an authenticated operator (API key id), as `payops approve` records her


def suspend(link: str, reason: str = "fraud review") -> object:
    return validate_proposal("suspend_palm_link", {"palm_pay_id": link, "reason": reason})


def fail_payments(backend, index: int, n: int) -> None:
    """n refused payments on one link (over its per-transaction limit: no fraud suspension involved)."""
    for _ in range(n):
        with pytest.raises(PalmPayError):
            backend.service.pay(backend.template_refs[index], "999999", "T1", True, 0.99)


def test_act_sends_palm_tools_to_the_palm_backend(make_agent, palm_backend) -> None:
    link = palm_backend.links[0]
    control_plane = SimulatedControlPlane()
    agent = make_agent(StubReasoner(suspend(link)), palm=PalmOps(palm_backend.service), control_plane=control_plane)
    state = agent.tick().state
    assert state["execution"]["status"] == "executed", state["verdict"]
    assert state["proposal"]["target"] == {"palm_pay_id": link}
    assert palm_backend.service.show(link).link_status == "suspended"
    assert control_plane.history == [] and control_plane.in_force() == []  # not the traffic control plane
    ours = [e for e in palm_backend.service.audit_log(link) if e.actor == ACTOR]
    assert len(ours) == 1 and ours[0].action == "suspend" and ours[0].reason.startswith(f"[{state['decision_id']}]")


def test_one_decision_is_applied_once(palm_backend) -> None:
    ops = PalmOps(palm_backend.service)
    link = palm_backend.links[0]
    first = ops.execute(suspend(link), "d-0001")
    again = ops.execute(suspend(link), "d-0001")
    assert first.status == again.status == "executed"
    assert "idempotent replay" in again.detail
    # a fresh PalmOps (another process, after a restart) finds the earlier application too
    assert "idempotent replay" in PalmOps(palm_backend.service).execute(suspend(link), "d-0001").detail
    applied = [e for e in palm_backend.service.audit_log(link) if e.actor == ACTOR and e.outcome == "applied"]
    assert len(applied) == 1


def test_backend_refusals_become_failed_results_not_exceptions(palm_backend) -> None:
    ops = PalmOps(palm_backend.service)
    link = palm_backend.links[0]
    reactivate = validate_proposal("reactivate_palm_link", {"palm_pay_id": link})
    result = ops.execute(reactivate, "d-0002")  # active -> active is not a transition the spec allows
    assert result.status == "failed" and "PALM_PAY_ILLEGAL_TRANSITION" in result.detail
    missing = ops.execute(suspend("pp_doesnotexist"), "d-0003")
    assert missing.status == "failed" and "PALM_PAY_LINK_NOT_FOUND" in missing.detail


def test_reason_text_is_masked_before_it_reaches_the_backend(palm_backend) -> None:
    ops = PalmOps(palm_backend.service)
    link = palm_backend.links[0]
    ops.execute(suspend(link, reason=f"customer on {palm_backend.proxies[0]} called"), "d-0004")
    reasons = " ".join(e.reason or "" for e in palm_backend.service.audit_log(link))
    assert palm_backend.proxies[0] not in reasons and palm_backend.proxies[0][-4:] in reasons


@pytest.mark.parametrize("failures, expected", [(3, "executed"), (4, "escalated")])
def test_consecutive_failures_from_the_backend_fire_the_trigger(make_agent, palm_backend, failures, expected) -> None:
    """consecutive_failures > 3 (the spec): the fourth failure in a row on the link escalates."""
    link = palm_backend.links[1]
    fail_payments(palm_backend, 1, failures)
    ops = PalmOps(palm_backend.service)
    assert ops.consecutive_failures(link) == failures
    agent = make_agent(StubReasoner(suspend(link)), palm=ops)
    state = agent.tick().state
    assert state["execution"]["status"] == expected
    assert state["verdict"]["palm_metrics"]["consecutive_failures"] == failures
    trigger = next(r for r in state["verdict"]["results"] if r["rule"] == "escalation_trigger")
    assert (trigger["verdict"] == "needs_approval") == (failures > 3)


def test_a_success_resets_the_streak(palm_backend) -> None:
    ops = PalmOps(palm_backend.service)
    link = palm_backend.links[2]
    fail_payments(palm_backend, 2, 5)
    assert ops.consecutive_failures(link) == 5
    palm_backend.service.pay(palm_backend.template_refs[2], "10", "T1", True, 0.99)
    assert ops.consecutive_failures(link) == 0
    fail_payments(palm_backend, 2, 1)
    assert ops.consecutive_failures(link) == 1
    assert ops.consecutive_failures(palm_backend.links[0]) == 0


def test_revoke_waits_for_a_human_and_then_runs_once(make_agent, palm_backend) -> None:
    link = palm_backend.links[0]
    reasoner = StubReasoner(validate_proposal("revoke_palm_link", {"palm_pay_id": link, "reason": "customer request"}))
    agent = make_agent(reasoner, palm=PalmOps(palm_backend.service))
    state = agent.tick().state
    assert state["execution"]["status"] == "escalated"
    blocking = {r["rule"] for r in state["verdict"]["results"] if r["verdict"] != "allow"}
    assert {"permission", "human_checkpoint", "irreversible"} <= blocking
    assert palm_backend.service.show(link).link_status == "active"

    resume(agent.services, state["decision_id"], {"approved": True, "approver": ALICE, "note": "confirmed by phone"})
    reasoner.propose(validate_proposal("no_action", {"reason": "done"}))
    after = agent.tick().state
    applied = [n for n in after["housekeeping"] if n["op"] == "approved_action_applied"]
    assert len(applied) == 1 and applied[0]["status"] == "executed" and applied[0]["approver"] == ALICE
    assert palm_backend.service.show(link).link_status == "revoked"
    agent.tick()
    revokes = [e for e in palm_backend.service.audit_log(link) if e.action == "revoke" and e.outcome == "applied"]
    assert len(revokes) == 1 and f"approved by {ALICE}" in revokes[0].reason


def test_no_backend_attached_fails_with_a_reason(make_agent, palm_backend) -> None:
    agent = make_agent(StubReasoner(suspend(palm_backend.links[0])), durable=False)  # in-memory: no palm backend
    state = agent.tick().state
    assert state["execution"]["status"] == "failed"
    assert "palm-pay backend not attached" in state["execution"]["detail"]
