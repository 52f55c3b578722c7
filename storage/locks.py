"""PostgreSQL advisory locks: "only one of us at a time" across processes and machines.

A session lock lives on its own connection and ends with it: a worker that is
killed (SIGKILL, OOM, a crashed node) closes its socket and the server drops the
lock at once, so the next worker takes the partition over. A worker whose host
vanishes without closing the socket is detected by TCP keepalives on the lock
session (`KEEPALIVE_*`, about half a minute), never by a timeout on the tick
itself: a slow tick keeps its lock.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

from payops.errors import Unavailable

from .db import pg_connect

# Server-side keepalives on the lock session: a peer gone without a FIN frees its lock after
# IDLE + INTERVAL x COUNT seconds (~25 s) instead of the kernel default of over two hours.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3


class LockHeld(Unavailable):
    """Another session holds the advisory lock."""


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (the same in every process and release)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(dsn: str, name: str) -> Iterator[Any]:
    """Hold `name` for the block, or raise LockHeld at once (never waits). Yields the lock session."""
    conn = pg_connect(dsn)
    try:
        for setting, value in (("tcp_keepalives_idle", KEEPALIVE_IDLE_SECONDS),
                               ("tcp_keepalives_interval", KEEPALIVE_INTERVAL_SECONDS),
                               ("tcp_keepalives_count", KEEPALIVE_COUNT)):
            conn.execute(f"SET {setting} = {int(value)}")
        key = advisory_key(name)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if not got:
            raise LockHeld(name)
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()


def xact_lock(conn: Any, name: str) -> None:
    """Take a transaction-scoped advisory lock on `conn` (released at commit or rollback); waits."""
    conn.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key(name),))
