"""Payments: every spec outcome, error and event; limits; daily reset (DST); fraud rule; idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from payops.palmpay import IllegalTransitionError, ManualClock, PalmPayError

# --- every spec outcome emits exactly the spec's event and payload keys ------------------


def test_all_spec_events_have_exactly_the_spec_payload_keys(service, enroll, spec_raw):
    view, ref, _ = enroll(daily_limit=100, transaction_limit=60)  # link.created + link.verified
    service.pay(ref, 50, "T1", True, 0.99)  # payment.resolved + payment.completed
    with pytest.raises(PalmPayError):
        service.pay(ref, 61, "T1", True, 0.99)  # transaction_limit.exceeded
    with pytest.raises(PalmPayError):
        service.pay(ref, 51, "T1", True, 0.99)  # limit.exceeded (50 + 51 > 100)
    with pytest.raises(PalmPayError):
        service.pay("tmpl-nobody-enrolled", 5, "T2", True, 0.99)  # palm.not_registered
    service.suspend(view.palm_pay_id, "user request", "operator:a11ce0000001")
    with pytest.raises(PalmPayError):
        service.pay(ref, 5, "T1", True, 0.99)  # link.inactive
    service.revoke(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")  # link.revoked

    expected = {e["name"]: e["payload"] for e in spec_raw["events"]}
    seen = {}
    for event in service.consume(limit=1000):
        assert event.name in expected, event.name
        assert list(event.payload) == expected[event.name], event.name
        seen.setdefault(event.name, event.payload)
    assert set(seen) == set(expected)
    # Sensitive payload values are masked; money is exact decimal text.
    assert seen["palm_pay.link.verified"]["payshap_proxy"].startswith("******")
    assert seen["palm_pay.payment.completed"]["amount"] == "50.00"
    assert seen["palm_pay.limit.exceeded"]["daily_spent"] == "50.00"
    assert seen["palm_pay.limit.exceeded"]["daily_limit"] == "100.00"
    assert seen["palm_pay.link.inactive"]["link_status"] == "suspended"
    assert seen["palm_pay.palm.not_registered"] == {"terminal_id": "T2"}


def test_outbox_ids_increase_and_consume_pages(service, enroll):
    _, ref, _ = enroll()
    for _ in range(5):
        service.pay(ref, 1, "T1", True, 0.99)
    everything = service.consume(limit=1000)
    ids = [e.id for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    page1 = service.consume(after_id=0, limit=4)
    page2 = service.consume(after_id=page1[-1].id, limit=1000)
    assert [e.id for e in page1 + page2] == ids


# --- every spec error: code, HTTP status, message, card fallback ---------------------------


def _trigger(code, service, enroll, clock, otp):
    if code == "PALM_PAY_NOT_REGISTERED":
        service.pay("tmpl-nobody-enrolled", 5, "T1", True, 0.99)
    elif code == "PALM_PAY_LINK_INACTIVE":
        view, ref, _ = enroll()
        service.suspend(view.palm_pay_id, "fraud alert", "operator:a11ce0000001")
        service.pay(ref, 5, "T1", True, 0.99)
    elif code == "PALM_PAY_DAILY_LIMIT":
        _, ref, _ = enroll(daily_limit=10, transaction_limit=10)
        service.pay(ref, 10, "T1", True, 0.99)
        service.pay(ref, 1, "T1", True, 0.99)
    elif code == "PALM_PAY_TRANSACTION_LIMIT":
        _, ref, _ = enroll(transaction_limit=10)
        service.pay(ref, Decimal("10.01"), "T1", True, 0.99)
    elif code == "PALM_PAY_VERIFICATION_EXPIRED":
        view, delivery = service.create_link("u-exp", "tmpl-expiring-01", None, "0821110000", "phone")
        clock.advance(timedelta(hours=24, seconds=1))
        service.verify(view.palm_pay_id, otp.code_for(delivery))
    elif code == "PALM_PAY_DUPLICATE_PALM":
        _, ref, _ = enroll()
        service.create_link("u-dup", ref, None, "0821110001", "phone")
    elif code == "PALM_PAY_SPOOF_DETECTED":
        _, ref, _ = enroll()
        service.pay(ref, 5, "T1", False, 0.99)


@pytest.mark.parametrize(
    "code",
    [
        "PALM_PAY_NOT_REGISTERED",
        "PALM_PAY_LINK_INACTIVE",
        "PALM_PAY_DAILY_LIMIT",
        "PALM_PAY_TRANSACTION_LIMIT",
        "PALM_PAY_VERIFICATION_EXPIRED",
        "PALM_PAY_DUPLICATE_PALM",
        "PALM_PAY_SPOOF_DETECTED",
    ],
)
def test_each_spec_error_is_raised_exactly_as_the_spec_says(code, service, enroll, clock, otp, spec_raw):
    entry = next(e for e in spec_raw["errors"] if e["code"] == code)
    with pytest.raises(PalmPayError) as err:
        _trigger(code, service, enroll, clock, otp)
    assert (err.value.code, err.value.status, err.value.message) == (entry["code"], entry["status"], entry["message"])
    assert err.value.fallback == "card"
    assert err.value.to_dict()["fallback"] == "card"
    assert str(err.value) == f"{code}: {entry['message']}"


def test_the_spec_error_table_is_fully_covered_by_the_test_above(spec_raw):
    covered = set(test_each_spec_error_is_raised_exactly_as_the_spec_says.pytestmark[0].args[1])
    assert covered == {e["code"] for e in spec_raw["errors"]}


# --- completed payments ----------------------------------------------------------------------


def test_completed_payment_updates_daily_spent_and_reports_masked(service, enroll):
    view, ref, proxy = enroll()
    result = service.pay(ref, Decimal("12.50"), "T1", True, 0.99)
    assert result.status == "completed" and result.fallback is None
    assert result.amount == Decimal("12.50") and result.payshap_proxy == "******" + proxy[-4:]
    assert service.show(view.palm_pay_id).daily_spent == Decimal("12.50")
    service.pay(ref, "0.50", "T1", True, 0.99)
    assert service.show(view.palm_pay_id).daily_spent == Decimal("13.00")


def test_amounts_must_be_exact(service, enroll):
    _, ref, _ = enroll()
    for bad in (12.5, "1.001", "abc", 0, -5, True):
        with pytest.raises(PalmPayError) as err:
            service.pay(ref, bad, "T1", True, 0.99)
        assert err.value.code == "PALM_PAY_INVALID_INPUT"


def test_transaction_limit_boundary(service, enroll):
    _, ref, _ = enroll(transaction_limit=100, daily_limit=1000)
    assert service.pay(ref, 100, "T1", True, 0.99).status == "completed"
    with pytest.raises(PalmPayError, match="PALM_PAY_TRANSACTION_LIMIT"):
        service.pay(ref, Decimal("100.01"), "T1", True, 0.99)


def test_daily_limit_boundary_and_no_resolve_once_reached(service, enroll):
    _, ref, _ = enroll(transaction_limit=100, daily_limit=150)
    service.pay(ref, 100, "T1", True, 0.99)
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay(ref, Decimal("50.01"), "T1", True, 0.99)
    assert service.pay(ref, 50, "T1", True, 0.99).status == "completed"  # exactly the limit is allowed
    before = service.consume(limit=1000)[-1].id
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay(ref, Decimal("0.01"), "T1", True, 0.99)
    # daily_spent >= daily_limit: refused before the proxy is resolved.
    assert [e.name for e in service.consume(after_id=before)] == ["palm_pay.limit.exceeded"]


def test_zero_daily_limit_refuses_everything(service, enroll):
    _, ref, _ = enroll(daily_limit=0)
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay(ref, "0.01", "T1", True, 0.99)


def test_inactive_states_refuse_with_link_status(service, enroll, otp):
    pending, pending_ref, _ = enroll(verify=False)
    with pytest.raises(PalmPayError, match="PALM_PAY_LINK_INACTIVE"):
        service.pay(pending_ref, 5, "T1", True, 0.99)
    revoked, revoked_ref, _ = enroll()
    service.revoke(revoked.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    with pytest.raises(PalmPayError, match="PALM_PAY_LINK_INACTIVE"):
        service.pay(revoked_ref, 5, "T1", True, 0.99)
    statuses = [e.payload["link_status"] for e in service.consume(limit=1000) if e.name == "palm_pay.link.inactive"]
    assert statuses == ["pending_verification", "revoked"]


# --- liveness and matching --------------------------------------------------------------------


def test_liveness_is_checked_before_matching(service, enroll):
    view, ref, _ = enroll()
    before = service.consume(limit=1000)[-1].id
    for _ in range(5):
        with pytest.raises(PalmPayError, match="PALM_PAY_SPOOF_DETECTED"):
            service.pay(ref, 5, "T1", False, 0.3)
    assert service.consume(after_id=before) == []  # no lookup, no resolve, no match failure
    assert service.show(view.palm_pay_id).link_status == "active"
    events = [r.event for r in service.payment_events_after()]
    assert {e["error_code"] for e in events} == {"PALM_PAY_SPOOF_DETECTED"}
    assert all("palm_pay_id" not in e for e in events)


def test_match_must_exceed_the_threshold(service, enroll):
    _, ref, _ = enroll()
    with pytest.raises(PalmPayError, match="PALM_PAY_NOT_REGISTERED"):
        service.pay(ref, 5, "T1", True, 0.95)
    assert service.pay(ref, 5, "T1", True, 0.9501).status == "completed"


def test_threshold_is_configurable(make_service, otp):
    service = make_service(match_threshold=0.80)
    view, delivery = service.create_link("u1", "tmpl-threshold-1", None, "0821234321", "phone")
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    assert service.pay("tmpl-threshold-1", 5, "T1", True, 0.81).status == "completed"


def test_three_failed_matches_in_five_minutes_suspend_for_review(service, enroll, clock):
    view, ref, _ = enroll()
    for _ in range(2):
        with pytest.raises(PalmPayError, match="PALM_PAY_NOT_REGISTERED"):
            service.pay(ref, 5, "T1", True, 0.4)
        clock.advance(timedelta(minutes=2))
    assert service.show(view.palm_pay_id).link_status == "active"
    with pytest.raises(PalmPayError, match="PALM_PAY_NOT_REGISTERED"):
        service.pay(ref, 5, "T1", True, 0.4)
    assert service.show(view.palm_pay_id).link_status == "suspended"
    (entry,) = [a for a in service.audit_log(view.palm_pay_id) if a.action == "fraud_suspension"]
    assert entry.outcome == "applied" and "review" in entry.reason
    with pytest.raises(PalmPayError, match="PALM_PAY_LINK_INACTIVE"):
        service.pay(ref, 5, "T1", True, 0.99)
    # After review the history is cleared: one more failure does not re-suspend.
    service.reactivate(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    with pytest.raises(PalmPayError):
        service.pay(ref, 5, "T1", True, 0.4)
    assert service.show(view.palm_pay_id).link_status == "active"


def test_failed_matches_spread_over_more_than_five_minutes_do_not_suspend(service, enroll, clock):
    view, ref, _ = enroll()
    for _ in range(6):
        with pytest.raises(PalmPayError):
            service.pay(ref, 5, "T1", True, 0.4)
        clock.advance(timedelta(minutes=2, seconds=31))
    assert service.show(view.palm_pay_id).link_status == "active"


# --- daily reset at local midnight, across DST ----------------------------------------------


def _fill_day(service, ref, limit):
    service.pay(ref, limit, "T1", True, 0.99)
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay(ref, 1, "T1", True, 0.99)


@pytest.mark.parametrize(
    "zone, before_midnight_utc, after_midnight_utc",
    [
        # Johannesburg (no DST): local midnight is 22:00 UTC.
        ("Africa/Johannesburg", datetime(2025, 6, 2, 21, 59, 59), datetime(2025, 6, 2, 22, 0, 0)),
        # London, the night clocks go forward (30 Mar 2025 01:00 GMT -> 02:00 BST): midnight is 00:00 UTC.
        ("Europe/London", datetime(2025, 3, 29, 23, 59, 59), datetime(2025, 3, 30, 0, 0, 0)),
        # London, the first midnight after the change is 23:00 UTC (BST).
        ("Europe/London", datetime(2025, 3, 30, 22, 59, 59), datetime(2025, 3, 30, 23, 0, 0)),
        # New York after spring forward (9 Mar 2025): midnight is 04:00 UTC, not 05:00.
        ("America/New_York", datetime(2025, 3, 10, 3, 59, 59), datetime(2025, 3, 10, 4, 0, 0)),
        # New York after fall back (2 Nov 2025): midnight is 05:00 UTC again.
        ("America/New_York", datetime(2025, 11, 3, 4, 59, 59), datetime(2025, 11, 3, 5, 0, 0)),
    ],
)
def test_daily_counter_resets_exactly_at_local_midnight(
        make_service, otp, zone, before_midnight_utc, after_midnight_utc):
    before = before_midnight_utc.replace(tzinfo=UTC)
    after = after_midnight_utc.replace(tzinfo=UTC)
    clock = ManualClock(before - timedelta(hours=1))
    service = make_service(timezone=zone, clock_=clock)
    view, delivery = service.create_link("u1", "tmpl-midnight-01", None, "0821234321", "phone", 100, 100)
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    clock.set(before)
    _fill_day(service, "tmpl-midnight-01", 100)
    assert service.show(view.palm_pay_id).daily_spent == Decimal("100")
    clock.set(after)
    assert service.show(view.palm_pay_id).daily_spent == Decimal("0")
    assert service.pay("tmpl-midnight-01", 100, "T1", True, 0.99).status == "completed"
    assert after.astimezone(ZoneInfo(zone)).time().isoformat() == "00:00:00"


def test_the_long_fall_back_day_resets_once(make_service, otp):
    # 2 Nov 2025 in New York has 25 hours: 04:00 UTC (00:00 EDT) to 05:00 UTC next day (00:00 EST).
    clock = ManualClock(datetime(2025, 11, 2, 4, 0, 0, tzinfo=UTC))
    service = make_service(timezone="America/New_York", clock_=clock)
    view, delivery = service.create_link("u1", "tmpl-fallback-01", None, "0821234321", "phone", 100, 100)
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    _fill_day(service, "tmpl-fallback-01", 100)
    clock.advance(timedelta(hours=24, minutes=30))  # 24.5 h later it is still 2 Nov locally (23:30 EST)
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay("tmpl-fallback-01", 1, "T1", True, 0.99)
    clock.advance(timedelta(minutes=30))
    assert service.pay("tmpl-fallback-01", 1, "T1", True, 0.99).status == "completed"


# --- CONTRACT §1 payment events ------------------------------------------------------------


def test_payment_events_follow_the_contract(service, enroll, clock):
    view, ref, _ = enroll(transaction_limit=10)
    service.pay(ref, Decimal("7.25"), "T9", True, 0.99)
    with pytest.raises(PalmPayError):
        service.pay(ref, 11, "T9", True, 0.99)
    ok, refused = [r.event for r in service.payment_events_after()]
    assert ok == {
        "ts": clock().timestamp(),
        "payment_id": ok["payment_id"],
        "attempt": 1,
        "amount": 7.25,
        "currency": "ZAR",
        "method": "palm",
        "route": "payshap_rail",
        "bank": "FNB",
        "issuer": "PAYSHAP",
        "status": "success",
        "error_code": None,
        "latency_ms": ok["latency_ms"],
        "terminal_id": "T9",
        "palm_pay_id": view.palm_pay_id,
    }
    assert ok["latency_ms"] >= 0
    assert refused["status"] == "failure" and refused["error_code"] == "PALM_PAY_TRANSACTION_LIMIT"
    assert refused["payment_id"] != ok["payment_id"]


def test_unknown_bank_and_reader_cursor(service, enroll):
    _, ref, _ = enroll(bank=None)
    for _ in range(3):
        service.pay(ref, 1, "T1", True, 0.99)
    first = service.payment_events_after(0, limit=2)
    rest = service.payment_events_after(first[-1].id)
    assert len(first) == 2 and len(rest) == 1
    assert {r.event["bank"] for r in first + rest} == {"unknown"}


def test_retried_refusals_with_an_idempotency_key_count_attempts(service, enroll):
    _, ref, _ = enroll(daily_limit=10, transaction_limit=10)
    service.pay(ref, 10, "T1", True, 0.99)
    for _ in range(2):
        with pytest.raises(PalmPayError):
            service.pay(ref, 5, "T1", True, 0.99, idempotency_key="till-7-0042")
    attempts = [r.event["attempt"] for r in service.payment_events_after() if r.event["payment_id"] == "till-7-0042"]
    assert attempts == [1, 2]


# --- idempotency ---------------------------------------------------------------------------


def test_same_idempotency_key_never_charges_twice(service, enroll):
    view, ref, _ = enroll()
    first = service.pay(ref, 20, "T1", True, 0.99, idempotency_key="till-1-0001")
    again = service.pay(ref, 20, "T1", True, 0.99, idempotency_key="till-1-0001")
    assert first.status == again.status == "completed"
    assert again.replayed and again.payment_id == first.payment_id
    assert service.show(view.palm_pay_id).daily_spent == Decimal("20")
    assert service.rail.charges == {"till-1-0001": 1}
    with pytest.raises(PalmPayError) as err:
        service.pay(ref, 21, "T1", True, 0.99, idempotency_key="till-1-0001")
    assert err.value.code == "PALM_PAY_IDEMPOTENCY_CONFLICT"


@pytest.mark.parametrize("changed", [dict(terminal_id="T2"), dict(match_score=0.97)], ids=["terminal", "score"])
def test_a_replay_with_another_body_is_a_conflict_not_the_stored_payment(service, enroll, changed):
    _view, ref, _ = enroll()
    first = dict(terminal_id="T1", match_score=0.99)
    service.pay(ref, 20, first["terminal_id"], True, first["match_score"], idempotency_key="till-1-0002")
    replay = {**first, **changed}
    with pytest.raises(PalmPayError) as err:
        service.pay(ref, 20, replay["terminal_id"], True, replay["match_score"], idempotency_key="till-1-0002")
    assert err.value.code == "PALM_PAY_IDEMPOTENCY_CONFLICT" and err.value.status == 409
    with service.store.read() as tx:
        stored = tx.payment("till-1-0002").fingerprint
    assert stored and ref not in stored and len(stored) == 64


# --- illegal transitions are refused and audited ---------------------------------------------


def test_illegal_transitions_are_refused_and_audited(service, enroll):
    view, _, _ = enroll()
    with pytest.raises(IllegalTransitionError):
        # active -> active
        service.reactivate(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    service.revoke(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    for call in (
        lambda: service.suspend(view.palm_pay_id, "late", "operator:a11ce0000001"),
        lambda: service.reactivate(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002"),
        lambda: service.revoke(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002"),
    ):
        with pytest.raises(IllegalTransitionError) as err:
            call()
        assert err.value.status == 409 and err.value.fallback == "card"
        assert "revoked" not in err.value.message  # message is generic; the states are in .detail
    assert service.show(view.palm_pay_id).link_status == "revoked"
    refused = [(a.action, a.from_status, a.to_status)
               for a in service.audit_log(view.palm_pay_id) if a.outcome == "refused"]
    assert refused == [
        ("reactivate", "active", "active"),
        ("suspend", "revoked", "suspended"),
        ("reactivate", "revoked", "active"),
        ("revoke", "revoked", "revoked"),
    ]


def test_every_applied_transition_is_allowed_by_the_spec(service, enroll, spec):
    a, _, _ = enroll()
    b, _, _ = enroll(verify=False)
    service.suspend(a.palm_pay_id, "x", "operator:a11ce0000001")
    service.reactivate(a.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    service.suspend(a.palm_pay_id, "x", "operator:a11ce0000001")
    service.revoke(a.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    service.revoke(b.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    applied = [(e.from_status, e.to_status) for e in service.audit_log() if e.outcome == "applied" and e.from_status]
    assert applied and all(spec.can_transition(*pair) for pair in applied)
