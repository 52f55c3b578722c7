"""The daily-limit ledger on PostgreSQL: writers with skewed clocks at midnight, a clock moved
back 12 h, and the database's own clock as the one time source."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pg_helpers import PALM_SPEC

from payops.palmpay import DevOtpSender, ManualClock, PalmPayError, PalmPayOptions, PalmPayService, RailRetryPolicy

pytestmark = pytest.mark.postgres

SAST = ZoneInfo("Africa/Johannesburg")
REF = "tmpl-pg-ledger-0001"
BEFORE_MIDNIGHT = datetime(2025, 6, 2, 23, 59, 58, tzinfo=SAST)


def _writer(dsn: str, state_dir: Path, clock: ManualClock, otp: DevOtpSender, **options) -> PalmPayService:
    opts = PalmPayOptions(state_dir=state_dir, spec_path=PALM_SPEC, database_url=dsn,
                          rail_retry=RailRetryPolicy(max_attempts=1, initial_wait_s=0.0), **options)
    return PalmPayService(opts, clock=clock, verification=otp, sleep=lambda _s: None)


def _enrol(service: PalmPayService, otp: DevOtpSender) -> None:
    view, delivery = service.create_link("u1", REF, None, "0821234321", "phone", 5000, 3000)
    service.verify(view.palm_pay_id, otp.code_for(delivery))


def test_two_writers_two_seconds_apart_at_midnight_cannot_pass_the_daily_limit_on_postgres(pg_dsn, tmp_path):
    otp = DevOtpSender()
    slow_clock, fast_clock = ManualClock(BEFORE_MIDNIGHT), ManualClock(BEFORE_MIDNIGHT + timedelta(seconds=2))
    slow, fast = _writer(pg_dsn, tmp_path, slow_clock, otp), _writer(pg_dsn, tmp_path, fast_clock, otp)
    try:
        _enrol(slow, otp)
        assert slow.pay(REF, 3000, "T1", True, 0.99).status == "completed"
        assert fast.pay(REF, 3000, "T2", True, 0.99).status == "completed"
        slow_clock.advance(1)
        with pytest.raises(PalmPayError) as refused:
            slow.pay(REF, 3000, "T1", True, 0.99)
        assert refused.value.code == "PALM_PAY_DAILY_LIMIT"
        with slow.store.read() as tx:
            assert all(total <= 5000_00 for _l, _d, total, _m in tx.completed_by_link_and_day())
            assert all(spent + held <= limit for _l, _d, limit, spent, held in tx.ledger_rows())
    finally:
        slow.close()
        fast.close()


def test_moving_the_clock_back_twelve_hours_opens_no_new_allowance_on_postgres(pg_dsn, tmp_path):
    otp = DevOtpSender()
    clock = ManualClock(datetime(2025, 6, 3, 10, 0, tzinfo=SAST))
    service = _writer(pg_dsn, tmp_path, clock, otp)
    try:
        _enrol(service, otp)
        service.pay(REF, 2500, "T1", True, 0.99)
        service.pay(REF, 2500, "T1", True, 0.99)
        clock.advance(timedelta(hours=-12))
        with pytest.raises(PalmPayError) as refused:
            service.pay(REF, 2500, "T1", True, 0.99)
        assert refused.value.code == "PALM_PAY_DAILY_LIMIT"
    finally:
        service.close()


def test_the_database_time_source_on_postgres_ignores_a_writer_clock_that_is_twelve_hours_off(pg_dsn, tmp_path):
    otp = DevOtpSender()
    service = _writer(pg_dsn, tmp_path, ManualClock(datetime.now(SAST) - timedelta(hours=12)), otp,
                      time_source="database")
    try:
        _enrol(service, otp)
        before = time.time()
        service.pay(REF, 10, "T1", True, 0.99)
        with service.store.read() as tx:
            ((created_at,),) = tx.c.execute("SELECT created_at FROM payments").fetchall()
        assert before - 5 <= created_at <= time.time() + 5
    finally:
        service.close()
