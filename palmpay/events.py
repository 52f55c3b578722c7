"""Event bodies: the spec's outbox events and the CONTRACT.md §1 payment events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .spec import EventSpec, PalmPaySpec

MASK_PREFIX = "******"
# Fields that only ever travel masked, whatever the spec marks as sensitive.
ALWAYS_MASKED = frozenset({"payshap_proxy", "palm_template_ref"})


@dataclass(frozen=True, slots=True)
class SpecEvent:
    name: str
    payload: dict[str, Any]


class SpecEvents:
    """Builds outbox events whose names and payload keys are exactly the spec's."""

    def __init__(self, spec: PalmPaySpec) -> None:
        self._by_outcome: dict[str, EventSpec] = dict(spec.outcome_events)
        self._masked = ALWAYS_MASKED | spec.sensitive_fields

    def for_outcome(self, outcome: str, values: Mapping[str, Any]) -> SpecEvent | None:
        """The event the spec emits for `outcome`, or None if the spec emits none."""
        event = self._by_outcome.get(outcome)
        if event is None:
            return None
        payload: dict[str, Any] = {}
        for key in event.payload:
            value = values[key]  # a missing value is a bug: fail loudly, never emit half an event
            if key in self._masked and not (isinstance(value, str) and value.startswith(MASK_PREFIX)):
                raise ValueError(f"refusing to emit {event.name}: {key} is not masked")
            payload[key] = value
        return SpecEvent(event.name, payload)


@dataclass(frozen=True, slots=True)
class PaymentEventDefaults:
    """Dimensions of palm payments; data, not code (CONTRACT: names are data)."""

    currency: str = "ZAR"
    method: str = "palm"
    route: str = "payshap_rail"
    issuer: str = "PAYSHAP"
    unknown_bank: str = "unknown"


def contract_payment_event(
    defaults: PaymentEventDefaults,
    *,
    ts: float,
    payment_id: str,
    attempt: int,
    amount_cents: int,
    status: str,
    error_code: str | None,
    latency_ms: float,
    terminal_id: str,
    bank: str | None,
    palm_pay_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One payment attempt in the CONTRACT.md §1 shape (amount as major-unit float, event only)."""
    event: dict[str, Any] = {
        "ts": ts,
        "payment_id": payment_id,
        "attempt": attempt,
        "amount": amount_cents / 100,
        "currency": defaults.currency,
        "method": defaults.method,
        "route": defaults.route,
        "bank": bank or defaults.unknown_bank,
        "issuer": defaults.issuer,
        "status": status,
        "error_code": error_code,
        "latency_ms": round(max(latency_ms, 0.0), 3),
        "terminal_id": terminal_id,
    }
    if palm_pay_id is not None:
        event["palm_pay_id"] = palm_pay_id
    if extra:
        event.update(extra)
    return event
