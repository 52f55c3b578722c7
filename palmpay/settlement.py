"""Settlement jobs: the palm-pay chores nothing else triggers.

Two things only happen when somebody asks for them:
* a payment whose rail call timed out stays `pending`, its amount reserved
  against the customer's daily limit, until `reconcile()` asks the rail what
  happened (and, past `max_pending_age_s`, releases it);
* a link never verified is revoked only when something touches it; the spec
  wants it gone after 24 hours (`expire_unverified()`).

`run_maintenance` does one round of both. It is safe to run from several places
at once (every settlement is "exactly once" in the store), but the entry points
also hold a lock so that two rounds do not ask the rail the same questions:
`payops palm maintain` (cron) and the background thread of `payops serve` /
`payops run` (payops/palm_jobs.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from .models import ReconcileReport

if TYPE_CHECKING:
    from .service import PalmPayService

# Pending payments looked at per round, oldest first; a larger backlog drains over the next rounds.
RECONCILE_BATCH = 500


class MaintenanceReport(BaseModel):
    """What one round did."""

    model_config = ConfigDict(frozen=True)

    expired_links: int  # unverified links revoked at the end of their verification window
    reconcile: ReconcileReport
    erased_pii: int = 0  # revoked links whose encrypted PII passed its retention period (retention.py)

    def summary(self) -> str:
        r = self.reconcile
        return (f"expired {self.expired_links} unverified link(s); payments: {r.completed} completed, "
                f"{r.failed} failed, {r.released_overdue} released overdue, {r.still_pending} still pending; "
                f"erased the PII of {self.erased_pii} revoked link(s)")


def run_maintenance(service: PalmPayService, *, batch: int = RECONCILE_BATCH) -> MaintenanceReport:
    """One round: expire stale enrolments, settle what the rail can tell us about, erase PII past retention."""
    expired = service.expire_unverified()
    report = service.reconcile(limit=batch)
    return MaintenanceReport(expired_links=expired, reconcile=report, erased_pii=service.erase_revoked_pii())
