"""Palm-pay endpoints: enrolment, payments, refusals with the spec's codes, idempotent replays, masking."""

from __future__ import annotations

import threading

import pytest
from api_helpers import SPEC_ERRORS, Api, bearer


def _assert_spec_refusal(response, code: str) -> None:
    status, message = SPEC_ERRORS[code]
    assert response.status_code == status
    assert response.json() == {"code": code, "status": status, "message": message, "fallback": "card"}


def test_enrol_verify_pay_show_revoke(api: Api) -> None:
    palm_pay_id, ref = api.enrol(daily_limit="800", transaction_limit="300.5")
    shown = api.client.get(f"/v1/palm/links/{palm_pay_id}", headers=api.as_("terminal")).json()
    assert shown["link_status"] == "active" and shown["daily_limit"] == "800.00" \
        and shown["transaction_limit"] == "300.50"

    paid = api.pay(ref, "120.05")
    assert paid.status_code == 200
    body = paid.json()
    assert body["status"] == "completed" and body["amount"] == "120.05" and body["replayed"] is False
    terminal = api.app.state.backend.keys.authenticate(api.keys["terminal"])
    assert body["payment_id"] == f"{terminal.key_id}:pay-0001-abcdef"  # scoped to the calling key's id
    after = api.client.get(f"/v1/palm/links/{palm_pay_id}", headers=api.as_("viewer")).json()
    assert after["daily_spent"] == "120.05"

    asked = api.client.post(f"/v1/palm/links/{palm_pay_id}/revoke", json={"reason": "customer asked"},
                            headers=api.as_("operator"))
    assert asked.status_code == 202 and asked.json()["status"] == "pending"
    request_id = asked.json()["request_id"]
    own = api.client.post(f"/v1/palm/requests/{request_id}/approve", headers=api.as_("operator"))
    assert own.status_code == 403 and own.json()["code"] == "PALM_PAY_NOT_AUTHORISED"
    second = api.app.state.backend.keys.create("operator-two", "operator")
    approved = api.client.post(f"/v1/palm/requests/{request_id}/approve", headers=bearer(second[1]))
    assert approved.status_code == 200 and approved.json()["status"] == "executed"
    assert approved.json()["decided_by"] == second[0].principal
    requester = api.app.state.backend.keys.authenticate(api.keys["operator"]).principal
    assert any(e.actor == requester and e.action == "revoke" and e.outcome == "applied"
               for e in api.palm.audit_log(palm_pay_id))
    _assert_spec_refusal(api.pay(ref, key="pay-0002-abcdef"), "PALM_PAY_LINK_INACTIVE")


def test_sensitive_values_never_come_back(api: Api) -> None:
    proxy, ref = "0829555123", "tmpl-secret-7788-99aa-bbcc"
    r = api.client.post("/v1/palm/links", json={"user_id": "u9", "palm_template_ref": ref, "payshap_proxy": proxy,
                                                "proxy_type": "phone"}, headers=api.as_("terminal"))
    texts = [r.text]
    palm_pay_id = r.json()["link"]["palm_pay_id"]
    code = api.otp.code_for(r.json()["otp_delivery_id"])
    texts.append(api.client.post(f"/v1/palm/links/{palm_pay_id}/verify", json={"otp": code},
                                 headers=api.as_("terminal")).text)
    texts.append(api.pay(ref).text)
    texts.append(api.pay(ref, liveness_passed=False, key="pay-0009-abcdef").text)
    texts.append(api.client.get(f"/v1/palm/links/{palm_pay_id}", headers=api.as_("viewer")).text)
    texts.append(api.client.get("/metrics", headers=api.as_("viewer")).text)
    joined = "\n".join(texts)
    assert proxy not in joined and ref not in joined and code not in joined
    assert "******5123" in texts[0]  # the mask is what comes back


@pytest.mark.parametrize("case", ["spoof", "unknown_palm", "weak_match", "pending_link", "transaction_limit",
                                  "daily_limit"])
def test_each_refusal_is_the_spec_error_with_the_card_fallback(api: Api, case: str) -> None:
    _, ref = api.enrol(verify=case != "pending_link", daily_limit="100", transaction_limit="60")
    if case == "spoof":
        _assert_spec_refusal(api.pay(ref, liveness_passed=False), "PALM_PAY_SPOOF_DETECTED")
    elif case == "unknown_palm":
        _assert_spec_refusal(api.pay("tmpl-never-enrolled-0000"), "PALM_PAY_NOT_REGISTERED")
    elif case == "weak_match":
        _assert_spec_refusal(api.pay(ref, match_score=0.95), "PALM_PAY_NOT_REGISTERED")  # must exceed 0.95
    elif case == "pending_link":
        _assert_spec_refusal(api.pay(ref), "PALM_PAY_LINK_INACTIVE")
    elif case == "transaction_limit":
        _assert_spec_refusal(api.pay(ref, "60.01"), "PALM_PAY_TRANSACTION_LIMIT")
    else:
        assert api.pay(ref, "60", key="day-0001-abcdef").json()["status"] == "completed"
        _assert_spec_refusal(api.pay(ref, "40.01", key="day-0002-abcdef"), "PALM_PAY_DAILY_LIMIT")


def test_duplicate_palm_and_wrong_otp(api: Api) -> None:
    palm_pay_id, ref = api.enrol(verify=False)
    r = api.client.post("/v1/palm/links", json={"user_id": "other", "palm_template_ref": ref,
                                                "payshap_proxy": "0821112223", "proxy_type": "phone"},
                        headers=api.as_("terminal"))
    _assert_spec_refusal(r, "PALM_PAY_DUPLICATE_PALM")
    real = api.otp.latest_code(palm_pay_id)
    wrong = "000000" if real != "000000" else "111111"
    r = api.client.post(f"/v1/palm/links/{palm_pay_id}/verify", json={"otp": wrong}, headers=api.as_("terminal"))
    assert r.status_code == 401 and r.json()["code"] == "PALM_PAY_OTP_INVALID" and r.json()["fallback"] == "card"
    resent = api.client.post(f"/v1/palm/links/{palm_pay_id}/resend-otp", headers=api.as_("terminal"))
    assert resent.status_code == 200
    assert api.otp.code_for(resent.json()["otp_delivery_id"]) == api.otp.latest_code(palm_pay_id)


def test_replayed_payment_returns_the_first_result_and_pays_once(api: Api) -> None:
    _, ref = api.enrol()
    first = api.pay(ref, "25.00", key="order-42-xyz")
    second = api.pay(ref, "25.00", key="order-42-xyz")
    assert first.status_code == second.status_code == 200
    a, b = first.json(), second.json()
    assert b["replayed"] is True and a["replayed"] is False
    assert {k: v for k, v in a.items() if k != "replayed"} == {k: v for k, v in b.items() if k != "replayed"}
    assert api.rail.charges == {a["payment_id"]: 1}
    # The key may come in the body instead of the header: same payment.
    third = api.pay(ref, "25.00", key=None, idempotency_key="order-42-xyz")
    assert third.json()["payment_id"] == a["payment_id"] and third.json()["replayed"] is True
    # Reusing the key for another amount is a conflict, not a second payment.
    conflict = api.pay(ref, "26.00", key="order-42-xyz")
    assert conflict.status_code == 409 and conflict.json()["code"] == "PALM_PAY_IDEMPOTENCY_CONFLICT"
    # ... and so is reusing it from another terminal id: a replay must be the same request.
    api.register_terminal("T9")  # a genuine, signed scan from another till: still not the same request
    elsewhere = api.pay(ref, "25.00", key="order-42-xyz", terminal_id="T9")
    assert elsewhere.status_code == 409 and elsewhere.json()["code"] == "PALM_PAY_IDEMPOTENCY_CONFLICT"
    assert sum(api.rail.charges.values()) == 1


def test_concurrent_replays_pay_once(api: Api) -> None:
    _, ref = api.enrol()
    results: list[int] = []

    def attempt() -> None:
        results.append(api.pay(ref, "10.00", key="burst-0001-abcdef").status_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert sum(api.rail.charges.values()) == 1


def test_idempotency_keys_are_scoped_per_client(api: Api) -> None:
    _, ref = api.enrol()
    other = api.app.state.backend.keys.create("terminal-two", "terminal")[1]
    api.keys["terminal2"] = other
    a = api.pay(ref, "5.00", key="same-key-0001")
    b = api.pay(ref, "5.00", key="same-key-0001", role="terminal2")
    assert a.json()["payment_id"] != b.json()["payment_id"] and b.json()["replayed"] is False
    assert sum(api.rail.charges.values()) == 2


def test_key_names_are_unique_so_a_second_key_cannot_take_over_the_first_ones_payments(api: Api) -> None:
    from payops.api.keys import ApiKeyError

    with pytest.raises(ApiKeyError):
        api.app.state.backend.keys.create("terminal-client", "terminal")
    _, ref = api.enrol()
    a = api.pay(ref, "5.00", key="same-key-0002")
    api.keys["terminal3"] = api.app.state.backend.keys.create("terminal-three", "terminal")[1]
    b = api.pay(ref, "5.00", key="same-key-0002", role="terminal3")
    assert b.json()["replayed"] is False and a.json()["payment_id"] != b.json()["payment_id"]


def test_a_terminal_key_cannot_revoke_or_suspend_a_link(api: Api) -> None:
    palm_pay_id, _ref = api.enrol()
    for action in ("revoke", "suspend", "reactivate"):
        r = api.client.post(f"/v1/palm/links/{palm_pay_id}/{action}", json={"reason": "x"}, headers=api.as_("terminal"))
        assert r.status_code == 403
    shown = api.client.get(f"/v1/palm/links/{palm_pay_id}", headers=api.as_("viewer")).json()
    assert shown["link_status"] == "active"


@pytest.mark.parametrize("headers_key, body_key, message", [
    (None, None, "An idempotency key is required"),
    ("key-aaaa-0001", "key-bbbb-0002", "differ"),
])
def test_payment_needs_one_idempotency_key(api: Api, headers_key, body_key, message) -> None:
    _, ref = api.enrol()
    extra = {"idempotency_key": body_key} if body_key else {}
    r = api.pay(ref, key=headers_key, **extra)
    assert r.status_code == 422 and r.json()["code"] == "PALM_PAY_INVALID_INPUT" and message in r.json()["message"]
    assert api.rail.charges == {}


@pytest.mark.parametrize("field, value", [
    ("amount", 12.5),  # money is a decimal string, never a float
    ("amount", "12.505"),
    ("amount", "-1"),
    ("match_score", 1.5),
    ("match_score", True),  # not a perfect match
    ("match_score", "0.99"),
    ("liveness_passed", "yes"),
    ("palm_template_ref", "short"),
    ("extra_field", "x"),
])
def test_bad_payment_bodies_are_refused_before_anything_runs(api: Api, field: str, value) -> None:
    _, ref = api.enrol()
    r = api.pay(ref, **{field: value})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "PALM_PAY_INVALID_INPUT" and body["fallback"] == "card"
    assert any(field in f["field"] for f in body["fields"])
    if field != "extra_field":
        assert f'"{value}"' not in r.text and f": {value}" not in r.text  # the value sent is not echoed
    assert api.palm.payment_events_after(0) == []


def test_limit_changes_and_rejections_go_through_change_requests(api: Api) -> None:
    palm_pay_id, _ref = api.enrol(daily_limit="800", transaction_limit="300")
    asked = api.client.post(f"/v1/palm/links/{palm_pay_id}/limits", json={"daily_limit": "1200", "reason": "raise"},
                            headers=api.as_("operator"))
    assert asked.status_code == 202 and asked.json()["args"] == {"daily_limit": "1200.00"}
    listed = api.client.get("/v1/palm/requests", headers=api.as_("operator")).json()
    assert [r["request_id"] for r in listed] == [asked.json()["request_id"]]
    second = bearer(api.app.state.backend.keys.create("operator-two", "operator")[1])
    rejected = api.client.post(f"/v1/palm/requests/{asked.json()['request_id']}/reject",
                               json={"note": "call 0821234567 first"}, headers=second)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert rejected.json()["result"] == "call ******4567 first"
    shown = api.client.get(f"/v1/palm/links/{palm_pay_id}", headers=api.as_("viewer")).json()
    assert shown["daily_limit"] == "800.00"
    again = api.client.post(f"/v1/palm/requests/{asked.json()['request_id']}/approve", headers=second)
    assert again.status_code == 409 and again.json()["code"] == "PALM_PAY_REQUEST_NOT_PENDING"
