"""OTP senders beyond the in-memory one: an HTTP webhook / SMS gateway, and a console sender.

Every sender implements `verification.Verification` (hand the code over once,
return a delivery id). Which one the backend uses is a setting
(`PAYOPS_OTP_SENDER`, see `OtpDeliverySettings`):

* `memory` (default): `DevOtpSender`, codes stay in the process (tests, demos
  with `--show-otp`); nothing reaches a customer.
* `console`: development; prints each code on the console (stderr), never
  through logging, so log shipping never carries it.
* `webhook`: production; POSTs the message to an SMS gateway or an in-house
  notifier (`PAYOPS_OTP_WEBHOOK_URL`).

The webhook request is JSON, signed so the receiver can tell it came from us and
is fresh: `X-PayOps-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`
and `X-PayOps-Timestamp: <epoch seconds>` (the Stripe scheme; `verify_signature`
is the receiver's side). `Idempotency-Key: <delivery id>` lets the gateway drop a
retried duplicate. Connection failures, time-outs, 429 and 5xx are retried
(tenacity, exponential back-off); any other answer fails at once. Errors name the
HTTP status or the exception type, never the code or the destination.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Literal, TextIO
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from payops.errors import Unavailable

from .masking import mask_proxy
from .verification import DevOtpSender, Verification

log = logging.getLogger("payops.palmpay.otp")

SIGNATURE_HEADER = "X-PayOps-Signature"
TIMESTAMP_HEADER = "X-PayOps-Timestamp"
SIGNATURE_VERSION = "v1"
# A receiver refuses a signed request older (or newer) than this: long enough for our retries and a
# few seconds of clock skew, short enough that a captured request cannot be replayed later.
SIGNATURE_TOLERANCE_S = 300.0
MIN_SECRET_BYTES = 32  # an HMAC-SHA256 key shorter than its output would be the weak point


class OtpDeliveryError(Unavailable):
    """The gateway did not take the message. The text never holds the code or the destination."""


class _Retryable(OtpDeliveryError):
    """A failure a later attempt may not meet (connection, time-out, 429, 5xx)."""


class OtpDeliverySettings(BaseSettings):
    """Which OTP sender the backend uses; every field is PAYOPS_OTP_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="PAYOPS_OTP_", extra="ignore")

    sender: Literal["memory", "console", "webhook"] = Field(
        "memory", description="memory (tests, demos), console (development) or webhook (SMS gateway)."
    )
    webhook_url: str | None = Field(None, description="Where the webhook sender POSTs; https unless loopback.")
    webhook_secret: SecretStr | None = Field(None, description="HMAC key shared with the receiver (>= 32 bytes).")
    # An SMS gateway answers in well under a second; 5 s covers a slow one without holding an
    # enrolment request (and the customer at the terminal) for long.
    timeout_s: float = Field(5.0, gt=0, le=60)
    # Three tries ride out a gateway restart or a dropped connection; more would keep the
    # customer waiting for a code that is not coming.
    attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0, le=10, description="First wait between tries; doubles each time.")

    @model_validator(mode="after")
    def _webhook_needs_url_and_secret(self) -> OtpDeliverySettings:
        if self.sender != "webhook":
            return self
        if not self.webhook_url:
            raise ValueError("PAYOPS_OTP_WEBHOOK_URL is required when PAYOPS_OTP_SENDER=webhook")
        check_url(self.webhook_url)
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"PAYOPS_OTP_WEBHOOK_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return self


def check_url(url: str) -> str:
    """https anywhere; plain http only to this machine (a code must not cross a network in clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the OTP webhook URL must be an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("the OTP webhook URL must use https unless it is on this machine")
    return url


def is_loopback(host: str) -> bool:
    """localhost or a loopback address (plain HTTP is only fine on this machine)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for one request."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
                     tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """The receiver's check: a valid HMAC over this body and a timestamp within the tolerance."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def _delivery_id() -> str:
    return f"otp-{secrets.token_hex(8)}"


class ConsoleOtpSender:
    """Development only: writes the code to a console stream (stderr), never to a logger."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send_otp(self, *, palm_pay_id: str, destination: str, proxy_type: str, code: str) -> str:
        delivery_id = _delivery_id()
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(f"[dev OTP] {delivery_id} for {palm_pay_id} to {mask_proxy(destination)}: {code}\n")
            stream.flush()
        log.info("OTP %s for %s written to the console (development sender)", delivery_id, palm_pay_id)
        return delivery_id


class WebhookOtpSender:
    """POSTs each code, HMAC-signed, to an SMS gateway / notifier webhook; retries what may pass later."""

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 5.0, attempts: int = 3, backoff_s: float = 0.5,
                 client: httpx.Client | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the webhook secret must be at least {MIN_SECRET_BYTES} bytes")
        self._url = check_url(url)
        self._secret = secret
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._clock = clock
        self._sleep = sleep
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send_otp(self, *, palm_pay_id: str, destination: str, proxy_type: str, code: str) -> str:
        delivery_id = _delivery_id()
        body = json.dumps({
            "delivery_id": delivery_id, "palm_pay_id": palm_pay_id, "destination": destination,
            "proxy_type": proxy_type, "code": code, "purpose": "palm_pay_link_verification",
        }, separators=(",", ":"), sort_keys=True).encode()
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=max(self._backoff_s * 8, 0.0)),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
            sleep=self._sleep,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._post(body, delivery_id)
        except _Retryable as exc:
            raise OtpDeliveryError(f"OTP webhook failed after {self._attempts} attempt(s): {exc}") from None
        log.info("OTP %s for %s sent to %s (%s) by webhook", delivery_id, palm_pay_id, mask_proxy(destination),
                 proxy_type)
        return delivery_id

    def _post(self, body: bytes, delivery_id: str) -> None:
        ts = int(self._clock())  # signed per attempt: a retry a minute later is still fresh
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery_id,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, ts, body),
        }
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.TransportError as exc:  # connection refused, reset, time-out: may pass on a retry
            raise _Retryable(type(exc).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if not 200 <= response.status_code < 300:
            raise OtpDeliveryError(f"OTP webhook refused the message: HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()


def sender_from_settings(settings: OtpDeliverySettings | None = None) -> Verification:
    """The sender PAYOPS_OTP_* ask for."""
    settings = settings or OtpDeliverySettings()
    if settings.sender == "console":
        return ConsoleOtpSender()
    if settings.sender == "webhook":
        assert settings.webhook_url is not None and settings.webhook_secret is not None  # the validator saw to it
        return WebhookOtpSender(
            settings.webhook_url, settings.webhook_secret.get_secret_value().encode(), timeout_s=settings.timeout_s,
            attempts=settings.attempts, backoff_s=settings.backoff_s,
        )
    return DevOtpSender()
