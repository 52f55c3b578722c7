"""Typed data of the palm-pay backend.

`PalmPayLink` is the domain record with the spec's fields. Its sensitive fields
are `SealedField`s: ciphertext plus a masked hint, never plaintext, so a link
can be passed around, logged or printed without leaking a proxy or template
reference. Plaintext exists only briefly where the rail or the OTP sender
needs it, and each such read is access-logged.

Views (`LinkView`, `PaymentResult`, ...) are what callers get back: frozen
pydantic models with masked values and Decimal money.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# State names the rules refer to. Which moves between them are allowed is the spec's business.
PENDING_VERIFICATION = "pending_verification"
ACTIVE = "active"
SUSPENDED = "suspended"
REVOKED = "revoked"

PaymentStatus = Literal["pending", "completed", "failed"]


@dataclass(frozen=True, slots=True)
class SealedField:
    """An encrypted value and its masked hint; repr shows only the hint."""

    ciphertext: bytes
    masked: str

    def __repr__(self) -> str:
        return f"SealedField({self.masked})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class PalmPayLink:
    """One palm-to-proxy link, as stored. Money in integer cents."""

    palm_pay_id: str
    user_id: str
    palm_template_ref: SealedField
    palm_hand: str | None
    payshap_proxy: SealedField
    proxy_type: str
    link_status: str
    linked_at: float | None
    verified_at: float | None
    daily_limit: int
    daily_spent: int
    transaction_limit: int
    # Bookkeeping beyond the spec's fields.
    spent_day: str | None  # local date (ISO) the daily_spent counter belongs to
    reserved: int  # cents held by payments whose rail outcome is not yet known
    bank: str | None
    created_at: float


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LinkView(_View):
    """A link as callers see it: masked sensitive fields, money in Rand."""

    palm_pay_id: str
    user_id: str
    palm_template_ref: str
    palm_hand: str | None
    payshap_proxy: str
    proxy_type: str
    link_status: str
    linked_at: datetime | None
    verified_at: datetime | None
    created_at: datetime
    daily_limit: Decimal
    daily_spent: Decimal
    transaction_limit: Decimal
    reserved: Decimal
    bank: str | None


class PaymentResult(_View):
    """Outcome of a payment the backend accepted (refusals raise PalmPayError instead).

    `pending` means the rail did not answer in time: the amount stays reserved
    against the limits and `reconcile()` settles it; the terminal must not
    retry with a new payment id or offer card for the same purchase yet.
    """

    payment_id: str
    palm_pay_id: str
    status: PaymentStatus
    amount: Decimal
    currency: str
    payshap_proxy: str
    terminal_id: str
    attempts: int
    error_code: str | None = None
    fallback: str | None = None
    rail_reference: str | None = None
    replayed: bool = False


class OutboxEvent(_View):
    id: int
    ts: float
    name: str
    payload: dict[str, Any]


class PaymentEventRecord(_View):
    """A CONTRACT.md §1 payment event and its position in the payment_events table."""

    id: int
    event: dict[str, Any]


class AuditEntry(_View):
    id: int
    ts: float
    palm_pay_id: str | None
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    outcome: Literal["applied", "refused"]
    reason: str | None


class AccessLogEntry(_View):
    id: int
    ts: float
    palm_pay_id: str
    field: str
    actor: str
    purpose: str


class ReconcileReport(_View):
    completed: int
    failed: int
    still_pending: int
    released_overdue: int = 0  # unsettled past the maximum pending age: released as failed


class RotationReport(_View):
    """A data-key rotation switched (rotation.py): the settlement rounds re-encrypt the rows under the new key
    and retire the previous one a backup window after that."""

    new_key_id: str
    previous_key_id: str | None


ChangeRequestStatus = Literal["pending", "approved", "executed", "rejected", "expired", "failed"]


class ChangeRequest(_View):
    """A human-initiated change waiting for (or decided by) a second operator: the two-person rule.

    `args` holds only safe values (limits in Rand, never a sensitive field's plaintext).
    """

    request_id: str
    action: str
    palm_pay_id: str | None
    reason: str
    args: dict[str, Any]
    requested_by: str
    requested_at: float
    expires_at: float
    status: ChangeRequestStatus
    decided_by: str | None = None
    decided_at: float | None = None
    result: str | None = None
