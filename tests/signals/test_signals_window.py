"""The columnar window against a plain per-event reference, and its edges.

Counts, failures, error codes, retries are compared exactly; latency mean to
float precision; quantiles within the log-bucket error (<= 4% relative, or the
first bucket's width below 1.08 ms).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payops.signals.batch import EventBatch
from payops.signals.events import BUCKET_MID_MS, LATENCY_BUCKET_GROWTH, LATENCY_BUCKETS, event_from_dict
from payops.signals.reference import naive_window
from payops.signals.ring import COMPACT_MIN_COMBOS
from payops.signals.window import EventWindow, WindowSnapshot

BUCKET_REL_ERROR = math.sqrt(LATENCY_BUCKET_GROWTH) - 1.0  # half a bucket, geometrically: 3.92%


def _event(ts: float, **kw) -> dict:
    base = {"ts": ts, "payment_id": f"p{ts}", "method": "card", "route": "r1", "bank": "B1", "issuer": "VISA",
            "status": "success", "latency_ms": 300.0}
    base.update(kw)
    if base["status"] == "success":
        base.pop("error_code", None)
    return base


def _window(events: list[dict], window: float = 60.0, batches: int = 1) -> EventWindow:
    w = EventWindow(window)
    objs = [event_from_dict(e) for e in events]
    for chunk in np.array_split(np.arange(len(objs)), max(batches, 1)):
        w.add([objs[i] for i in chunk.tolist()])
    return w


def _by_key(snap: WindowSnapshot) -> dict:
    return {s.key: s for s in (snap.total, *snap.segments)}


def assert_matches_reference(snap: WindowSnapshot, events: list[dict], start: float, end: float) -> None:
    ref = naive_window(events, start, end)
    got = _by_key(snap)
    assert set(got) == set(ref) or (not ref and set(got) == {"*"})
    for key, r in ref.items():
        s = got[key]
        assert (s.attempts, s.failures) == (r.attempts, r.failures), key
        assert s.errors == dict(r.errors), key
        assert s.retry_share == pytest.approx(r.retry_share, abs=1e-12)
        assert s.attempts_per_payment == pytest.approx(r.attempts_per_payment, rel=1e-12)
        assert s.first_attempt_failures == r.first_attempt_failures
        assert s.latency_mean_ms == pytest.approx(r.latency_mean_ms, rel=1e-9, abs=1e-9)
        for q, value in ((0.5, s.latency_p50_ms), (0.95, s.latency_p95_ms), (0.99, s.latency_p99_ms)):
            exact = r.quantile(q)
            if exact < LATENCY_BUCKET_GROWTH:
                assert value == pytest.approx(BUCKET_MID_MS[0]), key
            else:
                assert abs(value - exact) <= BUCKET_REL_ERROR * exact * (1 + 1e-9), (key, q, value, exact)


# -- random streams ------------------------------------------------------------------

NAMES = st.sampled_from(["A", "B", "C", "Δ-bank", "x y"])
OPTIONAL = st.one_of(st.none(), NAMES)
CODES = st.sampled_from([None, "", "ISSUER_DOWN", "BANK_TIMEOUT", "NEVER_SEEN_BEFORE", "PALM_PAY_SPOOF_DETECTED"])


@st.composite
def events_strategy(draw, max_size: int = 120) -> list[dict]:
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        status = draw(st.sampled_from(["success", "failure"]))
        ev = {
            "ts": draw(st.floats(0.0, 90.0, allow_nan=False)),
            "payment_id": f"p{i}",
            "attempt": draw(st.integers(1, 4)),
            "method": draw(NAMES), "route": draw(NAMES), "bank": draw(NAMES), "issuer": draw(NAMES),
            "status": status,
            "latency_ms": draw(st.one_of(st.floats(0.0, 150_000.0, allow_nan=False),
                                         st.sampled_from([0.0, 1.0, 1.08, 250.0]))),
        }
        if status == "failure":
            code = draw(CODES)
            if code is not None:
                ev["error_code"] = code
        for dim in ("terminal_id", "merchant_id", "region"):
            value = draw(OPTIONAL)
            if value is not None:
                ev[dim] = value
        out.append(ev)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy(), batches=st.integers(1, 4), end=st.floats(1.0, 120.0))
def test_columnar_aggregates_equal_the_reference(events: list[dict], batches: int, end: float) -> None:
    """Any stream, split in any batches, in any order: every segment's figures equal a plain recount."""
    w = _window(events, batches=batches)
    snap = w.snapshot(end, learn=False)
    assert_matches_reference(snap, events, end - 60.0, end)


@settings(max_examples=25, deadline=None)
@given(events=events_strategy(60), ends=st.lists(st.floats(1.0, 150.0), min_size=2, max_size=4))
def test_consecutive_snapshots_each_equal_the_reference(events: list[dict], ends: list[float]) -> None:
    """Eviction between ticks never loses an event a later window still covers."""
    w = _window(events, window=30.0)
    for end in sorted(ends):
        assert_matches_reference(w.snapshot(end, learn=False), events, end - 30.0, end)


# -- boundaries and edges --------------------------------------------------------------

def test_window_is_start_inclusive_end_exclusive() -> None:
    events = [_event(t) for t in (39.999, 40.0, 50.0, 99.999, 100.0)]
    snap = _window(events).snapshot(100.0)
    assert (snap.window_start, snap.window_end) == (40.0, 100.0)
    assert snap.total.attempts == 3  # 40.0, 50.0, 99.999


def test_future_events_wait_for_their_window() -> None:
    w = _window([_event(10.0), _event(70.0)])
    assert w.snapshot(60.0).total.attempts == 1
    assert w.snapshot(120.0).total.attempts == 1


def test_empty_window_has_zeros_and_keeps_the_total_baseline() -> None:
    w = _window([_event(float(t), status="failure" if t % 10 == 0 else "success", error_code="ISSUER_DOWN")
                 for t in range(0, 300)])
    for end in (60.0, 120.0, 180.0, 240.0, 300.0):
        w.snapshot(end)
    snap = w.snapshot(600.0)  # nothing between 540 and 600
    assert snap.total.attempts == 0 and snap.segments == ()
    assert snap.total.baseline_failure_rate == pytest.approx(0.1, abs=0.02)
    assert snap.total.z == 0.0 and snap.total.excess_failures == 0.0
    assert EventWindow().snapshot(60.0).total.attempts == 0  # never saw anything


def test_unknown_error_codes_and_new_names_are_segments_like_any_other() -> None:
    events = [_event(float(t), bank="BRAND_NEW_BANK", status="failure", error_code="CODE_FROM_THE_FUTURE")
              for t in range(10)]
    events += [_event(float(t) + 0.5) for t in range(10)]
    snap = _window(events).snapshot(60.0)
    seg = snap.segment(bank="BRAND_NEW_BANK")
    assert seg is not None and seg.errors == {"CODE_FROM_THE_FUTURE": 10} and seg.failure_rate == 1.0
    assert snap.segment(bank="BRAND_NEW_BANK", route="r1").attempts == 10
    # A failure without a code is still a failure, kept visible as UNKNOWN; a success never has a code.
    snap2 = _window([_event(1.0, status="failure"), _event(2.0, status="failure", error_code=""),
                     _event(3.0, status="success", error_code="IGNORED")]).snapshot(60.0)
    assert snap2.total.errors == {"UNKNOWN": 2} and snap2.total.failures == 2


def test_optional_dimensions_absent_are_not_segments() -> None:
    snap = _window([_event(1.0), _event(2.0, terminal_id="T9", region="West")]).snapshot(60.0)
    assert [s.key for s in snap.by_dimension("terminal_id")] == ["terminal_id=T9"]
    assert snap.segment(terminal_id="T9").attempts == 1 and snap.segment(region="West").attempts == 1
    assert snap.by_dimension("merchant_id") == []


def test_a_segment_that_appears_mid_stream_is_counted_from_its_first_event() -> None:
    w = EventWindow(60.0)
    for minute in range(5):
        batch = [_event(minute * 60.0 + s) for s in range(0, 60, 2)]
        if minute >= 3:
            batch += [_event(minute * 60.0 + s + 1, route="new_route", status="failure",
                             error_code="ROUTE_NOT_SUPPORTED")
                      for s in range(0, 60, 3)]
        w.add([event_from_dict(e) for e in batch])
        snap = w.snapshot((minute + 1) * 60.0)
        seg = snap.segment(route="new_route")
        if minute < 3:
            assert seg is None
        else:
            assert seg.attempts == 20 and seg.errors == {"ROUTE_NOT_SUPPORTED": 20}
            assert seg.baseline_failure_rate is None  # a failing newcomer is not learned as normal
            assert seg.expected_failure_rate == pytest.approx(0.0)  # compared with its peers
            assert snap.vocab_sizes["route"] == 2


def test_late_and_out_of_order_events_are_counted_never_lost_silently() -> None:
    w = EventWindow(60.0)
    w.add([event_from_dict(_event(t)) for t in (110.0, 120.0, 170.0)])
    first = w.snapshot(160.0)
    assert first.total.attempts == 2 and first.quality.late_events == 0
    # After the window ending at 160 was evaluated: one event older than its start, one inside it,
    # one in the next window but behind an earlier arrival.
    w.add([event_from_dict(_event(t)) for t in (95.0, 130.0, 165.0)])
    second = w.snapshot(220.0)
    q = second.quality
    assert q.late_events == 2  # 95 and 130 arrived after their window was reported
    assert q.late_dropped == 2  # 95 was older than any window still to come; 130 is older than this one
    assert q.out_of_order_events == 3  # all three arrived behind the event at 170
    assert second.total.attempts == 2  # 165 and 170; 130 is before this window
    assert w.snapshot(230.0).quality.late_events == 0  # counts are per snapshot


def test_late_event_still_inside_an_overlapping_window_is_used() -> None:
    w = EventWindow(60.0)
    w.add([event_from_dict(_event(50.0))])
    w.snapshot(60.0)
    w.add([event_from_dict(_event(40.0))])  # late for the window ending 60, inside the one ending 65
    snap = w.snapshot(65.0)
    assert snap.total.attempts == 2 and snap.quality.late_events == 1 and snap.quality.late_dropped == 0


def test_bad_lines_reach_the_snapshot_with_numbers_and_reset_per_tick() -> None:
    from payops.signals.events import BadLine

    w = EventWindow()
    w.note_bad_lines(3, [BadLine(4, "not valid JSON"), BadLine(9, "missing required field 'ts'")])
    snap = w.snapshot(60.0)
    assert snap.quality.bad_lines == 3 and [b.line_no for b in snap.quality.bad_samples] == [4, 9]
    assert w.snapshot(120.0).quality.bad_lines == 0
    assert snap.digest()["bad_lines"] == 3


def test_latency_beyond_the_last_bucket_is_clamped_not_lost() -> None:
    snap = _window([_event(1.0, latency_ms=1e9), _event(2.0, latency_ms=0.0)]).snapshot(60.0)
    assert snap.total.latency_p99_ms == pytest.approx(BUCKET_MID_MS[LATENCY_BUCKETS - 1])
    assert snap.total.latency_mean_ms == pytest.approx(5e8)


def test_many_distinct_names_take_the_sparse_path_and_agree_with_the_reference() -> None:
    events = [_event(i * 0.001, merchant_id=f"m{i}", terminal_id=f"t{i % 7}", latency_ms=float(i % 900))
              for i in range(3000)]
    w = _window(events)
    from payops.signals import window as window_mod

    old = window_mod.DENSE_CELLS_MIN
    window_mod.DENSE_CELLS_MIN = 0  # force the sort-based count
    try:
        assert_matches_reference(w.snapshot(60.0, learn=False), events, 0.0, 60.0)
    finally:
        window_mod.DENSE_CELLS_MIN = old


def test_dictionaries_are_rebuilt_when_churning_names_pile_up(monkeypatch) -> None:
    from payops.signals import window as window_mod

    monkeypatch.setattr(window_mod, "COMPACT_MIN_COMBOS", 100)
    w = EventWindow(10.0)
    for second in range(0, 100, 10):
        w.add([event_from_dict(_event(second + i * 0.01, merchant_id=f"m{second}-{i}")) for i in range(50)])
        w.snapshot(second + 10.0, learn=False)
    assert len(w.table.vocab["merchant_id"]) < 200  # 500 merchants seen, only the live ones kept
    events = [_event(95.0 + i * 0.01, merchant_id=f"x{i}", status="failure", error_code="E") for i in range(30)]
    w.add([event_from_dict(e) for e in events])
    snap = w.snapshot(100.0, learn=False)
    assert snap.total.attempts == 30 + 50 and snap.segment(merchant_id="x3").failures == 1
    assert COMPACT_MIN_COMBOS >= 1000  # the real threshold is far above a normal network's combinations


def test_batches_and_event_objects_give_the_same_snapshot() -> None:
    events = [event_from_dict(_event(float(t), bank=f"B{t % 3}", status="failure" if t % 4 == 0 else "success",
                                     error_code="BANK_TIMEOUT", attempt=1 + t % 2)) for t in range(50)]
    a, b = EventWindow(), EventWindow()
    a.add(events)
    b.add(EventBatch.from_events(events))
    sa, sb = a.snapshot(60.0), b.snapshot(60.0)
    assert sa.total == sb.total and sa.segments == sb.segments


def test_round_trip_batch_to_events() -> None:
    events = [event_from_dict(_event(1.5, terminal_id="T1", status="failure", error_code="X", attempt=2, amount=10.0))]
    assert EventBatch.from_events(events).to_events() == events


def test_fast_built_segment_stats_are_ordinary_dataclasses() -> None:
    import dataclasses

    snap = _window([_event(1.0, status="failure", error_code="E"), _event(2.0)]).snapshot(60.0)
    seg = snap.segment(bank="B1")
    rebuilt = type(seg)(**{f.name: getattr(seg, f.name) for f in dataclasses.fields(seg)})
    assert rebuilt == seg and hash(seg.key) and repr(seg) == repr(rebuilt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        seg.attempts = 3  # type: ignore[misc]
