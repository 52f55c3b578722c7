"""The agent's audit trail: one record per (decision id, kind), keyed chain, signed checkpoints.

Each tamper test plays an attacker who can write the database (and recompute any
unkeyed hash) but holds neither the audit HMAC key nor the checkpoint signing key.
"""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from payops.memory.audit import GENESIS, AuditLog, canonical, chain_hash
from payops.storage.keys import KeyMissing


def _trail(tmp_path: Path, n: int = 6, every: int = 3) -> Path:
    db = tmp_path / "state" / "audit.db"
    log = AuditLog(db, checkpoint_every=every)
    for i in range(n):
        log.append(f"d-{i}", "decision", 100.0 + i, {"decision_id": f"d-{i}", "approver": "alice", "i": i})
    log.close()
    return db


def _sql(db: Path, *statements: tuple[str, tuple]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()


def _sha_rechain(db: Path) -> None:
    """Recompute every row as an unkeyed legacy chain and fix the head: what an attacker can do without the key."""
    conn = sqlite3.connect(db)
    with conn:
        prev = GENESIS
        rows = conn.execute("SELECT seq, decision_id, at, kind, record FROM audit_log ORDER BY seq").fetchall()
        for seq, decision_id, at, kind, body in rows:
            digest = chain_hash(seq, prev, bytes(body), decision_id, kind, at)
            conn.execute("UPDATE audit_log SET prev_hash = ?, hash = ?, fmt = 1, key_id = NULL WHERE seq = ?",
                         (prev, digest, seq))
            prev = digest
        conn.execute("UPDATE audit_head SET count = ?, hash = ?, mac = NULL", (len(rows), prev))
    conn.close()


def test_the_same_record_appended_again_after_a_crash_is_stored_once(tmp_path):
    log = AuditLog(tmp_path / "audit.db")
    first = log.append("d-1", "decision", 1.0, {"decision_id": "d-1", "tool": "reroute_traffic"})
    again = log.append("d-1", "decision", 1.0, {"decision_id": "d-1", "tool": "reroute_traffic"})
    assert again.seq == first.seq
    assert log.count() == 1


def test_a_different_record_for_the_same_decision_and_kind_supersedes_the_first_explicitly(tmp_path):
    log = AuditLog(tmp_path / "audit.db")
    first = log.append("d-1", "decision", 1.0, {"decision_id": "d-1", "execution": "executed"})
    log.append("d-1", "approval", 2.0, {"decision_id": "d-1", "status": "approved"})
    second = log.append("d-1", "decision", 1.0, {"decision_id": "d-1", "execution": "already in force"})
    assert (second.revision, second.supersedes) == (1, first.seq)
    assert [e.record.get("execution") for e in log.current("d-1") if e.kind == "decision"] == ["already in force"]
    result = log.verify()
    assert result.ok and result.superseded == 1


def test_two_unrelated_records_under_one_decision_and_kind_are_refused_by_the_database(tmp_path):
    db = tmp_path / "audit.db"
    AuditLog(db).append("d-1", "decision", 1.0, {"a": 1})
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO audit_log (seq, decision_id, at, kind, record, prev_hash, hash, fmt, revision) "
                     "VALUES (2, 'd-1', 1.0, 'decision', x'7b7d', 'x', 'y', 2, 0)")


def test_a_wiped_trail_is_detected(tmp_path):
    db = _trail(tmp_path)
    _sql(db, ("DELETE FROM audit_log", ()), ("DELETE FROM audit_head", ()))
    result = AuditLog(db).verify()
    assert not result.ok and "wiped" in result.reason


def test_a_truncated_trail_with_its_head_fixed_is_detected(tmp_path):
    db = _trail(tmp_path)
    conn = sqlite3.connect(db)
    seq, digest = conn.execute("SELECT seq, hash FROM audit_log WHERE seq = 4").fetchone()
    conn.close()
    _sql(db, ("DELETE FROM audit_log WHERE seq > 4", ()), ("UPDATE audit_head SET count = ?, hash = ?", (seq, digest)))
    result = AuditLog(db).verify()
    assert not result.ok


def test_an_edit_rechained_without_the_key_is_detected(tmp_path):
    db = _trail(tmp_path)
    conn = sqlite3.connect(db)
    body = conn.execute("SELECT record FROM audit_log WHERE seq = 2").fetchone()[0]
    conn.close()
    forged = bytes(body).replace(b"alice", b"mallory")
    _sql(db, ("UPDATE audit_log SET record = ? WHERE seq = 2", (forged,)))
    _sha_rechain(db)
    result = AuditLog(db).verify()
    assert not result.ok and result.first_bad_seq is not None


def test_a_forged_append_with_the_head_updated_is_detected(tmp_path):
    db = _trail(tmp_path, n=6, every=100)  # the forged row is beyond every checkpoint but the last (on close)
    conn = sqlite3.connect(db)
    count, prev = conn.execute("SELECT count, hash FROM audit_head").fetchone()
    conn.close()
    body = canonical({"decision_id": "d-x", "approver": "mallory"})
    digest = hashlib.sha256(prev.encode() + body).hexdigest()  # any hash: the attacker has no key
    _sql(db, ("INSERT INTO audit_log (seq, decision_id, at, kind, record, prev_hash, hash, fmt, revision, key_id) "
              "VALUES (?, 'd-x', 200.0, 'decision', ?, ?, ?, 2, 0, (SELECT key_id FROM audit_log WHERE seq = 1))",
              (count + 1, body, prev, digest)),
         ("UPDATE audit_head SET count = ?, hash = ?", (count + 1, digest)))
    result = AuditLog(db).verify()
    assert not result.ok and result.first_bad_seq == count + 1


def test_a_forged_append_in_the_legacy_format_after_keyed_records_is_detected(tmp_path):
    db = _trail(tmp_path)
    conn = sqlite3.connect(db)
    count, prev = conn.execute("SELECT count, hash FROM audit_head").fetchone()
    conn.close()
    body = canonical({"decision_id": "d-x"})
    digest = chain_hash(count + 1, prev, body, "d-x", "decision", 200.0)
    _sql(db, ("INSERT INTO audit_log (seq, decision_id, at, kind, record, prev_hash, hash, fmt, revision) "
              "VALUES (?, 'd-x', 200.0, 'decision', ?, ?, ?, 1, 0)", (count + 1, body, prev, digest)),
         ("UPDATE audit_head SET count = ?, hash = ?", (count + 1, digest)))
    result = AuditLog(db).verify()
    assert not result.ok and "legacy" in result.reason


def test_a_trail_written_before_version_2_verifies_as_a_legacy_segment_and_the_keyed_part_follows(tmp_path):
    db = tmp_path / "audit.db"
    conn = sqlite3.connect(db)
    conn.executescript("""CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, decision_id TEXT NOT NULL, at REAL NOT NULL,
        kind TEXT NOT NULL, record BLOB NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL, hash TEXT NOT NULL);""")
    prev = GENESIS
    for seq, did in ((1, "d-old"), (2, "d-old")):  # older code wrote two records under one id
        body = canonical({"n": seq})
        digest = chain_hash(seq, prev, body, did, "decision", float(seq))
        conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?)",
                     (seq, did, float(seq), "decision", body, prev, digest))
        prev = digest
    conn.execute("INSERT INTO audit_head VALUES (1, 2, ?)", (prev,))
    conn.commit()
    conn.close()
    log = AuditLog(db)
    log.append("d-new", "decision", 3.0, {"n": 3})
    result = log.verify()
    assert result.ok and (result.count, result.legacy, result.superseded) == (3, 2, 1)


def test_a_checkpoint_line_edited_by_hand_fails_its_signature(tmp_path):
    db = _trail(tmp_path)
    path = db.parent / "audit.checkpoints"
    path.write_text(path.read_text().replace('"count": 3', '"count": 2', 1))
    result = AuditLog(db).verify()
    assert not result.ok and "signature" in result.reason


def test_a_deleted_audit_key_with_keyed_records_refuses_to_open_instead_of_making_a_new_key(tmp_path):
    db = _trail(tmp_path)
    (db.parent / "keys" / "audit-hmac.key").unlink()
    with pytest.raises(KeyMissing, match="refusing to start"):
        AuditLog(db)
    assert not (db.parent / "keys" / "audit-hmac.key").exists()


def test_the_trail_its_keys_and_checkpoints_are_private_to_the_owner(tmp_path):
    db = _trail(tmp_path)
    for path in (db, db.parent / "audit.checkpoints", db.parent / "keys" / "audit-hmac.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (db.parent, db.parent / "keys"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_the_last_checkpoint_of_a_log_is_the_newest_good_one(tmp_path) -> None:
    from payops.storage.chain import CheckpointFile
    from payops.storage.keys import KeySet

    signing = KeySet("checkpoint_signing", "k1", {"k1": b"\x01" * 32})
    file = CheckpointFile(tmp_path / "audit.checkpoints", signing)
    file.write("agent", 10, 10, "a" * 64, 1.0)
    file.write("palm_audit", 4, 4, "b" * 64, 2.0)
    second = file.write("agent", 20, 20, "c" * 64, 3.0)
    file.write("agent", 30, 30, "d" * 64, 4.0)
    lines = file.path.read_text().splitlines()
    lines[-1] = lines[-1].replace('"count": 30', '"count": 31')  # a forged last line: its signature fails
    file.path.write_text("\n".join(lines) + "\n")
    assert (file.last("agent").count, file.last("agent").line) == (second.count, 3)  # line 3 of the file
    assert file.last("palm_audit").count == 4 and file.last("nothing") is None
    good, bad = file.read("agent")
    assert [c.count for c in good] == [10, 20] and len(bad) == 1
