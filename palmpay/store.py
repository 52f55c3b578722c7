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
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from payops.storage.keys import private_file

from .models import (
    REVOKED,
    AccessLogEntry,
    AuditEntry,
    ChangeRequest,
    OutboxEvent,
    PalmPayLink,
    PaymentEventRecord,
    SealedField,
)

SCHEMA_VERSION = 4

# Migrations are append-only: (version, statements). Never edit a released one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE palm_pay_links (
                palm_pay_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                palm_hand TEXT,
                proxy_type TEXT NOT NULL,
                link_status TEXT NOT NULL,
                template_index BLOB NOT NULL,
                template_ct BLOB NOT NULL,
                template_hint TEXT NOT NULL,
                proxy_index BLOB NOT NULL,
                proxy_ct BLOB NOT NULL,
                proxy_hint TEXT NOT NULL,
                bank TEXT,
                daily_limit_cents INTEGER NOT NULL CHECK (daily_limit_cents >= 0),
                transaction_limit_cents INTEGER NOT NULL CHECK (transaction_limit_cents >= 0),
                daily_spent_cents INTEGER NOT NULL DEFAULT 0 CHECK (daily_spent_cents >= 0),
                reserved_cents INTEGER NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
                spent_day TEXT,
                created_at REAL NOT NULL,
                verified_at REAL,
                linked_at REAL,
                status_changed_at REAL NOT NULL,
                status_reason TEXT,
                CHECK (daily_spent_cents + reserved_cents <= daily_limit_cents)
            )""",
            # One live link per palm; a revoked palm may be enrolled again.
            f"CREATE UNIQUE INDEX links_one_live_per_palm ON palm_pay_links(template_index)"
            f" WHERE link_status != '{REVOKED}'",
            "CREATE INDEX links_by_template ON palm_pay_links(template_index, created_at)",
            "CREATE INDEX links_by_proxy ON palm_pay_links(proxy_index)",
            "CREATE INDEX links_by_user ON palm_pay_links(user_id)",
            "CREATE INDEX links_by_status ON palm_pay_links(link_status, created_at)",
            """CREATE TABLE payments (
                payment_id TEXT PRIMARY KEY,
                palm_pay_id TEXT NOT NULL REFERENCES palm_pay_links(palm_pay_id),
                amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
                terminal_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
                spent_day TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                error_code TEXT,
                rail_reference TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE INDEX payments_pending ON payments(created_at) WHERE status = 'pending'",
            """CREATE TABLE otp_challenges (
                palm_pay_id TEXT PRIMARY KEY REFERENCES palm_pay_links(palm_pay_id),
                code_mac BLOB NOT NULL,
                expires_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                resends INTEGER NOT NULL DEFAULT 0,
                delivery_id TEXT NOT NULL
            )""",
            """CREATE TABLE match_failures (
                palm_pay_id TEXT NOT NULL,
                ts REAL NOT NULL
            )""",
            "CREATE INDEX match_failures_by_link ON match_failures(palm_pay_id, ts)",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                name TEXT NOT NULL,
                payload TEXT NOT NULL
            )""",
            """CREATE TABLE payment_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                payment_id TEXT NOT NULL,
                body TEXT NOT NULL
            )""",
            "CREATE INDEX payment_events_by_payment ON payment_events(payment_id)",
            """CREATE TABLE audit_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                palm_pay_id TEXT,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                from_status TEXT,
                to_status TEXT,
                outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'refused')),
                reason TEXT
            )""",
            "CREATE INDEX audit_by_link ON audit_log(palm_pay_id)",
            """CREATE TABLE access_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts REAL NOT NULL,
                palm_pay_id TEXT NOT NULL,
                field TEXT NOT NULL,
                actor TEXT NOT NULL,
                purpose TEXT NOT NULL
            )""",
            "CREATE INDEX access_by_link ON access_log(palm_pay_id)",
            # Which data key new ciphertexts must use; lets processes notice a rotation.
            """CREATE TABLE key_state (
                singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                active_key_id TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        # The daily limit on a ledger: one row per (link, local date). The link's own counters kept
        # a single day, so two writers whose clocks straddled midnight reset each other's counter.
        # Rows of different days never touch, and the CHECK repeats the invariant per day.
        (
            """CREATE TABLE daily_ledger (
                palm_pay_id TEXT NOT NULL REFERENCES palm_pay_links(palm_pay_id),
                day TEXT NOT NULL,
                limit_cents INTEGER NOT NULL CHECK (limit_cents >= 0),
                spent_cents INTEGER NOT NULL DEFAULT 0 CHECK (spent_cents >= 0),
                reserved_cents INTEGER NOT NULL DEFAULT 0 CHECK (reserved_cents >= 0),
                PRIMARY KEY (palm_pay_id, day),
                CHECK (spent_cents + reserved_cents <= limit_cents)
            ) WITHOUT ROWID""",  # rows live in the key's b-tree: one structure to write per payment, not two
            # Existing counters and holds move into the ledger on the day they belong to.
            "INSERT INTO daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)"
            " SELECT palm_pay_id, spent_day, daily_limit_cents, daily_spent_cents, 0 FROM palm_pay_links"
            " WHERE spent_day IS NOT NULL",
            "INSERT INTO daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)"
            " SELECT p.palm_pay_id, p.spent_day, MAX(l.daily_limit_cents), 0, SUM(p.amount_cents)"
            " FROM payments p JOIN palm_pay_links l ON l.palm_pay_id = p.palm_pay_id WHERE p.status = 'pending'"
            " GROUP BY p.palm_pay_id, p.spent_day"
            " ON CONFLICT (palm_pay_id, day) DO UPDATE SET reserved_cents = excluded.reserved_cents",
        ),
    ),
    (
        3,
        # The two-person rule: a human-initiated revocation, suspension lift, limit change or key
        # rotation waits here until a second, different operator approves it; it runs once.
        (
            """CREATE TABLE change_requests (
                request_id TEXT PRIMARY KEY,
                action TEXT NOT NULL,
                palm_pay_id TEXT,
                reason TEXT NOT NULL,
                args TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                requested_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'executed', 'rejected', 'expired', 'failed')),
                decided_by TEXT,
                decided_at REAL,
                result TEXT,
                CHECK (decided_by IS NULL OR decided_by != requested_by)
            )""",
            "CREATE INDEX change_requests_by_status ON change_requests(status, requested_at)",
            # Idempotency: what the first request asked for (keyed digest, no plaintext), so a replay
            # of its key with another body is refused instead of answered with the first payment.
            "ALTER TABLE payments ADD COLUMN fingerprint TEXT",
        ),
    ),
    (
        4,
        # Terminal attestation's registry and single-use scan nonces (attestation.py), which it used to
        # create on first use outside any migration ("IF NOT EXISTS": such a database already has them);
        # and which blind-index root and OTP MAC key the data was written under, so a start with
        # other keys is refused instead of answering NOT_REGISTERED / OTP_INVALID for everything.
        (
            """CREATE TABLE IF NOT EXISTS palm_terminal_keys (
                terminal_id TEXT PRIMARY KEY,
                public_key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                registered_at DOUBLE PRECISION NOT NULL,
                registered_by TEXT NOT NULL,
                revoked_at DOUBLE PRECISION,
                revoked_by TEXT
            )""",
            """CREATE TABLE IF NOT EXISTS palm_scan_nonces (
                terminal_id TEXT NOT NULL,
                nonce TEXT NOT NULL,
                payment_id TEXT,
                seen_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (terminal_id, nonce)
            )""",
            "CREATE INDEX IF NOT EXISTS palm_scan_nonces_by_age ON palm_scan_nonces(seen_at)",
            "ALTER TABLE key_state ADD COLUMN index_key_id TEXT",
            "ALTER TABLE key_state ADD COLUMN otp_key_id TEXT",
        ),
    ),
)

_LINK_COLUMNS = (
    "palm_pay_id, user_id, template_ct, template_hint, palm_hand, proxy_ct, proxy_hint, proxy_type,"
    " link_status, linked_at, verified_at, daily_limit_cents, daily_spent_cents, transaction_limit_cents,"
    " spent_day, reserved_cents, bank, created_at"
)


def _link(row: Sequence[Any]) -> PalmPayLink:
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


def _request(row: Sequence[Any]) -> ChangeRequest:
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


EVENTS_LOCK = "palmpay:event-ids"  # PostgreSQL: outbox / payment-event ids in commit order
ENROLMENT_LOCK = "palmpay:enrolment"  # PostgreSQL: one enrolment at a time (it checks a palm's and a user's links)


class Tx:
    """Queries over one connection inside one transaction.

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
        sql = "SELECT EXTRACT(EPOCH FROM clock_timestamp())" if self._pg else "SELECT (julianday('now') - 2440587.5) * 86400.0"
        return float(self.c.execute(sql).fetchone()[0])

    # --- links -------------------------------------------------------------

    def link(self, palm_pay_id: str) -> PalmPayLink | None:
        row = self.c.execute(
            f"SELECT {_LINK_COLUMNS} FROM palm_pay_links WHERE palm_pay_id = ?" + self._lock, (palm_pay_id,)
        ).fetchone()
        return _link(row) if row else None

    def link_for_template(self, template_index: bytes) -> PalmPayLink | None:
        """The live link of a palm, else its most recent revoked one."""
        row = self.c.execute(
            f"SELECT {_LINK_COLUMNS} FROM palm_pay_links WHERE template_index = ?"
            f" ORDER BY link_status = '{REVOKED}', created_at DESC LIMIT 1" + self._lock,
            (template_index,),
        ).fetchone()
        return _link(row) if row else None

    def links_for_proxy(self, proxy_index: bytes) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {_LINK_COLUMNS} FROM palm_pay_links WHERE proxy_index = ? ORDER BY created_at" + self._lock,
            (proxy_index,),
        ).fetchall()
        return [_link(r) for r in rows]

    def links_by_status(self, status: str, limit: int) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {_LINK_COLUMNS} FROM palm_pay_links WHERE link_status = ? ORDER BY created_at DESC, palm_pay_id LIMIT ?",
            (status, limit),
        ).fetchall()
        return [_link(r) for r in rows]

    def link_status_counts(self) -> dict[str, int]:
        rows = self.c.execute("SELECT link_status, COUNT(*) FROM palm_pay_links GROUP BY link_status").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def links_for_user(self, user_id: str) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {_LINK_COLUMNS} FROM palm_pay_links WHERE user_id = ? ORDER BY created_at, palm_pay_id" + self._lock,
            (user_id,),
        ).fetchall()
        return [_link(r) for r in rows]

    def all_links(self) -> list[PalmPayLink]:
        rows = self.c.execute(f"SELECT {_LINK_COLUMNS} FROM palm_pay_links ORDER BY created_at, palm_pay_id").fetchall()
        return [_link(r) for r in rows]

    def pending_created_before(self, status: str, cutoff: float) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {_LINK_COLUMNS} FROM palm_pay_links WHERE link_status = ? AND created_at <= ?"
            " ORDER BY created_at, palm_pay_id" + self._lock,
            (status, cutoff),
        ).fetchall()
        return [_link(r) for r in rows]

    def insert_link(self, link: PalmPayLink, *, template_index: bytes, proxy_index: bytes) -> None:
        self.c.execute(
            "INSERT INTO palm_pay_links (palm_pay_id, user_id, palm_hand, proxy_type, link_status,"
            " template_index, template_ct, template_hint, proxy_index, proxy_ct, proxy_hint, bank,"
            " daily_limit_cents, transaction_limit_cents, daily_spent_cents, reserved_cents, spent_day,"
            " created_at, verified_at, linked_at, status_changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                link.palm_pay_id,
                link.user_id,
                link.palm_hand,
                link.proxy_type,
                link.link_status,
                template_index,
                link.palm_template_ref.ciphertext,
                link.palm_template_ref.masked,
                proxy_index,
                link.payshap_proxy.ciphertext,
                link.payshap_proxy.masked,
                link.bank,
                link.daily_limit,
                link.transaction_limit,
                link.daily_spent,
                link.reserved,
                link.spent_day,
                link.created_at,
                link.verified_at,
                link.linked_at,
                link.created_at,
            ),
        )

    def set_status(
        self,
        palm_pay_id: str,
        status: str,
        *,
        ts: float,
        reason: str | None,
        verified_at: float | None = None,
        linked_at: float | None = None,
    ) -> None:
        self.c.execute(
            "UPDATE palm_pay_links SET link_status = ?, status_changed_at = ?, status_reason = ?,"
            " verified_at = COALESCE(?, verified_at), linked_at = COALESCE(?, linked_at) WHERE palm_pay_id = ?",
            (status, ts, reason, verified_at, linked_at, palm_pay_id),
        )

    def set_limits(self, palm_pay_id: str, *, daily_limit: int, transaction_limit: int, from_day: str | None) -> None:
        """New limits on the link and on its ledger rows from `from_day` on (the link's current day: past days
        keep the limit they were paid under; callers check the new one fits what the day has used)."""
        self.c.execute(
            "UPDATE palm_pay_links SET daily_limit_cents = ?, transaction_limit_cents = ? WHERE palm_pay_id = ?",
            (daily_limit, transaction_limit, palm_pay_id),
        )
        if from_day is not None:
            self.c.execute("UPDATE daily_ledger SET limit_cents = ? WHERE palm_pay_id = ? AND day >= ?",
                           (daily_limit, palm_pay_id, from_day))

    def set_ciphertexts(self, palm_pay_id: str, *, template_ct: bytes, proxy_ct: bytes) -> None:
        self.c.execute(
            "UPDATE palm_pay_links SET template_ct = ?, proxy_ct = ? WHERE palm_pay_id = ?",
            (template_ct, proxy_ct, palm_pay_id),
        )

    # --- payments ----------------------------------------------------------

    def payment(self, payment_id: str) -> PaymentRow | None:
        row = self.c.execute(
            "SELECT payment_id, palm_pay_id, amount_cents, terminal_id, status, spent_day, attempts, error_code,"
            " rail_reference, created_at, fingerprint FROM payments WHERE payment_id = ?",
            (payment_id,),
        ).fetchone()
        return PaymentRow(*row) if row else None

    def pending_payments(self, limit: int) -> list[PaymentRow]:
        rows = self.c.execute(
            "SELECT payment_id, palm_pay_id, amount_cents, terminal_id, status, spent_day, attempts, error_code,"
            " rail_reference, created_at FROM payments WHERE status = 'pending' ORDER BY created_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [PaymentRow(*r) for r in rows]

    def insert_payment(self, row: PaymentRow, *, ts: float) -> None:
        self.c.execute(
            "INSERT INTO payments (payment_id, palm_pay_id, amount_cents, terminal_id, status, spent_day, attempts,"
            " error_code, rail_reference, created_at, updated_at, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.payment_id,
                row.palm_pay_id,
                row.amount_cents,
                row.terminal_id,
                row.status,
                row.spent_day,
                row.attempts,
                row.error_code,
                row.rail_reference,
                row.created_at,
                ts,
                row.fingerprint,
            ),
        )

    def finish_payment(
        self,
        payment_id: str,
        *,
        status: str,
        attempts: int,
        error_code: str | None,
        rail_reference: str | None,
        ts: float,
        only_if_pending: bool = True,
    ) -> bool:
        """Record a payment's state; with only_if_pending, True only for the one call that settles it."""
        cur = self.c.execute(
            "UPDATE payments SET status = ?, attempts = ?, error_code = ?, rail_reference = ?, updated_at = ?"
            " WHERE payment_id = ?" + (" AND status = 'pending'" if only_if_pending else ""),
            (status, attempts, error_code, rail_reference, ts, payment_id),
        )
        return cur.rowcount == 1

    # --- the daily ledger: one row per (link, local date) ----------------------

    def ledger(self, palm_pay_id: str, day: str) -> tuple[int, int]:
        """(spent, reserved) cents of one link on one local date; (0, 0) before its first payment."""
        row = self.c.execute(
            "SELECT spent_cents, reserved_cents FROM daily_ledger WHERE palm_pay_id = ? AND day = ?",
            (palm_pay_id, day),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def reserve(self, palm_pay_id: str, day: str, *, limit_cents: int, amount_cents: int) -> None:
        """Hold `amount_cents` on the link's ledger row for `day` (the row's CHECK refuses an overspend)."""
        row = self.c.execute(
            "INSERT INTO daily_ledger (palm_pay_id, day, limit_cents, spent_cents, reserved_cents)"
            " VALUES (?, ?, ?, 0, ?) ON CONFLICT (palm_pay_id, day) DO UPDATE SET"
            " reserved_cents = daily_ledger.reserved_cents + excluded.reserved_cents"
            " RETURNING spent_cents, reserved_cents",
            (palm_pay_id, day, limit_cents, amount_cents),
        ).fetchone()
        self._mirror(palm_pay_id, day, row)

    def release_reservation(self, palm_pay_id: str, *, day: str, amount_cents: int, completed: bool) -> None:
        """Move a settled payment's hold out of `reserved` on the day it was reserved; into `spent` if it completed.

        One UPDATE, so concurrent settlements never lose each other's counter changes. A payment
        settled after midnight still counts for the day it was made, never the new one.
        """
        row = self.c.execute(
            "UPDATE daily_ledger SET reserved_cents = reserved_cents - ?, spent_cents = spent_cents + ?"
            " WHERE palm_pay_id = ? AND day = ? RETURNING spent_cents, reserved_cents",
            (amount_cents, amount_cents if completed else 0, palm_pay_id, day),
        ).fetchone()
        if row is not None:
            self._mirror(palm_pay_id, day, row)

    def _mirror(self, palm_pay_id: str, day: str, ledger_row: Sequence[Any]) -> None:
        """Copy a ledger row onto the link's own counters when it is the link's latest day.

        The link's columns are a read-side summary (views, events); limits are decided on the ledger.
        ISO dates compare as text, so the summary only moves forward.
        """
        self.c.execute(
            "UPDATE palm_pay_links SET spent_day = ?, daily_spent_cents = ?, reserved_cents = ?"
            " WHERE palm_pay_id = ? AND (spent_day IS NULL OR spent_day <= ?)",
            (day, ledger_row[0], ledger_row[1], palm_pay_id, day),
        )

    def reserved_total(self, palm_pay_id: str) -> int:
        """Cents held by pending payments of a link, over all days."""
        row = self.c.execute(
            "SELECT COALESCE(SUM(reserved_cents), 0) FROM daily_ledger WHERE palm_pay_id = ?", (palm_pay_id,)
        ).fetchone()
        return int(row[0])

    def ledger_rows(self) -> list[tuple[str, str, int, int, int]]:
        """(palm_pay_id, day, limit, spent, reserved) of every ledger row, for invariant checks."""
        return [
            (r[0], r[1], int(r[2]), int(r[3]), int(r[4]))
            for r in self.c.execute(
                "SELECT palm_pay_id, day, limit_cents, spent_cents, reserved_cents FROM daily_ledger"
                " ORDER BY palm_pay_id, day"
            ).fetchall()
        ]

    def completed_by_link_and_day(self) -> list[tuple[str, str, int, int]]:
        """(palm_pay_id, spent_day, sum of completed cents, max single amount) for invariant checks."""
        return self.c.execute(
            "SELECT palm_pay_id, spent_day, CAST(SUM(amount_cents) AS BIGINT), MAX(amount_cents) FROM payments"
            " WHERE status = 'completed' GROUP BY palm_pay_id, spent_day"
        ).fetchall()

    # --- OTP challenges ----------------------------------------------------

    def otp(self, palm_pay_id: str) -> tuple[bytes, float, int, int, str] | None:
        return self.c.execute(
            "SELECT code_mac, expires_at, attempts, resends, delivery_id FROM otp_challenges WHERE palm_pay_id = ?",
            (palm_pay_id,),
        ).fetchone()

    def put_otp(self, palm_pay_id: str, *, code_mac: bytes, expires_at: float, resends: int, delivery_id: str) -> None:
        self.c.execute(
            "INSERT INTO otp_challenges (palm_pay_id, code_mac, expires_at, attempts, resends, delivery_id)"
            " VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT(palm_pay_id) DO UPDATE SET code_mac = excluded.code_mac,"
            " expires_at = excluded.expires_at, attempts = 0, resends = excluded.resends,"
            " delivery_id = excluded.delivery_id",
            (palm_pay_id, code_mac, expires_at, resends, delivery_id),
        )

    def has_otp_challenges(self) -> bool:
        return self.c.execute("SELECT 1 FROM otp_challenges LIMIT 1").fetchone() is not None

    def set_otp_delivery(self, palm_pay_id: str, delivery_id: str) -> None:
        self.c.execute("UPDATE otp_challenges SET delivery_id = ? WHERE palm_pay_id = ?", (delivery_id, palm_pay_id))

    def count_otp_attempt(self, palm_pay_id: str) -> None:
        self.c.execute("UPDATE otp_challenges SET attempts = attempts + 1 WHERE palm_pay_id = ?", (palm_pay_id,))

    def drop_otp(self, palm_pay_id: str) -> None:
        self.c.execute("DELETE FROM otp_challenges WHERE palm_pay_id = ?", (palm_pay_id,))

    # --- failed matches ----------------------------------------------------

    def record_match_failure(self, palm_pay_id: str, ts: float, *, keep_after: float) -> list[float]:
        """Store a failed match, prune old ones, return the failure times still in the window."""
        self.c.execute("DELETE FROM match_failures WHERE palm_pay_id = ? AND ts <= ?", (palm_pay_id, keep_after))
        self.c.execute("INSERT INTO match_failures (palm_pay_id, ts) VALUES (?, ?)", (palm_pay_id, ts))
        rows = self.c.execute("SELECT ts FROM match_failures WHERE palm_pay_id = ?", (palm_pay_id,)).fetchall()
        return [r[0] for r in rows]

    def clear_match_failures(self, palm_pay_id: str) -> None:
        self.c.execute("DELETE FROM match_failures WHERE palm_pay_id = ?", (palm_pay_id,))

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
        return int(self.c.execute("SELECT COUNT(*) FROM payment_events WHERE payment_id = ?", (payment_id,)).fetchone()[0])

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
        return _request(row) if row else None

    def change_requests(self, status: str | None, limit: int) -> list[ChangeRequest]:
        sql = f"SELECT {self._REQUEST_COLUMNS} FROM change_requests"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        rows = self.c.execute(sql + " ORDER BY requested_at, request_id LIMIT ?", (*args, limit)).fetchall()
        return [_request(r) for r in rows]

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
        return cur.rowcount == 1

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
        """Record them (the key_state row exists: set_active_key_id first)."""
        self.c.execute("UPDATE key_state SET index_key_id = ?, otp_key_id = ? WHERE singleton = 1",
                       (index_key_id, otp_key_id))

    def sealed_values(self) -> list[tuple[str, bytes, bytes]]:
        """Every row's ciphertexts, except rows whose PII was erased (nothing left to re-encrypt)."""
        return self.c.execute(
            "SELECT palm_pay_id, template_ct, proxy_ct FROM palm_pay_links WHERE length(template_ct) > 0"
            " ORDER BY palm_pay_id" + self._lock
        ).fetchall()

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
        return self._connect().execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

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
