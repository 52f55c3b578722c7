"""Terminal attestation: a scan pays only when its terminal signed exactly these values, once, recently."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payops.palmpay import PalmPayError
from payops.palmpay.attestation import AttestationKeyError, ScanAttestation, fingerprint, sign_scan

TERMINAL = "T1"


def _public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
def till(service, enroll, clock):
    """A verified link, and a terminal whose key is registered; `scan()` signs like the terminal would."""
    key = Ed25519PrivateKey.generate()
    service.attestation.register(TERMINAL, _public(key), actor="operator:k1", ts=clock().timestamp())
    _view, ref, _proxy = enroll(daily_limit=5000, transaction_limit=5000)

    def scan(amount="12.50", *, score=0.99, liveness=True, terminal=TERMINAL, signer=key, ts=None, nonce=None,
             ref_=ref) -> ScanAttestation:
        return sign_scan(signer, terminal_id=terminal, palm_template_ref=ref_, liveness_passed=liveness,
                         match_score=score, amount=amount, nonce=nonce or secrets.token_urlsafe(16),
                         ts=int(clock().timestamp()) if ts is None else ts)

    return ref, scan, key


def _pay(service, ref, attestation, amount="12.50", *, score=0.99, liveness=True, key=None, required=True):
    return service.pay(ref, amount, TERMINAL, liveness, score, key, attestation=attestation,
                       require_attestation=required)


def _refused(code: str):
    return pytest.raises(PalmPayError, match=code)


def test_a_scan_signed_by_its_terminal_pays(service, till):
    ref, scan, _ = till
    assert _pay(service, ref, scan()).status == "completed"


def test_an_unsigned_scan_is_refused_where_attestation_is_required_and_paid_where_not(service, till):
    ref, _, _ = till
    with _refused("PALM_PAY_ATTESTATION_REQUIRED"):
        _pay(service, ref, None)
    assert service.options.require_attestation is False  # the Python API's default
    assert service.pay(ref, "1", TERMINAL, True, 0.99).status == "completed"


@pytest.mark.parametrize("changed", ["amount", "score", "liveness", "template_ref"])
def test_a_scan_changed_after_signing_is_refused(service, till, changed):
    ref, scan, _ = till
    signed = scan("12.50", score=0.96, liveness=True)
    args = {"amount": "12.50", "score": 0.96, "liveness": True}
    if changed == "amount":
        args["amount"] = "1200.50"
    elif changed == "score":
        args["score"] = 0.99
    elif changed == "liveness":
        signed = scan("12.50", score=0.96, liveness=False)  # the till saw a spoof; a man in the middle says live
    else:
        with _refused("PALM_PAY_ATTESTATION_INVALID"):
            _pay(service, "tmpl-other-palm-0001", signed, "12.50", score=0.96)
        return
    with _refused("PALM_PAY_ATTESTATION_INVALID"):
        _pay(service, ref, signed, args["amount"], score=args["score"], liveness=args["liveness"])


def test_a_scan_signed_by_another_key_or_for_an_unregistered_terminal_is_refused(service, till):
    ref, scan, _ = till
    with _refused("PALM_PAY_ATTESTATION_INVALID"):
        _pay(service, ref, scan(signer=Ed25519PrivateKey.generate()))
    with _refused("PALM_PAY_ATTESTATION_INVALID"):
        service.pay(ref, "12.50", "T9", True, 0.99, attestation=scan(terminal="T9"), require_attestation=True)


def test_a_revoked_terminal_key_no_longer_signs_payments(service, till, clock):
    ref, scan, _ = till
    assert service.attestation.revoke(TERMINAL, actor="operator:k1", ts=clock().timestamp())
    with _refused("PALM_PAY_ATTESTATION_INVALID"):
        _pay(service, ref, scan())
    assert [t.revoked_at is not None for t in service.attestation.terminals()] == [True]


@pytest.mark.parametrize("skew_s", [-121, 121])
def test_a_scan_signed_outside_the_window_is_stale(service, till, clock, skew_s):
    ref, scan, _ = till
    with _refused("PALM_PAY_ATTESTATION_STALE"):
        _pay(service, ref, scan(ts=int(clock().timestamp()) + skew_s))
    assert _pay(service, ref, scan(ts=int(clock().timestamp()) - 119)).status == "completed"


def test_a_replayed_scan_is_refused_and_pays_nothing(service, till):
    ref, scan, _ = till
    signed = scan("100")
    assert _pay(service, ref, signed, "100", key="pay-1").status == "completed"
    with _refused("PALM_PAY_ATTESTATION_REPLAYED"):
        _pay(service, ref, signed, "100", key="pay-2")  # the captured scan under a new payment id
    with _refused("PALM_PAY_ATTESTATION_REPLAYED"):
        _pay(service, ref, signed, "100")  # or with none
    assert service.show(service.links_for_user("user-1")[0].palm_pay_id).daily_spent == 100


def test_a_terminal_retrying_the_same_payment_with_the_same_scan_gets_the_stored_result(service, till):
    ref, scan, _ = till
    signed = scan("100")
    first = _pay(service, ref, signed, "100", key="pay-1")
    again = _pay(service, ref, signed, "100", key="pay-1")
    assert again.replayed and again.payment_id == first.payment_id
    assert service.show(service.links_for_user("user-1")[0].palm_pay_id).daily_spent == 100


def test_every_refused_scan_is_audited_without_the_template_reference(service, till, clock):
    ref, scan, _ = till
    for attempt in (None, scan(signer=Ed25519PrivateKey.generate()), scan(ts=0)):
        with pytest.raises(PalmPayError):
            _pay(service, ref, attempt)
    refused = [e for e in service.audit_log() if e.action == "attest"]
    assert [e.reason.split(":")[0] for e in refused] == [
        "PALM_PAY_ATTESTATION_REQUIRED", "PALM_PAY_ATTESTATION_INVALID", "PALM_PAY_ATTESTATION_STALE"]
    assert all(e.actor == f"terminal:{TERMINAL}" and ref not in str(e) for e in refused)


def test_used_nonces_are_forgotten_once_they_would_be_stale_anyway(service, till, clock):
    ref, scan, _ = till
    nonce = secrets.token_urlsafe(16)
    _pay(service, ref, scan(nonce=nonce), key="pay-1")
    clock.advance(timedelta(seconds=241))
    _pay(service, ref, scan(nonce=secrets.token_urlsafe(16)), key="pay-2")  # prunes
    with service.store.read() as tx:
        rows = tx.c.execute("SELECT nonce FROM palm_scan_nonces").fetchall()
    assert nonce not in {r[0] for r in rows} and len(rows) == 1


def test_keys_register_from_pem_or_base64_and_garbage_is_refused(service, clock):
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    by_pem = service.attestation.register("T2", pem, actor="operator:k1", ts=clock().timestamp())
    by_b64 = service.attestation.register("T2", _public(key), actor="operator:k1", ts=clock().timestamp())
    assert by_pem.fingerprint == by_b64.fingerprint == fingerprint(key.public_key())
    for bad in ("", "not a key", base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(AttestationKeyError):
            service.attestation.register("T2", bad, actor="operator:k1", ts=clock().timestamp())
    with pytest.raises(ValueError, match="terminal_id"):
        service.attestation.register("T 2", _public(key), actor="operator:k1", ts=clock().timestamp())


def test_the_cli_registers_a_terminal_key_and_pays_with_a_signed_scan(tmp_path, monkeypatch):
    import re

    from typer.testing import CliRunner

    from payops.api.keys import ApiKeyStore
    from payops.cli_palm import palm_app

    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    store = ApiKeyStore.in_state_dir(tmp_path / "state")
    operator = store.create("ops-1", "operator")[1]  # terminal keys are administration: an operator's
    monkeypatch.setenv("PAYOPS_API_KEY", store.create("till-1", "terminal")[1])  # link, verify and pay: a terminal's
    store.close()
    run = CliRunner().invoke
    pem = tmp_path / "till.pem"
    made = run(palm_app, ["terminal", "keygen", "--private-key-out", str(pem)])
    assert made.exit_code == 0 and oct(pem.stat().st_mode & 0o777) == "0o600"
    assert run(palm_app, ["terminal", "register", "T1", "--public-key", made.output.strip()]).exit_code == 2  # no key
    assert run(palm_app, ["terminal", "register", "T1", "--public-key", made.output.strip(),
                          "--api-key", operator]).exit_code == 0
    linked = run(palm_app, ["link", "--user", "u1", "--template-ref", "tmpl-cli-att-0001", "--proxy", "0821234567",
                            "--show-otp"])
    link_id = re.search(r'"palm_pay_id": "(pp_\w+)"', linked.output).group(1)
    assert run(palm_app, ["verify", link_id, re.search(r"demo OTP: (\d+)", linked.output).group(1)]).exit_code == 0
    pay = ["pay", "--template-ref", "tmpl-cli-att-0001", "--amount", "10", "--terminal", "T1", "--require-attestation"]
    unsigned = run(palm_app, pay)
    assert unsigned.exit_code == 1 and "PALM_PAY_ATTESTATION_REQUIRED" in unsigned.output
    signed = run(palm_app, [*pay, "--sign-with", str(pem)])
    assert signed.exit_code == 0 and '"status": "completed"' in signed.output
    listed = run(palm_app, ["terminal", "list"])
    assert "T1\ted25519:" in listed.output and "\tactive\t" in listed.output
    assert run(palm_app, ["terminal", "revoke", "T1", "--api-key", operator]).exit_code == 0
    revoked = run(palm_app, [*pay, "--sign-with", str(pem)])
    assert revoked.exit_code == 1 and "PALM_PAY_ATTESTATION_INVALID" in revoked.output
    bad = run(palm_app, ["terminal", "register", "T1", "--public-key", "garbage", "--api-key", operator])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
