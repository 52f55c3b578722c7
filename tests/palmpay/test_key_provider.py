"""Every palm-pay secret comes from the key provider (storage/keys.py), and data whose key is missing
refuses to start: the OTP MAC key, the blind-index root, the terminals' public keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payops.palmpay import PalmPayError
from payops.palmpay.attestation import sign_scan
from payops.palmpay.crypto import KeyRingError
from payops.storage.keys import env_var, terminal_key_name


def _b64key() -> tuple[bytes, str]:
    raw = secrets.token_bytes(32)
    return raw, base64.b64encode(raw).decode()


def _public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def test_otp_codes_are_maced_under_the_key_providers_otp_key(make_service, otp, monkeypatch):
    raw, b64 = _b64key()
    monkeypatch.setenv(env_var("palmpay-otp-mac"), b64)
    service = make_service()
    view, delivery = service.create_link("u1", "tmpl-otp-provider-01", None, "0821234321", "phone")
    with service.store.read() as tx:
        stored = tx.otp(view.palm_pay_id)[0]
    code = otp.code_for(delivery)
    assert stored == hmac.new(raw, f"{view.palm_pay_id}\x00{code}".encode(), hashlib.sha256).digest()
    assert service.verify(view.palm_pay_id, code).link_status == "active"


def test_a_first_run_keeps_the_otp_key_in_the_key_folder_0600(make_service, tmp_path):
    make_service().close()
    path = tmp_path / "state" / "keys" / "palmpay-otp-mac.key"
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state" / "keys").stat().st_mode & 0o777 == 0o700


def test_an_outstanding_code_without_its_otp_key_refuses_to_start(make_service, tmp_path):
    service = make_service()
    service.create_link("u1", "tmpl-otp-missing-01", None, "0821234321", "phone")
    service.close()
    (tmp_path / "state" / "keys" / "palmpay-otp-mac.key").unlink()
    with pytest.raises(KeyRingError, match="refusing to start"):
        make_service()


def test_a_code_sent_before_the_provider_held_an_otp_key_still_verifies(make_service, otp, tmp_path):
    service = make_service()
    view, delivery = service.create_link("u1", "tmpl-otp-legacy-01", None, "0821234321", "phone")
    with service.store.write() as tx:  # as a version that derived the key left it: no id recorded
        tx.c.execute("UPDATE key_state SET otp_key_id = NULL")
        from payops.palmpay.crypto import OtpHasher, legacy_otp_key

        legacy = OtpHasher(legacy_otp_key(service._ring.index_root))
        tx.c.execute("UPDATE otp_challenges SET code_mac = ?",
                     (legacy.mac(view.palm_pay_id, otp.code_for(delivery)),))
    service.close()
    again = make_service()
    assert again.verify(view.palm_pay_id, otp.code_for(delivery)).link_status == "active"


def test_the_blind_index_root_comes_from_the_provider_and_another_one_refuses_to_start(make_service, monkeypatch):
    _, data_key = _b64key()
    _, root = _b64key()
    monkeypatch.setenv(env_var("palmpay-index-root"), root)
    service = make_service(data_key=data_key)
    service.create_link("u1", "tmpl-index-root-01", None, "0821234321", "phone")
    service.close()
    _, other = _b64key()
    monkeypatch.setenv(env_var("palmpay-index-root"), other)
    with pytest.raises(KeyRingError, match="index root"):
        make_service(data_key=data_key)  # it used to start, and every palm answered NOT_REGISTERED


def test_a_registered_terminal_key_is_kept_by_the_key_provider(service, tmp_path):
    key = Ed25519PrivateKey.generate()
    service.attestation.register("T1", _public(key), actor="operator:0123456789ab")
    served = service._keys.load(terminal_key_name("T1"))
    assert served is not None and base64.b64encode(served.active_key).decode() == _public(key)
    assert (tmp_path / "state" / "keys" / "terminal-T1.key").exists()


def test_a_terminal_key_planted_in_the_database_is_refused(service, enroll, clock):
    from payops.palmpay.attestation import fingerprint

    genuine, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    service.attestation.register("T1", _public(genuine), actor="operator:0123456789ab")
    _view, ref, _ = enroll()
    with service.store.write() as tx:  # a write straight to the database, around the registry
        tx.c.execute("UPDATE palm_terminal_keys SET public_key = ?, fingerprint = ? WHERE terminal_id = 'T1'",
                     (_public(forger), fingerprint(forger.public_key())))
    signed = sign_scan(forger, terminal_id="T1", palm_template_ref=ref, liveness_passed=True, match_score=0.99,
                       amount="10", nonce=secrets.token_urlsafe(16), ts=int(clock().timestamp()))
    with pytest.raises(PalmPayError, match="PALM_PAY_ATTESTATION_INVALID"):
        service.pay(ref, "10", "T1", True, 0.99, attestation=signed, require_attestation=True)
    assert service.audit_log()[-1].reason.endswith("does not match the key provider's")


def test_a_terminal_key_from_the_environment_must_match_its_registration(service, monkeypatch):
    from payops.palmpay.attestation import AttestationKeyError

    held, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    monkeypatch.setenv(env_var(terminal_key_name("T9")), _public(held))
    with pytest.raises(AttestationKeyError, match="serves another key"):
        service.attestation.register("T9", _public(other), actor="operator:0123456789ab")
    assert service.attestation.register("T9", _public(held), actor="operator:0123456789ab").terminal_id == "T9"


def test_state_files_are_0600_in_a_0700_folder_with_keys_kept_elsewhere(make_service, tmp_path):
    _, data_key = _b64key()
    state = tmp_path / "fresh" / "state"
    service = make_service(state_dir=state, data_key=data_key, key_dir=tmp_path / "vault")
    service.create_link("u1", "tmpl-modes-0001", None, "0821234321", "phone")
    service.close()
    assert state.stat().st_mode & 0o777 == 0o700
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files), \
        [(p.name, oct(p.stat().st_mode)) for p in files]


def test_a_server_with_another_otp_key_refuses_to_start_even_with_no_code_outstanding(make_service, monkeypatch):
    make_service().close()  # the first server recorded the id of its OTP key
    _, other = _b64key()
    monkeypatch.setenv(env_var("palmpay-otp-mac"), other)  # a second server on the same database, another key
    with pytest.raises(KeyRingError, match="give every server the same one"):
        make_service()
