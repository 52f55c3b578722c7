"""Dead letters: notifications a receiver never accepted, kept in the state folder until retried.

A webhook delivery that fails after its retries (or finds the send queue full) is written here
instead of being only counted, so an approval request is never silently lost: `payops pending`
lists what is kept and `payops notify retry` sends it again under the same idempotency key (a
receiver that did get the first attempt drops the repeat). Bodies are stored as sent: already
redacted; the webhook URL (which may carry a token) is never stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payops.storage.keys import private_file

FILE_NAME = "dead_letters.db"


def idempotency_key(kind: str, payload: dict[str, Any]) -> str:
    """One key per (decision id, kind): a decision sends each kind once, and a re-run tick after a
    crash sends the same key again, which the receiver deduplicates."""
    decision_id = payload.get("decision_id")
    if decision_id:
        return f"{decision_id}:{kind}"
    import hashlib

    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{kind}:{digest}"


@dataclass(frozen=True)
class DeadLetter:
    key: str
    kind: str
    decision_id: str | None
    body: dict[str, Any]
    reason: str
    failed_at: float
    failures: int


class DeadLetters:
    """A small SQLite table, one row per idempotency key (a repeated failure counts, not duplicates)."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()  # the webhook thread writes, the tick thread may too
        # Private like every state file: the bodies are alerts and approval requests.
        self._conn = sqlite3.connect(str(private_file(path)), check_same_thread=False, isolation_level=None)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (key TEXT PRIMARY KEY, kind TEXT NOT NULL, decision_id TEXT, "
            "body TEXT NOT NULL, reason TEXT NOT NULL, failed_at REAL NOT NULL, failures INTEGER NOT NULL)")

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> DeadLetters:
        return cls(state_dir / FILE_NAME)

    def add(self, key: str, body: dict[str, Any], reason: str, at: float | None = None) -> None:
        payload = body.get("payload") or {}
        with self._lock:
            self._conn.execute(
                "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(key) DO UPDATE SET "
                "reason = excluded.reason, failed_at = excluded.failed_at, failures = failures + 1",
                (key, str(body.get("kind", "")), payload.get("decision_id"), json.dumps(body, default=str), reason,
                 time.time() if at is None else at))

    def list(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, kind, decision_id, body, reason, failed_at, failures FROM dead_letters "
                "ORDER BY failed_at, key"
            ).fetchall()
        return [DeadLetter(k, kind, d, json.loads(b), r, at, n) for k, kind, d, b, r, at, n in rows]

    def remove(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM dead_letters WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def failure_reason(exc: BaseException) -> str:
    """Why a delivery failed, without the URL (httpx puts it in its messages; it may carry a token)."""
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"receiver answered HTTP {response.status_code}"
    return f"could not reach the receiver ({type(exc).__name__})"
