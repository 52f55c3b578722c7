"""Fixtures for the palm-pay tests: a manual clock, a fresh state dir, and enrolment helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from payops.palmpay import (
    DevOtpSender,
    LinkView,
    ManualClock,
    PalmPayOptions,
    PalmPayService,
    RailRetryPolicy,
    load_spec,
)

SAST = ZoneInfo("Africa/Johannesburg")
PACKAGED_SPEC_PATH = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests decide the spec path and keys themselves; the developer's environment must not leak in.
    for name in ("PAYOPS_PALM_SPEC_PATH", "PAYOPS_DATA_KEY", "PAYOPS_TIMEZONE", "PAYOPS_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2025, 6, 2, 9, 0, tzinfo=SAST))


@pytest.fixture
def otp() -> DevOtpSender:
    return DevOtpSender()


@pytest.fixture
def spec_raw() -> dict[str, Any]:
    return json.loads(PACKAGED_SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def spec():
    return load_spec(PACKAGED_SPEC_PATH)


ServiceFactory = Callable[..., PalmPayService]


@pytest.fixture
def make_service(tmp_path: Path, clock: ManualClock, otp: DevOtpSender) -> Iterator[ServiceFactory]:
    made: list[PalmPayService] = []

    def factory(*, state_dir: Path | None = None, rail=None, spec=None, clock_=None, **option_overrides: Any):
        options = PalmPayOptions(
            state_dir=state_dir or tmp_path / "state",
            spec_path=option_overrides.pop("spec_path", PACKAGED_SPEC_PATH),
            rail_retry=option_overrides.pop("rail_retry", RailRetryPolicy(max_attempts=3, initial_wait_s=0.0)),
            **option_overrides,
        )
        service = PalmPayService(
            options, clock=clock_ or clock, rail=rail, verification=otp, spec=spec, sleep=lambda _s: None
        )
        made.append(service)
        return service

    yield factory
    for service in made:
        service.close()


@pytest.fixture
def service(make_service: ServiceFactory) -> PalmPayService:
    return make_service()


class Enroller:
    """Creates (and by default verifies) links with distinct palms and proxies."""

    def __init__(self, service: PalmPayService, otp: DevOtpSender) -> None:
        self.service = service
        self.otp = otp
        self.n = 0

    def __call__(
        self,
        *,
        user_id: str | None = None,
        hand: str | None = None,
        verify: bool = True,
        daily_limit: Decimal | int | str | None = None,
        transaction_limit: Decimal | int | str | None = None,
        bank: str | None = "FNB",
        proxy_type: str = "phone",
    ) -> tuple[LinkView, str, str]:
        """Returns (view, template_ref, proxy)."""
        self.n += 1
        ref = f"tmpl-{self.n:04d}-7f3a9c2e51b4d8aa"
        proxy = f"0829{self.n:06d}" if proxy_type == "phone" else f"62{self.n:08d}"
        view, delivery = self.service.create_link(
            user_id or f"user-{self.n}",
            ref,
            hand,
            proxy,
            proxy_type,
            daily_limit=daily_limit,
            transaction_limit=transaction_limit,
            bank=bank,
        )
        if verify:
            view = self.service.verify(view.palm_pay_id, self.otp.code_for(delivery) or "")
        return view, ref, proxy


@pytest.fixture
def enroll(service: PalmPayService, otp: DevOtpSender) -> Enroller:
    return Enroller(service, otp)
