"""Versioned PostgreSQL migrations: `payops db upgrade`.

Each file `migrations/postgres/NNNN_name.sql` is applied once, in order, in its
own transaction, and recorded in `payops.schema_migrations` with a checksum of
its text. Released files are never edited: a changed checksum stops the upgrade.
Several processes may run the upgrade at once (a Kubernetes init container per
pod): an advisory lock lets one work while the others wait and then find nothing
to do. LangGraph's own tables (checkpoints, store) are created and migrated by
its `setup()` in schema `langgraph`, as part of the same command.

Stores refuse to open on a schema older than this code (`require_current`), with
the command to run in the message, instead of failing later on a missing column.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .db import AGENT_SCHEMA, LANGGRAPH_SCHEMA, DatabaseError, is_postgres_url, pg_connect, redact_dsn
from .locks import advisory_key

MIGRATION_LOCK = "payops:schema-migrations"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
TABLE = f"{AGENT_SCHEMA}.schema_migrations"
UPGRADE_LOCK_TIMEOUT_SECONDS = 600.0  # a concurrent upgrade (another pod's init container) is waited for this long
LOCK_POLL_SECONDS = 0.2
UPGRADE_HINT = "run `payops db upgrade` (with the same PAYOPS_DATABASE_URL)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class SchemaStatus:
    current: int  # highest version applied (0: none)
    latest: int  # highest version this code ships
    pending: tuple[int, ...]
    edited: tuple[int, ...] = ()  # applied migrations whose file changed since

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.edited and self.current == self.latest


@dataclass
class UpgradeReport:
    applied: list[Migration] = field(default_factory=list)
    status: SchemaStatus | None = None


def available() -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    found = []
    folder = resources.files("payops.storage").joinpath("migrations", "postgres")
    for entry in folder.iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"two migration files share a version: {versions}")
    return found


def _ensure_table(conn: Any) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {AGENT_SCHEMA}")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")


def _applied(conn: Any) -> dict[int, str]:
    if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()[0] is None:
        return {}
    return {int(v): str(c) for v, c in conn.execute(f"SELECT version, checksum FROM {TABLE}").fetchall()}


def _status(conn: Any, shipped: list[Migration]) -> SchemaStatus:
    done = _applied(conn)
    edited = tuple(m.version for m in shipped if m.version in done and done[m.version] != m.checksum)
    return SchemaStatus(current=max(done, default=0), latest=max((m.version for m in shipped), default=0),
                        pending=tuple(m.version for m in shipped if m.version not in done), edited=edited)


def status(dsn: str) -> SchemaStatus:
    conn = pg_connect(dsn)
    try:
        return _status(conn, available())
    finally:
        conn.close()


def upgrade(dsn: str) -> UpgradeReport:
    """Apply what is missing (each file in its own transaction), then LangGraph's setup()."""
    shipped = available()
    report = UpgradeReport()
    conn = pg_connect(dsn)
    try:
        _wait_for_lock(conn)
        _ensure_table(conn)
        before = _status(conn, shipped)
        if before.edited:
            raise DatabaseError(f"migration(s) {', '.join(f'{v:04d}' for v in before.edited)} changed after they were "
                                "applied; released migrations must never be edited (add a new one)")
        if before.current > before.latest:
            raise DatabaseError(f"the database schema ({before.current}) is newer than this code ({before.latest})")
        for migration in shipped:
            if migration.version not in before.pending:
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(f"INSERT INTO {TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                             (migration.version, migration.name, migration.checksum))
            report.applied.append(migration)
        _setup_langgraph(dsn)
        report.status = _status(conn, shipped)
        conn.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(MIGRATION_LOCK),))
    finally:
        conn.close()
    _checked.discard(dsn)
    return report


def _wait_for_lock(conn: Any, timeout: float = UPGRADE_LOCK_TIMEOUT_SECONDS) -> None:
    """Take the migration lock, polling: a session blocked in pg_advisory_lock() holds a snapshot,
    and LangGraph's CREATE INDEX CONCURRENTLY in the upgrader would wait for it forever."""
    key = advisory_key(MIGRATION_LOCK)
    deadline = time.monotonic() + timeout
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise DatabaseError(f"another `payops db upgrade` held the migration lock for over {timeout:.0f}s")
        time.sleep(LOCK_POLL_SECONDS)


def _setup_langgraph(dsn: str) -> None:
    """LangGraph's checkpoint and store tables (its own idempotent, versioned migrations)."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore

    for cls in (PostgresSaver, PostgresStore):
        conn = pg_connect(dsn, schema=LANGGRAPH_SCHEMA, dict_rows=True)
        try:
            cls(conn).setup()
        finally:
            conn.close()


_checked: set[str] = set()


def require_current(dsn: str) -> None:
    """Raise a DatabaseError naming the fix unless the schema is exactly this code's (checked once per process)."""
    if dsn in _checked:
        return
    if not is_postgres_url(dsn):
        raise DatabaseError("PAYOPS_DATABASE_URL must be a postgresql:// (or postgres://) URL")
    found = status(dsn)
    if found.current > found.latest:
        raise DatabaseError(f"the PostgreSQL schema at {redact_dsn(dsn)} is version {found.current}, newer than this "
                            f"code ({found.latest}): upgrade payops")
    if not found.up_to_date:
        what = ("has no payops schema" if found.current == 0
                else f"is at schema version {found.current} of {found.latest}")
        raise DatabaseError(f"the PostgreSQL database at {redact_dsn(dsn)} {what}: {UPGRADE_HINT}")
    _checked.add(dsn)
