"""The two-person rule and authenticated actors in the service layer (CLI, HTTP and agent all call it)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from payops.palmpay import PalmPayError
from payops.palmpay.actors import AGENT, BACKEND

ALICE, BOB, CAROL = "operator:a11ce0000001", "operator:b0b000000002", "operator:ca401000003a"
TERMINAL = "terminal:7e4a10000004"


def _refused(call, code: str) -> PalmPayError:
    with pytest.raises(PalmPayError) as refused:
        call()
    assert refused.value.code == code, refused.value.code
    return refused.value


def test_an_operators_revocation_waits_for_a_second_operator_and_runs_once(service, enroll):
    view, _ref, _proxy = enroll()
    request = service.request_change("revoke", requested_by=ALICE, palm_pay_id=view.palm_pay_id, reason="lost card")
    assert request.status == "pending" and service.show(view.palm_pay_id).link_status == "active"
    done = service.approve_request(request.request_id, approved_by=BOB)
    assert done.status == "executed" and done.decided_by == BOB
    assert service.show(view.palm_pay_id).link_status == "revoked"
    _refused(lambda: service.approve_request(request.request_id, approved_by=CAROL), "PALM_PAY_REQUEST_NOT_PENDING")
    revokes = [e for e in service.audit_log(view.palm_pay_id) if e.action == "revoke" and e.outcome == "applied"]
    assert len(revokes) == 1 and revokes[0].actor == ALICE and f"approved by {BOB}" in revokes[0].reason


def test_a_human_revocation_without_a_second_operator_is_refused_and_audited(service, enroll):
    view, _ref, _proxy = enroll()
    _refused(lambda: service.revoke(view.palm_pay_id, ALICE), "PALM_PAY_NOT_AUTHORISED")
    _refused(lambda: service.revoke(view.palm_pay_id, ALICE, approved_by=ALICE), "PALM_PAY_NOT_AUTHORISED")
    assert service.show(view.palm_pay_id).link_status == "active"
    refusals = [e for e in service.audit_log(view.palm_pay_id) if e.outcome == "refused"]
    assert len(refusals) == 2 and all(e.action == "revoke" for e in refusals)


def test_a_typed_actor_or_a_terminal_cannot_revoke_or_suspend(service, enroll):
    view, _ref, _proxy = enroll()
    for actor in ("anyone", "ops:alice", TERMINAL, f"customer@{TERMINAL}"):
        _refused(lambda a=actor: service.revoke(view.palm_pay_id, a, approved_by=BOB), "PALM_PAY_NOT_AUTHORISED")
        _refused(lambda a=actor: service.suspend(view.palm_pay_id, "x", a), "PALM_PAY_NOT_AUTHORISED")
    assert service.show(view.palm_pay_id).link_status == "active"


def test_the_requester_cannot_approve_their_own_request(service, enroll):
    view, _ref, _proxy = enroll()
    request = service.request_change("revoke", requested_by=ALICE, palm_pay_id=view.palm_pay_id)
    _refused(lambda: service.approve_request(request.request_id, approved_by=ALICE), "PALM_PAY_NOT_AUTHORISED")
    _refused(lambda: service.approve_request(request.request_id, approved_by="alice"), "PALM_PAY_NOT_AUTHORISED")
    assert service.change_request(request.request_id).status == "pending"


def test_a_request_nobody_approves_in_time_expires_and_changes_nothing(service, enroll, clock):
    view, _ref, _proxy = enroll()
    request = service.request_change("revoke", requested_by=ALICE, palm_pay_id=view.palm_pay_id)
    clock.advance(timedelta(seconds=service.options.change_request_ttl_s))
    _refused(lambda: service.approve_request(request.request_id, approved_by=BOB), "PALM_PAY_REQUEST_EXPIRED")
    assert service.change_request(request.request_id).status == "expired"
    assert service.show(view.palm_pay_id).link_status == "active"


def test_lifting_a_suspension_needs_two_operators_but_suspending_needs_one(service, enroll):
    view, _ref, _proxy = enroll()
    assert service.suspend(view.palm_pay_id, "fraud alert", ALICE).link_status == "suspended"
    _refused(lambda: service.reactivate(view.palm_pay_id, ALICE), "PALM_PAY_NOT_AUTHORISED")
    request = service.request_change("reactivate", requested_by=ALICE, palm_pay_id=view.palm_pay_id)
    service.approve_request(request.request_id, approved_by=BOB)
    assert service.show(view.palm_pay_id).link_status == "active"


def test_the_agent_revokes_only_with_one_authenticated_human_approval(service, enroll):
    view, _ref, _proxy = enroll()
    _refused(lambda: service.revoke(view.palm_pay_id, AGENT), "PALM_PAY_NOT_AUTHORISED")
    _refused(lambda: service.revoke(view.palm_pay_id, AGENT, approved_by="operator"), "PALM_PAY_NOT_AUTHORISED")
    assert service.revoke(view.palm_pay_id, AGENT, approved_by=ALICE).link_status == "revoked"


def test_the_backends_own_moves_stay_single_actor(service, enroll):
    view, _ref, _proxy = enroll()
    assert service.suspend(view.palm_pay_id, "fraud suspension", BACKEND).link_status == "suspended"
    assert service.reactivate(view.palm_pay_id, BACKEND).link_status == "active"


def test_a_limit_change_runs_after_a_second_operators_approval(service, enroll):
    view, _ref, _proxy = enroll(daily_limit=1000, transaction_limit=500)
    request = service.request_change("set_limits", requested_by=ALICE, palm_pay_id=view.palm_pay_id,
                                     args={"daily_limit": "2000", "transaction_limit": 800})
    assert service.show(view.palm_pay_id).daily_limit == Decimal("1000.00")
    service.approve_request(request.request_id, approved_by=BOB)
    shown = service.show(view.palm_pay_id)
    assert (shown.daily_limit, shown.transaction_limit) == (Decimal("2000.00"), Decimal("800.00"))


def test_a_key_rotation_by_a_human_needs_a_second_operator(service, enroll):
    enroll()
    _refused(lambda: service.rotate_key(actor=ALICE), "PALM_PAY_NOT_AUTHORISED")
    request = service.request_change("rotate_key", requested_by=ALICE)
    done = service.approve_request(request.request_id, approved_by=BOB)
    assert done.status == "executed" and done.result.startswith("active key ")
    assert [e.actor for e in service.audit_log() if e.action == "rotate_key"] == [ALICE]


def test_two_operators_approving_at_once_run_the_change_once(service, enroll):
    view, _ref, _proxy = enroll()
    request = service.request_change("revoke", requested_by=ALICE, palm_pay_id=view.palm_pay_id)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def approve(who: str) -> None:
        barrier.wait()
        try:
            outcomes.append(service.approve_request(request.request_id, approved_by=who).status)
        except PalmPayError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(who,)) for who in (BOB, CAROL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["PALM_PAY_REQUEST_NOT_PENDING", "executed"]
    assert sum(1 for e in service.audit_log(view.palm_pay_id) if e.action == "revoke" and e.outcome == "applied") == 1


def test_phone_numbers_and_emails_in_free_text_are_masked_before_storage(service, enroll):
    view, _ref, _proxy = enroll()
    service.suspend(view.palm_pay_id, "customer called from 082 555 0199, jo@example.com", ALICE)
    request = service.request_change("revoke", requested_by=ALICE, palm_pay_id=view.palm_pay_id,
                                     reason="account 62001234567 closed")
    with service.store.read() as tx:
        stored = " ".join(str(row) for table in ("audit_log", "change_requests", "palm_pay_links")
                          for row in tx.c.execute(f"SELECT * FROM {table}").fetchall())
    for secret in ("082 555 0199", "0825550199", "jo@example.com", "62001234567"):
        assert secret not in stored
    assert "******0199" in stored and request.reason == "account ******4567 closed"


def test_new_limits_apply_from_the_links_current_day_and_leave_past_days_as_they_were_paid(service, enroll, clock):
    view, ref, _proxy = enroll(daily_limit=1000)
    service.pay(ref, "400.00", "T1", liveness_passed=True, match_score=0.99)
    clock.advance(timedelta(days=1))
    service.pay(ref, "100.00", "T1", liveness_passed=True, match_score=0.99)
    request = service.request_change("set_limits", requested_by=ALICE, palm_pay_id=view.palm_pay_id,
                                     args={"daily_limit": "2000"})
    assert service.approve_request(request.request_id, approved_by=BOB).status == "executed"
    with service.store.read() as tx:
        limits = [limit for _link, _day, limit, _spent, _reserved in tx.ledger_rows()]
    assert limits == [100_000, 200_000]  # yesterday kept the limit it was paid under; today has the new one
