"""Retention (POPIA): a revoked link's encrypted PII is erased once its retention period ends.

What goes: the template reference and proxy ciphertexts and their blind indexes (so the palm and
the proxy can no longer be found or decrypted), any OTP challenge and failed-match times. What
stays: the link's masked hints, its status history and the audit and access logs, which hold only
masked values: the trail of who did what survives the erasure, the personal data does not.
"""

from __future__ import annotations

from .service_core import ServiceCore

ERASE_BATCH = 500  # links per write transaction: a large backlog never holds the write lock for long


class RetentionMixin(ServiceCore):
    def erase_revoked_pii(self) -> int:
        """Erase the PII of links revoked more than `pii_retention_s` ago; returns how many. Cron-safe."""
        erased = 0
        while True:
            ts = self._now()
            with self.store.write() as tx:
                due = tx.revoked_with_pii_before(ts - self.options.pii_retention_s, ERASE_BATCH)
                for palm_pay_id in due:
                    tx.erase_pii(palm_pay_id)
                    tx.audit(ts, palm_pay_id=palm_pay_id, actor="payment_backend", action="erase_pii",
                             from_status=None, to_status=None, outcome="applied",
                             reason=f"retention period of {self.options.pii_retention_s / 86400:.0f} days ended")
            erased += len(due)
            if len(due) < ERASE_BATCH:
                return erased
