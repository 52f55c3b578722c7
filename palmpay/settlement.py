"""Settlement jobs: the palm-pay chores nothing else triggers.

Two things only happen when somebody asks for them:
* a payment whose rail call timed out stays `pending`, its amount reserved
  against the customer's daily limit, until `reconcile()` asks the rail what
  happened (and, past `max_pending_age_s`, releases it);
* a link never verified is revoked only when something touches it; the spec
  wants it gone after 24 hours (`expire_unverified()`).

`SettlementMixin` holds them for PalmPayService: `reconcile()`, and `_settle`, the one
place a pending payment reaches its final state (exactly once; payments.py calls it too).
`run_maintenance` does one round of both, plus retention's erasure and a batch of each key rotation's
re-encryption or re-indexing and retirement (retention.py, rotation.py). It is safe to run from several places
at once (every settlement is "exactly once" in the store), but the entry points
also hold a lock so that two rounds do not ask the rail the same questions:
`payops palm maintain` (cron) and the background thread of `payops serve` /
`payops run` (payops/palm_jobs.py).
"""

from __future__ import annotations

import logging
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from .actors import BACKEND
from .models import PalmPayLink, ReconcileReport
from .service_core import ServiceCore
from .store import PaymentRow, Tx

log = logging.getLogger("payops.palmpay")

# Pending payments looked at per round, oldest first; a larger backlog drains over the next rounds.
RECONCILE_BATCH = 500


class MaintenanceReport(BaseModel):
    """What one round did."""

    model_config = ConfigDict(frozen=True)

    expired_links: int  # unverified links revoked at the end of their verification window
    reconcile: ReconcileReport
    erased_pii: int = 0  # revoked links whose encrypted PII passed its retention period (retention.py)
    reencrypted: int = 0  # rows re-sealed under the active data key (rotation.py)
    reindexed: int = 0  # rows re-indexed under the current blind-index root (rotation.py)
    retired_keys: tuple[str, ...] = ()  # data keys retired: rows re-encrypted a backup window ago

    def summary(self) -> str:
        r = self.reconcile
        return (f"expired {self.expired_links} unverified link(s); payments: {r.completed} completed, "
                f"{r.failed} failed, {r.released_overdue} released overdue, {r.still_pending} still pending; "
                + (f"re-encrypted {self.reencrypted} row(s) under the active key; " if self.reencrypted else "")
                + (f"re-indexed {self.reindexed} row(s) under the current index root; " if self.reindexed else "")
                + (f"retired key(s) {', '.join(self.retired_keys)}; " if self.retired_keys else "")
                + f"erased the PII of {self.erased_pii} revoked link(s)")


class Maintainable(Protocol):
    """The chores of one round (PalmPayService has them): typed here so settlement.py needs no import of
    service.py, which imports it (a cycle)."""

    def expire_unverified(self) -> int: ...
    def reconcile(self, *, limit: int = ...) -> ReconcileReport: ...
    def erase_revoked_pii(self) -> int: ...
    def reencrypt_step(self, *, batch: int = ...) -> int: ...
    def reindex_step(self, *, batch: int = ...) -> int: ...
    def retire_old_keys(self) -> tuple[str, ...]: ...


def run_maintenance(service: Maintainable, *, batch: int = RECONCILE_BATCH) -> MaintenanceReport:
    """One round: expire stale enrolments, settle what the rail can tell us about, erase PII past retention,
    re-encrypt and re-index a batch of what a key rotation left behind, retire keys past the backup window."""
    expired = service.expire_unverified()
    report = service.reconcile(limit=batch)
    return MaintenanceReport(expired_links=expired, reconcile=report, erased_pii=service.erase_revoked_pii(),
                             reencrypted=service.reencrypt_step(batch=batch),
                             reindexed=service.reindex_step(batch=batch), retired_keys=service.retire_old_keys())


class SettlementMixin(ServiceCore):
    """Settling pending payments: once, as the rail answers, or released past the maximum pending age."""

    def _settle(
        self,
        tx: Tx,
        row: PaymentRow,
        link: PalmPayLink,
        status: str,
        ts: float,
        *,
        attempts: int,
        rail_reference: str | None = None,
        error_code: str | None = None,
    ) -> bool:
        """Move a pending payment to its final state exactly once; False if already settled."""
        if status == "completed":
            error_code = None
        if not tx.finish_payment(
            row.payment_id, status=status, attempts=attempts, error_code=error_code, rail_reference=rail_reference,
            ts=ts,
        ):
            return False
        # Counted once, on the ledger row of the day it was reserved: a payment from a finished
        # day never counts against the new day's allowance.
        tx.release_reservation(
            row.palm_pay_id, day=row.spent_day, amount_cents=row.amount_cents, completed=status == "completed"
        )
        if status == "completed":
            self._emit(tx, ts, "palm_payment_completed", self._values(link, amount_cents=row.amount_cents))
        return True

    def reconcile(self, *, limit: int = 500) -> ReconcileReport:
        """Ask the rail about pending payments (by idempotency key) and settle them once.

        A payment still unsettled (the rail says pending, or cannot be asked) after
        `options.max_pending_age_s` is released as failed, so a lost rail answer never holds
        the customer's limit for ever; settlement.py runs this on a schedule.
        """
        now = self._now()
        with self.store.read() as tx:
            pending = [p for p in tx.pending_payments(limit) if now - p.created_at >= self.options.reconcile_grace_s]
        completed = failed = still = released = 0
        for row in pending:
            try:
                answer = self.rail.payment_status(row.payment_id)
            except Exception:
                log.warning("rail status for payment %s unavailable", row.payment_id)
                answer = None
            ts = self._now()
            overdue = ts - row.created_at >= self.options.max_pending_age_s
            if answer is None and not overdue:
                still += 1
                continue
            with self.store.write() as tx:
                link = tx.link(row.palm_pay_id)
                assert link is not None
                said: str = "unavailable" if answer is None else answer.status
                if answer is not None and answer.status == "completed":
                    completed += self._settle(
                        tx, row, link, "completed", ts, attempts=row.attempts, rail_reference=answer.rail_reference
                    )
                elif answer is not None and answer.status in ("failed", "not_found"):
                    # not_found after the grace period: the rail never took it, so release the hold.
                    code = answer.error_code or ("DO_NOT_HONOR" if answer.status == "failed" else row.error_code)
                    failed += self._settle(tx, row, link, "failed", ts, attempts=row.attempts, error_code=code)
                elif overdue:
                    code = row.error_code or "GATEWAY_TIMEOUT"
                    released += self._settle(tx, row, link, "failed", ts, attempts=row.attempts, error_code=code)
                    said += f"; released after {self.options.max_pending_age_s:.0f}s pending"
                    log.warning("payment %s released unsettled after the maximum pending age", row.payment_id)
                else:
                    still += 1
                tx.audit(
                    ts, palm_pay_id=row.palm_pay_id, actor=BACKEND, action="reconcile", from_status=None,
                    to_status=None, outcome="applied", reason=f"payment {row.payment_id}: rail says {said}",
                )
        return ReconcileReport(completed=completed, failed=failed, still_pending=still, released_overdue=released)
