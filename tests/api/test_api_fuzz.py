"""Property-based API fuzzing with schemathesis: no 500s, every response matches the schema.

One app over a state directory the real agent wrote (decisions, a pending
approval) plus an enrolled palm, so reads find records and writes meet real
state. Each operation gets a bounded number of generated requests, sent with
the key of a role allowed to call it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from api_helpers import ALWAYS_ASK, NO_LIMITS, PACKAGED_SPEC, bearer, seed_agent
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from payops.api import create_app, openapi_schema
from payops.api.settings import ApiSettings
from payops.palmpay import DevOtpSender, PalmPayOptions, PalmPayService, RailRetryPolicy, SimulatedPayShapRail
from payops.settings import Settings

MAX_EXAMPLES = 15  # per operation (positive and negative cases): the module runs in about 15 s
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("fuzz") / "state"
    seed_agent(state, "route_outage", 7, **ALWAYS_ASK)
    settings_ = Settings(state_dir=state, palm_spec_path=PACKAGED_SPEC)
    otp = DevOtpSender()
    palm = PalmPayService(PalmPayOptions.from_settings(settings_,
                                                       rail_retry=RailRetryPolicy(max_attempts=2, initial_wait_s=0.0)),
                          rail=SimulatedPayShapRail(), verification=otp, sleep=lambda _s: None)
    app = create_app(settings_, palm=palm,
                     api_settings=ApiSettings(**NO_LIMITS))
    keys = {role: app.state.backend.keys.create(f"fuzz-{role}", role)[1] for role in ("terminal", "operator")}
    with TestClient(app) as client:  # runs the app's lifespan around the module
        view, delivery = palm.create_link("fuzz-user", "tmpl-fuzz-00000001", "left", "0825550001", "phone")
        palm.verify(view.palm_pay_id, otp.code_for(delivery) or "")
        yield {"app": app, "keys": keys, "client": client}
    palm.close()


# Built from the app itself (no I/O), so the operations are known when pytest collects.
schema = schemathesis.openapi.from_dict(openapi_schema())


def _role_for(path: str) -> str:
    return "terminal" if path.startswith("/v1/palm") and not path.startswith("/v1/palm/terminals") else "operator"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,  # same cases on every CI run
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_schema(case: Any, fuzz_target: dict[str, Any]) -> None:
    headers = dict(case.headers or {})
    headers.update(bearer(fuzz_target["keys"][_role_for(case.path)]))
    case.call_and_validate(app=fuzz_target["app"], headers=headers, checks=CHECKS)
