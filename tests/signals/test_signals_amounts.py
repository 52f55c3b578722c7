"""Low amounts (card testers' charges) travel as one flag per row and are counted per segment."""

from __future__ import annotations

import orjson

from payops.signals.amounts import DEFAULT_LOW_AMOUNT, low_amount_bar
from payops.signals.batch import EventBatch
from payops.signals.events import PaymentEvent
from payops.signals.jsonl import JsonlParser, batch_from_range, parse_range
from payops.signals.window import EventWindow

T0 = 1_790_000_000.0


def _line(i: int, amount: float | None, currency: str | None, merchant: str, status: str = "failure") -> bytes:
    ev = {"ts": T0 + i, "payment_id": f"p{i}", "method": "card", "route": "acq one", "bank": "Umoya Bank",
          "issuer": "VISA", "status": status, "error_code": "SUSPECTED_FRAUD" if status == "failure" else None,
          "latency_ms": 300.0, "merchant_id": merchant}
    if amount is not None:
        ev["amount"] = amount
    if currency is not None:
        ev["currency"] = currency
    return orjson.dumps(ev) + b"\n"


LINES = [
    _line(0, 3.0, None, "shop a"),  # ZAR by default: low
    _line(1, 3.0, "USD", "shop a"),  # three dollars: not low
    _line(2, 0.5, "USD", "shop a"),  # low
    _line(3, 900.0, "JPY", "shop b", "success"),  # far above the yen bar
    _line(4, 100.0, "JPY", "shop b"),  # low in yen
    _line(5, None, "ZAR", "shop b"),  # no amount: never low
    _line(6, 12.0, "XYZ", "shop b"),  # unknown currency: the default bar
]
EXPECTED = [True, False, True, False, True, False, DEFAULT_LOW_AMOUNT >= 12.0]


def test_each_currency_has_its_own_low_bar_and_a_missing_amount_is_never_low() -> None:
    batch = JsonlParser().parse(b"".join(LINES))
    assert batch.low_amount is not None and batch.low_amount.tolist() == EXPECTED
    assert low_amount_bar(None) == low_amount_bar("ZAR") > low_amount_bar("USD")


def test_parsing_in_a_worker_gives_the_same_flags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.jsonl"
    data = b"".join(LINES)
    path.write_bytes(data)
    batch, _rest = batch_from_range(parse_range(str(path), 0, len(data)))
    assert batch.low_amount is not None and batch.low_amount.tolist() == EXPECTED


def test_the_window_counts_low_amount_attempts_and_failures_per_segment() -> None:
    window = EventWindow(60.0)
    window.add(JsonlParser().parse(b"".join(LINES)))
    snap = window.snapshot(T0 + 60.0)
    a, b = snap.segment(merchant_id="shop a"), snap.segment(merchant_id="shop b")
    assert (a.low_amount_attempts, a.low_amount_failures) == (2, 2)
    assert (b.low_amount_attempts, b.low_amount_failures) == (1, 1)
    assert snap.total.low_amount_attempts == 3


def test_events_built_as_objects_carry_the_same_flags() -> None:
    events = [PaymentEvent(ts=T0, payment_id="x", method="card", route="r", bank="b", issuer="i", status="success",
                           latency_ms=1.0, amount=amount, currency=currency)
              for amount, currency in ((5.0, "ZAR"), (5.0, "EUR"), (None, "ZAR"))]
    assert EventBatch.from_events(events).low_amount.tolist() == [True, False, False]
