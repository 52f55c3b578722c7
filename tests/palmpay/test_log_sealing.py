"""The palm-pay audit log and PII access log are sealed by signed checkpoints; tampering is named.

The attacker can write the database but holds neither the audit key nor the signing key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from payops.palmpay.sealing import seal_keys, seal_logs, verify_logs


def _busy_day(service, enroll) -> Path:
    for _ in range(3):
        view, ref, _ = enroll(daily_limit=1000, transaction_limit=500)
        service.pay(ref, 50, "T1", True, 0.99)
        service.pay(ref, 60, "T2", True, 0.99)
    service.suspend(view.palm_pay_id, "user request", "operator:a11ce0000001")  # an authenticated operator
    return service.store.path


def _checks(service) -> dict:
    return {c.log: c for c in verify_logs(service.store, seal_keys(service.options.state_dir))}


def _sealed(service, enroll) -> Path:
    db = _busy_day(service, enroll)
    seal_logs(service.store, seal_keys(service.options.state_dir))
    return db


def _sql(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql)
    conn.close()


def test_sealed_logs_verify_and_count_their_rows(service, enroll):
    _sealed(service, enroll)
    checks = _checks(service)
    assert all(c.ok for c in checks.values())
    assert checks["palmpay.access"].count == checks["palmpay.access"].sealed > 0
    assert checks["palmpay.audit"].count == checks["palmpay.audit"].sealed > 0


def test_closing_the_service_seals_what_it_wrote(make_service, enroll, service):
    _busy_day(service, enroll)
    keys = seal_keys(service.options.state_dir)
    assert keys.checkpoints.last("palmpay.access") is None
    service.close()
    assert keys.checkpoints.last("palmpay.access").count > 0


def test_an_edited_access_log_row_is_named(service, enroll):
    db = _sealed(service, enroll)
    _sql(db, "UPDATE access_log SET actor = 'someone-else' WHERE id = 2")
    access = _checks(service)["palmpay.access"]
    assert not access.ok and access.title == "palm-pay PII access log"


def test_a_deleted_audit_row_is_detected(service, enroll):
    db = _sealed(service, enroll)
    _sql(db, "DELETE FROM audit_log WHERE id = 2")
    assert not _checks(service)["palmpay.audit"].ok


def test_a_truncated_access_log_is_detected(service, enroll):
    db = _sealed(service, enroll)
    _sql(db, "DELETE FROM access_log WHERE id > 3")
    access = _checks(service)["palmpay.access"]
    assert not access.ok and "truncated" in access.reason


def test_a_wiped_audit_log_is_detected(service, enroll):
    db = _sealed(service, enroll)
    _sql(db, "DELETE FROM audit_log")
    audit = _checks(service)["palmpay.audit"]
    assert not audit.ok and "wiped" in audit.reason


def test_a_row_forged_inside_the_sealed_range_is_detected(service, enroll):
    db = _sealed(service, enroll)
    _sql(db, "INSERT INTO access_log (id, ts, palm_pay_id, field, actor, purpose) "
             "SELECT 1000000, ts, palm_pay_id, field, 'mallory', purpose FROM access_log WHERE id = 1")
    _sql(db, "UPDATE access_log SET id = 0 WHERE id = 1000000")  # slipped in before the first sealed row
    assert not _checks(service)["palmpay.access"].ok


def test_rows_after_the_last_checkpoint_are_reported_unsealed_not_hidden(service, enroll):
    _sealed(service, enroll)
    view, ref, _ = enroll()
    service.pay(ref, 5, "T1", True, 0.99)
    access = _checks(service)["palmpay.access"]
    assert access.ok and access.count > access.sealed


def test_audit_verify_names_the_broken_palm_pay_log_and_exits_1(service, enroll):
    from typer.testing import CliRunner

    from payops.cli_ops import audit_app

    db = _sealed(service, enroll)
    state = str(service.options.state_dir)
    ok = CliRunner().invoke(audit_app, ["verify", "--state-dir", state])
    assert ok.exit_code == 0 and "palm-pay PII access log intact: 9 records" in ok.output
    _sql(db, "UPDATE access_log SET purpose = 'nothing to see' WHERE id = 4")
    broken = CliRunner().invoke(audit_app, ["verify", "--state-dir", state])
    assert broken.exit_code == 1 and "palm-pay PII access log BROKEN" in broken.output
    assert "palm-pay audit log intact" in broken.output


def test_a_long_lived_service_seals_at_intervals_without_being_closed(make_service, enroll, monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("PAYOPS_AUDIT_SEAL_SECONDS", "0.2")
    service = make_service(state_dir=tmp_path / "long")
    view, ref, _ = type(enroll)(service, enroll.otp)()  # an enroller on this service, not the default one
    service.pay(ref, 5, "T1", True, 0.99)
    keys = seal_keys(service.options.state_dir)
    deadline = time.monotonic() + 10
    while keys.checkpoints.last("palmpay.access") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert keys.checkpoints.last("palmpay.access") is not None


def test_the_service_seals_with_the_keys_and_checkpoint_file_its_settings_name(tmp_path):
    from payops.palmpay import DevOtpSender, PalmPayOptions, PalmPayService
    from payops.settings import Settings
    from payops.storage.keys import settings_key_chain

    # Settings arguments, not the environment: they must win for the service as for `payops audit verify`.
    settings = Settings(state_dir=tmp_path / "state", key_dir=tmp_path / "vault", audit_checkpoint_path=tmp_path / "cp")
    service = PalmPayService(PalmPayOptions.from_settings(settings), verification=DevOtpSender())
    service.create_link("user-1", "tmpl-0001-7f3a9c2e51b4d8aa", None, "0829000001", "phone", bank="FNB")
    service.close()
    assert not (tmp_path / "state" / "keys").exists() and (tmp_path / "cp").exists()
    reopened = PalmPayService(PalmPayOptions.from_settings(settings), verification=DevOtpSender())
    keys = seal_keys(settings.state_dir, chain=settings_key_chain(settings),
                     checkpoint_path=settings.audit_checkpoint_path)
    checks = {c.log: c for c in verify_logs(reopened.store, keys)}
    assert checks["palmpay.audit"].ok and checks["palmpay.audit"].sealed > 0
    reopened.close()


def test_logs_sealed_before_an_audit_key_rotation_still_verify_after_it(service, enroll):
    from payops.storage.keys import AUDIT_HMAC, FileKeyProvider

    _sealed(service, enroll)  # sealed under the first key
    FileKeyProvider(service.options.state_dir / "keys").add_version(AUDIT_HMAC)  # rotate: a new active version
    rotated = seal_keys(service.options.state_dir)
    assert len(rotated.hmac.versions) == 2
    _, ref, _ = enroll(daily_limit=1000, transaction_limit=500)
    service.pay(ref, 70, "T3", True, 0.99)
    seal_logs(service.store, rotated)  # the new rows sealed under the new key
    checks = {c.log: c for c in verify_logs(service.store, rotated)}
    assert all(c.ok for c in checks.values()), [c.reason for c in checks.values()]
    assert checks["palmpay.access"].checkpoints >= 2
