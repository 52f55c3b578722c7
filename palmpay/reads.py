"""Reads: a link and its lists, masked; the outbox and payment events; the audit and access logs."""

from __future__ import annotations

import logging
from datetime import datetime

from .models import AccessLogEntry, AuditEntry, LinkView, OutboxEvent, PalmPayLink, PaymentEventRecord
from .money import from_cents
from .policy import ledger_day, local_day, spent_on
from .service_core import PROXY_FIELD, ServiceCore
from .store import Tx

log = logging.getLogger("payops.palmpay")


class ReadsMixin(ServiceCore):
    def show(self, palm_pay_id: str) -> LinkView:
        with self.store.read() as tx:
            link = self._require_link(tx, palm_pay_id)
            return self._view(link, tx)

    def links_by_status(self, status: str, limit: int = 100) -> list[LinkView]:
        """Newest first, masked: the operator console's list of links in one status."""
        with self.store.read() as tx:
            return [self._view(link, tx) for link in tx.links_by_status(status, limit)]

    def link_status_counts(self) -> dict[str, int]:
        with self.store.read() as tx:
            return tx.link_status_counts()

    def links_for_user(self, user_id: str) -> list[LinkView]:
        with self.store.read() as tx:
            return [self._view(link, tx) for link in tx.links_for_user(user_id)]

    def links_for_proxy(self, payshap_proxy: str, proxy_type: str) -> list[LinkView]:
        """Blind-index lookup: which links use this proxy (no plaintext is compared)."""
        proxy_type = self._choice(proxy_type, "proxy_type", self._proxy_types)
        value = f"{proxy_type}:{self._proxy(payshap_proxy, proxy_type)}"
        with self.store.read() as tx:
            return [self._view(link, tx) for link in tx.links_for_proxy(*self._digests(tx, PROXY_FIELD, value)[1])]

    def consume(self, after_id: int = 0, limit: int = 100) -> list[OutboxEvent]:
        """Spec events with id > after_id, oldest first."""
        with self.store.read() as tx:
            return tx.outbox_after(after_id, limit)

    def payment_events_after(self, after_id: int = 0, limit: int = 1000) -> list[PaymentEventRecord]:
        """CONTRACT.md §1 payment events with id > after_id, oldest first."""
        with self.store.read() as tx:
            return tx.payment_events_after(after_id, limit)

    def payment_events_count_after(self, after_id: int = 0) -> int:
        """How many payment events have id > after_id (a reader's lag), without reading them."""
        with self.store.read() as tx:
            return tx.payment_events_count_after(after_id)

    def audit_log(self, palm_pay_id: str | None = None) -> list[AuditEntry]:
        with self.store.read() as tx:
            return tx.audit_entries(palm_pay_id)

    def access_log(self, palm_pay_id: str | None = None) -> list[AccessLogEntry]:
        with self.store.read() as tx:
            return tx.access_entries(palm_pay_id)

    def _view(self, link: PalmPayLink, tx: Tx) -> LinkView:
        # The day the link's next payment would count on (its days never run backwards).
        today = ledger_day(local_day(self._now(), self._tz), link.spent_day)
        return LinkView(
            palm_pay_id=link.palm_pay_id,
            user_id=link.user_id,
            palm_template_ref=link.palm_template_ref.masked,
            palm_hand=link.palm_hand,
            payshap_proxy=link.payshap_proxy.masked,
            proxy_type=link.proxy_type,
            link_status=link.link_status,
            linked_at=self._dt(link.linked_at),
            verified_at=self._dt(link.verified_at),
            created_at=self._dt(link.created_at),
            daily_limit=from_cents(link.daily_limit),
            daily_spent=from_cents(spent_on(today, link.spent_day, link.daily_spent)),
            transaction_limit=from_cents(link.transaction_limit),
            reserved=from_cents(tx.reserved_total(link.palm_pay_id)),
            bank=link.bank,
        )

    def _dt(self, ts: float | None) -> datetime | None:
        return None if ts is None else datetime.fromtimestamp(ts, self._tz)
