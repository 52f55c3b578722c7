"""The PayShap rail: protocol, a seeded simulator, and the safe-retry wrapper.

Retry rules, because money is involved:
* every call carries the payment's idempotency key, so a repeat can never
  charge twice on a rail that honours it;
* only `RailTransientError` is retried: the rail says the request was *not*
  processed (connection refused, 503 before acceptance);
* a timeout is *not* retried: the outcome is unknown, the payment stays
  pending and `reconcile()` asks the rail for its status by key.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from payops.errors import Unavailable

RailStatus = Literal["completed", "failed", "pending", "not_found"]


@dataclass(frozen=True, slots=True)
class RailPaymentRequest:
    idempotency_key: str
    proxy: str = field(repr=False)  # plaintext, only for the rail call
    proxy_type: str
    amount_cents: int
    currency: str
    reference: str


@dataclass(frozen=True, slots=True)
class RailResult:
    status: RailStatus
    rail_reference: str | None = None
    error_code: str | None = None


class RailError(Unavailable):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class RailTransientError(RailError):
    """The rail did not accept the request; repeating it with the same key is safe."""


class RailTimeout(RailError):
    """No answer in time; the payment may or may not have happened."""


class PayShapRail(Protocol):
    def initiate_payment(self, request: RailPaymentRequest) -> RailResult: ...

    def payment_status(self, idempotency_key: str) -> RailResult: ...


@dataclass(frozen=True, slots=True)
class SimulatedRailConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    decline_rate: float = 0.0  # definitive refusals by the payer's bank
    transient_rate: float = 0.0  # not processed, safe to retry
    timeout_rate: float = 0.0  # outcome unknown to the caller
    timeout_processed_rate: float = 0.5  # share of timeouts where the money did move
    seed: int = 0
    decline_codes: tuple[str, ...] = ("INSUFFICIENT_FUNDS", "DO_NOT_HONOR")
    transient_codes: tuple[str, ...] = ("NETWORK_ERROR", "ISSUER_DOWN")
    timeout_code: str = "GATEWAY_TIMEOUT"


class SimulatedPayShapRail:
    """In-process rail with configurable latency and failures; idempotent per key.

    `charges` counts how often money actually moved per key, so tests can
    prove nothing is ever charged twice.
    """

    def __init__(self, config: SimulatedRailConfig | None = None, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config or SimulatedRailConfig()
        self._random = random.Random(self.config.seed)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._ledger: dict[str, RailResult] = {}
        self.charges: dict[str, int] = {}
        self.calls = 0

    def initiate_payment(self, request: RailPaymentRequest) -> RailResult:
        cfg = self.config
        with self._lock:
            self.calls += 1
            known = self._ledger.get(request.idempotency_key)
            if known is not None:
                return known  # idempotent replay: same answer, no second charge
            draw = self._random.random()
            delay = cfg.latency_ms + (self._random.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms else 0.0)
            pick = self._random.random()
        if delay > 0:
            self._sleep(delay / 1000)
        if draw < cfg.timeout_rate:
            if pick < cfg.timeout_processed_rate:
                self._record(request.idempotency_key, self._completed(request))
            raise RailTimeout(cfg.timeout_code)
        draw -= cfg.timeout_rate
        if draw < cfg.transient_rate:
            raise RailTransientError(cfg.transient_codes[int(pick * len(cfg.transient_codes))])
        draw -= cfg.transient_rate
        if draw < cfg.decline_rate:
            code = cfg.decline_codes[int(pick * len(cfg.decline_codes))]
            return self._record(request.idempotency_key, RailResult("failed", None, code))
        return self._record(request.idempotency_key, self._completed(request))

    def payment_status(self, idempotency_key: str) -> RailResult:
        with self._lock:
            return self._ledger.get(idempotency_key, RailResult("not_found"))

    def _completed(self, request: RailPaymentRequest) -> RailResult:
        return RailResult("completed", f"psh-{request.idempotency_key[-12:]}")

    def _record(self, key: str, result: RailResult) -> RailResult:
        with self._lock:
            known = self._ledger.setdefault(key, result)
            if known is result and result.status == "completed":
                self.charges[key] = self.charges.get(key, 0) + 1
            return known


@dataclass(frozen=True, slots=True)
class RailRetryPolicy:
    max_attempts: int = 3
    initial_wait_s: float = 0.05
    max_wait_s: float = 0.5


@dataclass(frozen=True, slots=True)
class RailAttempt:
    """One call to the rail, for the per-attempt payment event."""

    number: int
    latency_ms: float
    result: RailResult | None
    error: RailError | None


@dataclass(frozen=True, slots=True)
class RailCallOutcome:
    status: Literal["completed", "failed", "unknown"]
    attempts: int
    error_code: str | None
    rail_reference: str | None


def initiate_with_retries(
    rail: PayShapRail,
    request: RailPaymentRequest,
    policy: RailRetryPolicy,
    on_attempt: Callable[[RailAttempt], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    timer: Callable[[], float] = time.perf_counter,
) -> RailCallOutcome:
    """Call the rail; retry (tenacity, same idempotency key) only on RailTransientError."""

    def call(number: int) -> RailResult:
        started = timer()
        try:
            result = rail.initiate_payment(request)
        except RailError as exc:
            on_attempt(RailAttempt(number, (timer() - started) * 1000, None, exc))
            raise
        except Exception:
            # An unexpected failure may have happened after the rail took the money: unknown outcome.
            on_attempt(RailAttempt(number, (timer() - started) * 1000, None, RailTimeout("SYSTEM_ERROR")))
            raise RailTimeout("SYSTEM_ERROR") from None
        on_attempt(RailAttempt(number, (timer() - started) * 1000, result, None))
        return result

    number = 1
    try:
        try:
            # First attempt outside tenacity: the common case pays no retry bookkeeping.
            result = call(1)
        except RailTransientError:
            if policy.max_attempts <= 1:
                raise
            sleep(policy.initial_wait_s)
            retrying = Retrying(
                stop=stop_after_attempt(policy.max_attempts - 1),
                wait=wait_exponential(
                    multiplier=policy.initial_wait_s, min=policy.initial_wait_s, max=policy.max_wait_s
                ),
                retry=retry_if_exception_type(RailTransientError),
                reraise=True,
                sleep=sleep,
            )
            for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number + 1
                    result = call(number)
    except RailTransientError as exc:
        return RailCallOutcome("failed", number, exc.code, None)
    except RailTimeout as exc:
        return RailCallOutcome("unknown", number, exc.code, None)
    if result.status == "completed":
        return RailCallOutcome("completed", number, None, result.rail_reference)
    if result.status == "failed":
        return RailCallOutcome("failed", number, result.error_code or "DO_NOT_HONOR", None)
    # "pending"/"not_found" from initiate: the rail has not decided; settle by reconcile.
    return RailCallOutcome("unknown", number, result.error_code, result.rail_reference)
