"""Approval requests: a durable index of what waits for a human, and the queue of
approved actions the agent applies on its next tick.

The request itself is a LangGraph interrupt on its own thread (see graph.approval);
this table is what `payops pending` lists and what survives every restart.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    decision_id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,           -- pending | approved | rejected | expired | applied | voided
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
VOIDED = "voided"  # approved, but a deny rule refused it at apply time (e.g. the route turned unhealthy)


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


class ApprovalError(Exception):
    pass


class ApprovalBook:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _row(self, row: tuple[Any, ...] | None) -> Approval | None:
        if row is None:
            return None
        return Approval(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), *row[6:])

    _COLUMNS = "decision_id, thread_id, created_at, expires_at, status, request, approver, note, decided_at, applied_at, result"

    def open(self, decision_id: str, thread_id: str, created_at: float, expires_at: float, request: dict[str, Any]) -> Approval:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO approvals (decision_id, thread_id, created_at, expires_at, status, request) VALUES (?,?,?,?,?,?)",
                (decision_id, thread_id, created_at, expires_at, PENDING, orjson.dumps(request)),
            )
        found = self.get(decision_id)
        assert found is not None
        return found

    def get(self, decision_id: str) -> Approval | None:
        return self._row(self._conn.execute(f"SELECT {self._COLUMNS} FROM approvals WHERE decision_id = ?", (decision_id,)).fetchone())

    def find(self, prefix: str) -> Approval | None:
        """By full id or an unambiguous prefix (operators type short ids)."""
        exact = self.get(prefix)
        if exact:
            return exact
        rows = self._conn.execute(f"SELECT {self._COLUMNS} FROM approvals WHERE decision_id LIKE ? LIMIT 2",
                                  (prefix.replace("%", "") + "%",)).fetchall()
        if len(rows) == 1:
            return self._row(rows[0])
        if len(rows) > 1:
            raise ApprovalError(f"'{prefix}' matches more than one request; give more of the id")
        return None

    def by_status(self, *statuses: str) -> list[Approval]:
        marks = ",".join("?" * len(statuses))
        rows = self._conn.execute(f"SELECT {self._COLUMNS} FROM approvals WHERE status IN ({marks}) ORDER BY created_at", statuses)
        return [a for a in (self._row(r) for r in rows) if a is not None]

    def decide(self, decision_id: str, status: str, approver: str, note: str | None, at: float) -> bool:
        """pending -> approved/rejected/expired, once. False when it was no longer pending."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE approvals SET status = ?, approver = ?, note = ?, decided_at = ? WHERE decision_id = ? AND status = ?",
                (status, approver, note, at, decision_id, PENDING),
            )
        return cur.rowcount == 1

    def mark_applied(self, decision_id: str, at: float, result: str) -> bool:
        """approved -> applied, once (the guard against applying an approval twice)."""
        return self.close_as(decision_id, APPLIED, at, result)

    def close_as(self, decision_id: str, status: str, at: float, result: str) -> bool:
        """approved -> applied / voided, once. False when it was no longer approved."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE approvals SET status = ?, applied_at = ?, result = ? WHERE decision_id = ? AND status = ?",
                (status, at, result, decision_id, APPROVED),
            )
        return cur.rowcount == 1
