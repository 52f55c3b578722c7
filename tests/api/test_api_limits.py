"""Rate limits, the body size limit, and errors that never expose internals."""

from __future__ import annotations

import logging

import pytest
from api_helpers import NO_LIMIT, NO_LIMITS, Api, ApiFactory, ManualMonotonic

from payops.api.ratelimit import RateLimiter
from payops.api.settings import ApiSettings, Bucket


def _limited(make_api: ApiFactory, clock: ManualMonotonic, **buckets: Bucket) -> Api:
    groups = {"payments": NO_LIMIT, "verification": NO_LIMIT, "enrolment": NO_LIMIT, **buckets}
    return make_api(limiter=RateLimiter(groups, clock=clock))


def test_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOPS_API_PAYMENTS_BURST", "3")
    monkeypatch.setenv("PAYOPS_API_ENROLMENT_PER_SECOND", "0.5")
    buckets = ApiSettings().buckets()
    assert buckets["payments"] == Bucket(burst=3, per_second=1.0)
    assert buckets["enrolment"].per_second == 0.5 and buckets["verification"] == Bucket(burst=5, per_second=0.1)


def test_token_bucket_arithmetic() -> None:
    clock = ManualMonotonic()
    limiter = RateLimiter({"g": Bucket(burst=2, per_second=0.5)}, clock=clock)
    assert [limiter.take("g", "k") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("g", "k") == pytest.approx(2.0)  # one token takes 2 s at 0.5/s
    assert limiter.take("g", "other") == 0.0  # buckets are per key
    clock.now += 1.0
    assert limiter.take("g", "k") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.take("g", "k") == 0.0
    clock.now += 3600
    assert [limiter.take("g", "k") for _ in range(3)][:2] == [0.0, 0.0]  # refills up to the burst, not beyond


def test_payments_are_rate_limited_per_key(make_api: ApiFactory) -> None:
    clock = ManualMonotonic()
    api = _limited(make_api, clock, payments=Bucket(burst=3, per_second=1.0))
    _, ref = api.enrol()
    codes = [api.pay(ref, "1.00", key=f"rate-{i:04d}-abcdef").status_code for i in range(3)]
    assert codes == [200, 200, 200]
    refused = api.pay(ref, "1.00", key="rate-0099-abcdef")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"code": "RATE_LIMITED", "status": 429, "fallback": "card",
                              "message": "Too many requests — please retry later or use a card"}
    assert sum(api.rail.charges.values()) == 3  # the refused request reached nothing
    other = api.app.state.backend.keys.create("terminal-b", "terminal")[1]
    api.keys["b"] = other
    assert api.pay(ref, "1.00", key="rate-0100-abcdef", role="b").status_code == 200
    clock.now += 1.0
    assert api.pay(ref, "1.00", key="rate-0101-abcdef").status_code == 200
    metrics = api.client.get("/metrics", headers=api.as_("viewer")).text
    assert 'payops_api_rate_limited_total{group="payments"} 1.0' in metrics


def test_verification_is_rate_limited(make_api: ApiFactory) -> None:
    clock = ManualMonotonic()
    api = _limited(make_api, clock, verification=Bucket(burst=2, per_second=0.1))
    palm_pay_id, _ = api.enrol(verify=False)
    statuses = [api.client.post(f"/v1/palm/links/{palm_pay_id}/verify", json={"otp": "999999"},
                                headers=api.as_("terminal")).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]  # two wrong codes reach the backend; the third is stopped before it
    r = api.client.post(f"/v1/palm/links/{palm_pay_id}/resend-otp", headers=api.as_("terminal"))
    assert r.status_code == 429 and r.headers["retry-after"] == "10"


def test_body_size_limit(make_api: ApiFactory) -> None:
    api = make_api(api_settings=ApiSettings(max_body_bytes=2048, **NO_LIMITS))
    _, ref = api.enrol()
    padding = "x" * 3000
    big = api.pay(ref, terminal_id=padding)
    assert big.status_code == 413 and big.json()["code"] == "PAYLOAD_TOO_LARGE" and big.json()["fallback"] == "card"

    def chunks():  # no Content-Length: the limit still holds while reading
        for _ in range(10):
            yield b"{" + b" " * 500

    streamed = api.client.post("/v1/chat", content=chunks(),
                               headers={**api.as_("viewer"), "Content-Type": "application/json"})
    assert streamed.status_code == 413 and "fallback" not in streamed.json()
    lying = api.client.post("/v1/chat", content=b"{}", headers={**api.as_("viewer"), "Content-Length": "999999"})
    assert lying.status_code == 413
    assert api.pay(ref, "1.00", key="small-0001-abcdef").status_code == 200  # a normal body passes
    assert sum(api.rail.charges.values()) == 1


def test_malformed_json_is_a_validation_error(api: Api) -> None:
    r = api.client.post("/v1/palm/payments", content=b'{"amount": ', headers={**api.as_("terminal"),
                                                                          "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "PALM_PAY_INVALID_INPUT"


def test_lone_surrogates_are_refused_not_crashed_on(api: Api) -> None:
    body = (b'{"user_id": "\\ud800", "palm_template_ref": "tmpl-12345678", "payshap_proxy": "0821234567", '
            b'"proxy_type": "phone"}')
    r = api.client.post("/v1/palm/links", content=body,
                        headers={**api.as_("terminal"), "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.user_id"


class _Exploding:
    """A palm backend whose every call fails with a message that quotes a secret."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise RuntimeError("database said: proxy 0829998887 template tmpl-leak-0001")

        return fail


def test_unexpected_errors_are_generic_500s(make_api: ApiFactory, caplog: pytest.LogCaptureFixture) -> None:
    api = make_api(palm=_Exploding(), raise_server_exceptions=False)
    with caplog.at_level(logging.DEBUG):
        r = api.client.get("/v1/palm/links/pp_000000000000000000000000", headers=api.as_("terminal"))
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"code", "status", "message", "fallback", "request_id"}
    assert body["code"] == "INTERNAL_ERROR" and body["message"] == "Internal error"
    for text in (r.text, caplog.text):
        assert "0829998887" not in text and "tmpl-leak" not in text and "Traceback" not in text
    assert body["request_id"] in caplog.text and "RuntimeError" in caplog.text  # the log line can be found


def test_unknown_routes_and_methods_use_the_error_shape(api: Api) -> None:
    assert api.client.get("/nope").json() == {"code": "NOT_FOUND", "status": 404, "message": "Not found"}
    r = api.client.delete("/v1/decisions", headers=api.as_("viewer"))
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"


def test_responses_are_not_cacheable(api: Api) -> None:
    r = api.client.get("/healthz")
    assert r.json() == {"status": "ok"}
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    assert "server" not in r.headers or "uvicorn" not in r.headers.get("server", "")
