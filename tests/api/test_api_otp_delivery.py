"""Enrolment over HTTP end to end: the app's own OTP sender (PAYOPS_OTP_*) reaches a local SMS gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from api_helpers import NO_LIMITS, PACKAGED_SPEC, bearer
from fastapi.testclient import TestClient
from otp_receiver import SECRET, start_receiver

from payops.api import create_app
from payops.api.settings import ApiSettings
from payops.settings import Settings

PROXY = "0821239876"


@pytest.fixture
def gateway(monkeypatch):
    state, server = start_receiver()
    monkeypatch.setenv("PAYOPS_OTP_SENDER", "webhook")
    monkeypatch.setenv("PAYOPS_OTP_WEBHOOK_URL", state.url)
    monkeypatch.setenv("PAYOPS_OTP_WEBHOOK_SECRET", SECRET.decode())
    monkeypatch.setenv("PAYOPS_OTP_BACKOFF_S", "0")
    yield state
    server.shutdown()
    server.server_close()


def test_a_customer_enrols_over_http_with_the_code_the_gateway_received(tmp_path: Path, gateway, caplog) -> None:
    settings = Settings(state_dir=tmp_path / "state", palm_spec_path=PACKAGED_SPEC)
    app = create_app(settings, api_settings=ApiSettings(**NO_LIMITS))  # the palm backend as `payops serve` opens it
    with TestClient(app) as client, caplog.at_level(logging.DEBUG):
        terminal = bearer(app.state.backend.keys.create("till-1", "terminal")[1])
        body = {"user_id": "u1", "palm_template_ref": "tmpl-e2e-0000000001", "payshap_proxy": PROXY,
                "proxy_type": "phone"}
        created = client.post("/v1/palm/links", json=body, headers=terminal)
        assert created.status_code == 201, created.text
        link_id, delivery = created.json()["link"]["palm_pay_id"], created.json()["otp_delivery_id"]
        (sms,) = gateway.received
        assert sms.signed_by(SECRET) and sms.json["delivery_id"] == delivery and sms.json["destination"] == PROXY
        first_code = sms.json["code"]

        resent = client.post(f"/v1/palm/links/{link_id}/resend-otp", headers=terminal)
        assert resent.status_code == 200 and len(gateway.received) == 2
        new_code = gateway.received[1].json["code"]
        if new_code != first_code:  # one in a million they coincide
            stale = client.post(f"/v1/palm/links/{link_id}/verify", json={"otp": first_code}, headers=terminal)
            assert stale.status_code == 401 and stale.json()["code"] == "PALM_PAY_OTP_INVALID"
        verified = client.post(f"/v1/palm/links/{link_id}/verify", json={"otp": new_code}, headers=terminal)
        assert verified.status_code == 200 and verified.json()["link_status"] == "active", verified.text
        audit = app.state.backend.palm.audit_log(link_id)
    for code in (first_code, new_code):
        assert code not in caplog.text and code not in created.text and code not in resent.text
        assert all(code not in str(entry) for entry in audit)


def test_a_gateway_that_keeps_failing_is_a_502_with_the_card_fallback(tmp_path: Path, gateway) -> None:
    gateway.script = [503, 503, 503]
    settings = Settings(state_dir=tmp_path / "state", palm_spec_path=PACKAGED_SPEC)
    app = create_app(settings, api_settings=ApiSettings(**NO_LIMITS))
    with TestClient(app) as client:
        terminal = bearer(app.state.backend.keys.create("till-1", "terminal")[1])
        body = {"user_id": "u1", "palm_template_ref": "tmpl-e2e-0000000002", "payshap_proxy": PROXY,
                "proxy_type": "phone"}
        failed = client.post("/v1/palm/links", json=body, headers=terminal)
    assert failed.status_code == 502 and failed.json()["code"] == "PALM_PAY_OTP_DELIVERY_FAILED"
    assert len(gateway.received) == 3 and gateway.received[0].json["code"] not in failed.text
