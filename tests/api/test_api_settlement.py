"""`payops serve` and `payops run` settle palm-pay payments in the background (no caller needed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api_helpers import NO_LIMITS, PACKAGED_SPEC
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from payops.api import create_app
from payops.api.settings import ApiSettings
from payops.cli import app as cli_app
from payops.palmpay import DevOtpSender, ManualClock, PalmPayOptions, PalmPayService, RailResult, RailTimeout
from payops.settings import Settings


class TimeoutRail:
    """Payments time out; afterwards the rail says it never saw them."""

    def initiate_payment(self, request):
        raise RailTimeout("GATEWAY_TIMEOUT")

    def payment_status(self, idempotency_key):
        return RailResult("not_found")


def _timed_out_link(settings: Settings, clock=None) -> tuple[PalmPayService, str]:
    otp = DevOtpSender()
    options = PalmPayOptions.from_settings(settings)
    palm = PalmPayService(options, rail=TimeoutRail(), verification=otp, sleep=lambda _s: None,
                          **({"clock": clock} if clock else {}))
    view, delivery = palm.create_link("u1", "tmpl-bg-00000001", None, "0821234321", "phone", 5000, 5000)
    palm.verify(view.palm_pay_id, otp.code_for(delivery))
    assert palm.pay("tmpl-bg-00000001", 5000, "T1", True, 0.99).status == "pending"
    return palm, view.palm_pay_id


def _wait_until(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def test_the_served_app_releases_a_timed_out_reservation_in_the_background(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", palm_spec_path=PACKAGED_SPEC, palm_maintenance_interval_s=0.05)
    clock = ManualClock(datetime(2025, 6, 2, 9, 0, tzinfo=UTC))
    palm, link_id = _timed_out_link(settings, clock)
    clock.advance(timedelta(minutes=2))  # past the reconcile grace period
    app = create_app(settings, palm=palm, api_settings=ApiSettings(**NO_LIMITS), background_jobs=True)
    try:
        with TestClient(app):
            assert _wait_until(lambda: palm.show(link_id).reserved == 0)
    finally:
        palm.close()


def test_the_app_starts_no_background_jobs_unless_asked(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", palm_spec_path=PACKAGED_SPEC, palm_maintenance_interval_s=0.05)
    clock = ManualClock(datetime(2025, 6, 2, 9, 0, tzinfo=UTC))
    palm, link_id = _timed_out_link(settings, clock)
    clock.advance(timedelta(minutes=2))
    try:
        with TestClient(create_app(settings, palm=palm, api_settings=ApiSettings(**NO_LIMITS))):
            time.sleep(0.3)
            assert palm.show(link_id).reserved == 5000
    finally:
        palm.close()


def test_payops_run_settles_what_the_rail_never_confirmed(tmp_path: Path, monkeypatch) -> None:
    state = tmp_path / "state"
    for name in ("PAYOPS_PALM_SPEC_PATH", "PAYOPS_DATA_KEY", "PAYOPS_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(state_dir=state)
    two_minutes_ago = ManualClock(datetime.now(UTC) - timedelta(minutes=2))
    palm, link_id = _timed_out_link(settings, two_minutes_ago)
    palm.close()
    result = CliRunner().invoke(cli_app, ["run", "--ticks", "1", "--tick-seconds", "0", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    with PalmPayService(PalmPayOptions.from_settings(settings)) as palm:
        assert palm.show(link_id).reserved == 0
        assert [e.action for e in palm.audit_log(link_id)][-1] == "reconcile"
