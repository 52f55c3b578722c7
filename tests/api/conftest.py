"""Fixtures for the HTTP API tests: an app on a fresh state directory with one key per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import NO_LIMITS, PACKAGED_SPEC, Api, ApiFactory
from fastapi.testclient import TestClient

from payops.api import create_app
from payops.api.keys import ApiKeyStore
from payops.api.ratelimit import RateLimiter
from payops.api.settings import ApiSettings
from payops.palmpay import DevOtpSender, PalmPayOptions, PalmPayService, RailRetryPolicy, SimulatedPayShapRail
from payops.settings import Settings


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[ApiFactory]:
    made: list[tuple[TestClient, PalmPayService]] = []

    def factory(*, state_dir: Path | None = None, limiter: RateLimiter | None = None, services: Any = None,
                api_settings: ApiSettings | None = None, palm: PalmPayService | None = None,
                raise_server_exceptions: bool = True) -> Api:
        settings = Settings(state_dir=state_dir or tmp_path / "state", palm_spec_path=PACKAGED_SPEC)
        otp = DevOtpSender()
        rail = SimulatedPayShapRail()
        if palm is None:
            options = PalmPayOptions.from_settings(settings,
                                                   rail_retry=RailRetryPolicy(max_attempts=3, initial_wait_s=0.0))
            palm = PalmPayService(options, rail=rail, verification=otp, sleep=lambda _s: None)
        api_settings = api_settings or ApiSettings(**NO_LIMITS)
        app = create_app(settings, services=services, palm=palm, api_settings=api_settings, limiter=limiter)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        made.append((client, palm))
        store: ApiKeyStore = app.state.backend.keys
        keys = {role: store.create(f"{role}-client", role)[1] for role in ("terminal", "operator", "viewer")}
        made_api = Api(client=client, app=app, palm=palm, otp=otp, rail=rail, settings=settings, keys=keys)
        if isinstance(palm, PalmPayService):
            made_api.register_terminal("T1")  # payments are attested by default over HTTP
        return made_api

    yield factory
    for client, palm in made:
        client.__exit__(None, None, None)
        palm.close()


@pytest.fixture
def api(make_api: ApiFactory) -> Api:
    return make_api()


