"""Key rotation in the background: approvals switch, settlement rounds catch up, retirement waits for the
backup window; the blind-index root rotates the same way (palmpay/rotation.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payops.palmpay import PalmPayError
from payops.palmpay.crypto import KeyRingError, key_id_of
from payops.palmpay.settlement import run_maintenance

ALICE, BOB = "operator:a11ce0000001", "operator:b0b000000002"
WEEK = 7 * 86400.0


def _key_ids(service) -> set[str]:
    with service.store.read() as tx:
        return {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]}


def _index_roots(service) -> list[str]:
    with service.store.read() as tx:
        return sorted({r[0] for r in tx.c.execute("SELECT index_key_id FROM palm_pay_links").fetchall()})


def _rotate(service, action: str) -> str:
    request = service.request_change(action, requested_by=ALICE)
    done = service.approve_request(request.request_id, approved_by=BOB)
    assert done.status == "executed"
    return str(done.result)


def test_approving_a_key_rotation_switches_the_key_and_leaves_reencryption_to_the_rounds(service, enroll):
    refs = [enroll()[1] for _ in range(3)]
    old_key = service._ring.active_id
    result = _rotate(service, "rotate_key")
    assert result.endswith("re-encryption scheduled")
    assert _key_ids(service) == {old_key}  # the approval re-encrypted nothing
    new_ref = enroll()[1]  # sealed under the new key at once
    assert _key_ids(service) == {old_key, service._ring.active_id}
    assert run_maintenance(service, batch=2).reencrypted == 2
    assert run_maintenance(service, batch=2).reencrypted == 1
    assert _key_ids(service) == {service._ring.active_id}
    for ref in [*refs, new_ref]:
        assert service.pay(ref, 1, "T1", True, 0.99).status == "completed"


def test_the_blind_index_root_rotates_through_two_operators_and_finds_every_palm_meanwhile(make_service, enroll,
                                                                                           clock):
    service = enroll.service
    old = [enroll() for _ in range(3)]
    (old_root,) = _index_roots(service)
    with pytest.raises(PalmPayError, match="PALM_PAY_NOT_AUTHORISED"):
        service.rotate_index_root(actor=ALICE)  # a human needs a second operator
    result = _rotate(service, "rotate_index_root")
    new_root = result.split()[2].rstrip(";")
    assert new_root != old_root and _index_roots(service) == [old_root]  # nothing re-indexed in the approval
    # During the rotation lookups try both roots: old rows pay and are found, a palm is still unique.
    view, ref, proxy = old[0]
    assert service.pay(ref, 1, "T1", True, 0.99).status == "completed"
    assert [v.palm_pay_id for v in service.links_for_proxy(proxy, "phone")] == [view.palm_pay_id]
    with pytest.raises(PalmPayError, match="PALM_PAY_DUPLICATE_PALM"):
        service.create_link("someone-else", ref, None, "0831112222", "phone")
    fresh_view, fresh_ref, _ = enroll()
    assert _index_roots(service) == sorted([old_root, new_root])
    with pytest.raises(PalmPayError, match="still being rotated out"):  # one root rotation at a time
        service.request_change("rotate_index_root", requested_by=ALICE)
    # The rounds re-index in batches (decrypting, access-logged), then retire the old root after the window.
    assert run_maintenance(service, batch=2).reindexed == 2
    assert run_maintenance(service, batch=2).reindexed == 1
    assert _index_roots(service) == [new_root]
    assert len([a for a in service.access_log() if a.actor == "index_rotation"]) == 6
    clock.advance(timedelta(seconds=service.options.key_backup_window_s - 1))
    run_maintenance(service)
    with service.store.read() as tx:
        assert tx.rotation_state().index_prev_key_id == old_root  # still inside the backup window
    clock.advance(timedelta(seconds=2))
    run_maintenance(service)
    with service.store.read() as tx:
        state = tx.rotation_state()
    assert (state.index_key_id, state.index_prev_key_id) == (new_root, None)
    assert "retire_index_root" in [e.action for e in service.audit_log()]
    for _view, ref, _proxy in [*old, (fresh_view, fresh_ref, None)]:
        assert service.pay(ref, 1, "T1", True, 0.99).status == "completed"


def test_a_server_without_the_new_index_root_refuses_to_start_and_a_running_one_picks_it_up(make_service, tmp_path,
                                                                                             otp):
    state = tmp_path / "shared"
    first, second = make_service(state_dir=state), make_service(state_dir=state)
    view, delivery = first.create_link("u1", "tmpl-root-shared-1", None, "0821234321", "phone")
    first.verify(view.palm_pay_id, otp.code_for(delivery))
    root_file = state / "keys" / "palmpay-index-root.key"
    before = root_file.read_bytes() if root_file.exists() else None
    new_root = first.rotate_index_root()
    run_maintenance(first)
    # `second` started before the rotation: it re-reads the key provider and finds the new root.
    assert second.pay("tmpl-root-shared-1", 1, "T1", True, 0.99).status == "completed"
    view2, _ = second.create_link("u2", "tmpl-root-shared-2", None, "0821234322", "phone")
    with second.store.read() as tx:
        assert tx.c.execute("SELECT index_key_id FROM palm_pay_links WHERE palm_pay_id = ?",
                            (view2.palm_pay_id,)).fetchone()[0] == new_root
    # A server whose key folder lacks the new root refuses to start (it would answer NOT_REGISTERED).
    if before is None:
        root_file.unlink()
    else:
        root_file.write_bytes(before)
    with pytest.raises(KeyRingError, match=f"index root {new_root}"):
        make_service(state_dir=state)


def test_a_payment_retried_across_a_root_rotation_is_replayed_not_refused(service, enroll):
    _view, ref, _ = enroll()
    first = service.pay(ref, 5, "T1", True, 0.99, idempotency_key="till-1:retry-0001")
    service.rotate_index_root()
    again = service.pay(ref, 5, "T1", True, 0.99, idempotency_key="till-1:retry-0001")
    assert again.replayed and again.payment_id == first.payment_id
    with pytest.raises(PalmPayError, match="PALM_PAY_IDEMPOTENCY_CONFLICT"):
        service.pay(ref, 6, "T1", True, 0.99, idempotency_key="till-1:retry-0001")


def test_a_root_derived_from_the_data_key_survives_a_restart_mid_rotation(make_service, tmp_path, otp):
    import base64
    import os

    data_key = base64.b64encode(os.urandom(32)).decode()
    state = tmp_path / "derived"
    service = make_service(state_dir=state, data_key=data_key)  # no ring file: the root derives from the key
    view, delivery = service.create_link("u1", "tmpl-derived-root-1", None, "0821234321", "phone")
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    service.rotate_index_root()
    service.close()
    again = make_service(state_dir=state, data_key=data_key)  # restarted before any re-indexing round
    assert again.pay("tmpl-derived-root-1", 1, "T1", True, 0.99).status == "completed"


def test_rounds_with_no_rotation_pending_do_not_scan_every_link(service, enroll, clock, monkeypatch):
    """Maintenance runs every round in the background of serve and run: once a rotation is finished and its
    old keys retired, a round must not read (and, on PostgreSQL, lock) every link to find nothing to do."""
    from payops.palmpay.tx_records import RecordQueries

    for _ in range(3):
        enroll()
    _rotate(service, "rotate_key")
    while run_maintenance(service, batch=2).reencrypted:
        pass
    clock.advance(timedelta(seconds=service.options.key_backup_window_s + 1))
    assert run_maintenance(service).retired_keys  # the old key goes once the window has passed
    scans = []
    real = RecordQueries.sealed_values
    monkeypatch.setattr(RecordQueries, "sealed_values", lambda tx: scans.append(1) or real(tx))
    for _ in range(3):
        report = run_maintenance(service)
        assert report.reencrypted == 0 and not report.retired_keys
    assert scans == []
    _rotate(service, "rotate_key")  # a new rotation: the rounds do scan again, and catch up
    assert run_maintenance(service).reencrypted == 3 and scans
