"""The audit trail: one append-only, keyed, hash-chained record per (decision id, kind).

Record format (version 2, settled here; memory/approvals and palm-pay build on it)
-------------------------------------------------------------------------------
Columns of `audit_log`: `seq` (1, 2, ... no gaps), `decision_id`, `at` (event time),
`kind`, `record` (canonical JSON, sensitive fields redacted before anything is
hashed), `revision`, `supersedes`, `fmt`, `key_id`, `prev_hash`, `hash`.

- `fmt` 2 (keyed): `hash = HMAC-SHA256(K[key_id], "payops.chain.v2|" + prev_hash + "|" +
  "seq|decision_id|kind|repr(at)|revision|supersedes|key_id|" + record)`. K is the
  audit HMAC key from the key provider (storage/keys.py: environment, a KMS command or
  a key file), never stored in the database: whoever can write the database still
  cannot re-chain it after an edit, nor forge an append.
- `fmt` 1 (legacy, before this version): `hash = SHA-256(seq:prev:decision_id:kind:repr(at): + record)`.
  Legacy rows verify as a segment that must come first; the first keyed row chains on
  the last legacy hash. A legacy-format row after the keyed part began is a forgery.
- The head row (`audit_head`: count, hash, mac) carries an HMAC of (count, hash), so a
  truncation that "fixes" the head is caught even before the next checkpoint.
- Signed checkpoints (storage/chain.py): every `checkpoint_every` records and on close,
  the (count, last seq, head) is signed with Ed25519 and appended to a file outside the
  database. A wipe, a truncation, a re-chain (even a legacy re-chain with a fixed head)
  and a forged append are each caught against them.

One record per (decision id, kind)
----------------------------------
Kinds: "decision" (one per tick), "approval" (a human's or the expiry's answer),
"approved_action" (an approved action applied or voided), "rollback" (an action
rolled back, e.g. at its TTL), "reconcile" (an unknown outcome settled), "outcome"
(the measured effect of an action). A tick killed after its audit write and before its
checkpoint runs again under the same decision id. `append` is idempotent on
(decision_id, kind): the same body again is a no-op that returns the stored record;
a different body (the re-run saw something else) is appended as `revision` n+1 with
`supersedes` = the seq it replaces — never a second unrelated record. A unique index on
(decision_id, kind, revision) makes that hold under concurrent writers too, and
`verify()` checks that every revision supersedes its predecessor. `current()` gives the
latest revision of each kind.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from payops.storage.chain import GENESIS, CheckpointFile, chain_mac, verify_checkpoints
from payops.storage.crash import crash_point
from payops.storage.db import Database, SqliteDatabase
from payops.storage.keys import AUDIT_HMAC, CHECKPOINT_SIGNING, KeyChain, KeySet, key_chain, private_file

from .redact import redact

LEGACY, KEYED = 1, 2
LOG_NAME = "agent"  # this trail's name in the checkpoint file
# Default: beside the database (set PAYOPS_AUDIT_CHECKPOINT_PATH to move it off the host).
CHECKPOINT_FILE = "audit.checkpoints"
# A checkpoint every 50 records: about one an hour at one tick a minute, so at most that
# much of the tail can go missing unnoticed between checkpoints (the keyed head narrows it).
CHECKPOINT_EVERY = 50

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

# Version 2 columns, added to files made before them (existing rows: legacy format, revision 0).
_V2_COLUMNS = (
    ("audit_log", "fmt", "INTEGER NOT NULL DEFAULT 1"),
    ("audit_log", "revision", "INTEGER NOT NULL DEFAULT 0"),
    ("audit_log", "supersedes", "INTEGER"),
    ("audit_log", "key_id", "TEXT"),
    ("audit_head", "mac", "TEXT"),
)
UNIQUE_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS audit_log_once ON audit_log(decision_id, kind, revision)"


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def chain_hash(seq: int, prev_hash: str, body: bytes, decision_id: str = "", kind: str = "", at: float = 0.0) -> str:
    """The legacy (format 1) unkeyed hash: still how pre-version-2 rows verify."""
    header = f"{seq}:{prev_hash}:{decision_id}:{kind}:{float(at)!r}:"
    return hashlib.sha256(header.encode() + body).hexdigest()


def keyed_hash(key: bytes, seq: int, prev_hash: str, body: bytes, decision_id: str, kind: str, at: float,
               revision: int, supersedes: int | None, key_id: str) -> str:
    header = f"{seq}|{decision_id}|{kind}|{float(at)!r}|{revision}|{supersedes or 0}|{key_id}|"
    return chain_mac(key, prev_hash, header.encode() + body)  # one keyed-chain format (storage/chain.py)


def head_mac(key: bytes, count: int, head: str) -> str:
    return hmac.new(key, f"payops.audit.head|{count}|{head}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    decision_id: str
    at: float
    kind: str
    record: dict[str, Any]
    hash: str
    revision: int = 0
    supersedes: int | None = None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""
    first_bad_decision: str | None = None  # the decision id of the first bad record, when it still exists
    head_hash: str = ""
    log: str = "agent audit trail"
    legacy: int = 0  # records in the unkeyed legacy segment
    checkpoints: int = 0  # signed checkpoints checked
    superseded: int = 0  # records replaced by a later revision (a tick re-run after a crash)


@dataclass(frozen=True)
class AuditKeys:
    """The audit HMAC key versions and the checkpoint file (signing key inside)."""

    hmac: KeySet
    checkpoints: CheckpointFile | None


def _sql_columns(conn: Any, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _upgrade_sqlite(database: SqliteDatabase) -> None:
    """Add the version 2 columns; number the duplicate records older versions wrote as revisions."""
    with database.write() as c:
        for table, column, ddl in _V2_COLUMNS:
            if column not in _sql_columns(c, table):
                c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
        if not c.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_log_once'").fetchone():
            dupes = c.execute("SELECT decision_id, kind FROM audit_log GROUP BY decision_id, kind "
                              "HAVING COUNT(*) > 1").fetchall()
            for decision_id, kind in dupes:
                seqs = [r[0] for r in c.execute("SELECT seq FROM audit_log WHERE decision_id = ? AND kind = ? "
                                                "ORDER BY seq", (decision_id, kind))]
                for n, seq in enumerate(seqs):
                    c.execute("UPDATE audit_log SET revision = ?, supersedes = ? WHERE seq = ?",
                              (n, seqs[n - 1] if n else None, seq))
            c.execute(UNIQUE_INDEX)


def default_keys(folder: Path, *, chain: KeyChain | None = None, checkpoint_path: Path | None = None,
                 keyed_rows: bool = False) -> AuditKeys:
    """Keys from the provider chain (default: environment, then `<folder>/keys`); checkpoints beside the database."""
    chain = chain or key_chain(folder)
    path = Path(checkpoint_path) if checkpoint_path else folder / CHECKPOINT_FILE
    hmac_keys = chain.obtain(AUDIT_HMAC, data_exists=keyed_rows, what="the audit trail's keyed records")
    signing = chain.obtain(CHECKPOINT_SIGNING, data_exists=path.exists() and path.stat().st_size > 0,
                           what=f"the signed checkpoints in {path}")
    return AuditKeys(hmac_keys, CheckpointFile(path, signing))


class AuditLog:
    """The trail on SQLite (a file, or ":memory:") or on any `storage.db.Database`
    (PostgreSQL: `AuditLog(database=PostgresDatabase(dsn, "payops"), keys=...)`).

    Appenders serialise on the head row: SQLite's `BEGIN IMMEDIATE` locks the whole
    file; PostgreSQL's `SELECT ... FOR UPDATE` locks the head, which exists from the
    first migration, so two workers never both take the same sequence number.

    `keys`: the audit HMAC key and the checkpoint file. Default: from the key provider
    chain rooted at the database's folder (an in-memory trail uses a throwaway key and
    writes no checkpoints). With data whose key is missing, opening fails (`KeyMissing`).
    """

    def __init__(self, path: str | Path | None = None, *, database: Database | None = None,
                 keys: AuditKeys | None = None, checkpoint_every: int = CHECKPOINT_EVERY,
                 clock: Any = time.time, key_source: KeyChain | None = None, checkpoint_path: Path | None = None,
                 key_home: Path | None = None) -> None:
        if database is None:
            if path is None:
                raise ValueError("AuditLog needs a path or a database")
            if str(path) != ":memory:":
                private_file(path)  # 0600 in a 0700 folder, before SQLite creates it 0644
            database = SqliteDatabase(path, schema=SCHEMA)
        if isinstance(database, SqliteDatabase):
            _upgrade_sqlite(database)
        self.path = str(path) if path is not None else getattr(database, "dsn", "")
        self._db = database
        if keys is None:
            shared = path is None and str(getattr(database, "path", "")) != ":memory:"
            if key_home is not None or key_source is not None or shared:
                # PostgreSQL without a folder given: the state folder's (the Settings default, as every
                # process sees it).
                home = Path(key_home or os.environ.get("PAYOPS_STATE_DIR") or ".payops")
                keys = default_keys(home, chain=key_source, checkpoint_path=checkpoint_path,
                                    keyed_rows=self._has_keyed_rows())
            elif path is None or str(path) == ":memory:":
                import secrets

                raw = secrets.token_bytes(32)
                keys = AuditKeys(KeySet("audit-hmac", "ephemeral", {"ephemeral": raw}, "memory"), None)
            else:
                keys = default_keys(Path(path).parent, checkpoint_path=checkpoint_path,
                                    keyed_rows=self._has_keyed_rows())
        self.keys = keys
        self.checkpoint_every = max(1, int(checkpoint_every))
        self._clock = clock
        self._sealed = -1  # records covered by this process's last checkpoint (-1: not looked yet)

    def _has_keyed_rows(self) -> bool:
        with self._db.read() as conn:
            return conn.execute("SELECT 1 FROM audit_log WHERE fmt = ? LIMIT 1", (KEYED,)).fetchone() is not None

    def close(self) -> None:
        """Seal what this process appended (a signed checkpoint), then close."""
        try:
            self.checkpoint()
        finally:
            self._db.close()

    # --- writing ------------------------------------------------------------------

    def append(self, decision_id: str, kind: str, at: float, record: dict[str, Any]) -> AuditEntry:
        """Append one record (sensitive fields masked) atomically with the head; idempotent per (decision_id, kind)."""
        safe = redact(record)
        body = canonical(safe)
        key_id = self.keys.hmac.active
        key = self.keys.hmac.active_key
        with self._db.write() as conn:
            head = conn.execute("SELECT count, hash FROM audit_head WHERE id = 1" + self._db.for_update).fetchone()
            current = conn.execute(
                "SELECT seq, at, record, revision, hash FROM audit_log WHERE decision_id = ? AND kind = ? "
                "ORDER BY revision DESC LIMIT 1", (decision_id, kind)).fetchone()
            if current is not None and bytes(current[2]) == body:
                # The same record again (a tick re-run after a crash): nothing to add.
                return AuditEntry(int(current[0]), decision_id, float(current[1]), kind, safe, current[4],
                                  int(current[3]))
            revision = int(current[3]) + 1 if current is not None else 0
            supersedes = int(current[0]) if current is not None else None
            count, prev = (int(head[0]), head[1]) if head else (0, GENESIS)
            seq = count + 1
            digest = keyed_hash(key, seq, prev, body, decision_id, kind, at, revision, supersedes, key_id)
            conn.execute(
                "INSERT INTO audit_log (seq, decision_id, at, kind, record, prev_hash, hash, fmt, revision, "
                "supersedes, key_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (seq, decision_id, at, kind, body, prev, digest, KEYED, revision, supersedes, key_id),
            )
            conn.execute(
                "INSERT INTO audit_head (id, count, hash, mac) VALUES (1, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET count = excluded.count, hash = excluded.hash, mac = excluded.mac",
                (seq, digest, head_mac(key, seq, digest)),
            )
        crash_point("audit_append")
        self._maybe_checkpoint(seq)
        return AuditEntry(seq, decision_id, at, kind, safe, digest, revision, supersedes)

    def _maybe_checkpoint(self, seq: int) -> None:
        if self.keys.checkpoints is None:
            return
        if self._sealed < 0:
            last = self.keys.checkpoints.last(LOG_NAME)
            self._sealed = last.count if last else 0
        if seq - self._sealed >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> bool:
        """Sign and write the head (count, last seq, hash) outside the database. False: nothing new to seal."""
        cps = self.keys.checkpoints
        if cps is None:
            return False
        with self._db.read() as conn:
            head = conn.execute("SELECT count, hash FROM audit_head WHERE id = 1").fetchone()
        count, digest = (int(head[0]), head[1]) if head else (0, GENESIS)
        if count == self._sealed or (count == 0 and not cps.exists()):
            return False
        last = cps.last(LOG_NAME)
        if last is not None and last.count == count and last.head == digest:
            self._sealed = count
            return False
        # The HMAC key version the rows were chained with, named in the checkpoint as palm-pay's logs do.
        cps.write(LOG_NAME, count, count, digest, self._clock(), mac_key=self.keys.hmac.active)
        self._sealed = count
        return True

    # --- reading ------------------------------------------------------------------

    _COLS = "seq, decision_id, at, kind, record, hash, revision, supersedes"

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[AuditEntry]:
        with self._db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        for seq, decision_id, at, kind, body, digest, revision, supersedes in rows:
            yield AuditEntry(seq, decision_id, at, kind, orjson.loads(body), digest, int(revision or 0), supersedes)

    def get(self, decision_id: str) -> list[AuditEntry]:
        """Every record of a decision, superseded revisions included (the trail is append-only)."""
        return list(self._rows(f"SELECT {self._COLS} FROM audit_log WHERE decision_id = ? ORDER BY seq",
                               (decision_id,)))

    def current(self, decision_id: str) -> list[AuditEntry]:
        """The latest revision of each kind of record of a decision."""
        latest: dict[str, AuditEntry] = {}
        for entry in self.get(decision_id):
            latest[entry.kind] = entry
        return sorted(latest.values(), key=lambda e: e.seq)

    def at_seq(self, seq: int) -> list[AuditEntry]:
        return list(self._rows(f"SELECT {self._COLS} FROM audit_log WHERE seq = ?", (seq,)))

    def tail(self, n: int = 10) -> list[AuditEntry]:
        rows = list(self._rows(f"SELECT {self._COLS} FROM audit_log ORDER BY seq DESC LIMIT ?", (n,)))
        return rows[::-1]

    def entries(self, kind: str | None = None, after: int = 0) -> Iterator[AuditEntry]:
        """Records in order; `after`: only those past that seq (a reader catching up, e.g. the console)."""
        if kind is None:
            return self._rows(f"SELECT {self._COLS} FROM audit_log WHERE seq > ? ORDER BY seq", (after,))
        return self._rows(f"SELECT {self._COLS} FROM audit_log WHERE kind = ? AND seq > ? ORDER BY seq", (kind, after))

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

    # --- verifying ----------------------------------------------------------------

    def verify(self) -> VerifyResult:
        """Walk the chain in seq order, then check the head and the signed checkpoints.

        The first record that does not check out is named; so is a wipe, a truncation,
        a re-chain or a forged append that the rows alone would hide.
        """
        with self._db.read() as conn:  # one snapshot: the rows and the head agree even while others append
            rows = conn.execute("SELECT seq, decision_id, at, kind, record, prev_hash, hash, fmt, revision, "
                                "supersedes, key_id FROM audit_log ORDER BY seq").fetchall()
            head = conn.execute("SELECT count, hash, mac FROM audit_head WHERE id = 1").fetchone()
        bad = self._walk(rows)
        if isinstance(bad, VerifyResult):
            return bad
        prev, legacy, superseded, heads = bad
        n = len(rows)
        count, head_hash, mac = (int(head[0]), head[1], head[2]) if head else (0, GENESIS, None)
        if count > n:
            return VerifyResult(False, n, n + 1, f"the trail ends at record {n} but the head says {count} "
                                f"(record {n + 1} onwards removed)", legacy=legacy)
        if count != n or head_hash != prev:
            return VerifyResult(False, n, n, f"the head (count {count}) does not match the last record {n}",
                                legacy=legacy)
        if n > legacy and not self._head_mac_ok(mac, count, head_hash):
            return VerifyResult(False, n, n, "the head was rewritten without the audit key (records removed or added "
                                "at the end)", legacy=legacy)
        checked = 0
        if self.keys.checkpoints is not None:
            cps, broken = self.keys.checkpoints.read(LOG_NAME)
            if broken:
                return VerifyResult(False, n, None, broken[0], legacy=legacy)
            problem = verify_checkpoints(LOG_NAME, heads, n, n, cps)
            if problem is not None:
                first_bad = rows[problem.at_id - 1][1] if problem.at_id and 0 < problem.at_id <= n else None
                return VerifyResult(False, n, problem.at_id, problem.reason, first_bad, legacy=legacy)
            checked = len(cps)
        return VerifyResult(True, n, head_hash=prev, legacy=legacy, checkpoints=checked, superseded=superseded)

    def _head_mac_ok(self, mac: str | None, count: int, head_hash: str) -> bool:
        return bool(mac) and any(hmac.compare_digest(str(mac), head_mac(k, count, head_hash))
                                 for k in self.keys.hmac.versions.values())

    def _walk(self, rows: list[Any]) -> VerifyResult | tuple[str, int, int, dict[int, tuple[int, str]]]:
        prev = GENESIS
        legacy = 0
        keyed_seen = False
        latest: dict[tuple[str, str], tuple[int, int]] = {}  # (decision, kind) -> (revision, seq)
        heads: dict[int, tuple[int, str]] = {}
        superseded = 0
        for n, row in enumerate(rows, 1):
            seq, decision_id, at, kind, body, prev_hash, digest, fmt, revision, supersedes, key_id = row
            if seq != n:
                return VerifyResult(False, n, n, f"record {n} is missing (next is {seq})", decision_id, legacy=legacy)
            if prev_hash != prev:
                return VerifyResult(False, n, seq, f"record {seq} does not follow record {seq - 1} (chain broken: "
                                    "a record before it was removed, replaced or moved)", decision_id, legacy=legacy)
            # A hand-edited row may come back as TEXT (or anything): hash what is there, never crash.
            raw = bytes(body) if isinstance(body, (bytes, memoryview)) else str(body).encode()
            when = at if isinstance(at, (int, float)) else float("nan")
            if fmt == KEYED:
                keyed_seen = True
                key = self.keys.hmac.key(str(key_id)) if key_id is not None else None
                if key is None:
                    return VerifyResult(False, n, seq, f"record {seq} names audit key {key_id!r}, which the key "
                                        "provider does not hold", decision_id, legacy=legacy)
                expected = keyed_hash(key, seq, prev_hash, raw, decision_id, kind, when, int(revision or 0), supersedes,
                                      str(key_id))
                if not hmac.compare_digest(expected, str(digest)):
                    return VerifyResult(False, n, seq, f"record {seq} was altered or forged (keyed hash mismatch)",
                                        decision_id, legacy=legacy)
            elif fmt == LEGACY and not keyed_seen:
                if chain_hash(seq, prev_hash, raw, decision_id, kind, when) != digest:
                    return VerifyResult(False, n, seq, f"record {seq} was altered (hash mismatch)", decision_id,
                                        legacy=legacy)
                legacy += 1
            else:
                return VerifyResult(False, n, seq, f"record {seq} is in the unkeyed legacy format after the keyed part "
                                    "began (forged)", decision_id, legacy=legacy)
            rev = int(revision or 0)
            before = latest.get((decision_id, kind))
            in_order = rev == 0 if before is None else (rev == before[0] + 1 and supersedes == before[1])
            if not in_order:
                return VerifyResult(False, n, seq, f"record {seq} is a second '{kind}' record of decision "
                                    f"{decision_id} that does not supersede the first in order", decision_id,
                                    legacy=legacy)
            if before is not None:
                superseded += 1
            latest[(decision_id, kind)] = (rev, seq)
            prev = str(digest)
            heads[seq] = (n, prev)
        return prev, legacy, superseded, heads
