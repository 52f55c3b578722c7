"""Approval requests: a durable index of what waits for a human, and the queue of
approved actions the agent applies on its next tick.

The request itself is a LangGraph interrupt on its own thread (see graph.approval);
this table is what `payops pending` lists and what survives every restart.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from payops.errors import BadInput
from payops.storage.crash import crash_point
from payops.storage.db import Database, SqliteDatabase
from payops.storage.keys import private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    decision_id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,           -- pending | approved | rejected | expired | superseded | applied | voided
    request BLOB NOT NULL,          -- the approval request shown to the operator
    approver TEXT,
    note TEXT,
    decided_at REAL,
    applied_at REAL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals(status);
"""

PENDING, APPROVED, REJECTED, EXPIRED, APPLIED = "pending", "approved", "rejected", "expired", "applied"
# closed unanswered because the agent made the same move on its own once the guardrails allowed it
SUPERSEDED = "superseded"
VOIDED = "voided"  # approved, but a deny rule refused it at apply time (e.g. the route turned unhealthy)
# Every status a request can have once it is no longer waiting.
ANSWERED = (APPROVED, REJECTED, EXPIRED, SUPERSEDED, APPLIED, VOIDED)


@dataclass(frozen=True)
class Approval:
    decision_id: str
    thread_id: str
    created_at: float
    expires_at: float
    status: str
    request: dict[str, Any]
    approver: str | None
    note: str | None
    decided_at: float | None
    applied_at: float | None
    result: str | None


class ApprovalError(BadInput):
    pass


class ApprovalBook:
    """Approval requests on SQLite (a file) or on any `storage.db.Database` (PostgreSQL).

    `deployment` scopes what `by_status` lists to one agent deployment (a partition),
    so several deployments on one database never apply or expire each other's
    requests; rows written before the column existed (NULL) stay visible to all.
    `get` and `find` look up by decision id, across deployments.
    """

    def __init__(self, path: str | Path | None = None, *, database: Database | None = None,
                 deployment: str | None = None) -> None:
        if database is None:
            if path is None:
                raise ValueError("ApprovalBook needs a path or a database")
            if str(path) != ":memory:":
                private_file(path)  # 0600 before SQLite creates it with the umask's 0644
            database = SqliteDatabase(path, schema=SCHEMA)
            _add_deployment_column(database)
        self._db = database
        self.deployment = deployment

    def close(self) -> None:
        self._db.close()

    def _row(self, row: tuple[Any, ...] | None) -> Approval | None:
        if row is None:
            return None
        return Approval(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), *row[6:])

    _COLUMNS = ("decision_id, thread_id, created_at, expires_at, status, request, approver, note, decided_at, "
                "applied_at, result")

    def _one(self, sql: str, args: tuple[Any, ...]) -> Approval | None:
        with self._db.read() as conn:
            return self._row(conn.execute(sql, args).fetchone())

    def open(
        self, decision_id: str, thread_id: str, created_at: float, expires_at: float, request: dict[str, Any]
    ) -> Approval:
        """Record a pending request once per decision id (a second open, e.g. a re-run tick, changes nothing)."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO approvals (decision_id, thread_id, deployment, created_at, expires_at, status, request) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT (decision_id) DO NOTHING",
                (decision_id, thread_id, self.deployment, created_at, expires_at, PENDING, orjson.dumps(request)),
            )
        crash_point("approval_write")
        found = self.get(decision_id)
        assert found is not None
        return found

    def get(self, decision_id: str) -> Approval | None:
        return self._one(f"SELECT {self._COLUMNS} FROM approvals WHERE decision_id = ?", (decision_id,))

    def find(self, prefix: str) -> Approval | None:
        """By full id or an unambiguous prefix (operators type short ids)."""
        exact = self.get(prefix)
        if exact:
            return exact
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM approvals WHERE decision_id LIKE ? LIMIT 2",
                (prefix.replace("%", "") + "%",),
            ).fetchall()
        if len(rows) == 1:
            return self._row(rows[0])
        if len(rows) > 1:
            raise ApprovalError(f"'{prefix}' matches more than one request; give more of the id")
        return None

    def by_status(self, *statuses: str, decided_since: float | None = None) -> list[Approval]:
        """Requests with one of `statuses`, oldest first; `decided_since`: only those answered since then."""
        marks = ",".join("?" * len(statuses))
        sql = f"SELECT {self._COLUMNS} FROM approvals WHERE status IN ({marks})"
        args: tuple[Any, ...] = statuses
        if decided_since is not None:
            sql += " AND decided_at >= ?"
            args = (*args, decided_since)
        if self.deployment is not None:
            sql += " AND (deployment = ? OR deployment IS NULL)"
            args = (*args, self.deployment)
        with self._db.read() as conn:
            rows = conn.execute(sql + " ORDER BY created_at", args).fetchall()
        return [a for a in (self._row(r) for r in rows) if a is not None]

    def _update(self, sql: str, args: tuple[Any, ...]) -> bool:
        with self._db.write() as conn:
            changed = conn.execute(sql, args).rowcount == 1
        crash_point("approval_write")
        return changed

    def decide(self, decision_id: str, status: str, approver: str, note: str | None, at: float) -> bool:
        """pending -> approved/rejected/expired, once. False when it was no longer pending."""
        return self._update(
            "UPDATE approvals SET status = ?, approver = ?, note = ?, decided_at = ? "
            "WHERE decision_id = ? AND status = ?",
            (status, approver, note, at, decision_id, PENDING),
        )

    def mark_applied(self, decision_id: str, at: float, result: str) -> bool:
        """approved -> applied, once (the guard against applying an approval twice)."""
        return self.close_as(decision_id, APPLIED, at, result)

    def close_as(self, decision_id: str, status: str, at: float, result: str) -> bool:
        """approved -> applied / voided, once. False when it was no longer approved."""
        return self._update(
            "UPDATE approvals SET status = ?, applied_at = ?, result = ? WHERE decision_id = ? AND status = ?",
            (status, at, result, decision_id, APPROVED),
        )


def _add_deployment_column(database: SqliteDatabase) -> None:
    """Files made before approvals were scoped per deployment get the column (NULL: visible to all)."""
    conn = database.connection
    columns = {row[1] for row in conn.execute("PRAGMA table_info(approvals)")}
    if "deployment" not in columns:
        with contextlib.suppress(sqlite3.OperationalError):  # another process added it a moment ago
            conn.execute("ALTER TABLE approvals ADD COLUMN deployment TEXT")
