"""Encryption at rest, key handling and rotation, blind indexes, access logging, masking."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest

from payops.palmpay import PalmPayError, PalmPayOptions, PalmPayService, mask_proxy, mask_ref
from payops.palmpay.crypto import KEYRING_FILE, BlindIndex, FieldCipher, KeyRing, KeyRingError, key_id_of


def _all_bytes(state_dir) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state_dir.iterdir()) if p.name.startswith("palmpay.db"))


def test_database_files_never_hold_a_proxy_or_template_ref_in_plaintext(make_service, otp, tmp_path, caplog):
    state = tmp_path / "state"
    service = make_service(state_dir=state)
    secrets_in_use = []
    with caplog.at_level(logging.DEBUG, logger="payops"):
        for i in range(40):
            ref = f"TEMPLATE-REF-{i:03d}-{os.urandom(6).hex()}"
            proxy = f"0831{i:06d}" if i % 2 else f"4711{i:08d}"
            view, delivery = service.create_link(f"u{i}", ref, None, proxy, "phone" if i % 2 else "account", 500, 100)
            service.verify(view.palm_pay_id, otp.code_for(delivery))
            service.pay(ref, 10, "T1", True, 0.99)
            with pytest.raises(PalmPayError):
                service.pay(ref, 101, "T1", True, 0.99)
            secrets_in_use += [ref, proxy]
        # Uncheckpointed WAL content and the checkpointed main file are both inspected.
        raw = _all_bytes(state)
        service.store.checkpoint()
        raw += _all_bytes(state)
    assert raw, "nothing was written"
    for secret in secrets_in_use:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in raw, secret
        assert secret[:-4].encode() not in raw  # not even the part the mask hides
    everything_emitted = json.dumps([e.model_dump() for e in service.consume(limit=10_000)])
    everything_emitted += json.dumps([r.event for r in service.payment_events_after(limit=10_000)])
    everything_emitted += json.dumps([a.model_dump() for a in service.access_log()])
    everything_emitted += json.dumps([a.model_dump() for a in service.audit_log()])
    everything_emitted += caplog.text
    for secret in secrets_in_use:
        assert secret not in everything_emitted


def test_keyring_file_is_private_and_reused(tmp_path, make_service, enroll):
    make_service(state_dir=tmp_path / "s1")  # creates the keyring
    path = tmp_path / "s1" / KEYRING_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s1" / "palmpay.db").stat().st_mode) == 0o600
    body = json.loads(path.read_text())
    assert body["active"] in body["keys"] and len(base64.b64decode(body["index_key"])) == 32
    before = path.read_bytes()
    make_service(state_dir=tmp_path / "s1")  # second start: same keys
    assert path.read_bytes() == before


def test_settings_data_key_is_used_without_a_key_file(tmp_path, monkeypatch, clock, otp):
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("PAYOPS_DATA_KEY", key)
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "env-state"))
    from payops.settings import Settings

    options = PalmPayOptions.from_settings(Settings())
    with PalmPayService(options, clock=clock, verification=otp) as service:
        view, delivery = service.create_link("u1", "tmpl-envkey-0001", None, "0821234321", "phone")
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        assert service.pay("tmpl-envkey-0001", 5, "T1", True, 0.99).status == "completed"
    assert not (tmp_path / "env-state" / KEYRING_FILE).exists()
    # The same key in a new process decrypts; a different key does not.
    with PalmPayService(options, clock=clock, verification=otp) as service:
        assert service.pay("tmpl-envkey-0001", 5, "T1", True, 0.99).status == "completed"
    other = options.with_(data_key=base64.b64encode(os.urandom(32)).decode())
    # Another key cannot read this data: refuse to start (it used to start and answer NOT_REGISTERED for every link).
    with pytest.raises(KeyRingError, match="refusing to start"):
        PalmPayService(other, clock=clock, verification=otp)


def test_a_malformed_data_key_is_refused(tmp_path):
    with pytest.raises(KeyRingError, match="32 bytes"):
        KeyRing.load(tmp_path, base64.b64encode(b"short").decode())
    with pytest.raises(KeyRingError, match="base64"):
        KeyRing.load(tmp_path, "not base64 !!")


def test_a_rotation_only_switches_the_key_and_the_settlement_round_reencrypts(make_service, tmp_path, otp):
    from payops.palmpay.settlement import run_maintenance

    service = make_service(state_dir=tmp_path / "rot")
    refs = []
    for i in range(5):
        ref = f"tmpl-rotate-{i:04d}"
        view, delivery = service.create_link(f"u{i}", ref, None, f"08200000{i:02d}", "phone")
        if i < 4:
            service.verify(view.palm_pay_id, otp.code_for(delivery))
        refs.append(ref)
    old_key = service._ring.active_id
    report = service.rotate_key()
    assert report.previous_key_id == old_key
    with service.store.read() as tx:  # nothing re-encrypted yet: the call returned at once
        assert {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]} == {old_key}
    assert service.pay(refs[0], 1, "T1", True, 0.99).status == "completed"  # old rows still read
    assert run_maintenance(service, batch=3).reencrypted == 3  # in batches, one transaction each
    assert run_maintenance(service, batch=3).reencrypted == 2
    with service.store.read() as tx:
        kids = {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]}
    assert kids == {report.new_key_id}
    ring = json.loads((tmp_path / "rot" / KEYRING_FILE).read_text())
    # Not retired yet: a backup from before the rotation must stay readable for the backup window.
    assert ring["active"] == report.new_key_id and old_key in ring["keys"] and ring["retired"] == []
    for ref in refs[:4]:
        assert service.pay(ref, 1, "T1", True, 0.99).status == "completed"
    rotation_reads = [a for a in service.access_log() if a.actor == "key_rotation"]
    assert len(rotation_reads) == 10 and {a.field for a in rotation_reads} == {"palm_template_ref", "payshap_proxy"}


def test_old_data_keys_retire_only_after_reencryption_and_the_backup_window(make_service, tmp_path, clock):
    from datetime import timedelta

    from payops.palmpay.settlement import run_maintenance

    service = make_service(state_dir=tmp_path / "win", key_backup_window_s=7 * 86400)
    service.create_link("u1", "tmpl-window-0001", None, "0821234321", "phone")
    old_key = service._ring.active_id
    service.rotate_key()
    clock.advance(timedelta(days=30))  # long past the window, but the rows are still under the old key
    assert run_maintenance(service, batch=1).retired_keys == ()
    assert old_key in service._ring.key_ids()
    run_maintenance(service)  # re-encryption found finished: the window starts now
    clock.advance(timedelta(days=6))
    assert run_maintenance(service).retired_keys == ()
    clock.advance(timedelta(days=1, seconds=1))
    report = run_maintenance(service)
    assert report.retired_keys == (old_key,) and f"retired key(s) {old_key}" in report.summary()
    ring = json.loads((tmp_path / "win" / KEYRING_FILE).read_text())
    assert old_key not in ring["keys"] and ring["retired"] == [old_key]
    assert [e.action for e in service.audit_log()][-1] == "retire_keys"


def test_another_process_with_a_stale_keyring_keeps_working_after_rotation(make_service, tmp_path, otp):
    first = make_service(state_dir=tmp_path / "shared")
    second = make_service(state_dir=tmp_path / "shared")
    view, delivery = first.create_link("u1", "tmpl-stale-00001", None, "0821234321", "phone")
    first.verify(view.palm_pay_id, otp.code_for(delivery))
    report = first.rotate_key()
    # `second` still has only the old key in memory: it must reload and pay...
    assert second.pay("tmpl-stale-00001", 1, "T1", True, 0.99).status == "completed"
    # ...and seal new links with the new key named in the database.
    view2, _ = second.create_link("u2", "tmpl-stale-00002", None, "0821234322", "phone")
    with second.store.read() as tx:
        link = tx.link(view2.palm_pay_id)
    assert key_id_of(link.payshap_proxy.ciphertext) == report.new_key_id


def test_ciphertexts_are_bound_to_their_row(tmp_path):
    ring = KeyRing.load(tmp_path)
    cipher = FieldCipher(ring)
    blob = cipher.seal("0821234321", b"pp_a|payshap_proxy")
    assert cipher.open(blob, b"pp_a|payshap_proxy") == "0821234321"
    with pytest.raises(KeyRingError):
        cipher.open(blob, b"pp_b|payshap_proxy")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyRingError):
        cipher.open(tampered, b"pp_a|payshap_proxy")
    assert cipher.seal("0821234321", b"x") != cipher.seal("0821234321", b"x")  # fresh nonce each time


def test_blind_index_is_keyed_and_deterministic(tmp_path):
    a = BlindIndex(os.urandom(32))
    b = BlindIndex(os.urandom(32))
    assert a.digest("payshap_proxy", "0821234321") == a.digest("payshap_proxy", "0821234321")
    assert a.digest("payshap_proxy", "0821234321") != b.digest("payshap_proxy", "0821234321")
    assert a.digest("payshap_proxy", "x") != a.digest("palm_template_ref", "x")


def test_lookup_by_proxy_uses_the_blind_index(service, enroll):
    view, _, proxy = enroll(user_id="u1", hand="left")
    enroll(user_id="u2")
    found = service.links_for_proxy(proxy[:3] + " " + proxy[3:], "phone")  # normalised before hashing
    assert [v.palm_pay_id for v in found] == [view.palm_pay_id]
    assert service.links_for_proxy(proxy, "account") == []  # the proxy type is part of the index


def test_sensitive_reads_are_access_logged(service, enroll):
    view, ref, _ = enroll()
    result = service.pay(ref, 5, "T7", True, 0.99)
    entries = service.access_log(view.palm_pay_id)
    assert [(e.field, e.actor, e.purpose) for e in entries] == [
        ("payshap_proxy", "verification", "send_otp"),
        ("payshap_proxy", "terminal:T7", f"payment {result.payment_id}"),
    ]
    service.show(view.palm_pay_id)  # masked view: no sensitive read, no new entry
    assert len(service.access_log(view.palm_pay_id)) == 2


def test_masks():
    assert mask_proxy("0821234321") == "******4321"
    assert mask_proxy("+27 82 123 4321") == "******4321"
    assert mask_ref("tmpl-abcdef-9f2e") == "******9f2e"
    assert mask_ref("abc") == "******"
    assert mask_proxy("1234567") == "******"  # too short to show a tail safely


def test_link_records_and_views_never_expose_plaintext(service, enroll):
    view, ref, proxy = enroll()
    with service.store.read() as tx:
        link = tx.link(view.palm_pay_id)
    assert proxy not in repr(link) and ref not in repr(link)
    assert proxy not in view.model_dump_json() and ref not in view.model_dump_json()


def test_a_deleted_keyring_with_data_refuses_to_start_instead_of_making_a_new_key(
        tmp_path, make_service, enroll, clock, otp):
    service = make_service(state_dir=tmp_path / "lost")
    enroll()
    service.close()
    (tmp_path / "lost" / KEYRING_FILE).unlink()
    options = PalmPayOptions(state_dir=tmp_path / "lost", spec_path=service.options.spec_path)
    with pytest.raises(KeyRingError, match="refusing to start"):
        PalmPayService(options, clock=clock, verification=otp)
    assert not (tmp_path / "lost" / KEYRING_FILE).exists()  # no silent new key


def _restore(state, backup) -> None:
    import shutil

    for suffix in ("", "-wal", "-shm"):
        (state / f"palmpay.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, state / "palmpay.db")


def test_a_backup_from_before_a_rotation_restores_and_reads_within_the_backup_window(tmp_path, make_service, otp,
                                                                                       clock):
    import shutil
    from datetime import timedelta

    from payops.palmpay.settlement import run_maintenance

    state = tmp_path / "live"
    service = make_service(state_dir=state, key_backup_window_s=7 * 86400)
    view, delivery = service.create_link("u1", "tmpl-backup-0001", None, "0821234321", "phone")
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    service.store.checkpoint()
    shutil.copy(state / "palmpay.db", tmp_path / "backup.db")
    old_key = service._ring.active_id
    service.rotate_key()
    run_maintenance(service)  # every row re-encrypted
    clock.advance(timedelta(days=6))
    run_maintenance(service)  # within the window: nothing retires
    service.store.checkpoint()
    service.close()
    shutil.copy(state / "palmpay.db", tmp_path / "current.db")
    _restore(state, tmp_path / "backup.db")
    restored = make_service(state_dir=state, key_backup_window_s=7 * 86400)
    assert restored.pay("tmpl-backup-0001", 1, "T1", True, 0.99).status == "completed"
    restored.close()
    # Past the window the old key is destroyed: a backup that old is refused by name, never misread.
    _restore(state, tmp_path / "current.db")
    clock.advance(timedelta(days=2))
    current = make_service(state_dir=state, key_backup_window_s=7 * 86400)
    assert run_maintenance(current).retired_keys == (old_key,)
    current.close()
    _restore(state, tmp_path / "backup.db")
    with pytest.raises(KeyRingError, match=f"sealed under key {old_key}, retired after its backup window"):
        make_service(state_dir=state)


def test_the_keyring_can_live_outside_the_state_folder(tmp_path, make_service, monkeypatch):
    monkeypatch.setenv("PAYOPS_KEY_DIR", str(tmp_path / "vault"))
    make_service(state_dir=tmp_path / "state-only")
    assert (tmp_path / "vault" / KEYRING_FILE).exists()
    assert not (tmp_path / "state-only" / KEYRING_FILE).exists()


def test_a_rotation_a_crash_interrupted_is_finished_by_the_next_settlement_round(make_service, tmp_path, otp):
    from payops.palmpay.settlement import run_maintenance

    service = make_service(state_dir=tmp_path / "crash")
    for i in range(3):
        service.create_link(f"u{i}", f"tmpl-crash-rot-{i:04d}", None, f"08210000{i:02d}", "phone")
    old_key = service._ring.active_id
    new_key = service._ring.add_active_key()
    with service.store.write() as tx:
        tx.set_active_key_id(new_key)  # ... and the process died before re-encrypting a row
    report = run_maintenance(service)
    assert report.reencrypted == 3 and "re-encrypted 3 row(s)" in report.summary()
    with service.store.read() as tx:
        assert {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]} == {new_key}
    assert old_key in service._ring.key_ids()  # kept: a backup from before the rotation stays readable
    assert run_maintenance(service).reencrypted == 0 and run_maintenance(service).retired_keys == ()
    assert any(a.action == "reencrypt" for a in service.audit_log())
