"""Queries on the records around the links: outbox and payment events, the audit and PII access logs,
change requests (two-person rule), key state, retention."""

from __future__ import annotations

from typing import Any

import orjson

from .models import REVOKED, AccessLogEntry, AuditEntry, ChangeRequest, OutboxEvent, PaymentEventRecord
from .tx import RotationState, TxBase, request_from_row


class RecordQueries(TxBase):
    __slots__ = ()

    # --- outbox, payment events, audit, access -----------------------------

    def emit(self, ts: float, name: str, payload: dict[str, Any]) -> int:
        return self._insert_id("INSERT INTO outbox (ts, name, payload) VALUES (?, ?, ?)",
                               (ts, name, orjson.dumps(payload).decode()))

    def outbox_after(self, after_id: int, limit: int) -> list[OutboxEvent]:
        rows = self.c.execute(
            "SELECT id, ts, name, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [OutboxEvent(id=r[0], ts=r[1], name=r[2], payload=orjson.loads(r[3])) for r in rows]

    def add_payment_event(self, payment_id: str, body: dict[str, Any]) -> int:
        return self._insert_id("INSERT INTO payment_events (payment_id, body) VALUES (?, ?)",
                               (payment_id, orjson.dumps(body).decode()))

    def payment_event_count(self, payment_id: str) -> int:
        row = self.c.execute("SELECT COUNT(*) FROM payment_events WHERE payment_id = ?", (payment_id,)).fetchone()
        return int(row[0])

    def payment_events_after(self, after_id: int, limit: int) -> list[PaymentEventRecord]:
        rows = self.c.execute(
            "SELECT id, body FROM payment_events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [PaymentEventRecord(id=r[0], event=orjson.loads(r[1])) for r in rows]

    def payment_events_count_after(self, after_id: int) -> int:
        return int(self.c.execute("SELECT COUNT(*) FROM payment_events WHERE id > ?", (after_id,)).fetchone()[0])

    def audit(
        self,
        ts: float,
        *,
        palm_pay_id: str | None,
        actor: str,
        action: str,
        from_status: str | None,
        to_status: str | None,
        outcome: str,
        reason: str | None,
    ) -> None:
        self.c.execute(
            "INSERT INTO audit_log (ts, palm_pay_id, actor, action, from_status, to_status, outcome, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ts, palm_pay_id, actor, action, from_status, to_status, outcome, reason),
        )

    def audit_entries(self, palm_pay_id: str | None = None) -> list[AuditEntry]:
        sql = "SELECT id, ts, palm_pay_id, actor, action, from_status, to_status, outcome, reason FROM audit_log"
        args: tuple[Any, ...] = ()
        if palm_pay_id is not None:
            sql += " WHERE palm_pay_id = ?"
            args = (palm_pay_id,)
        rows = self.c.execute(sql + " ORDER BY id", args).fetchall()
        keys = ("id", "ts", "palm_pay_id", "actor", "action", "from_status", "to_status", "outcome", "reason")
        return [AuditEntry(**dict(zip(keys, r, strict=True))) for r in rows]

    def log_access(self, ts: float, palm_pay_id: str, field: str, actor: str, purpose: str) -> None:
        self.c.execute(
            "INSERT INTO access_log (ts, palm_pay_id, field, actor, purpose) VALUES (?, ?, ?, ?, ?)",
            (ts, palm_pay_id, field, actor, purpose),
        )

    def access_entries(self, palm_pay_id: str | None = None) -> list[AccessLogEntry]:
        sql = "SELECT id, ts, palm_pay_id, field, actor, purpose FROM access_log"
        args: tuple[Any, ...] = ()
        if palm_pay_id is not None:
            sql += " WHERE palm_pay_id = ?"
            args = (palm_pay_id,)
        rows = self.c.execute(sql + " ORDER BY id", args).fetchall()
        keys = ("id", "ts", "palm_pay_id", "field", "actor", "purpose")
        return [AccessLogEntry(**dict(zip(keys, r, strict=True))) for r in rows]

    # --- change requests (two-person rule) ---------------------------------

    _REQUEST_COLUMNS = (
        "request_id, action, palm_pay_id, reason, args, requested_by, requested_at, expires_at, status,"
        " decided_by, decided_at, result"
    )

    def insert_request(self, request: ChangeRequest) -> None:
        self.c.execute(
            f"INSERT INTO change_requests ({self._REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request.request_id, request.action, request.palm_pay_id, request.reason,
             orjson.dumps(request.args).decode(), request.requested_by, request.requested_at, request.expires_at,
             request.status, request.decided_by, request.decided_at, request.result),
        )

    def change_request(self, request_id: str) -> ChangeRequest | None:
        row = self.c.execute(
            f"SELECT {self._REQUEST_COLUMNS} FROM change_requests WHERE request_id = ?" + self._lock, (request_id,)
        ).fetchone()
        return request_from_row(row) if row else None

    def change_requests(self, status: str | None, limit: int) -> list[ChangeRequest]:
        sql = f"SELECT {self._REQUEST_COLUMNS} FROM change_requests"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        rows = self.c.execute(sql + " ORDER BY requested_at, request_id LIMIT ?", (*args, limit)).fetchall()
        return [request_from_row(r) for r in rows]

    def decide_request(
        self, request_id: str, *, from_status: str, to_status: str, decided_by: str | None, ts: float,
        result: str | None = None,
    ) -> bool:
        """Move a request on from `from_status`; True only for the one call that does (exactly once)."""
        cur = self.c.execute(
            "UPDATE change_requests SET status = ?, decided_by = COALESCE(?, decided_by),"
            " decided_at = COALESCE(?, decided_at), result = ? WHERE request_id = ? AND status = ?",
            (to_status, decided_by, ts if decided_by else None, result, request_id, from_status),
        )
        return int(cur.rowcount) == 1

    # --- keys --------------------------------------------------------------

    def active_key_id(self) -> str | None:
        row = self.c.execute("SELECT active_key_id FROM key_state WHERE singleton = 1").fetchone()
        return row[0] if row else None

    def set_active_key_id(self, key_id: str) -> None:
        self.c.execute(
            "INSERT INTO key_state (singleton, active_key_id) VALUES (1, ?)"
            " ON CONFLICT(singleton) DO UPDATE SET active_key_id = excluded.active_key_id",
            (key_id,),
        )

    def key_ids(self) -> tuple[str | None, str | None]:
        """(blind-index root id, OTP MAC key id) the data was written under; (None, None) before any."""
        row = self.c.execute("SELECT index_key_id, otp_key_id FROM key_state WHERE singleton = 1").fetchone()
        return (row[0], row[1]) if row else (None, None)

    def set_key_ids(self, *, index_key_id: str, otp_key_id: str) -> None:
        """Record them (the key_state row exists: set_active_key_id first). A recorded index root stays:
        only a rotation (start_index_rotation) moves it."""
        self.c.execute("UPDATE key_state SET index_key_id = COALESCE(index_key_id, ?), otp_key_id = ?"
                       " WHERE singleton = 1", (index_key_id, otp_key_id))
        self.c.execute("UPDATE palm_pay_links SET index_key_id = ? WHERE index_key_id IS NULL", (index_key_id,))

    def rotation_state(self) -> RotationState:
        """Where the data-key and blind-index-root rotations stand (key_state; empty before any data)."""
        row = self.c.execute(
            "SELECT active_key_id, data_reencrypted_at, index_key_id, index_prev_key_id, index_reindexed_at"
            " FROM key_state WHERE singleton = 1"
        ).fetchone()
        return RotationState(*row) if row else RotationState(None, None, None, None, None)

    def set_data_reencrypted_at(self, ts: float | None) -> None:
        """When every row was last found under the active data key (None: a rotation started since)."""
        self.c.execute("UPDATE key_state SET data_reencrypted_at = ? WHERE singleton = 1", (ts,))

    def start_index_rotation(self, new_root_id: str, previous_root_id: str) -> None:
        self.c.execute(
            "UPDATE key_state SET index_key_id = ?, index_prev_key_id = ?, index_reindexed_at = NULL"
            " WHERE singleton = 1",
            (new_root_id, previous_root_id),
        )

    def set_index_reindexed_at(self, ts: float) -> None:
        self.c.execute("UPDATE key_state SET index_reindexed_at = ? WHERE singleton = 1", (ts,))

    def retire_previous_index_root(self) -> None:
        """Lookups stop trying the previous root (every row is re-indexed and the backup window passed)."""
        self.c.execute("UPDATE key_state SET index_prev_key_id = NULL WHERE singleton = 1")

    def sealed_values(self) -> list[tuple[str, bytes, bytes]]:
        """Every row's ciphertexts, except rows whose PII was erased (nothing left to re-encrypt)."""
        rows: list[tuple[str, bytes, bytes]] = self.c.execute(
            "SELECT palm_pay_id, template_ct, proxy_ct FROM palm_pay_links WHERE length(template_ct) > 0"
            " ORDER BY palm_pay_id" + self._lock
        ).fetchall()
        return rows

    # --- retention -----------------------------------------------------------

    def revoked_with_pii_before(self, cutoff: float, limit: int) -> list[str]:
        rows = self.c.execute(
            "SELECT palm_pay_id FROM palm_pay_links WHERE link_status = ? AND status_changed_at <= ?"
            " AND length(template_ct) > 0 ORDER BY status_changed_at LIMIT ?" + self._lock,
            (REVOKED, cutoff, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def erase_pii(self, palm_pay_id: str) -> None:
        """Empty the ciphertexts and blind indexes of a revoked link; its masked hints stay."""
        self.c.execute(
            "UPDATE palm_pay_links SET template_ct = ?, proxy_ct = ?, template_index = ?, proxy_index = ?"
            " WHERE palm_pay_id = ? AND link_status = ?",
            (b"", b"", b"", b"", palm_pay_id, REVOKED),
        )
        self.c.execute("DELETE FROM otp_challenges WHERE palm_pay_id = ?", (palm_pay_id,))
        self.c.execute("DELETE FROM match_failures WHERE palm_pay_id = ?", (palm_pay_id,))
