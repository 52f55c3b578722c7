"""Persistence for palm-pay: SQLite by default (stdlib sqlite3, WAL), PostgreSQL when
`PalmPayOptions.database_url` is set. One set of queries (`Tx`) serves both.

SQLite: each thread gets its own connection. Writes run in `BEGIN IMMEDIATE`
transactions, so a payment's limit check, its reservation and its events are
one atomic step and concurrent payments (threads or processes) queue on the
write lock instead of racing.

PostgreSQL (`PostgresPalmPayStore`, schema `palmpay`, created by `payops db upgrade`):
writes are READ COMMITTED transactions that lock what they decide on: every link
read in a write transaction is `SELECT ... FOR UPDATE`, so two payments on one
link queue on its row (across threads, processes and machines) while payments on
other links run in parallel. Enrolments serialise on one advisory lock (they check
several rows). Event ids are taken under a transaction lock, so they are in commit
order and a consumer reading "id > cursor" never skips a late commit. Lock order
is always link rows, then the event lock; code that writes events before touching
a link row calls `lock_link` first.

In both, a CHECK constraint repeats the daily-limit invariant so even a bug in
the service cannot commit an overspend.

Sensitive columns hold AES-GCM blobs; lookups go through HMAC blind indexes.
The schema is schema.py; the queries, by subject, tx_links.py and tx_records.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from payops.files import private_file

from .schema import MIGRATIONS, SCHEMA_VERSION
from .tx import ENROLMENT_LOCK, EVENTS_LOCK, PaymentRow, RotationState
from .tx_links import LinkQueries
from .tx_records import RecordQueries

__all__ = [
    "ENROLMENT_LOCK", "EVENTS_LOCK", "MIGRATIONS", "SCHEMA_VERSION", "PalmPayStore", "PaymentRow",
    "PostgresPalmPayStore", "RotationState", "Tx", "open_store",
]


class Tx(LinkQueries, RecordQueries):
    """Queries over one connection inside one transaction.

    `lock_rows` (PostgreSQL write transactions): link reads lock the rows they return
    until commit. `postgres`: ids come back through RETURNING and event inserts take
    the event lock. On SQLite both are off: the transaction already holds the file.
    """

    __slots__ = ()


class PalmPayStore:
    """Owns the SQLite database file: schema, per-thread connections, transactions."""

    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = 30.0,
        synchronous: str = "NORMAL",
        wal_autocheckpoint_pages: int = 4000,
    ) -> None:
        self.path = Path(path)
        # Owner-only from the start (0600 in a 0700 folder); SQLite gives the -wal/-shm files the same mode.
        private_file(self.path)
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous.upper()
        self._autocheckpoint = int(wal_autocheckpoint_pages)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for writes).
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                cached_statements=256,
                check_same_thread=False,  # each thread has its own; False only so close() works from any thread
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {self._autocheckpoint}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _migrate(self) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"palm-pay database {self.path} has schema {current}, newer than this code ({SCHEMA_VERSION})"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, datetime('now'))", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        return int(self._connect().execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction holding the database write lock from its first statement."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction: one consistent snapshot for all its queries."""
        conn = self._connect()
        conn.execute("BEGIN")
        try:
            yield Tx(conn)
        finally:
            conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (used before inspecting the file on disk)."""
        self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    @property
    def integrity_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.IntegrityError,)


class PostgresPalmPayStore:
    """The same tables on PostgreSQL (schema `palmpay`), through a small connection pool.

    The schema comes from `payops db upgrade` (storage/migrations/postgres); opening a
    store on an unmigrated or older database fails with that command in the message.
    """

    dialect = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 8) -> None:
        from payops.storage.db import PALMPAY_SCHEMA, PostgresDatabase, integrity_errors
        from payops.storage.migrations import require_current

        require_current(dsn)
        self._db = PostgresDatabase(dsn, PALMPAY_SCHEMA, max_size=pool_size, name="payops-palmpay")
        self.path = None
        self.integrity_errors = integrity_errors()
        current = self.schema_version()
        if current != SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(f"palm-pay schema {current} on PostgreSQL does not match this code ({SCHEMA_VERSION})")

    def schema_version(self) -> int:
        with self.read() as tx:
            return int(tx.c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        """A READ COMMITTED transaction whose link reads lock their rows until commit."""
        with self._db.write() as conn:
            yield Tx(conn, lock_rows=True, postgres=True)

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only REPEATABLE READ transaction: one consistent snapshot for all its queries."""
        with self._db.read() as conn:
            yield Tx(conn, postgres=True)

    def checkpoint(self) -> None:
        """Nothing to fold on PostgreSQL (kept so callers need not know the engine)."""

    def close(self) -> None:
        self._db.close()


def open_store(options: Any) -> PalmPayStore | PostgresPalmPayStore:
    """The store `PalmPayOptions` ask for: PostgreSQL when `database_url` is set, else the SQLite file."""
    if getattr(options, "database_url", None):
        return PostgresPalmPayStore(options.database_url, pool_size=options.pool_size)
    return PalmPayStore(
        options.database_path,
        busy_timeout_s=options.busy_timeout_s,
        synchronous=options.synchronous,
        wal_autocheckpoint_pages=options.wal_autocheckpoint_pages,
    )
