"""Rail calls: idempotency keys, safe retries only, timeouts left pending until reconcile."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from payops.palmpay import (
    PalmPayError,
    RailPaymentRequest,
    RailResult,
    RailTimeout,
    RailTransientError,
    SimulatedPayShapRail,
    SimulatedRailConfig,
)
from payops.palmpay.service import RECONCILE_GRACE_S


class ScriptedRail:
    """A rail that answers from a script: a result, or an exception to raise."""

    def __init__(self, *script, processed_on_timeout: bool = False) -> None:
        self.script = list(script)
        self.processed_on_timeout = processed_on_timeout
        self.requests: list[RailPaymentRequest] = []
        self.ledger: dict[str, RailResult] = {}

    def initiate_payment(self, request: RailPaymentRequest) -> RailResult:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else RailResult("completed", "ref")
        if isinstance(step, RailTimeout) and self.processed_on_timeout:
            self.ledger[request.idempotency_key] = RailResult("completed", "ref-late")
        if isinstance(step, Exception):
            raise step
        self.ledger[request.idempotency_key] = step
        return step

    def payment_status(self, idempotency_key: str) -> RailResult:
        return self.ledger.get(idempotency_key, RailResult("not_found"))


@pytest.fixture
def linked(make_service, otp):
    def build(rail, **limits):
        service = make_service(rail=rail)
        view, delivery = service.create_link(
            "u1", "tmpl-rail-000001", None, "0821234321", "phone", limits.get("daily", 100), limits.get("txn", 100)
        )
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        return service, view.palm_pay_id, "tmpl-rail-000001"

    return build


def test_transient_errors_are_retried_with_the_same_key(linked):
    rail = ScriptedRail(RailTransientError("NETWORK_ERROR"), RailTransientError("ISSUER_DOWN"))
    service, link_id, ref = linked(rail)
    result = service.pay(ref, 30, "T1", True, 0.99)
    assert result.status == "completed" and result.attempts == 3
    assert len({r.idempotency_key for r in rail.requests}) == 1 and len(rail.requests) == 3
    assert rail.requests[0].proxy == "0821234321"  # the rail is the one place plaintext goes
    events = [r.event for r in service.payment_events_after()]
    assert [(e["attempt"], e["status"], e["error_code"]) for e in events] == [
        (1, "failure", "NETWORK_ERROR"),
        (2, "failure", "ISSUER_DOWN"),
        (3, "success", None),
    ]
    assert {e["payment_id"] for e in events} == {result.payment_id}
    assert service.show(link_id).daily_spent == Decimal("30")


def test_exhausted_retries_fail_release_the_hold_and_offer_card(linked):
    rail = ScriptedRail(*[RailTransientError("NETWORK_ERROR")] * 3)
    service, link_id, ref = linked(rail)
    result = service.pay(ref, 30, "T1", True, 0.99)
    assert (result.status, result.error_code, result.fallback, result.attempts) == (
        "failed",
        "NETWORK_ERROR",
        "card",
        3,
    )
    view = service.show(link_id)
    assert view.daily_spent == 0 and view.reserved == 0
    assert not [e for e in service.consume(limit=100) if e.name == "palm_pay.payment.completed"]


def test_a_decline_is_not_retried(linked):
    rail = ScriptedRail(RailResult("failed", None, "INSUFFICIENT_FUNDS"))
    service, link_id, ref = linked(rail)
    result = service.pay(ref, 30, "T1", True, 0.99)
    assert (result.status, result.error_code, result.attempts) == ("failed", "INSUFFICIENT_FUNDS", 1)
    assert len(rail.requests) == 1
    assert service.show(link_id).daily_spent == 0


def test_a_timeout_is_not_retried_and_stays_pending_with_the_amount_held(linked):
    rail = ScriptedRail(RailTimeout("GATEWAY_TIMEOUT"), processed_on_timeout=True)
    service, link_id, ref = linked(rail, daily=100)
    result = service.pay(ref, 80, "T1", True, 0.99)
    assert result.status == "pending" and result.fallback is None and len(rail.requests) == 1
    view = service.show(link_id)
    assert view.reserved == Decimal("80") and view.daily_spent == 0
    # The held amount still counts: 80 pending + 30 > 100.
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay(ref, 30, "T1", True, 0.99)
    (event,) = [r.event for r in service.payment_events_after() if r.event["payment_id"] == result.payment_id]
    assert (event["status"], event["error_code"], event.get("pending")) == ("failure", "GATEWAY_TIMEOUT", True)


def test_reconcile_settles_a_processed_timeout_once(linked, clock):
    rail = ScriptedRail(RailTimeout("GATEWAY_TIMEOUT"), processed_on_timeout=True)
    service, link_id, ref = linked(rail)
    result = service.pay(ref, 80, "T1", True, 0.99)
    assert service.reconcile().still_pending == 0  # too young: may still be in flight
    assert service.show(link_id).reserved == Decimal("80")
    clock.advance(RECONCILE_GRACE_S)
    report = service.reconcile()
    assert (report.completed, report.failed, report.still_pending) == (1, 0, 0)
    view = service.show(link_id)
    assert view.daily_spent == Decimal("80") and view.reserved == 0
    assert service.reconcile().completed == 0  # nothing left; never counted twice
    assert service.show(link_id).daily_spent == Decimal("80")
    completed = [e for e in service.consume(limit=100) if e.name == "palm_pay.payment.completed"]
    assert len(completed) == 1 and completed[0].payload["amount"] == "80.00"
    # A terminal retry with the same id gets the settled answer, not a new charge.
    again = service.pay(ref, 80, "T1", True, 0.99, idempotency_key=result.payment_id)
    assert again.status == "completed" and again.replayed and len(rail.requests) == 1


def test_reconcile_releases_a_timeout_the_rail_never_saw(linked, clock):
    rail = ScriptedRail(RailTimeout("GATEWAY_TIMEOUT"), processed_on_timeout=False)
    service, link_id, ref = linked(rail)
    service.pay(ref, 80, "T1", True, 0.99)
    clock.advance(RECONCILE_GRACE_S)
    assert service.reconcile().failed == 1
    view = service.show(link_id)
    assert view.daily_spent == 0 and view.reserved == 0
    assert service.pay(ref, 100, "T1", True, 0.99).status == "completed"


def test_a_payment_reserved_yesterday_does_not_count_against_today(linked, clock):
    rail = ScriptedRail(RailTimeout("GATEWAY_TIMEOUT"), processed_on_timeout=True)
    service, link_id, ref = linked(rail, daily=100)
    clock.set(clock().replace(hour=23, minute=50))
    service.pay(ref, 90, "T1", True, 0.99)
    clock.advance(timedelta(minutes=20))  # past local midnight
    service.reconcile()
    view = service.show(link_id)
    assert view.reserved == 0 and view.daily_spent == 0
    assert service.pay(ref, 100, "T1", True, 0.99).status == "completed"


def test_an_unexpected_rail_exception_is_treated_as_unknown_not_failed(linked):
    rail = ScriptedRail(ConnectionResetError("peer reset"))
    service, link_id, ref = linked(rail)
    result = service.pay(ref, 10, "T1", True, 0.99)
    assert result.status == "pending" and result.error_code == "SYSTEM_ERROR"
    assert service.show(link_id).reserved == Decimal("10")


def test_simulated_rail_is_seeded_and_idempotent():
    config = SimulatedRailConfig(decline_rate=0.2, transient_rate=0.2, timeout_rate=0.2, seed=7)

    def outcomes(rail):
        seen = []
        for i in range(200):
            request = RailPaymentRequest(f"k{i}", "0821234321", "phone", 100, "ZAR", "t")
            try:
                seen.append(rail.initiate_payment(request).status)
            except RailTimeout:
                seen.append("timeout")
            except RailTransientError:
                seen.append("transient")
        return seen

    first, second = outcomes(SimulatedPayShapRail(config)), outcomes(SimulatedPayShapRail(config))
    assert first == second
    assert {"completed", "failed", "timeout", "transient"} <= set(first)
    rail = SimulatedPayShapRail()
    request = RailPaymentRequest("same", "0821234321", "phone", 100, "ZAR", "t")
    assert rail.initiate_payment(request) == rail.initiate_payment(request)
    assert rail.charges == {"same": 1}


def test_simulated_rail_latency_uses_the_injected_sleep():
    slept = []
    rail = SimulatedPayShapRail(SimulatedRailConfig(latency_ms=25), sleep=slept.append)
    rail.initiate_payment(RailPaymentRequest("k", "0821234321", "phone", 100, "ZAR", "t"))
    assert slept == [0.025]


def test_a_noisy_rail_never_double_charges_or_breaks_limits(linked, clock):
    config = SimulatedRailConfig(decline_rate=0.1, transient_rate=0.3, timeout_rate=0.2, seed=3)
    rail = SimulatedPayShapRail(config)
    service, link_id, ref = linked(rail, daily=500, txn=50)
    for i in range(60):
        try:
            service.pay(ref, 10 + i % 7, "T1", True, 0.99)
        except PalmPayError as exc:
            assert exc.code == "PALM_PAY_DAILY_LIMIT"
    clock.advance(RECONCILE_GRACE_S)
    service.reconcile()
    assert all(n == 1 for n in rail.charges.values())
    with service.store.read() as tx:
        totals = tx.completed_by_link_and_day()
        pending = tx.pending_payments(1000)
    assert not pending
    ((_, _, total_cents, biggest),) = totals
    assert total_cents <= 500_00 and biggest <= 50_00
    assert service.show(link_id).daily_spent == Decimal(total_cents) / 100
    # Every charge the rail made is a completed payment and vice versa.
    with service.store.read() as tx:
        completed_ids = {r[0] for r in tx.c.execute("SELECT payment_id FROM payments WHERE status='completed'")}
    assert completed_ids == set(rail.charges)
