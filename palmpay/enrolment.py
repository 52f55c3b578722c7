"""Enrolment: a customer at a terminal links a palm to a PayShap proxy and proves the proxy with an OTP.

create_link (a pending link, an OTP sent), verify (the right code activates it), resend_otp, and
the spec's verification expiry (a link unverified after 24 h is revoked by the backend itself).
"""

from __future__ import annotations

import logging
import secrets
from decimal import Decimal

from .actors import BACKEND
from .errors import PalmPayError
from .masking import mask_proxy, mask_ref
from .models import ACTIVE, PENDING_VERIFICATION, REVOKED, LinkView, PalmPayLink, SealedField
from .policy import verification_expired
from .reads import ReadsMixin
from .service_core import PROXY_FIELD, TEMPLATE_FIELD, field_aad
from .store import ENROLMENT_LOCK, Tx
from .verification import generate_otp

log = logging.getLogger("payops.palmpay")


class EnrolmentMixin(ReadsMixin):
    def create_link(
        self,
        user_id: str,
        palm_template_ref: str,
        palm_hand: str | None,
        payshap_proxy: str,
        proxy_type: str,
        daily_limit: Decimal | int | str | None = None,
        transaction_limit: Decimal | int | str | None = None,
        bank: str | None = None,
        *,
        actor: str = "customer",
    ) -> tuple[LinkView, str]:
        """Outcome palm_link_created: a pending link, an OTP sent, an event. Returns (view, delivery id)."""
        user_id = self._text(user_id, "user_id")
        template_ref = self._template_ref(palm_template_ref)
        proxy_type = self._choice(proxy_type, "proxy_type", self._proxy_types)
        proxy = self._proxy(payshap_proxy, proxy_type)
        hand = None if palm_hand in (None, "") else self._choice(palm_hand, "palm_hand", self._hands)
        daily = self._limit(daily_limit, "daily_limit")
        per_txn = self._limit(transaction_limit, "transaction_limit")
        bank = None if bank in (None, "") else self._text(bank, "bank")

        ts = self._now()
        palm_pay_id = f"pp_{secrets.token_hex(12)}"
        code = generate_otp(self.options.otp_digits)
        refusal: PalmPayError | None = None
        try:
            with self.store.write() as tx:
                tx.serialise(ENROLMENT_LOCK)  # PostgreSQL: the checks below span several rows
                root, template_digests = self._digests(tx, TEMPLATE_FIELD, template_ref)
                refusal = self._enrolment_refusal(tx, user_id, hand, template_digests, ts)
                if refusal is None:
                    proxy_index = self._digests(tx, PROXY_FIELD, f"{proxy_type}:{proxy}")[1][0]
                    key_id = self._sealing_key(tx)
                    link = PalmPayLink(
                        palm_pay_id=palm_pay_id,
                        user_id=user_id,
                        palm_template_ref=SealedField(
                            self._cipher.seal(template_ref, field_aad(palm_pay_id, TEMPLATE_FIELD), key_id),
                            mask_ref(template_ref),
                        ),
                        palm_hand=hand,
                        payshap_proxy=SealedField(
                            self._cipher.seal(proxy, field_aad(palm_pay_id, PROXY_FIELD), key_id), mask_proxy(proxy)
                        ),
                        proxy_type=proxy_type,
                        link_status=self.spec.initial_state,
                        linked_at=None,
                        verified_at=None,
                        daily_limit=daily,
                        daily_spent=0,
                        transaction_limit=per_txn,
                        spent_day=None,
                        reserved=0,
                        bank=bank,
                        created_at=ts,
                    )
                    tx.insert_link(link, template_index=template_digests[0], proxy_index=proxy_index,
                                   index_key_id=root)
                    tx.audit(
                        ts,
                        palm_pay_id=palm_pay_id,
                        actor=actor,
                        action="create_link",
                        from_status=None,
                        to_status=link.link_status,
                        outcome="applied",
                        reason=None,
                    )
                    tx.put_otp(
                        palm_pay_id,
                        code_mac=self._otp.mac(palm_pay_id, code),
                        expires_at=ts + self.options.otp_ttl_s,
                        resends=0,
                        delivery_id="(sending)",
                    )
                    tx.log_access(ts, palm_pay_id, PROXY_FIELD, "verification", "send_otp")
                    self._emit(tx, ts, "palm_link_created", self._values(link))
        except self.store.integrity_errors:
            # The unique index is the last line of defence against a duplicate palm.
            refusal = self._errors.make("PALM_PAY_DUPLICATE_PALM")
        if refusal is not None:
            raise refusal
        delivery_id = self._deliver(palm_pay_id, proxy, proxy_type, code)
        return self.show(palm_pay_id), delivery_id

    def _enrolment_refusal(
        self, tx: Tx, user_id: str, hand: str | None, template_digests: tuple[bytes, ...], ts: float
    ) -> PalmPayError | None:
        existing = tx.link_for_template(*template_digests)
        # A stale, never-verified enrolment must not block re-enrolling the same palm.
        if existing is not None and existing.link_status != REVOKED and not self._expire_if_stale(tx, existing, ts):
            return self._errors.make("PALM_PAY_DUPLICATE_PALM")
        live = []
        for link in tx.links_for_user(user_id):
            # Expiring stale enrolments here frees their slot (and is audited like any expiry).
            if link.link_status != REVOKED and not self._expire_if_stale(tx, link, ts):
                live.append(link)
        if len(live) >= self.options.max_palms_per_user:
            return self._errors.make("PALM_PAY_PALM_LIMIT")
        if hand is not None and any(link.palm_hand == hand for link in live):
            return self._errors.make("PALM_PAY_PALM_LIMIT", detail=f"{hand} hand already linked")
        if live and (hand is None or any(link.palm_hand is None for link in live)):
            # Two palms are one left and one right: with a hand unnamed, the second could be the same hand.
            return self._errors.make("PALM_PAY_PALM_LIMIT", detail="a second palm needs both hands named")
        return None

    def verify(self, palm_pay_id: str, otp: str) -> LinkView:
        """Outcome palm_link_verified: the correct OTP activates a pending link."""
        code = str(otp).strip()
        ts = self._now()
        refusal: PalmPayError | None = None
        with self.store.write() as tx:
            link = self._require_link(tx, palm_pay_id)
            if link.link_status != PENDING_VERIFICATION:
                # Verification only activates pending links; it must never lift a suspension.
                refusal = self._refuse_transition(tx, link, ACTIVE, ts=ts, actor="customer", action="verify")
            elif self._expire_if_stale(tx, link, ts) or verification_expired(
                link.created_at, ts, self.options.verification_ttl_s
            ):
                refusal = self._errors.make("PALM_PAY_VERIFICATION_EXPIRED")
            else:
                refusal = self._check_otp(tx, link, code, ts)
                if refusal is None:
                    refusal = self._transition(
                        tx,
                        link,
                        ACTIVE,
                        ts=ts,
                        actor=BACKEND,
                        action="verify",
                        reason="OTP verified",
                        verified_at=ts,
                        linked_at=ts,
                    )
                    if refusal is None:
                        tx.drop_otp(link.palm_pay_id)
                        self._emit(tx, ts, "palm_link_verified", self._values(link))
        if refusal is not None:
            raise refusal
        return self.show(palm_pay_id)

    def _check_otp(self, tx: Tx, link: PalmPayLink, code: str, ts: float) -> PalmPayError | None:
        challenge = tx.otp(link.palm_pay_id)
        if challenge is None:
            return self._errors.make("PALM_PAY_OTP_EXPIRED")
        code_mac, expires_at, attempts, _resends, _delivery = challenge
        if attempts >= self.options.otp_max_attempts:
            return self._errors.make("PALM_PAY_OTP_ATTEMPTS_EXCEEDED")
        if ts >= expires_at:
            return self._errors.make("PALM_PAY_OTP_EXPIRED")
        if not self._otp.matches(link.palm_pay_id, code, code_mac):
            tx.count_otp_attempt(link.palm_pay_id)
            return self._errors.make("PALM_PAY_OTP_INVALID")
        return None

    def resend_otp(self, palm_pay_id: str) -> str:
        """A fresh code for a pending link (old code void); returns the delivery id."""
        ts = self._now()
        code = generate_otp(self.options.otp_digits)
        refusal: PalmPayError | None = None
        proxy = proxy_type = ""
        with self.store.write() as tx:
            link = self._require_link(tx, palm_pay_id)
            challenge = tx.otp(palm_pay_id)
            resends = challenge[3] if challenge else 0
            if link.link_status != PENDING_VERIFICATION:
                refusal = self._refuse_transition(tx, link, ACTIVE, ts=ts, actor="customer", action="resend_otp")
            elif self._expire_if_stale(tx, link, ts):
                refusal = self._errors.make("PALM_PAY_VERIFICATION_EXPIRED")
            elif resends >= self.options.otp_max_resends:
                refusal = self._errors.make("PALM_PAY_OTP_RESEND_LIMIT")
            else:
                proxy = self._reveal(tx, link, PROXY_FIELD, ts, actor="verification", purpose="resend_otp")
                proxy_type = link.proxy_type
                tx.put_otp(
                    palm_pay_id,
                    code_mac=self._otp.mac(palm_pay_id, code),
                    expires_at=ts + self.options.otp_ttl_s,
                    resends=resends + 1,
                    delivery_id="(sending)",
                )
        if refusal is not None:
            raise refusal
        return self._deliver(palm_pay_id, proxy, proxy_type, code)

    def _deliver(self, palm_pay_id: str, proxy: str, proxy_type: str, code: str) -> str:
        try:
            delivery_id = self.verification.send_otp(
                palm_pay_id=palm_pay_id, destination=proxy, proxy_type=proxy_type, code=code
            )
        except Exception as exc:
            # Type only: a gateway's message may quote the destination number.
            log.error("OTP delivery for %s failed (%s)", palm_pay_id, type(exc).__name__)
            raise self._errors.make("PALM_PAY_OTP_DELIVERY_FAILED", detail=palm_pay_id) from None
        with self.store.write() as tx:
            tx.set_otp_delivery(palm_pay_id, delivery_id)
        return delivery_id

    def expire_unverified(self) -> int:
        """Revoke links still unverified after the verification window; returns how many."""
        ts = self._now()
        with self.store.write() as tx:
            stale = tx.pending_created_before(PENDING_VERIFICATION, ts - self.options.verification_ttl_s)
            return sum(1 for link in stale if self._expire_if_stale(tx, link, ts))

    def _expire_if_stale(self, tx: Tx, link: PalmPayLink, ts: float) -> bool:
        """Revoke a pending link past its verification window. True if it is now revoked."""
        if link.link_status != PENDING_VERIFICATION or not verification_expired(
            link.created_at, ts, self.options.verification_ttl_s
        ):
            return False
        refused = self._transition(
            tx, link, REVOKED, ts=ts, actor=BACKEND, action="expire_verification", reason="verification expired"
        )
        if refused is not None:
            return False
        tx.drop_otp(link.palm_pay_id)
        self._emit(tx, ts, "palm_link_revoked", self._values(link))
        return True
