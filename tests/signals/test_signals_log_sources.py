"""The palm-pay table source and merged sources: arrival order, checkpointed cursor, resume, merge by time."""

from __future__ import annotations

import orjson

from payops.signals.merged_source import MergedSource
from payops.signals.palm_source import ROWS_PER_READ, PalmSource
from payops.signals.sources import LineSource


def _event(ts: float, terminal: str = "T1", status: str = "success") -> dict:
    return {"ts": ts, "payment_id": f"p{ts}", "method": "palm", "route": "palm_rail", "bank": "Bank A",
            "issuer": "PALM", "status": status,
            "error_code": None if status == "success" else "PALM_PAY_SPOOF_DETECTED",
            "latency_ms": 300.0, "terminal_id": terminal}


class Table:
    """payment_events as the backend writes it: ids in arrival order."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def add(self, *events: dict) -> None:
        for e in events:
            self.rows.append((len(self.rows) + 1, e))

    def after(self, after_id: int, limit: int) -> list[tuple[int, dict]]:
        return [r for r in self.rows if r[0] > after_id][:limit]


def test_the_palm_source_hands_out_rows_in_arrival_order_up_to_the_window_end() -> None:
    table = Table()
    table.add(_event(100.0), _event(130.0), _event(125.0), _event(170.0))
    source = PalmSource(table.after, follow=False)
    assert source.first_ts() == 100.0
    first = source.read_until(160.0)
    assert list(first.ts) == [100.0, 130.0, 125.0]
    assert list(source.read_until(220.0).ts) == [170.0]


def test_a_live_palm_source_waits_for_the_wall_clock_to_pass_the_window_not_for_ever() -> None:
    table = Table()
    table.add(_event(100.0))
    now = [150.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if now[0] >= 159.0 and len(table.rows) == 1:
            table.add(_event(158.0))  # a payment committed while the tick waits for its window to close

    source = PalmSource(table.after, follow=True, clock=lambda: now[0], sleep=sleep, grace=2.0)
    got = source.read_until(160.0)
    assert list(got.ts) == [100.0, 158.0]
    assert now[0] >= 162.0  # it returned once the wall clock was past the end plus the grace
    assert not source.exhausted


def test_the_cursor_is_saved_only_up_to_rows_no_open_window_needs_and_a_successor_resumes_there() -> None:
    table = Table()
    for i in range(6):
        table.add(_event(100.0 + 30 * i))  # 100, 130, ..., 250
    pages = lambda after, limit: table.after(after, 2)  # noqa: E731 - two rows a read: three pages
    saved: list[int] = []
    source = PalmSource(pages, follow=False, save_cursor=saved.append)
    assert list(source.read_until(200.0).ts) == [100.0, 130.0, 160.0, 190.0]
    source.commit(next_window_start=170.0)  # the next window still needs 190 (page 2): only page 1 is passed
    assert saved == [2]
    source.commit(next_window_start=200.0)
    assert saved == [2, 4]
    resumed = PalmSource(pages, follow=False)  # a successor, after a kill
    resumed.resume(saved[-1], None)
    assert list(resumed.read_until(1e9).ts) == [220.0, 250.0]


def test_merged_sources_are_handed_out_in_event_time_order(tmp_path) -> None:
    table = Table()
    table.add(_event(101.0, "T9"), _event(140.0, "T9"))
    path = tmp_path / "card.jsonl"
    path.write_bytes(b"".join(orjson.dumps({**_event(t), "method": "card", "issuer": "VISA"}) + b"\n"
                              for t in (100.0, 120.0, 150.0)))
    merged = MergedSource([PalmSource(table.after, follow=False), LineSource(path.open("rb"), str(path))])
    assert merged.first_ts() == 100.0
    batch = merged.read_until(145.0)
    assert list(batch.ts) == [100.0, 101.0, 120.0, 140.0]
    assert list(merged.read_until(1e9).ts) == [150.0]
    assert merged.exhausted


def test_the_palm_sources_lag_is_counted_by_the_table_not_by_reading_the_rows() -> None:
    table = Table()
    table.add(*[_event(100.0 + i) for i in range(5000)])
    reads: list[int] = []

    def read_after(after: int, limit: int) -> list[tuple[int, dict]]:
        reads.append(limit)
        return table.after(after, limit)[:limit]

    source = PalmSource(read_after, count_after=lambda after: sum(1 for r in table.rows if r[0] > after), follow=False)
    source.read_until(101.0)
    before = len(reads)
    assert source.lag() == 5000 - ROWS_PER_READ  # one page was read; the rest is counted, beyond one page's cap
    assert len(reads) == before  # no rows were read to count them
