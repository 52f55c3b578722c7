"""A batch of payment events as columns: what sources hand to the window.

Numbers are numpy columns. The categorical part of an event (its dimensions and
its outcome) is stored once per distinct combination: `combo[i]` indexes
`combos`, a table of `(method, route, bank, issuer, terminal_id, merchant_id,
region, error_code)` tuples (None: absent; error_code None: a success). Real
traffic has a few hundred such combinations per minute, so the window maps a
batch into its own dictionaries with one lookup per combination, not per event.

Everything the window does not aggregate (payment id, amount, currency, palm-pay
id) travels in `details`, only so a batch can still be read as `PaymentEvent`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np
import orjson

from .events import DIMENSIONS, PaymentEvent

COMBO_FIELDS: tuple[str, ...] = (*DIMENSIONS, "error_code")
Combo = tuple[str | None, ...]


class RowDetails(Protocol):
    """Per-row fields the window does not need; enough to rebuild a PaymentEvent."""

    def take(self, index: np.ndarray | slice) -> "RowDetails": ...

    def extras(self, i: int) -> tuple[str, float | None, str, str | None]:
        """(payment_id, amount, currency, palm_pay_id) of row i."""


@dataclass(frozen=True)
class ObjectDetails:
    """Details kept as the decoded objects themselves (anything with the contract's attribute names)."""

    rows: Sequence[Any]

    def take(self, index: np.ndarray | slice) -> "ObjectDetails":
        if isinstance(index, slice):
            return ObjectDetails(self.rows[index])
        rows = self.rows
        return ObjectDetails([rows[i] for i in index.tolist()])

    def extras(self, i: int) -> tuple[str, float | None, str, str | None]:
        row = self.rows[i]
        return row.payment_id, row.amount, row.currency or "ZAR", row.palm_pay_id


@dataclass(frozen=True, eq=False)
class EventBatch:
    ts: np.ndarray  # float64 epoch seconds
    latency_ms: np.ndarray  # float64
    attempt: np.ndarray  # int64, >= 1
    combo: np.ndarray  # intp index into `combos`
    combos: Sequence[Combo]  # may be a table shared (and growing) across a source's batches
    details: RowDetails | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def __iter__(self) -> Iterator[PaymentEvent]:
        return iter(self.to_events())

    @property
    def failed(self) -> np.ndarray:
        failed_combo = np.fromiter((c[-1] is not None for c in self.combos), np.bool_, len(self.combos))
        return failed_combo[self.combo]

    def take(self, index: np.ndarray | slice) -> "EventBatch":
        return EventBatch(self.ts[index], self.latency_ms[index], self.attempt[index], self.combo[index], self.combos,
                          self.details.take(index) if self.details is not None else None)

    def to_events(self) -> list[PaymentEvent]:
        """The batch as PaymentEvent objects (slow; for callers that want objects)."""
        if self.details is None:
            raise ValueError("this batch carries no payment ids; it cannot be turned back into events")
        out = []
        ts, lat, att, combo = self.ts.tolist(), self.latency_ms.tolist(), self.attempt.tolist(), self.combo.tolist()
        for i in range(len(ts)):
            method, route, bank, issuer, terminal, merchant, region, error = self.combos[combo[i]]
            payment_id, amount, currency, palm = self.details.extras(i)
            out.append(PaymentEvent(
                ts=ts[i], payment_id=payment_id, method=method, route=route, bank=bank, issuer=issuer,  # type: ignore[arg-type]
                status="success" if error is None else "failure", latency_ms=lat[i], attempt=att[i], amount=amount,
                currency=currency, error_code=error, terminal_id=terminal, merchant_id=merchant, region=region,
                palm_pay_id=palm,
            ))
        return out

    def to_jsonl(self) -> bytes:
        """CONTRACT.md §1 JSON Lines, one event per line."""
        dumps = orjson.dumps
        return b"".join([dumps(ev.to_json()) + b"\n" for ev in self.to_events()])

    @classmethod
    def empty(cls) -> "EventBatch":
        return cls(np.empty(0, np.float64), np.empty(0, np.float64), np.empty(0, np.int64), np.empty(0, np.intp), (), None)

    @classmethod
    def from_events(cls, events: Iterable[PaymentEvent]) -> "EventBatch":
        rows = list(events)
        ids: dict[Combo, int] = {}
        combo = np.fromiter((ids.setdefault(_combo_of(ev), len(ids)) for ev in rows), np.intp, len(rows))
        return cls(
            ts=np.fromiter((ev.ts for ev in rows), np.float64, len(rows)),
            latency_ms=np.fromiter((ev.latency_ms for ev in rows), np.float64, len(rows)),
            attempt=np.fromiter((ev.attempt for ev in rows), np.int64, len(rows)),
            combo=combo,
            combos=tuple(ids),
            details=ObjectDetails(rows),
        )


def _combo_of(ev: PaymentEvent) -> Combo:
    error = None if ev.success else (ev.error_code or "UNKNOWN")
    return (ev.method, ev.route, ev.bank, ev.issuer, ev.terminal_id, ev.merchant_id, ev.region, error)


def as_batch(events: "EventBatch | Iterable[PaymentEvent]") -> EventBatch:
    return events if isinstance(events, EventBatch) else EventBatch.from_events(events)


def concat(batches: Sequence[EventBatch]) -> EventBatch:
    """Batches that share one combo table (one source's) joined in order."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return EventBatch.empty()
    if len(batches) == 1:
        return batches[0]
    table = batches[0].combos
    if all(b.combos is table for b in batches):
        combos = [b.combo for b in batches]
    else:  # batches from different sources: merge their tables (one lookup per combination)
        merged: dict[Combo, int] = {}
        combos = []
        for b in batches:
            lut = np.fromiter((merged.setdefault(c, len(merged)) for c in b.combos), np.intp, len(b.combos))
            combos.append(lut[b.combo])
        table = tuple(merged)
    details = _concat_details([b.details for b in batches])
    return EventBatch(
        np.concatenate([b.ts for b in batches]),
        np.concatenate([b.latency_ms for b in batches]),
        np.concatenate([b.attempt for b in batches]),
        np.concatenate(combos),
        table,
        details,
    )


def _concat_details(parts: list[RowDetails | None]) -> RowDetails | None:
    if any(p is None for p in parts):
        return None
    first = parts[0]
    joiner = getattr(type(first), "join", None)
    if joiner is not None and all(type(p) is type(first) for p in parts):
        return joiner(parts)
    if all(isinstance(p, ObjectDetails) for p in parts):
        return ObjectDetails([row for p in parts for row in p.rows])  # type: ignore[union-attr]
    return None
