"""One seam, two dialects: the stores write their SQL once, with `?` placeholders.

`Database.write()` opens a transaction that serialises writers the way each
engine can: SQLite takes the database write lock at once (`BEGIN IMMEDIATE`);
PostgreSQL runs READ COMMITTED and the store locks the rows it is about to
change with `SELECT ... {db.for_update}` (empty on SQLite, where the whole
database is already locked). `Database.read()` gives one consistent snapshot.

The SQL both engines accept is the common subset: `ON CONFLICT ... DO UPDATE /
DO NOTHING`, `INSERT ... RETURNING id`, `CAST(... AS BIGINT)`. Only the DDL
differs; PostgreSQL's lives in versioned files under `migrations/postgres/`.

PostgreSQL tables live in their own schemas (`payops`, `palmpay`, `langgraph`),
chosen per connection with `search_path`, so the agent's `audit_log` and the
palm-pay backend's `audit_log` can share one database as they share none on SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from payops.errors import Unavailable

# Schemas on PostgreSQL: the agent's tables, the palm-pay backend's, LangGraph's checkpoints and store.
log = logging.getLogger(__name__)
AGENT_SCHEMA = "payops"
PALMPAY_SCHEMA = "palmpay"
LANGGRAPH_SCHEMA = "langgraph"

CONNECT_TIMEOUT_SECONDS = 10  # a worker that cannot reach the database fails fast (exit 1) rather than hang
CLOSE_WAIT_SECONDS = 10.0  # close() waits this long for reads in flight (a trail decode takes under a second)
POOL_TIMEOUT_SECONDS = 30.0  # waiting for a pooled connection; beyond it the call fails instead of queueing forever

EXTRA_HINT = "PostgreSQL support needs the 'postgres' extra: pip install 'payops[postgres]'"


class DatabaseError(Unavailable):
    """The database cannot be used as configured (driver missing, schema not migrated, unreachable)."""


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).split(":", 1)[0].lower() in ("postgres", "postgresql")


def redact_dsn(text: str) -> str:
    """A DSN or message with any password masked (URLs and key=value form)."""
    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.I)


def require_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the extra is installed wherever tests run
        raise DatabaseError(EXTRA_HINT) from None
    return psycopg


def integrity_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a unique/check constraint raises, whichever engine is in use."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError)


@lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """`?` placeholders -> psycopg's `%s` (a literal `%` doubled). No store puts `?` inside a literal."""
    return sql.replace("%", "%%").replace("?", "%s")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...


class PgConnection:
    """A psycopg connection that takes the stores' `?` SQL (sqlite3's `execute` shape)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(pg_sql(sql), tuple(params))


class Database(Protocol):
    dialect: str
    for_update: str  # appended to a SELECT of rows the transaction will change

    def write(self) -> contextlib.AbstractContextManager[Conn]: ...

    def read(self) -> contextlib.AbstractContextManager[Conn]: ...

    def close(self) -> None: ...


class SqliteDatabase:
    """One SQLite file (or `:memory:`) on one connection; writers queue on `BEGIN IMMEDIATE`."""

    dialect = "sqlite"
    for_update = ""

    def __init__(self, path: str | Path, *, schema: str | None = None, timeout: float = 30.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        # Reads in flight, so that close() waits for them: closing a connection under a running
        # statement in another thread crashes the process (seen: a console warm-up read at shutdown).
        self._reads = threading.Condition()
        self._readers = 0
        self._closed = False
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=timeout)
        self._conn.execute("PRAGMA journal_mode=WAL")
        if schema:
            self._conn.executescript(schema)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._reads:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            self._readers += 1
        try:
            yield self._conn  # autocommit: each statement sees the last commit (WAL readers never block)
        finally:
            with self._reads:
                self._readers -= 1
                self._reads.notify_all()

    def close(self) -> None:
        """Close once no writer holds the connection and the reads in flight have finished (new reads are
        refused). A read still running after CLOSE_WAIT_SECONDS keeps the connection open: leaking it at
        shutdown is harmless, closing it under the read is not."""
        with self._lock, self._reads:
            if self._closed:
                return
            self._closed = True
            if self._reads.wait_for(lambda: self._readers == 0, timeout=CLOSE_WAIT_SECONDS):
                self._conn.close()
            else:
                log.warning("a read outlived %.0f s at close; the connection is left open", CLOSE_WAIT_SECONDS)


def pg_connect(dsn: str, *, schema: str | None = None, autocommit: bool = True, dict_rows: bool = False) -> Any:
    """One psycopg connection (LangGraph's savers and the lock sessions use these)."""
    psycopg = require_psycopg()
    kwargs: dict[str, Any] = {"autocommit": autocommit, "connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if dict_rows:
        from psycopg.rows import dict_row

        # What LangGraph's PostgresSaver / PostgresStore expect of a connection they are handed.
        kwargs.update(prepare_threshold=0, row_factory=dict_row)
    try:
        conn = psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {redact_dsn(str(exc)).strip()}") from None
    if schema:
        conn.execute(f"SET search_path TO {schema}")
        if not autocommit:
            conn.commit()
    return conn


class PostgresDatabase:
    """A small psycopg pool on one schema. Writes are READ COMMITTED transactions whose
    stores lock the rows they change (`for_update`); reads are REPEATABLE READ snapshots."""

    dialect = "postgres"
    for_update = " FOR UPDATE"

    def __init__(self, dsn: str, schema: str, *, max_size: int = 4, name: str = "payops") -> None:
        require_psycopg()
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.dsn = dsn
        self.schema = schema

        def configure(conn: Any) -> None:
            conn.execute(f"SET search_path TO {schema}")
            conn.commit()

        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=max(1, max_size), open=False, name=f"{name}:{schema}",
            kwargs={"autocommit": False, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            configure=configure, check=ConnectionPool.check_connection, timeout=POOL_TIMEOUT_SECONDS,
        )
        self._pool.open()
        try:
            self._pool.wait(timeout=CONNECT_TIMEOUT_SECONDS)
        except PoolTimeout:
            self._pool.close()
            raise DatabaseError(f"cannot connect to PostgreSQL at {redact_dsn(dsn)} "
                                f"within {CONNECT_TIMEOUT_SECONDS}s") from None
        self._closed = False

    @contextlib.contextmanager
    def write(self) -> Iterator[PgConnection]:
        with self._pool.connection() as conn, conn.transaction():
            yield PgConnection(conn)

    @contextlib.contextmanager
    def read(self) -> Iterator[PgConnection]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgConnection(conn)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()
