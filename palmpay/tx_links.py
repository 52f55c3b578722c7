"""Queries on links and their money: links, payments, the daily ledger, OTP challenges, failed matches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .models import REVOKED, PalmPayLink
from .tx import LINK_COLUMNS, PaymentRow, TxBase, link_from_row


class LinkQueries(TxBase):
    __slots__ = ()

    # --- links -------------------------------------------------------------

    def link(self, palm_pay_id: str) -> PalmPayLink | None:
        row = self.c.execute(
            f"SELECT {LINK_COLUMNS} FROM palm_pay_links WHERE palm_pay_id = ?" + self._lock, (palm_pay_id,)
        ).fetchone()
        return link_from_row(row) if row else None

    def link_for_template(self, template_index: bytes, *older: bytes) -> PalmPayLink | None:
        """The live link of a palm, else its most recent revoked one. `older`: the palm's digests under a
        blind-index root being rotated out (rows not re-indexed yet carry those)."""
        digests = (template_index, *older)
        row = self.c.execute(
            f"SELECT {LINK_COLUMNS} FROM palm_pay_links WHERE template_index IN ({_marks(digests)})"
            f" ORDER BY link_status = '{REVOKED}', created_at DESC LIMIT 1" + self._lock,
            digests,
        ).fetchone()
        return link_from_row(row) if row else None

    def links_for_proxy(self, proxy_index: bytes, *older: bytes) -> list[PalmPayLink]:
        digests = (proxy_index, *older)
        rows = self.c.execute(
            f"SELECT {LINK_COLUMNS} FROM palm_pay_links WHERE proxy_index IN ({_marks(digests)})"
            " ORDER BY created_at" + self._lock,
            digests,
        ).fetchall()
        return [link_from_row(r) for r in rows]

    def links_by_status(self, status: str, limit: int) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {LINK_COLUMNS} FROM palm_pay_links WHERE link_status = ?"
            " ORDER BY created_at DESC, palm_pay_id LIMIT ?",
            (status, limit),
        ).fetchall()
        return [link_from_row(r) for r in rows]

    def link_status_counts(self) -> dict[str, int]:
        rows = self.c.execute("SELECT link_status, COUNT(*) FROM palm_pay_links GROUP BY link_status").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def links_for_user(self, user_id: str) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {LINK_COLUMNS} FROM palm_pay_links WHERE user_id = ?"
            " ORDER BY created_at, palm_pay_id" + self._lock,
            (user_id,),
        ).fetchall()
        return [link_from_row(r) for r in rows]

    def all_links(self) -> list[PalmPayLink]:
        rows = self.c.execute(f"SELECT {LINK_COLUMNS} FROM palm_pay_links ORDER BY created_at, palm_pay_id").fetchall()
        return [link_from_row(r) for r in rows]

    def pending_created_before(self, status: str, cutoff: float) -> list[PalmPayLink]:
        rows = self.c.execute(
            f"SELECT {LINK_COLUMNS} FROM palm_pay_links WHERE link_status = ? AND created_at <= ?"
            " ORDER BY created_at, palm_pay_id" + self._lock,
            (status, cutoff),
        ).fetchall()
        return [link_from_row(r) for r in rows]

    def insert_link(
        self, link: PalmPayLink, *, template_index: bytes, proxy_index: bytes, index_key_id: str | None = None
    ) -> None:
        """`index_key_id`: the blind-index root both digests were computed under."""
        self.c.execute(
            "INSERT INTO palm_pay_links (palm_pay_id, user_id, palm_hand, proxy_type, link_status,"
            " template_index, template_ct, template_hint, proxy_index, proxy_ct, proxy_hint, bank,"
            " daily_limit_cents, transaction_limit_cents, daily_spent_cents, reserved_cents, spent_day,"
            " created_at, verified_at, linked_at, status_changed_at, index_key_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                index_key_id,
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

    def set_indexes(self, palm_pay_id: str, *, template_index: bytes, proxy_index: bytes, index_key_id: str) -> None:
        """A row re-indexed under another blind-index root (an erased row keeps its empty digests)."""
        self.c.execute(
            "UPDATE palm_pay_links SET template_index = ?, proxy_index = ?, index_key_id = ? WHERE palm_pay_id = ?",
            (template_index, proxy_index, index_key_id, palm_pay_id),
        )

    def indexed_under_other_roots(self, root_id: str, limit: int) -> list[tuple[str, str, bytes, bytes]]:
        """(palm_pay_id, proxy_type, template_ct, proxy_ct) of up to `limit` rows whose blind indexes were
        computed under another root than `root_id`; erased rows have empty ciphertexts."""
        rows: list[tuple[str, str, bytes, bytes]] = self.c.execute(
            "SELECT palm_pay_id, proxy_type, template_ct, proxy_ct FROM palm_pay_links"
            " WHERE index_key_id IS NULL OR index_key_id != ? ORDER BY palm_pay_id LIMIT ?" + self._lock,
            (root_id, limit),
        ).fetchall()
        return [(r[0], r[1], bytes(r[2]), bytes(r[3])) for r in rows]

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
            " error_code, rail_reference, created_at, updated_at, fingerprint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        return int(cur.rowcount) == 1

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
        rows: list[tuple[str, str, int, int]] = self.c.execute(
            "SELECT palm_pay_id, spent_day, CAST(SUM(amount_cents) AS BIGINT), MAX(amount_cents) FROM payments"
            " WHERE status = 'completed' GROUP BY palm_pay_id, spent_day"
        ).fetchall()
        return rows

    # --- OTP challenges ----------------------------------------------------

    def otp(self, palm_pay_id: str) -> tuple[bytes, float, int, int, str] | None:
        row: tuple[bytes, float, int, int, str] | None = self.c.execute(
            "SELECT code_mac, expires_at, attempts, resends, delivery_id FROM otp_challenges WHERE palm_pay_id = ?",
            (palm_pay_id,),
        ).fetchone()
        return row

    def put_otp(self, palm_pay_id: str, *, code_mac: bytes, expires_at: float, resends: int, delivery_id: str) -> None:
        self.c.execute(
            "INSERT INTO otp_challenges (palm_pay_id, code_mac, expires_at, attempts, resends, delivery_id)"
            " VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT(palm_pay_id) DO UPDATE SET code_mac = excluded.code_mac,"
            " expires_at = excluded.expires_at, attempts = 0, resends = excluded.resends,"
            " delivery_id = excluded.delivery_id",
            (palm_pay_id, code_mac, expires_at, resends, delivery_id),
        )

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


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))
