"""Terminal attestation over HTTP: on by default; operators register terminal keys."""

from __future__ import annotations

import time

from api_helpers import NO_LIMITS, Api, ApiFactory, public_key_text
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payops.api.settings import ApiSettings

BODY = {"amount": "12.50", "terminal_id": "T1", "liveness_passed": True, "match_score": 0.99}


def _post(api: Api, body: dict, key: str):
    return api.client.post("/v1/palm/payments", json=body, headers={**api.as_("terminal"), "Idempotency-Key": key})


def test_an_unsigned_payment_is_refused_by_default_with_the_card_fallback(api: Api) -> None:
    _, ref = api.enrol()
    r = api.pay(ref, sign=False)
    assert r.status_code == 422 and r.json()["code"] == "PALM_PAY_ATTESTATION_REQUIRED"
    assert r.json()["fallback"] == "card"
    assert api.palm.show(api.palm.links_for_user("user-1")[0].palm_pay_id).daily_spent == 0


def test_a_signed_payment_pays_and_its_replay_under_another_key_is_refused(api: Api) -> None:
    _, ref = api.enrol()
    signed = api.signed({"palm_template_ref": ref, **BODY})
    first = _post(api, signed, "pay-0001-abcdef")
    assert first.status_code == 200 and first.json()["status"] == "completed", first.text
    retry = _post(api, signed, "pay-0001-abcdef")  # the terminal lost the answer: same payment
    assert retry.status_code == 200 and retry.json()["replayed"] is True
    replay = _post(api, signed, "pay-0002-abcdef")  # a captured scan used for a new payment
    assert replay.status_code == 409 and replay.json()["code"] == "PALM_PAY_ATTESTATION_REPLAYED"
    assert api.palm.show(api.palm.links_for_user("user-1")[0].palm_pay_id).daily_spent == 12.5


def test_a_stale_a_changed_and_a_foreign_signature_are_refused(api: Api) -> None:
    _, ref = api.enrol()
    body = {"palm_template_ref": ref, **BODY}
    stale = _post(api, api.signed(body, ts=int(time.time()) - 600), "pay-0001-abcdef")
    assert stale.status_code == 403 and stale.json()["code"] == "PALM_PAY_ATTESTATION_STALE"
    changed = {**api.signed(body), "amount": "1250.00"}
    assert _post(api, changed, "pay-0002-abcdef").json()["code"] == "PALM_PAY_ATTESTATION_INVALID"
    foreign = api.signed(body, signer=Ed25519PrivateKey.generate())
    r = _post(api, foreign, "pay-0003-abcdef")
    assert r.status_code == 403 and r.json()["code"] == "PALM_PAY_ATTESTATION_INVALID"


def test_operators_register_list_and_revoke_terminal_keys(api: Api) -> None:
    _, ref = api.enrol()
    key = Ed25519PrivateKey.generate()
    url = "/v1/palm/terminals/T7/key"
    by_terminal = api.client.put(url, json={"public_key": public_key_text(key)}, headers=api.as_("terminal"))
    assert by_terminal.status_code == 403
    bad = api.client.put(url, json={"public_key": "A" * 44}, headers=api.as_("operator"))
    assert bad.status_code == 422 and bad.json()["code"] == "PALM_PAY_INVALID_INPUT"
    put = api.client.put(url, json={"public_key": public_key_text(key)}, headers=api.as_("operator"))
    assert put.status_code == 200 and put.json()["fingerprint"].startswith("ed25519:")
    assert put.json()["registered_by"].startswith("operator:")
    api.terminal_keys["T7"] = key
    assert api.pay(ref, terminal_id="T7", key="pay-0007-abcdef").status_code == 200
    listed = api.client.get("/v1/palm/terminals", headers=api.as_("viewer")).json()
    assert {t["terminal_id"] for t in listed} == {"T1", "T7"}
    gone = api.client.delete(url, headers=api.as_("operator"))
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    r = api.pay(ref, terminal_id="T7", key="pay-0008-abcdef")
    assert r.status_code == 403 and r.json()["code"] == "PALM_PAY_ATTESTATION_INVALID"
    assert api.client.delete(url, headers=api.as_("operator")).status_code == 404


def test_attestation_can_be_switched_off_for_a_deployment_without_signing_terminals(make_api: ApiFactory) -> None:
    api = make_api(api_settings=ApiSettings(require_attestation=False, **NO_LIMITS))
    _, ref = api.enrol()
    assert api.pay(ref, sign=False).status_code == 200
    forged = api.signed({"palm_template_ref": ref, **BODY}, signer=Ed25519PrivateKey.generate())
    assert _post(api, forged, "pay-0009-abcdef").status_code == 403  # a signature sent is still checked
