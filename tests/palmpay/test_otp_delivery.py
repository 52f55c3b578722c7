"""OTP senders: the signed webhook (retries, time-outs, refusals), the console sender, the settings."""

from __future__ import annotations

import io
import logging

import pytest
from otp_receiver import SECRET, start_receiver
from pydantic import ValidationError

from payops.palmpay import DevOtpSender, PalmPayError
from payops.palmpay.otp_delivery import (
    ConsoleOtpSender,
    OtpDeliveryError,
    OtpDeliverySettings,
    WebhookOtpSender,
    sender_from_settings,
    sign,
    verify_signature,
)

CODE = "493027"
DESTINATION = "0821234567"


@pytest.fixture
def receiver():
    state, server = start_receiver()
    yield state
    server.shutdown()
    server.server_close()


def _send(sender) -> str:
    return sender.send_otp(palm_pay_id="pp_1", destination=DESTINATION, proxy_type="phone", code=CODE)


def test_the_webhook_posts_a_signed_message_the_receiver_can_verify(receiver):
    delivery = _send(WebhookOtpSender(receiver.url, SECRET, backoff_s=0))
    (got,) = receiver.received
    assert got.json == {"code": CODE, "delivery_id": delivery, "destination": DESTINATION, "palm_pay_id": "pp_1",
                        "proxy_type": "phone", "purpose": "palm_pay_link_verification"}
    assert got.headers["Idempotency-Key"] == delivery
    assert got.signed_by(SECRET) and not got.signed_by(b"another-secret-of-32-bytes-or-more!!")


def test_a_signature_over_another_body_or_an_old_timestamp_is_refused():
    ts = 1_700_000_000
    good = sign(SECRET, ts, b'{"code":"1"}')
    assert verify_signature(SECRET, str(ts), b'{"code":"1"}', good, now=ts + 10)
    assert not verify_signature(SECRET, str(ts), b'{"code":"2"}', good, now=ts + 10)
    assert not verify_signature(SECRET, str(ts), b'{"code":"1"}', good, now=ts + 301)
    assert not verify_signature(SECRET, "soon", b'{"code":"1"}', good, now=ts)


def test_gateway_errors_and_rate_limits_are_retried_then_delivered(receiver):
    receiver.script = [503, 429]
    waits: list[float] = []
    _send(WebhookOtpSender(receiver.url, SECRET, attempts=3, backoff_s=0.5, sleep=waits.append))
    assert len(receiver.received) == 3 and len(set(r.json["delivery_id"] for r in receiver.received)) == 1
    assert len(waits) == 2 and waits[1] >= waits[0] > 0


def test_a_refusal_by_the_gateway_is_not_retried_and_names_no_code(receiver):
    receiver.script = [400]
    with pytest.raises(OtpDeliveryError) as caught:
        _send(WebhookOtpSender(receiver.url, SECRET, attempts=3, backoff_s=0))
    assert len(receiver.received) == 1 and "HTTP 400" in str(caught.value)
    assert CODE not in str(caught.value) and DESTINATION not in str(caught.value)


def test_a_gateway_slower_than_the_timeout_is_retried_and_then_fails(receiver):
    receiver.delay_s = 0.5
    with pytest.raises(OtpDeliveryError, match="after 2 attempt"):
        _send(WebhookOtpSender(receiver.url, SECRET, timeout_s=0.1, attempts=2, backoff_s=0))
    assert len(receiver.received) == 2


def test_an_unreachable_gateway_fails_cleanly_after_its_attempts():
    with pytest.raises(OtpDeliveryError, match="ConnectError"):
        _send(WebhookOtpSender("http://127.0.0.1:9/sms", SECRET, attempts=2, backoff_s=0))


def test_a_failed_delivery_is_a_502_refusal_and_the_code_is_in_no_log(make_service, receiver, caplog):
    receiver.script = [500, 500, 500]
    service = make_service()
    service.verification = WebhookOtpSender(receiver.url, SECRET, attempts=3, backoff_s=0)
    with caplog.at_level(logging.DEBUG), pytest.raises(PalmPayError) as caught:
        service.create_link("u1", "tmpl-otp-00000001", None, DESTINATION, "phone")
    assert (caught.value.code, caught.value.status) == ("PALM_PAY_OTP_DELIVERY_FAILED", 502)
    code = receiver.received[0].json["code"]
    assert code not in caplog.text and DESTINATION not in caplog.text
    assert all(code not in str(e) for e in service.audit_log()) and code not in str(caught.value.to_dict())


def test_the_console_sender_writes_the_code_to_the_console_and_not_to_logging(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        delivery = _send(ConsoleOtpSender(stream))
    assert f"{delivery} for pp_1 to ******4567: {CODE}" in stream.getvalue()
    assert CODE not in caplog.text and DESTINATION not in stream.getvalue()


def test_settings_choose_the_sender_and_refuse_unsafe_webhooks(monkeypatch):
    for name in ("PAYOPS_OTP_SENDER", "PAYOPS_OTP_WEBHOOK_URL", "PAYOPS_OTP_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(sender_from_settings(OtpDeliverySettings()), DevOtpSender)
    assert isinstance(sender_from_settings(OtpDeliverySettings(sender="console")), ConsoleOtpSender)
    secret = "s" * 32
    webhook = OtpDeliverySettings(sender="webhook", webhook_url="https://sms.example/otp", webhook_secret=secret)
    assert isinstance(sender_from_settings(webhook), WebhookOtpSender)
    with pytest.raises(ValidationError, match="WEBHOOK_URL is required"):
        OtpDeliverySettings(sender="webhook", webhook_secret=secret)
    with pytest.raises(ValidationError, match="https unless"):
        OtpDeliverySettings(sender="webhook", webhook_url="http://sms.example/otp", webhook_secret=secret)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        OtpDeliverySettings(sender="webhook", webhook_url="https://sms.example/otp", webhook_secret="short")
    monkeypatch.setenv("PAYOPS_OTP_SENDER", "console")
    assert OtpDeliverySettings().sender == "console"


def test_payops_palm_resend_otp_sends_a_new_code_that_verifies_the_link(tmp_path, monkeypatch, receiver):
    import re

    from typer.testing import CliRunner

    from payops.cli_palm import palm_app

    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PAYOPS_OTP_SENDER", "webhook")
    monkeypatch.setenv("PAYOPS_OTP_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("PAYOPS_OTP_WEBHOOK_SECRET", SECRET.decode())
    from payops.api.keys import ApiKeyStore

    store = ApiKeyStore.in_state_dir(tmp_path / "state")
    monkeypatch.setenv("PAYOPS_API_KEY", store.create("till-1", "terminal")[1])  # customer-present: a terminal's
    store.close()
    runner = CliRunner()
    linked = runner.invoke(palm_app, ["link", "--user", "u1", "--template-ref", "tmpl-cli-otp-0001",
                                      "--proxy", DESTINATION])
    assert linked.exit_code == 0, linked.output
    link_id = re.search(r'"palm_pay_id": "(pp_\w+)"', linked.output).group(1)
    resent = runner.invoke(palm_app, ["resend-otp", link_id])
    assert resent.exit_code == 0 and "OTP sent (delivery otp-" in resent.output
    codes = receiver.codes()
    assert len(codes) == 2 and all(code not in linked.output + resent.output for code in codes)
    verified = runner.invoke(palm_app, ["verify", link_id, codes[-1]])
    assert verified.exit_code == 0 and '"link_status": "active"' in verified.output
    again = runner.invoke(palm_app, ["resend-otp", link_id])
    assert again.exit_code == 1 and "PALM_PAY_ILLEGAL_TRANSITION" in again.output
    missing = runner.invoke(palm_app, ["resend-otp", "pp_missing"])
    assert missing.exit_code == 2 and "PALM_PAY_LINK_NOT_FOUND" in missing.output
