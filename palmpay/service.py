"""PalmPayService: the palm-pay backend's API (agent tools, CLI and HTTP call this).

Every operation follows one pattern: decide with the pure rules in `policy`,
then write the state change, its audit entry and its events in one
write transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the rows decided on are
locked, see store.py). Refusals are committed (audit, events) before
they are raised as `PalmPayError`, so a refusal is never lost. Network calls
(rail, OTP delivery) happen outside transactions so a slow rail never holds
the database write lock.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .actors import BACKEND, authorisation_refusal
from .attestation import ScanAttestation, TerminalAttestation
from .change_requests import ChangeRequestsMixin
from .clock import Clock, clock_epoch, system_clock
from .crypto import BlindIndex, FieldCipher, KeyRingError, key_id_of
from .errors import ErrorCatalog, PalmPayError
from .events import SpecEvents, contract_payment_event
from .masking import mask_free_text, mask_proxy, mask_ref
from .models import (
    ACTIVE,
    PENDING_VERIFICATION,
    REVOKED,
    SUSPENDED,
    AccessLogEntry,
    AuditEntry,
    LinkView,
    OutboxEvent,
    PalmPayLink,
    PaymentEventRecord,
    PaymentResult,
    ReconcileReport,
    RotationReport,
    SealedField,
)
from .money import MoneyError, cents_str, from_cents, to_cents
from .options import PalmPayOptions
from .policy import (
    decide_payment,
    fraud_suspension_due,
    ledger_day,
    local_day,
    match_accepted,
    spent_on,
    verification_expired,
)
from .sealing import PeriodicSealer, SealKeys, seal_interval, seal_keys, seal_on_close
from .rail import (
    PayShapRail,
    RailAttempt,
    RailPaymentRequest,
    SimulatedPayShapRail,
    initiate_with_retries,
)
from payops.storage.keys import private_dir

from .keying import load_service_keys
from .retention import RetentionMixin
from .spec import PalmPaySpec, load_spec
from .store import ENROLMENT_LOCK, PaymentRow, Tx, open_store
from .verification import DevOtpSender, Verification, generate_otp

log = logging.getLogger("payops.palmpay")

_MAX_AUDIT_REASON = 512  # a reason plus the approver's principal and the request id
TEMPLATE_FIELD = "palm_template_ref"
PROXY_FIELD = "payshap_proxy"

_PROXY_PATTERNS = {
    # Phone proxies: optional +, 9-15 digits (E.164 or national); accounts: 6-20 digits.
    "phone": re.compile(r"^\+?\d{9,15}$"),
    "account": re.compile(r"^\d{6,20}$"),
}
_PROXY_SEPARATORS = re.compile(r"[\s\-().]")
_MAX_TEXT = 256
_MIN_TEMPLATE_REF = 8  # shorter refs would be guessable and their mask would reveal them
# Default of PalmPayOptions.reconcile_grace_s, kept importable for callers and tests.
RECONCILE_GRACE_S = PalmPayOptions.reconcile_grace_s


def _fingerprint(template_index: bytes, amount_cents: int, terminal_id: str, match_score: float) -> str:
    """A digest of what a payment request asked for. The palm enters as its keyed blind index,
    so the stored digest reveals nothing about the template reference."""
    body = f"{template_index.hex()}|{amount_cents}|{terminal_id}|{float(match_score)!r}"
    return hashlib.sha256(body.encode()).hexdigest()


def _aad(palm_pay_id: str, field: str) -> bytes:
    # Binds a ciphertext to its row and column, so blobs cannot be swapped between rows.
    return f"{palm_pay_id}|{field}".encode()


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One pay() call as the events describe it."""

    payment_id: str
    number: int  # CONTRACT attempt number of the first rail call / the refusal
    amount_cents: int
    terminal_id: str
    started: float  # perf timer at arrival, for latency_ms
    ts: float  # epoch at arrival
    day: str  # local date the payment counts for
    fingerprint: str | None = None  # what this request asked for, to tell a true replay from a reused key


class PalmPayService(ChangeRequestsMixin, RetentionMixin):
    def __init__(
        self,
        options: PalmPayOptions | None = None,
        *,
        clock: Clock = system_clock,
        rail: PayShapRail | None = None,
        verification: Verification | None = None,
        spec: PalmPaySpec | None = None,
        timer: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or PalmPayOptions.from_settings()
        self.spec = spec or load_spec(self.options.spec_path)
        try:
            self._tz = ZoneInfo(self.options.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.options.timezone!r}") from None
        self.clock = clock
        self._timer = timer
        self._sleep = sleep
        self._errors = ErrorCatalog(self.spec)
        self._events = SpecEvents(self.spec)
        private_dir(self.options.state_dir)  # 0700: its files are nobody else's business
        self.store = open_store(self.options)
        self._keys = self.options.keys()
        try:
            # Every secret from the key provider; data whose key is missing refuses (never a silent new key).
            keys = load_service_keys(self.store, self.options, self._keys)
        except KeyRingError:
            self.store.close()
            raise
        self._ring = keys.ring
        self._cipher = FieldCipher(self._ring)
        self._index = BlindIndex(self._ring.index_root)
        self._otp = keys.otp
        self._seal_keys_cache: SealKeys | None = None
        self._sealer = PeriodicSealer(self.store, self._seal_keys, seal_interval()).start() if seal_interval() else None
        self.rail: PayShapRail = rail if rail is not None else SimulatedPayShapRail()
        self.verification: Verification = verification if verification is not None else DevOtpSender()
        self._hands = self.spec.field_options.get("palm_hand", ("left", "right"))
        # Terminal keys and signed-scan checks (attestation.py); its tables are made on first use.
        self.attestation = TerminalAttestation(
            self.store, self._errors, window_s=self.options.attestation_window_s, now=self._now, keys=self._keys
        )
        self._proxy_types = self.spec.field_options.get("proxy_type", tuple(_PROXY_PATTERNS))

    # ======================================================================
    # enrolment
    # ======================================================================

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
        template_index = self._index.digest(TEMPLATE_FIELD, template_ref)
        proxy_index = self._index.digest(PROXY_FIELD, f"{proxy_type}:{proxy}")
        palm_pay_id = f"pp_{secrets.token_hex(12)}"
        code = generate_otp(self.options.otp_digits)
        refusal: PalmPayError | None = None
        try:
            with self.store.write() as tx:
                tx.serialise(ENROLMENT_LOCK)  # PostgreSQL: the checks below span several rows
                refusal = self._enrolment_refusal(tx, user_id, hand, template_index, ts)
                if refusal is None:
                    key_id = self._sealing_key(tx)
                    link = PalmPayLink(
                        palm_pay_id=palm_pay_id,
                        user_id=user_id,
                        palm_template_ref=SealedField(
                            self._cipher.seal(template_ref, _aad(palm_pay_id, TEMPLATE_FIELD), key_id),
                            mask_ref(template_ref),
                        ),
                        palm_hand=hand,
                        payshap_proxy=SealedField(
                            self._cipher.seal(proxy, _aad(palm_pay_id, PROXY_FIELD), key_id), mask_proxy(proxy)
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
                    tx.insert_link(link, template_index=template_index, proxy_index=proxy_index)
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
        self, tx: Tx, user_id: str, hand: str | None, template_index: bytes, ts: float
    ) -> PalmPayError | None:
        existing = tx.link_for_template(template_index)
        if existing is not None and existing.link_status != REVOKED:
            # A stale, never-verified enrolment must not block re-enrolling the same palm.
            if not self._expire_if_stale(tx, existing, ts):
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

    # ======================================================================
    # payments
    # ======================================================================

    def pay(
        self,
        palm_template_ref: str,
        amount: Decimal | int | str,
        terminal_id: str,
        liveness_passed: bool,
        match_score: float,
        idempotency_key: str | None = None,
        *,
        attestation: ScanAttestation | None = None,
        require_attestation: bool | None = None,
    ) -> PaymentResult:
        """Resolve the palm's proxy and push the payment over the rail.

        `attestation`: the terminal's signature over this scan (attestation.py), checked
        before anything else; `require_attestation` (default options.require_attestation)
        refuses an unsigned scan.

        Refusals (spoof, not registered, inactive, limits) raise PalmPayError
        after their events are committed. Accepted payments return a
        PaymentResult: completed, failed (rail declined) or pending (rail
        timeout; settled later by reconcile()). The same idempotency_key
        returns the stored result instead of paying again.
        """
        started = self._timer()
        terminal_id = self._text(terminal_id, "terminal_id")
        amount_cents = self._amount(amount)
        if isinstance(match_score, bool) or not isinstance(match_score, (int, float)) or not 0 <= match_score <= 1:
            raise self._invalid("match_score must be a number between 0 and 1")
        payment_id = self._text(idempotency_key, "idempotency_key") if idempotency_key else f"pay_{secrets.token_hex(12)}"
        required = self.options.require_attestation if require_attestation is None else require_attestation
        self.attestation.check(
            terminal_id=terminal_id, palm_template_ref=str(palm_template_ref), liveness_passed=bool(liveness_passed),
            match_score=match_score, amount=amount, payment_id=payment_id if idempotency_key else None,
            attestation=attestation, required=required, now=self._now(),
        )
        ts = self._now()
        attempt = _Attempt(payment_id, 1, amount_cents, terminal_id, started, ts, local_day(ts, self._tz))

        if not liveness_passed:
            # Spec: liveness must pass before any matching; the palm is not even looked up.
            with self.store.write() as tx:
                attempt = self._numbered(tx, attempt, idempotency_key)
                refusal = self._refuse_payment(tx, "PALM_PAY_SPOOF_DETECTED", None, None, attempt)
            log.warning("payment %s refused at terminal %s: liveness failed", payment_id, terminal_id)
            raise refusal

        template_index = self._index.digest(TEMPLATE_FIELD, self._template_ref(palm_template_ref))
        attempt = replace(attempt, fingerprint=_fingerprint(template_index, amount_cents, terminal_id, match_score))
        with self.store.write() as tx:
            link = tx.link_for_template(template_index)
            replay = tx.payment(payment_id) if idempotency_key else None
            if replay is not None:
                if replay.fingerprint is not None:
                    same = replay.fingerprint == attempt.fingerprint
                else:  # stored before fingerprints: the palm and the amount are all we can compare
                    same = link is not None and (replay.palm_pay_id, replay.amount_cents) == (link.palm_pay_id, amount_cents)
                if not same:
                    raise self._errors.make("PALM_PAY_IDEMPOTENCY_CONFLICT")
                link = tx.link(replay.palm_pay_id)
            else:
                attempt = self._numbered(tx, attempt, idempotency_key)
                attempt = self._on_ledger_clock(tx, link, attempt)
                refusal, proxy = self._authorise(tx, link, match_score, attempt)
        if replay is not None:
            assert link is not None
            return self._result_for(replay, link, replayed=True)
        if refusal is not None:
            log.info("payment %s refused at terminal %s: %s", payment_id, terminal_id, refusal.code)
            raise refusal
        assert link is not None and proxy is not None
        return self._charge(link, proxy, attempt)

    def _on_ledger_clock(self, tx: Tx, link: PalmPayLink | None, attempt: _Attempt) -> _Attempt:
        """Fix the payment's time and the ledger day it counts on, inside its write transaction.

        Decided under the link's lock, so two writers cannot both see a day the other already left.
        """
        ts = tx.now() if self.options.time_source == "database" else attempt.ts
        day = local_day(ts, self._tz)
        if link is not None:
            day = ledger_day(day, link.spent_day)
        return replace(attempt, ts=ts, day=day)

    def _authorise(
        self, tx: Tx, link: PalmPayLink | None, match_score: float, attempt: _Attempt
    ) -> tuple[PalmPayError | None, str | None]:
        """Match, check the rules and reserve the amount. Returns (refusal, plaintext proxy)."""
        if link is None:
            return self._refuse_payment(tx, "PALM_PAY_NOT_REGISTERED", "palm_not_registered", None, attempt), None
        if not match_accepted(match_score, self.options.match_threshold):
            self._count_failed_match(tx, link, attempt.ts)
            return self._refuse_payment(tx, "PALM_PAY_NOT_REGISTERED", "palm_not_registered", link, attempt), None
        # The link's counters mirror its latest ledger row (written under this same lock), and a payment
        # counts on that day or a later one that has no row yet: no ledger read is needed.
        spent, reserved = (link.daily_spent, link.reserved) if link.spent_day == attempt.day else (0, 0)
        decision = decide_payment(
            link_status=link.link_status,
            spent_cents=spent,
            reserved_cents=reserved,
            daily_limit_cents=link.daily_limit,
            transaction_limit_cents=link.transaction_limit,
            amount_cents=attempt.amount_cents,
        )
        values = self._values(
            link, amount_cents=attempt.amount_cents, daily_spent_cents=spent, terminal_id=attempt.terminal_id
        )
        if decision.resolved:
            self._emit(tx, attempt.ts, "palm_payment_resolved", values)
        if decision.refusal is not None:
            return self._refuse_payment(tx, decision.refusal, decision.outcome, link, attempt, values=values), None
        # Reserve before calling the rail: limits hold even while the outcome is unknown.
        tx.reserve(link.palm_pay_id, attempt.day, limit_cents=link.daily_limit, amount_cents=attempt.amount_cents)
        tx.insert_payment(
            PaymentRow(
                attempt.payment_id, link.palm_pay_id, attempt.amount_cents, attempt.terminal_id, "pending",
                attempt.day, 0, None, None, attempt.ts, attempt.fingerprint,
            ),
            ts=attempt.ts,
        )
        purpose = f"payment {attempt.payment_id}"
        proxy = self._reveal(tx, link, PROXY_FIELD, attempt.ts, actor=f"terminal:{attempt.terminal_id}", purpose=purpose)
        return None, proxy

    def _charge(self, link: PalmPayLink, proxy: str, attempt_ctx: _Attempt) -> PaymentResult:
        """Call the rail outside any transaction, then record attempts and settle in one."""
        payment_id, amount_cents, terminal_id = attempt_ctx.payment_id, attempt_ctx.amount_cents, attempt_ctx.terminal_id
        attempts: list[tuple[float, float, RailAttempt]] = []
        mark = [attempt_ctx.started]

        def on_attempt(attempt: RailAttempt) -> None:
            now = self._timer()
            # End-to-end latency of this attempt: since the previous one ended (or the request arrived).
            attempts.append((self._now(), (now - mark[0]) * 1000, attempt))
            mark[0] = now

        request = RailPaymentRequest(
            idempotency_key=payment_id,
            proxy=proxy,
            proxy_type=link.proxy_type,
            amount_cents=amount_cents,
            currency=self.options.event_defaults.currency,
            reference=f"palm:{terminal_id}",
        )
        outcome = initiate_with_retries(
            self.rail, request, self.options.rail_retry, on_attempt, sleep=self._sleep, timer=self._timer
        )
        del proxy, request
        ts = self._now()
        with self.store.write() as tx:
            tx.lock_link(link.palm_pay_id)  # links before the event lock (PostgreSQL lock order)
            for at_ts, latency_ms, attempt in attempts:
                ok = attempt.result is not None and attempt.result.status == "completed"
                unknown = attempt is attempts[-1][2] and outcome.status == "unknown"
                tx.add_payment_event(
                    payment_id,
                    contract_payment_event(
                        self.options.event_defaults,
                        ts=at_ts,
                        payment_id=payment_id,
                        attempt=attempt_ctx.number + attempt.number - 1,
                        amount_cents=amount_cents,
                        status="success" if ok else "failure",
                        error_code=None if ok else self._attempt_code(attempt),
                        latency_ms=latency_ms,
                        terminal_id=terminal_id,
                        bank=link.bank,
                        palm_pay_id=link.palm_pay_id,
                        extra={"pending": True} if unknown else None,
                    ),
                )
            row = PaymentRow(
                payment_id, link.palm_pay_id, amount_cents, terminal_id, "pending", attempt_ctx.day, outcome.attempts,
                outcome.error_code, outcome.rail_reference, ts,
            )
            if outcome.status == "unknown":
                tx.finish_payment(
                    payment_id, status="pending", attempts=outcome.attempts, error_code=outcome.error_code,
                    rail_reference=outcome.rail_reference, ts=ts,
                )
                final: PaymentRow | None = row
            else:
                settled = self._settle(
                    tx, row, link, outcome.status, ts, attempts=outcome.attempts,
                    rail_reference=outcome.rail_reference, error_code=outcome.error_code,
                )
                # If reconcile() settled it meanwhile, report what is stored, not what we saw.
                final = replace(row, status=outcome.status) if settled else tx.payment(payment_id)
        assert final is not None
        if final.status != "completed":
            log.info("payment %s on %s is %s (%s)", payment_id, link.palm_pay_id, final.status, final.error_code)
        return self._result_for(final, link)

    @staticmethod
    def _attempt_code(attempt: RailAttempt) -> str:
        if attempt.error is not None:
            return attempt.error.code
        assert attempt.result is not None
        if attempt.result.status in ("pending", "not_found"):
            return attempt.result.error_code or "RAIL_PENDING"
        return attempt.result.error_code or "DO_NOT_HONOR"

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
            row.payment_id, status=status, attempts=attempts, error_code=error_code, rail_reference=rail_reference, ts=ts
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
                said = "unavailable" if answer is None else answer.status
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

    def _count_failed_match(self, tx: Tx, link: PalmPayLink, ts: float) -> None:
        window = self.options.fraud_window_s
        failures = tx.record_match_failure(link.palm_pay_id, ts, keep_after=ts - window)
        if link.link_status == ACTIVE and fraud_suspension_due(
            failures, ts, window, self.options.fraud_max_failures
        ):
            self._transition(
                tx,
                link,
                SUSPENDED,
                ts=ts,
                actor=BACKEND,
                action="fraud_suspension",
                reason=f"{len(failures)} failed matches within {window:.0f}s; review required",
            )
            log.warning("link %s suspended for review after repeated failed matches", link.palm_pay_id)

    def _refuse_payment(
        self,
        tx: Tx,
        code: str,
        outcome: str | None,
        link: PalmPayLink | None,
        attempt: _Attempt,
        *,
        values: dict[str, Any] | None = None,
    ) -> PalmPayError:
        """Commit the refusal's spec event and payment event; return the error to raise."""
        if outcome is not None:
            if values is None:
                values = self._values(link, amount_cents=attempt.amount_cents, terminal_id=attempt.terminal_id)
            self._emit(tx, attempt.ts, outcome, values)
        tx.add_payment_event(
            attempt.payment_id,
            contract_payment_event(
                self.options.event_defaults,
                ts=attempt.ts,
                payment_id=attempt.payment_id,
                attempt=attempt.number,
                amount_cents=attempt.amount_cents,
                status="failure",
                error_code=code,
                latency_ms=(self._timer() - attempt.started) * 1000,
                terminal_id=attempt.terminal_id,
                bank=link.bank if link else None,
                palm_pay_id=link.palm_pay_id if link else None,
            ),
        )
        return self._errors.make(code)

    @staticmethod
    def _numbered(tx: Tx, attempt: _Attempt, idempotency_key: str | None) -> _Attempt:
        """A caller-supplied key may be a retry of earlier refused attempts: number after them."""
        if not idempotency_key:
            return attempt
        return replace(attempt, number=tx.payment_event_count(attempt.payment_id) + 1)

    def _result_for(self, row: PaymentRow, link: PalmPayLink, *, replayed: bool = False) -> PaymentResult:
        return PaymentResult(
            payment_id=row.payment_id,
            palm_pay_id=row.palm_pay_id,
            status=row.status,  # type: ignore[arg-type]
            amount=from_cents(row.amount_cents),
            currency=self.options.event_defaults.currency,
            payshap_proxy=link.payshap_proxy.masked,
            terminal_id=row.terminal_id,
            attempts=row.attempts,
            error_code=row.error_code if row.status != "completed" else None,
            fallback="card" if row.status == "failed" else None,
            rail_reference=row.rail_reference,
            replayed=replayed,
        )

    # ======================================================================
    # link administration
    # ======================================================================

    def suspend(self, palm_pay_id: str, reason: str, actor: str) -> LinkView:
        """Suspend for review: an authenticated operator or the agent alone may (the safe direction)."""
        return self._change_status(palm_pay_id, SUSPENDED, actor=actor, action="suspend", reason=reason)

    def reactivate(
        self, palm_pay_id: str, actor: str, reason: str = "review completed", *, approved_by: str | None = None
    ) -> LinkView:
        """Lift a suspension. A human's lift needs a second operator (see request_change / approve_request)."""
        # Only a suspension is lifted here; pending links become active through verify() alone.
        return self._change_status(
            palm_pay_id, ACTIVE, actor=actor, action="reactivate", reason=reason, only_from=SUSPENDED,
            approved_by=approved_by,
        )

    def revoke(
        self, palm_pay_id: str, actor: str, reason: str = "revoked on request", *, approved_by: str | None = None
    ) -> LinkView:
        """Outcome palm_link_revoked (permanent, human_required in the spec).

        A human operator's revocation runs only as an approved change request (two people);
        the agent's needs `approved_by`, the human who approved its proposal.
        """
        return self._change_status(
            palm_pay_id, REVOKED, actor=actor, action="revoke", reason=reason, approved_by=approved_by
        )

    def _change_status(
        self, palm_pay_id: str, to: str, *, actor: str, action: str, reason: str, only_from: str | None = None,
        approved_by: str | None = None,
    ) -> LinkView:
        actor = self._text(actor, "actor")
        reason = mask_free_text(self._text(reason, "reason"))
        ts = self._now()
        with self.store.write() as tx:
            refusal = self._change_status_tx(
                tx, palm_pay_id, to, ts=ts, actor=actor, action=action, reason=reason, only_from=only_from,
                approved_by=approved_by,
            )
        if refusal is not None:
            raise refusal
        return self.show(palm_pay_id)

    def _change_status_tx(
        self, tx: Tx, palm_pay_id: str, to: str, *, ts: float, actor: str, action: str, reason: str,
        only_from: str | None = None, approved_by: str | None = None,
    ) -> PalmPayError | None:
        link = self._require_link(tx, palm_pay_id)
        why_not = authorisation_refusal(action, actor, approved_by)
        if why_not is not None:
            tx.audit(
                ts, palm_pay_id=link.palm_pay_id, actor=mask_free_text(actor), action=action,
                from_status=link.link_status, to_status=to, outcome="refused", reason=why_not,
            )
            log.warning("refused %s on %s: not authorised", action, link.palm_pay_id)
            return self._errors.make("PALM_PAY_NOT_AUTHORISED", detail=why_not)
        if approved_by:
            reason = f"{reason}; approved by {approved_by}"[:_MAX_AUDIT_REASON]
        if only_from is not None and link.link_status != only_from:
            return self._refuse_transition(tx, link, to, ts=ts, actor=actor, action=action, reason=reason)
        refusal = self._transition(tx, link, to, ts=ts, actor=actor, action=action, reason=reason)
        if refusal is None:
            if to == REVOKED:
                tx.drop_otp(link.palm_pay_id)
                self._emit(tx, ts, "palm_link_revoked", self._values(link))
            elif to == ACTIVE:
                tx.clear_match_failures(link.palm_pay_id)  # the review closed the earlier failures
        return refusal

    def _transition(
        self,
        tx: Tx,
        link: PalmPayLink,
        to: str,
        *,
        ts: float,
        actor: str,
        action: str,
        reason: str | None,
        verified_at: float | None = None,
        linked_at: float | None = None,
    ) -> PalmPayError | None:
        """Apply a link_status change if the spec allows it; audit either way."""
        if not self.spec.can_transition(link.link_status, to):
            return self._refuse_transition(tx, link, to, ts=ts, actor=actor, action=action, reason=reason)
        tx.set_status(link.palm_pay_id, to, ts=ts, reason=reason, verified_at=verified_at, linked_at=linked_at)
        tx.audit(
            ts, palm_pay_id=link.palm_pay_id, actor=actor, action=action, from_status=link.link_status,
            to_status=to, outcome="applied", reason=reason,
        )
        return None

    def _refuse_transition(
        self, tx: Tx, link: PalmPayLink, to: str, *, ts: float, actor: str, action: str, reason: str | None = None
    ) -> PalmPayError:
        tx.audit(
            ts, palm_pay_id=link.palm_pay_id, actor=actor, action=action, from_status=link.link_status,
            to_status=to, outcome="refused", reason=reason,
        )
        log.warning("refused %s on %s: %s -> %s", action, link.palm_pay_id, link.link_status, to)
        return self._errors.illegal_transition(link.link_status, to)

    # ======================================================================
    # reads
    # ======================================================================

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
        index = self._index.digest(PROXY_FIELD, f"{proxy_type}:{self._proxy(payshap_proxy, proxy_type)}")
        with self.store.read() as tx:
            return [self._view(link, tx) for link in tx.links_for_proxy(index)]

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

    # ======================================================================
    # keys
    # ======================================================================

    def rotate_key(
        self, *, batch: int = 500, actor: str = BACKEND, approved_by: str | None = None
    ) -> RotationReport:
        """New active data key; re-encrypt every row; retire keys no row uses any more.

        A human's rotation runs only as an approved change request (approve_request calls this).
        """
        why_not = authorisation_refusal("rotate_key", actor, approved_by)
        if why_not is not None:
            raise self._errors.make("PALM_PAY_NOT_AUTHORISED", detail=why_not)
        new_key = self._ring.add_active_key()
        with self.store.write() as tx:
            tx.set_active_key_id(new_key)  # from here on, every process seals with the new key
        rewritten = 0
        while True:
            with self.store.write() as tx:
                todo = [
                    row for row in tx.sealed_values() if key_id_of(row[1]) != new_key or key_id_of(row[2]) != new_key
                ][:batch]
                ts = self._now()
                for palm_pay_id, template_ct, proxy_ct in todo:
                    template_aad, proxy_aad = _aad(palm_pay_id, TEMPLATE_FIELD), _aad(palm_pay_id, PROXY_FIELD)
                    tx.set_ciphertexts(
                        palm_pay_id,
                        template_ct=self._cipher.seal(self._cipher.open(template_ct, template_aad), template_aad, new_key),
                        proxy_ct=self._cipher.seal(self._cipher.open(proxy_ct, proxy_aad), proxy_aad, new_key),
                    )
                    tx.log_access(ts, palm_pay_id, TEMPLATE_FIELD, "key_rotation", f"re-encrypt under {new_key}")
                    tx.log_access(ts, palm_pay_id, PROXY_FIELD, "key_rotation", f"re-encrypt under {new_key}")
            rewritten += len(todo)
            if len(todo) < batch:
                break
        with self.store.write() as tx:
            in_use = {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]}
            retired = self._ring.retire(set(self._ring.key_ids()) - in_use - {new_key})
            tx.audit(
                self._now(), palm_pay_id=None, actor=actor, action="rotate_key", from_status=None,
                to_status=None, outcome="applied", reason=f"active key {new_key}; {rewritten} rows re-encrypted"
                + (f"; approved by {approved_by}" if approved_by else ""),
            )
        self._cipher.forget_cached()
        return RotationReport(new_key_id=new_key, rows_reencrypted=rewritten, retired_key_ids=tuple(sorted(retired)))

    def _sealing_key(self, tx: Tx) -> str:
        """The key new ciphertexts use: the one the database names (another process may have rotated)."""
        wanted = tx.active_key_id() or self._ring.active_id
        if self._ring.key(wanted) is None:
            self._ring.reload()
        if self._ring.key(wanted) is None:
            raise KeyRingError(f"active key {wanted} is not in this process's keyring")
        return wanted

    def _reveal(self, tx: Tx, link: PalmPayLink, field: str, ts: float, *, actor: str, purpose: str) -> str:
        """Decrypt one sensitive field and record who read it, when and why."""
        sealed = link.payshap_proxy if field == PROXY_FIELD else link.palm_template_ref
        tx.log_access(ts, link.palm_pay_id, field, actor, purpose)
        return self._cipher.open(sealed.ciphertext, _aad(link.palm_pay_id, field))

    # ======================================================================
    # helpers
    # ======================================================================

    def _now(self) -> float:
        return clock_epoch(self.clock)

    def _emit(self, tx: Tx, ts: float, outcome: str, values: dict[str, Any]) -> None:
        event = self._events.for_outcome(outcome, values)
        if event is not None:
            tx.emit(ts, event.name, event.payload)

    @staticmethod
    def _values(
        link: PalmPayLink | None,
        *,
        amount_cents: int | None = None,
        daily_spent_cents: int | None = None,
        terminal_id: str | None = None,
    ) -> dict[str, Any]:
        """Everything an event payload may name, in its safe (masked, exact-decimal) form."""
        values: dict[str, Any] = {"terminal_id": terminal_id}
        if amount_cents is not None:
            values["amount"] = cents_str(amount_cents)
        if link is not None:
            values.update(
                palm_pay_id=link.palm_pay_id,
                user_id=link.user_id,
                proxy_type=link.proxy_type,
                payshap_proxy=link.payshap_proxy.masked,
                palm_template_ref=link.palm_template_ref.masked,
                link_status=link.link_status,
                daily_spent=cents_str(link.daily_spent if daily_spent_cents is None else daily_spent_cents),
                daily_limit=cents_str(link.daily_limit),
                transaction_limit=cents_str(link.transaction_limit),
            )
        return values

    def _require_link(self, tx: Tx, palm_pay_id: str) -> PalmPayLink:
        link = tx.link(str(palm_pay_id))
        if link is None:
            raise self._errors.make("PALM_PAY_LINK_NOT_FOUND")
        return link

    def _invalid(self, message: str) -> PalmPayError:
        return self._errors.make("PALM_PAY_INVALID_INPUT", message=message)

    def _text(self, value: object, name: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self._invalid(f"{name} is required")
        text = value.strip()
        if len(text) > _MAX_TEXT:
            raise self._invalid(f"{name} is too long")
        return text

    def _choice(self, value: object, name: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self._invalid(f"{name} must be one of: {', '.join(options)}")
        return str(value)

    def _template_ref(self, value: object) -> str:
        ref = self._text(value, TEMPLATE_FIELD)
        if len(ref) < _MIN_TEMPLATE_REF:
            raise self._invalid(f"{TEMPLATE_FIELD} must be at least {_MIN_TEMPLATE_REF} characters")
        return ref

    def _proxy(self, value: object, proxy_type: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self._invalid(self.spec.message_for(PROXY_FIELD, "required", "A payment proxy is required"))
        proxy = _PROXY_SEPARATORS.sub("", value)
        pattern = _PROXY_PATTERNS.get(proxy_type)
        if pattern is not None and not pattern.match(proxy):
            raise self._invalid(f"the payment proxy is not a valid {proxy_type} proxy")
        return proxy

    def _limit(self, value: Decimal | int | str | None, name: str) -> int:
        if value is None:
            value = self.spec.default_limit(name)
        try:
            cents = to_cents(value)
        except MoneyError as exc:
            raise self._invalid(f"{name}: {exc}") from None
        if cents < 0:
            raise self._invalid(self.spec.message_for(name, "min", f"{name} cannot be negative"))
        return cents

    def _amount(self, value: Decimal | int | str) -> int:
        try:
            cents = to_cents(value)
        except MoneyError as exc:
            raise self._invalid(f"amount: {exc}") from None
        if cents <= 0:
            raise self._invalid("amount must be greater than zero")
        return cents

    def _seal_keys(self) -> SealKeys:
        """The audit key and checkpoint file, as the options (Settings) name them; obtained once (a KMS
        command is not re-run every seal)."""
        if self._seal_keys_cache is None:
            self._seal_keys_cache = seal_keys(self.options.state_dir, chain=self.options.seal_chain,
                                              checkpoint_path=self.options.audit_checkpoint_path)
        return self._seal_keys_cache

    def close(self) -> None:
        """Seal the audit and access logs written since the last checkpoint (palmpay/sealing.py), then close."""
        try:
            if self._sealer is not None:
                self._sealer.stop()
            seal_on_close(self.store, self._seal_keys)
        finally:
            self.store.close()

    def __enter__(self) -> PalmPayService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
