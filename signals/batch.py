"""A batch of payment events as columns: what sources hand to the window.

Numbers are numpy columns. The categorical part of an event (its dimensions and
its outcome) is stored once per distinct combination: `combo[i]` indexes
`combos`, a table of `(method, route, bank, issuer, terminal_id, merchant_id,
region, error_code)` tuples (None: absent; error_code None: a success). Real
traffic has a few hundred such combinations per minute, so the window maps a
batch into its own dictionaries with one lookup per combination, not per event.

Dimensions with many values (terminal_id, merchant_id, region: thousands of
merchants) may instead travel as per-row codes in `wide`, with None in their
place in `combos`; otherwise the combinations would be as many as the events.

Everything the window does not aggregate (payment id, amount, currency, palm-pay
id) travels in `details`, only so a batch can still be read as `PaymentEvent`s.
What the window does need of the amount is one flag per row, `low_amount`
(amounts.py: a card tester's charge), counted per segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from .amounts import low_amount_mask
from .events import DIMENSIONS, PaymentEvent

COMBO_FIELDS: tuple[str, ...] = (*DIMENSIONS, "error_code")
WIDE_FIELDS: tuple[str, ...] = ("terminal_id", "merchant_id", "region")  # may have very many values
WIDE_POSITIONS = tuple(COMBO_FIELDS.index(f) for f in WIDE_FIELDS)
Combo = tuple[str | None, ...]
Wide = Mapping[str, tuple[np.ndarray, Sequence[str | None]]]  # field -> (code per row, names; names[0] is None)


class RowDetails(Protocol):
    """Per-row fields the window does not need; enough to rebuild a PaymentEvent."""

    def take(self, index: np.ndarray | slice) -> RowDetails: ...

    def extras(self, i: int) -> tuple[str, float | None, str, str | None]:
        """(payment_id, amount, currency, palm_pay_id) of row i."""


@dataclass(frozen=True)
class ObjectDetails:
    """Details kept as the decoded objects themselves (anything with the contract's attribute names)."""

    rows: Sequence[Any]

    def take(self, index: np.ndarray | slice) -> ObjectDetails:
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
    wide: Wide | None = None  # per-row codes of WIDE_FIELDS; when given they win over `combos` for those fields
    low_amount: np.ndarray | None = None  # bool per row: amount at or below its currency's low bar (None: none are)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def __iter__(self) -> Iterator[PaymentEvent]:
        return iter(self.to_events())

    @property
    def failed(self) -> np.ndarray:
        failed_combo = np.fromiter((c[-1] is not None for c in self.combos), np.bool_, len(self.combos))
        failed: np.ndarray = failed_combo[self.combo]
        return failed

    def take(self, index: np.ndarray | slice) -> EventBatch:
        wide = {f: (codes[index], names) for f, (codes, names) in self.wide.items()} if self.wide is not None else None
        return EventBatch(self.ts[index], self.latency_ms[index], self.attempt[index], self.combo[index], self.combos,
                          self.details.take(index) if self.details is not None else None, wide,
                          self.low_amount[index] if self.low_amount is not None else None)

    def wide_names(self) -> list[list[str | None]] | None:
        """Per row, the values of WIDE_FIELDS (None if they live in `combos`)."""
        if self.wide is None:
            return None
        return [[names[c] for c in codes.tolist()] for codes, names in (self.wide[f] for f in WIDE_FIELDS)]

    def to_events(self) -> list[PaymentEvent]:
        """The batch as PaymentEvent objects (slow; for callers that want objects)."""
        if self.details is None:
            raise ValueError("this batch carries no payment ids; it cannot be turned back into events")
        out = []
        ts, lat, att, combo = self.ts.tolist(), self.latency_ms.tolist(), self.attempt.tolist(), self.combo.tolist()
        wide = self.wide_names()
        for i in range(len(ts)):
            method, route, bank, issuer, terminal, merchant, region, error = self.combos[combo[i]]
            if wide is not None:
                terminal, merchant, region = wide[0][i], wide[1][i], wide[2][i]
            payment_id, amount, currency, palm = self.details.extras(i)
            out.append(PaymentEvent(
                ts=ts[i], payment_id=payment_id, method=method, route=route, bank=bank, issuer=issuer,
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
    def empty(cls) -> EventBatch:
        return cls(np.empty(0, np.float64), np.empty(0, np.float64), np.empty(0, np.int64),
                   np.empty(0, np.intp), (), None)

    @classmethod
    def from_events(cls, events: Iterable[PaymentEvent]) -> EventBatch:
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
            low_amount=low_amount_mask(np.array([ev.amount for ev in rows], np.float64), [ev.currency for ev in rows]),
        )


def _combo_of(ev: PaymentEvent) -> Combo:
    error = None if ev.success else (ev.error_code or "UNKNOWN")
    return (ev.method, ev.route, ev.bank, ev.issuer, ev.terminal_id, ev.merchant_id, ev.region, error)


def as_batch(events: EventBatch | Iterable[PaymentEvent]) -> EventBatch:
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
        _concat_wide(batches),
        None if all(b.low_amount is None for b in batches)
        else np.concatenate([b.low_amount if b.low_amount is not None else np.zeros(len(b), bool) for b in batches]),
    )


def _concat_wide(batches: Sequence[EventBatch]) -> Wide | None:
    if all(b.wide is None for b in batches):
        return None
    out = {}
    for f, pos in zip(WIDE_FIELDS, WIDE_POSITIONS, strict=True):
        merged: dict[str | None, int] = {None: 0}
        parts = []
        for b in batches:
            if b.wide is not None:
                codes, names = b.wide[f]
            else:  # this batch keeps the field in its combinations
                names = [None, *dict.fromkeys(c[pos] for c in b.combos if c[pos] is not None)]
                index = {n: i for i, n in enumerate(names)}
                codes = np.fromiter((index[c[pos]] for c in b.combos), np.int64, len(b.combos))[b.combo]
            lut = np.fromiter((merged.setdefault(n, len(merged)) for n in names), np.int64, len(names))
            parts.append(lut[codes])
        out[f] = (np.concatenate(parts), list(merged))
    return out


def _concat_details(parts: list[RowDetails | None]) -> RowDetails | None:
    if any(p is None for p in parts):
        return None
    first = parts[0]
    joiner = getattr(type(first), "join", None)
    if joiner is not None and all(type(p) is type(first) for p in parts):
        joined: RowDetails = joiner(parts)  # the class's own join: same type as its parts
        return joined
    if all(isinstance(p, ObjectDetails) for p in parts):
        return ObjectDetails([row for p in parts for row in p.rows])  # type: ignore[union-attr]
    return None
