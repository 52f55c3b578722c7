"""OTP delivery (the spec's `verification.send_otp`).

The backend generates the code, keeps only its HMAC, and hands the plaintext
to a `Verification` sender exactly once. The default `DevOtpSender` is a
console/dev sender: it keeps codes in memory so a demo (`--show-otp`) or a test
can read them back, and logs only the delivery id and the masked destination.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Protocol

from .masking import mask_proxy

log = logging.getLogger("payops.palmpay.verification")


class Verification(Protocol):
    def send_otp(self, *, palm_pay_id: str, destination: str, proxy_type: str, code: str) -> str:
        """Deliver `code` to `destination`; return a delivery id (never the code)."""
        ...


class DevOtpSender:
    """In-memory sender for development, demos and tests. Never logs the code."""

    def __init__(self, *, keep: int = 1000) -> None:
        self._codes: dict[str, str] = {}
        self._latest: dict[str, str] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def send_otp(self, *, palm_pay_id: str, destination: str, proxy_type: str, code: str) -> str:
        delivery_id = f"otp-{secrets.token_hex(8)}"
        with self._lock:
            if len(self._codes) >= self._keep:
                self._codes.pop(next(iter(self._codes)))
            self._codes[delivery_id] = code
            self._latest[palm_pay_id] = delivery_id
        log.info("OTP %s for %s sent to %s (%s)", delivery_id, palm_pay_id, mask_proxy(destination), proxy_type)
        return delivery_id

    def code_for(self, delivery_id: str) -> str | None:
        """Demo/test hook: the code of a delivery (a real SMS gateway has no such thing)."""
        with self._lock:
            return self._codes.get(delivery_id)

    def latest_code(self, palm_pay_id: str) -> str | None:
        with self._lock:
            delivery = self._latest.get(palm_pay_id)
            return self._codes.get(delivery) if delivery else None


def generate_otp(digits: int) -> str:
    return f"{secrets.randbelow(10**digits):0{digits}d}"
