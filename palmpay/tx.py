"""A transaction's connection and what its queries share: row mapping, payment rows, lock names.

The queries themselves live by subject in tx_links.py (links, payments, the daily ledger, OTPs,
failed matches) and tx_records.py (outbox and payment events, audit and access logs, change
requests, keys, retention); store.py combines them as `Tx`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .models import ChangeRequest, PalmPayLink, SealedField

LINK_COLUMNS = (
    "palm_pay_id, user_id, template_ct, template_hint, palm_hand, proxy_ct, proxy_hint, proxy_type,"
    " link_status, linked_at, verified_at, daily_limit_cents, daily_spent_cents, transaction_limit_cents,"
    " spent_day, reserved_cents, bank, created_at"
)


def link_from_row(row: Sequence[Any]) -> PalmPayLink:
    return PalmPayLink(
        palm_pay_id=row[0],
        user_id=row[1],
        palm_template_ref=SealedField(row[2], row[3]),
        palm_hand=row[4],
        payshap_proxy=SealedField(row[5], row[6]),
        proxy_type=row[7],
        link_status=row[8],
        linked_at=row[9],
        verified_at=row[10],
        daily_limit=row[11],
        daily_spent=row[12],
        transaction_limit=row[13],
        spent_day=row[14],
        reserved=row[15],
        bank=row[16],
        created_at=row[17],
    )


def request_from_row(row: Sequence[Any]) -> ChangeRequest:
    keys = ("request_id", "action", "palm_pay_id", "reason", "args", "requested_by", "requested_at", "expires_at",
            "status", "decided_by", "decided_at", "result")
    values = dict(zip(keys, row, strict=True))
    values["args"] = orjson.loads(values["args"])
    return ChangeRequest(**values)


@dataclass(frozen=True, slots=True)
class PaymentRow:
    payment_id: str
    palm_pay_id: str
    amount_cents: int
    terminal_id: str
    status: str
    spent_day: str
    attempts: int
    error_code: str | None
    rail_reference: str | None
    created_at: float
    fingerprint: str | None = None  # digest of the request that created it (None: from before migration 3)


@dataclass(frozen=True, slots=True)
class RotationState:
    """key_state: which keys the data uses, and how far their rotations are (administration.py, reindexing.py)."""

    active_key_id: str | None  # the data key new ciphertexts use
    data_reencrypted_at: float | None  # every row last found under it (None: re-encryption still to finish)
    index_key_id: str | None  # the blind-index root new digests use
    index_prev_key_id: str | None  # the root being rotated out: lookups still try it (None: no rotation)
    index_reindexed_at: float | None  # every row last found re-indexed under index_key_id


EVENTS_LOCK = "palmpay:event-ids"  # PostgreSQL: outbox / payment-event ids in commit order
ENROLMENT_LOCK = "palmpay:enrolment"  # PostgreSQL: one enrolment at a time (it checks a palm's and a user's links)


class TxBase:
    """One connection inside one transaction: the locks, the clock and id-returning inserts.

    `lock_rows` (PostgreSQL write transactions): link reads lock the rows they return
    until commit. `postgres`: ids come back through RETURNING and event inserts take
    the event lock. On SQLite both are off: the transaction already holds the file.
    """

    __slots__ = ("c", "_lock", "_pg")

    def __init__(self, conn: Any, *, lock_rows: bool = False, postgres: bool = False) -> None:
        self.c = conn
        self._lock = " FOR UPDATE" if lock_rows else ""
        self._pg = postgres

    # --- locks (no-ops on SQLite, where the write transaction holds the whole database) ---

    def lock_link(self, palm_pay_id: str) -> None:
        """Lock one link's row now (before any event insert: links first, then the event lock)."""
        if self._lock:
            self.c.execute("SELECT 1 FROM palm_pay_links WHERE palm_pay_id = ?" + self._lock, (palm_pay_id,))

    def serialise(self, name: str) -> None:
        """Queue behind every other transaction that serialises on `name`, until commit."""
        if self._pg:
            from payops.storage.locks import xact_lock

            xact_lock(self.c, name)

    def _insert_id(self, sql: str, params: tuple[Any, ...]) -> int:
        if self._pg:
            self.serialise(EVENTS_LOCK)
            return int(self.c.execute(sql + " RETURNING id", params).fetchone()[0])
        return int(self.c.execute(sql, params).lastrowid or 0)

    def now(self) -> float:
        """The database server's clock, epoch seconds: one time source for every writer."""
        sql = ("SELECT EXTRACT(EPOCH FROM clock_timestamp())" if self._pg
               else "SELECT (julianday('now') - 2440587.5) * 86400.0")
        return float(self.c.execute(sql).fetchone()[0])
