"""Payments: a terminal's scan resolves a palm to its proxy and pays over the PayShap rail.

pay() checks the terminal's signature (attestation.py), liveness, the match and the limits on the
daily ledger, reserves the amount, calls the rail outside any transaction, then records every
attempt and settles (settlement.py) in one. Idempotent by key: a replay with another body is refused.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, cast

from .actors import BACKEND
from .attestation import ScanAttestation
from .errors import PalmPayError
from .events import contract_payment_event
from .models import ACTIVE, SUSPENDED, PalmPayLink, PaymentResult, PaymentStatus
from .money import from_cents
from .policy import decide_payment, fraud_suspension_due, ledger_day, local_day, match_accepted
from .rail import RailAttempt, RailPaymentRequest, initiate_with_retries
from .service_core import PROXY_FIELD, TEMPLATE_FIELD
from .settlement import SettlementMixin
from .store import PaymentRow, Tx

log = logging.getLogger("payops.palmpay")


def _fingerprint(template_index: bytes, amount_cents: int, terminal_id: str, match_score: float) -> str:
    """A digest of what a payment request asked for. The palm enters as its keyed blind index,
    so the stored digest reveals nothing about the template reference."""
    body = f"{template_index.hex()}|{amount_cents}|{terminal_id}|{float(match_score)!r}"
    return hashlib.sha256(body.encode()).hexdigest()


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

class PaymentsMixin(SettlementMixin):
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
        payment_id = (self._text(idempotency_key, "idempotency_key") if idempotency_key
                      else f"pay_{secrets.token_hex(12)}")
        required = self.options.require_attestation if require_attestation is None else require_attestation
        self.attestation.check(
            terminal_id=terminal_id, palm_template_ref=str(palm_template_ref), liveness_passed=bool(liveness_passed),
            match_score=match_score, amount=amount, payment_id=payment_id if idempotency_key else None,
            attestation=attestation, required=required, now=self._now(),
        )
        ts = self._now()
        attempt = _Attempt(payment_id, 1, amount_cents, terminal_id, started, ts, local_day(ts, self._tz))

        refusal: PalmPayError | None
        if not liveness_passed:
            # Spec: liveness must pass before any matching; the palm is not even looked up.
            with self.store.write() as tx:
                attempt = self._numbered(tx, attempt, idempotency_key)
                refusal = self._refuse_payment(tx, "PALM_PAY_SPOOF_DETECTED", None, None, attempt)
            log.warning("payment %s refused at terminal %s: liveness failed", payment_id, terminal_id)
            raise refusal

        template_ref = self._template_ref(palm_template_ref)
        with self.store.write() as tx:
            template_digests = self._digests(tx, TEMPLATE_FIELD, template_ref)[1]
            attempt = replace(attempt, fingerprint=_fingerprint(template_digests[0], amount_cents, terminal_id,
                                                                  match_score))
            link = tx.link_for_template(*template_digests)
            replay = tx.payment(payment_id) if idempotency_key else None
            if replay is not None:
                if replay.fingerprint is not None:
                    # A first attempt made before a blind-index root rotation has its digest under the old root.
                    same = replay.fingerprint in {
                        _fingerprint(digest, amount_cents, terminal_id, match_score) for digest in template_digests
                    }
                else:  # stored before fingerprints: the palm and the amount are all we can compare
                    same = link is not None and (
                        (replay.palm_pay_id, replay.amount_cents) == (link.palm_pay_id, amount_cents))
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
        proxy = self._reveal(tx, link, PROXY_FIELD, attempt.ts, actor=f"terminal:{attempt.terminal_id}",
                             purpose=purpose)
        return None, proxy

    def _charge(self, link: PalmPayLink, proxy: str, attempt_ctx: _Attempt) -> PaymentResult:
        """Call the rail outside any transaction, then record attempts and settle in one."""
        payment_id, amount_cents = attempt_ctx.payment_id, attempt_ctx.amount_cents
        terminal_id = attempt_ctx.terminal_id
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
            status=cast(PaymentStatus, row.status),  # the table CHECKs it is one of them
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
