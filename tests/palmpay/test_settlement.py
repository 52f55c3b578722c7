"""Settlement jobs: pending rail payments and unverified links are settled without a caller."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from payops.cli_palm import palm_app
from payops.palm_jobs import BackgroundMaintenance, MaintenanceLocked, maintain_once, maintenance_lock
from payops.palmpay import PalmPayError, RailResult, RailTimeout
from payops.palmpay.settlement import run_maintenance
from payops.settings import Settings


class SilentRail:
    """Every payment times out and the rail never answers a status query either."""

    def __init__(self, status_answer: RailResult | None = None) -> None:
        self.status_answer = status_answer
        self.status_calls = 0

    def initiate_payment(self, request):
        raise RailTimeout("GATEWAY_TIMEOUT")

    def payment_status(self, idempotency_key: str) -> RailResult:
        self.status_calls += 1
        if self.status_answer is None:
            raise ConnectionError("rail status endpoint down")
        return self.status_answer


@pytest.fixture
def timed_out(make_service, otp):
    """A link with R5,000 daily whose two payments (R2,500 each) both timed out at the rail."""

    def build(rail, **options):
        service = make_service(rail=rail, **options)
        view, delivery = service.create_link("u1", "tmpl-settle-000001", None, "0821234321", "phone", 5000, 5000)
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        for _ in range(2):
            assert service.pay("tmpl-settle-000001", 2500, "T1", True, 0.99).status == "pending"
        assert service.show(view.palm_pay_id).reserved == Decimal("5000")
        return service, view.palm_pay_id

    return build


def test_a_payment_the_rail_cannot_confirm_is_released_at_the_maximum_pending_age(timed_out, clock):
    service, link_id = timed_out(SilentRail(), max_pending_age_s=3600)
    clock.advance(timedelta(minutes=59))
    report = service.reconcile()
    assert (report.still_pending, report.released_overdue) == (2, 0)
    assert service.show(link_id).reserved == Decimal("5000")  # may still be in flight: held
    clock.advance(timedelta(minutes=2))
    report = service.reconcile()
    assert (report.still_pending, report.released_overdue, report.completed) == (0, 2, 0)
    view = service.show(link_id)
    assert (view.reserved, view.daily_spent) == (0, 0)
    released = [e for e in service.audit_log(link_id) if e.action == "reconcile"]
    assert len(released) == 2 and all("released after 3600s pending" in (e.reason or "") for e in released)


def test_a_rail_that_still_says_pending_is_released_at_the_maximum_pending_age_too(timed_out, clock):
    service, link_id = timed_out(SilentRail(RailResult("pending")), max_pending_age_s=600)
    clock.advance(timedelta(minutes=11))
    assert service.reconcile().released_overdue == 2
    assert service.show(link_id).reserved == 0


def test_one_maintenance_round_expires_stale_enrolments_and_settles_timeouts(timed_out, clock, otp):
    rail = SilentRail(RailResult("completed", "ref-late"))
    service, link_id = timed_out(rail)
    pending, _ = service.create_link("u2", "tmpl-settle-000002", None, "0821234322", "phone")
    clock.advance(timedelta(hours=24, seconds=1))
    report = run_maintenance(service)
    assert report.expired_links == 1 and service.show(pending.palm_pay_id).link_status == "revoked"
    assert (report.reconcile.completed, report.reconcile.still_pending) == (2, 0)
    assert service.show(link_id).reserved == 0
    again = run_maintenance(service)  # nothing left: never settled twice
    assert again.expired_links == 0 and again.reconcile.completed == 0
    completed = [e for e in service.consume(limit=1000) if e.name == "palm_pay.payment.completed"]
    assert [e.payload["amount"] for e in completed] == ["2500.00", "2500.00"]


def test_a_locked_round_is_skipped_rather_than_run_twice(timed_out, tmp_path):
    service, _ = timed_out(SilentRail())
    settings = Settings(state_dir=tmp_path / "state")
    with maintenance_lock(settings), pytest.raises(MaintenanceLocked):
        maintain_once(settings, service)
    assert maintain_once(settings, service).reconcile.still_pending == 0  # too young for the rail yet


def test_the_background_thread_releases_a_reservation_nobody_asked_about(timed_out, clock, tmp_path):
    rail = SilentRail(RailResult("not_found"))
    service, link_id = timed_out(rail)
    clock.advance(timedelta(minutes=5))
    jobs = BackgroundMaintenance(Settings(state_dir=tmp_path / "state"), lambda: service, interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while service.show(link_id).reserved and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        jobs.stop()
    assert service.show(link_id).reserved == 0 and jobs.rounds >= 1
    assert service.pay("tmpl-settle-000001", 10, "T1", True, 0.99).status == "pending"  # the limit is free again


def test_the_background_thread_survives_a_failing_round(tmp_path):
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("database unreachable")

    jobs = BackgroundMaintenance(Settings(state_dir=tmp_path / "state"), broken, interval_s=0.02).start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    jobs.stop()
    assert len(calls) >= 3 and jobs.rounds == 0


def test_payops_palm_maintain_exits_75_while_another_round_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    done = runner.invoke(palm_app, ["maintain"])
    assert done.exit_code == 0, done.output
    assert '"expired_links": 0' in done.output
    with maintenance_lock(Settings(state_dir=tmp_path / "state")):
        busy = runner.invoke(palm_app, ["maintain"])
    assert busy.exit_code == 75 and "another palm-pay maintenance round is running" in busy.output


def test_a_refused_payment_is_not_left_for_settlement(timed_out, clock):
    service, link_id = timed_out(SilentRail())
    with pytest.raises(PalmPayError, match="PALM_PAY_DAILY_LIMIT"):
        service.pay("tmpl-settle-000001", 1, "T1", True, 0.99)  # R5,000 held by the two time-outs
    clock.advance(timedelta(hours=2))
    assert service.reconcile().released_overdue == 2  # only the two reserved payments
