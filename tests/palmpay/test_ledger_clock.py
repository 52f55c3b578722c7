"""The daily limit lives on a ledger per (link, local date) with one time line per link:
writers whose clocks straddle midnight, or a clock moved back, never open a second allowance."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from payops.palmpay import DevOtpSender, ManualClock, PalmPayError, PalmPayOptions, PalmPayService, RailRetryPolicy
from payops.palmpay.policy import ledger_day

SAST = ZoneInfo("Africa/Johannesburg")
SPEC_PATH = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"
REF = "tmpl-ledger-clock-0001"
BEFORE_MIDNIGHT = datetime(2025, 6, 2, 23, 59, 58, tzinfo=SAST)


def _writer(state_dir: Path, clock: ManualClock, otp: DevOtpSender | None = None, **options) -> PalmPayService:
    opts = PalmPayOptions(state_dir=state_dir, spec_path=SPEC_PATH,
                          rail_retry=RailRetryPolicy(max_attempts=1, initial_wait_s=0.0), **options)
    return PalmPayService(opts, clock=clock, verification=otp or DevOtpSender(), sleep=lambda _s: None)


def _enrol(service: PalmPayService, otp: DevOtpSender, daily: int = 5000, per_txn: int = 3000) -> str:
    view, delivery = service.create_link("u1", REF, None, "0821234321", "phone", daily, per_txn)
    return service.verify(view.palm_pay_id, otp.code_for(delivery)).palm_pay_id


def _completed_per_day(service: PalmPayService) -> dict[str, int]:
    with service.store.read() as tx:
        return {day: total for _link, day, total, _max in tx.completed_by_link_and_day()}


def test_two_writers_two_seconds_apart_at_midnight_cannot_pass_the_daily_limit(tmp_path):
    otp = DevOtpSender()
    slow_clock, fast_clock = ManualClock(BEFORE_MIDNIGHT), ManualClock(BEFORE_MIDNIGHT + timedelta(seconds=2))
    slow, fast = _writer(tmp_path, slow_clock, otp), _writer(tmp_path, fast_clock, otp)
    try:
        _enrol(slow, otp)
        assert slow.pay(REF, 3000, "T1", True, 0.99).status == "completed"  # 23:59:58, 2 June
        assert fast.pay(REF, 3000, "T2", True, 0.99).status == "completed"  # 00:00:00, 3 June
        slow_clock.advance(1)  # 23:59:59 on the slow server: still 2 June there
        with pytest.raises(PalmPayError) as refused:
            slow.pay(REF, 3000, "T1", True, 0.99)
        assert refused.value.code == "PALM_PAY_DAILY_LIMIT"
        assert all(total <= 5000_00 for total in _completed_per_day(slow).values())
    finally:
        slow.close()
        fast.close()


def test_moving_the_clock_back_twelve_hours_opens_no_new_allowance(tmp_path):
    otp = DevOtpSender()
    clock = ManualClock(datetime(2025, 6, 3, 10, 0, tzinfo=SAST))
    service = _writer(tmp_path, clock, otp)
    try:
        _enrol(service, otp)
        assert service.pay(REF, 2500, "T1", True, 0.99).status == "completed"
        assert service.pay(REF, 2500, "T1", True, 0.99).status == "completed"
        clock.advance(timedelta(hours=-12))  # 22:00 on 2 June
        with pytest.raises(PalmPayError) as refused:
            service.pay(REF, 2500, "T1", True, 0.99)
        assert refused.value.code == "PALM_PAY_DAILY_LIMIT"
        assert service.show(service.links_for_user("u1")[0].palm_pay_id).daily_spent == Decimal("5000.00")
    finally:
        service.close()


def test_a_new_local_day_still_brings_a_fresh_allowance(tmp_path):
    otp = DevOtpSender()
    clock = ManualClock(BEFORE_MIDNIGHT)
    service = _writer(tmp_path, clock, otp)
    try:
        _enrol(service, otp)
        service.pay(REF, 3000, "T1", True, 0.99)
        service.pay(REF, 2000, "T1", True, 0.99)
        clock.advance(5)  # 00:00:03, 3 June
        assert service.pay(REF, 3000, "T1", True, 0.99).status == "completed"
        assert _completed_per_day(service) == {"2025-06-02": 5000_00, "2025-06-03": 3000_00}
    finally:
        service.close()


def test_the_database_time_source_ignores_a_writer_clock_that_is_twelve_hours_off(tmp_path):
    otp = DevOtpSender()
    wrong = ManualClock(datetime.now(SAST) - timedelta(hours=12))
    service = _writer(tmp_path, wrong, otp, time_source="database")
    try:
        _enrol(service, otp)
        before = time.time()
        service.pay(REF, 10, "T1", True, 0.99)
        with service.store.read() as tx:
            ((created_at, day),) = tx.c.execute("SELECT created_at, spent_day FROM payments").fetchall()
        assert before - 5 <= created_at <= time.time() + 5
        assert day == datetime.fromtimestamp(created_at, SAST).date().isoformat()
    finally:
        service.close()


@pytest.mark.parametrize(
    ("today", "latest", "counts_on"),
    [("2025-06-03", None, "2025-06-03"), ("2025-06-03", "2025-06-02", "2025-06-03"),
     ("2025-06-02", "2025-06-03", "2025-06-03"), ("2025-12-31", "2026-01-01", "2026-01-01")],
)
def test_a_payment_counts_on_the_later_of_its_own_date_and_the_links_latest(today, latest, counts_on):
    assert ledger_day(today, latest) == counts_on


def test_the_time_source_retention_and_request_expiry_are_settings(tmp_path):
    from payops.settings import Settings

    settings = Settings(state_dir=tmp_path, palm_time_source="database", palm_pii_retention_days=30,
                        palm_change_request_ttl_hours=4)
    options = PalmPayOptions.from_settings(settings)
    assert (options.time_source, options.pii_retention_s, options.change_request_ttl_s) == ("database", 30 * 86400,
                                                                                            4 * 3600)
    with pytest.raises(ValueError):
        Settings(palm_time_source="ntp")
