"""The audit trail: one append-only, hash-chained record per decision.

Each row's hash covers its sequence number, the previous row's hash, its
decision id, kind and time, and the canonical JSON of the record; a head row
keeps the count and last hash. So an edited, deleted (middle or last) or
reordered row breaks `verify()` at the first bad record.

Kinds: "decision" (one per tick), "approval" (a human's or the expiry's answer,
with approver and note), "approved_action" (an approved action applied),
"rollback" (an action rolled back, e.g. at its TTL), "reconcile" (an unknown
outcome settled). Records are redacted before hashing: no sensitive field is
stored in plaintext.

What the chain cannot catch on its own: someone who rewrites the whole file,
recomputing every hash and the head. Ship `payops audit verify`'s head hash
elsewhere (a log line, a ticket) to anchor it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

from payops.storage.db import Database, SqliteDatabase

from .redact import redact

GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    record BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_decision ON audit_log(decision_id);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def chain_hash(seq: int, prev_hash: str, body: bytes, decision_id: str = "", kind: str = "", at: float = 0.0) -> str:
    header = f"{seq}:{prev_hash}:{decision_id}:{kind}:{float(at)!r}:"
    return hashlib.sha256(header.encode() + body).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    decision_id: str
    at: float
    kind: str
    record: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""
    first_bad_decision: str | None = None  # the decision id of the first bad record, when it still exists
    head_hash: str = ""


class AuditLog:
    """The trail on SQLite (a file, or ":memory:") or on any `storage.db.Database`
    (PostgreSQL: `AuditLog(database=PostgresDatabase(dsn, "payops"))`).

    Appenders serialise on the head row: SQLite's `BEGIN IMMEDIATE` locks the whole
    file; PostgreSQL's `SELECT ... FOR UPDATE` locks the head, which exists from the
    first migration, so two workers never both take the same sequence number.
    """

    def __init__(self, path: str | Path | None = None, *, database: Database | None = None) -> None:
        if database is None:
            if path is None:
                raise ValueError("AuditLog needs a path or a database")
            database = SqliteDatabase(path, schema=SCHEMA)
        self.path = str(path) if path is not None else getattr(database, "dsn", "")
        self._db = database

    def close(self) -> None:
        self._db.close()

    def append(self, decision_id: str, kind: str, at: float, record: dict[str, Any]) -> AuditEntry:
        """Append one record (sensitive fields masked) atomically with the head."""
        safe = redact(record)
        body = canonical(safe)
        with self._db.write() as conn:
            head = conn.execute("SELECT count, hash FROM audit_head WHERE id = 1" + self._db.for_update).fetchone()
            count, prev = (int(head[0]), head[1]) if head else (0, GENESIS)
            seq = count + 1
            digest = chain_hash(seq, prev, body, decision_id, kind, at)
            conn.execute(
                "INSERT INTO audit_log (seq, decision_id, at, kind, record, prev_hash, hash) VALUES (?,?,?,?,?,?,?)",
                (seq, decision_id, at, kind, body, prev, digest),
            )
            conn.execute(
                "INSERT INTO audit_head (id, count, hash) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET count = excluded.count, hash = excluded.hash",
                (seq, digest),
            )
        return AuditEntry(seq, decision_id, at, kind, safe, digest)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[AuditEntry]:
        with self._db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        for seq, decision_id, at, kind, body, digest in rows:
            yield AuditEntry(seq, decision_id, at, kind, orjson.loads(body), digest)

    def get(self, decision_id: str) -> list[AuditEntry]:
        return list(self._rows(
            "SELECT seq, decision_id, at, kind, record, hash FROM audit_log WHERE decision_id = ? ORDER BY seq", (decision_id,)))

    def at_seq(self, seq: int) -> list[AuditEntry]:
        return list(self._rows("SELECT seq, decision_id, at, kind, record, hash FROM audit_log WHERE seq = ?", (seq,)))

    def tail(self, n: int = 10) -> list[AuditEntry]:
        rows = list(self._rows("SELECT seq, decision_id, at, kind, record, hash FROM audit_log ORDER BY seq DESC LIMIT ?", (n,)))
        return rows[::-1]

    def entries(self, kind: str | None = None) -> Iterator[AuditEntry]:
        if kind is None:
            return self._rows("SELECT seq, decision_id, at, kind, record, hash FROM audit_log ORDER BY seq")
        return self._rows("SELECT seq, decision_id, at, kind, record, hash FROM audit_log WHERE kind = ? ORDER BY seq", (kind,))

    def count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])

    def forget_all_but(self, last: int) -> int:
        """Drop every record but the last `last`; returns how many went. For a throwaway trail only
        (a replay's, in memory, which nobody verifies): afterwards `verify` reports the first ones missing.
        The head stays, so the chain goes on from where it was."""
        with self._db.write() as conn:
            head = conn.execute("SELECT count FROM audit_head WHERE id = 1").fetchone()
            cut = (int(head[0]) if head else 0) - last
            if cut <= 0:
                return 0
            return int(conn.execute("DELETE FROM audit_log WHERE seq <= ?", (cut,)).rowcount)

    def verify(self) -> VerifyResult:
        """Walk the chain in seq order; the first record that does not check out is named."""
        prev = GENESIS
        expected_seq = 1
        n = 0
        with self._db.read() as conn:  # one snapshot: the rows and the head agree even while others append
            rows = conn.execute("SELECT seq, decision_id, at, kind, record, prev_hash, hash FROM audit_log ORDER BY seq").fetchall()
            head = conn.execute("SELECT count, hash FROM audit_head WHERE id = 1").fetchone()
        for seq, decision_id, at, kind, body, prev_hash, digest in rows:
            n += 1
            if seq != expected_seq:
                return VerifyResult(False, n, expected_seq, f"record {expected_seq} is missing (next is {seq})", decision_id)
            if prev_hash != prev:
                return VerifyResult(False, n, seq, f"record {seq} does not follow record {seq - 1} (chain broken: "
                                    "a record before it was removed, replaced or moved)", decision_id)
            # A hand-edited row may come back as TEXT (or anything): hash what is there, never crash.
            raw = bytes(body) if isinstance(body, (bytes, memoryview)) else str(body).encode()
            if chain_hash(seq, prev_hash, raw, decision_id, kind, at if isinstance(at, (int, float)) else float("nan")) != digest:
                return VerifyResult(False, n, seq, f"record {seq} was altered (hash mismatch)", decision_id)
            prev = digest
            expected_seq += 1
        count, head_hash = (int(head[0]), head[1]) if head else (0, GENESIS)
        if count > n:
            return VerifyResult(False, n, n + 1, f"the trail ends at record {n} but the head says {count} "
                                f"(record {n + 1} onwards removed)")
        if count != n or head_hash != prev:
            return VerifyResult(False, n, n, f"the head (count {count}) does not match the last record {n}")
        return VerifyResult(True, n, head_hash=prev)
