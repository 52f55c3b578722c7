"""Ingest at the edge: the fast JSONL parser, bad lines with numbers, chunked and live sources."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payops.signals.events import EventError, ParseReport, event_from_dict
from payops.signals.jsonl import JsonlParser
from payops.signals.sources import LineSource, SourceError, open_jsonl

GOOD = {"ts": 1764000000.5, "payment_id": "p1", "method": "card", "route": "psp_a", "bank": "FNB", "issuer": "VISA",
        "status": "success", "latency_ms": 320.0}


def line(**kw) -> bytes:
    ev = {**GOOD, **kw}
    return orjson.dumps({k: v for k, v in ev.items() if v is not ...})


# -- the fast path agrees with the reference validator ---------------------------------

JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.sampled_from(["success", "failure", "", "card"]), st.lists(st.integers(-5, 5), max_size=2),
)
FIELDS = ["ts", "payment_id", "attempt", "amount", "currency", "method", "route", "bank", "issuer", "status",
          "error_code", "latency_ms", "merchant_id", "terminal_id", "palm_pay_id", "region", "extra"]


@settings(max_examples=300, deadline=None)
@given(mutations=st.dictionaries(st.sampled_from(FIELDS), st.one_of(JSON_VALUES, st.just(...)), max_size=4))
def test_fast_parser_accepts_exactly_what_event_from_dict_accepts(mutations: dict) -> None:
    raw = line(**mutations)
    try:
        expected = event_from_dict(orjson.loads(raw))
    except EventError:
        expected = None
    report = ParseReport()
    batch = JsonlParser(report).parse(raw + b"\n", 7)
    if expected is None:
        assert len(batch) == 0 and report.bad_count == 1 and report.bad[0].line_no == 7
    else:
        assert report.bad_count == 0
        assert batch.to_events() == [expected]


def test_invalid_utf8_anywhere_in_a_line_makes_it_a_bad_line_even_in_a_field_nobody_reads() -> None:
    # msgspec checks the text of the fields it keeps, not of unknown ones it skips.
    broken = [line()[:-1] + b', "note": "\xff\xfe"}', line()[:-1] + b', "\xc3": 1}',
              line(bank="BXnk").replace(b"X", b"\xc3")]
    good = [line(payment_id=f"p{i}", bank="Bänk") for i in range(3)]  # UTF-8 letters are fine
    data = b"\n".join(good[:1] + broken[:1] + good[1:2] + broken[1:] + good[2:]) + b"\n"
    report = ParseReport()
    batch = JsonlParser(report).parse(data, 1)
    assert len(batch) == 3 and report.accepted == 3 and report.bad_count == 3
    assert [(b.line_no, b.reason) for b in report.bad] == [(2, "not valid UTF-8"), (4, "not valid UTF-8"),
                                                            (5, "not valid UTF-8")]


def test_every_bad_line_number_is_kept_up_to_a_thousand_with_the_exact_count() -> None:
    data = b"\n".join(line() if i % 10 == 0 else b"{broken" for i in range(5000)) + b"\n"
    report = ParseReport()
    JsonlParser(report).parse(data, 1)
    assert report.bad_count == 4500 and len(report.bad) == 1000
    assert [b.line_no for b in report.bad[:3]] == [2, 3, 4]
    rejects = report.rejects_json()
    assert rejects["bad_count"] == 4500 and rejects["bad_kept"] == 1000
    assert rejects["bad"][0] == {"line": 2, "reason": "not valid JSON"}


def test_bad_lines_are_skipped_counted_and_numbered() -> None:
    data = b"\n".join([
        line(),                                  # 1
        b"{not json",                            # 2
        b"",                                     # 3 blank: not a record
        line(status="maybe"),                    # 4
        b"   ",                                  # 5 blank
        line(latency_ms=-1),                     # 6
        line(ts=...),                            # 7 missing ts
        b'[1, 2]',                               # 8
        line(payment_id="p2"),                   # 9
        line() + b" " + line(),                  # 10 two objects on one line
        b'\xff\xfe',                             # 11 not UTF-8
        line(attempt=1.5),                       # 12
    ]) + b"\n"
    report = ParseReport()
    batch = JsonlParser(report).parse(data, 1)
    assert len(batch) == 2 and report.accepted == 2
    assert report.lines == 10  # blank lines are not records
    assert [(b.line_no, b.reason) for b in report.bad] == [
        (2, "not valid JSON"),
        (4, "field 'status' must be 'success' or 'failure'"),
        (6, "field 'latency_ms' must be >= 0"),
        (7, "missing required field 'ts'"),
        (8, "line is not a JSON object"),
        (10, "not valid JSON"),
        (11, "not valid UTF-8"),
        (12, "field 'attempt' must be an integer from 1 to 2147483647"),
    ]
    count, samples = report.take_new()
    assert count == 8 and len(samples) == 8 and report.take_new() == (0, ())


def test_reasons_never_echo_values() -> None:
    report = ParseReport()
    JsonlParser(report).parse(line(status="SECRET-OTP-123456", bank=17) + b"\n" + line(palm_pay_id="") + b"\n", 1)
    assert report.bad_count == 2 and not any("SECRET" in b.reason or "17" in b.reason for b in report.bad)


def test_crlf_and_a_missing_final_newline_are_fine() -> None:
    report = ParseReport()
    batch = JsonlParser(report).parse(line() + b"\r\n" + line(ts=1764000001.0), 1)
    assert len(batch) == 2 and report.bad_count == 0


# -- sources --------------------------------------------------------------------------

def _stream(n: int, bad_every: int = 0, start: float = 1764000000.0) -> bytes:
    out = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b'{"ts": "broken"')
        else:
            out.append(line(ts=start + i * 0.5, payment_id=f"p{i}", bank=f"B{i % 3}"))
    return b"\n".join(out) + b"\n"


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_line_source_reads_in_time_order_across_chunk_boundaries(chunk: int) -> None:
    data = _stream(200, bad_every=17)
    src = LineSource(io.BytesIO(data), chunk_bytes=chunk)
    assert src.first_ts() == 1764000000.0
    got, end = [], 1764000000.0
    while not src.exhausted:
        end += 10.0
        batch = src.read_until(end)
        assert (batch.ts < end).all()
        got.extend(batch.ts.tolist())
    expected = [1764000000.0 + i * 0.5 for i in range(200) if i % 17 != 16]
    assert got == expected
    assert src.report.bad_count == 200 // 17
    assert [b.line_no for b in src.report.bad] == [i + 1 for i in range(200) if i % 17 == 16]


def test_line_source_hands_out_file_order_like_a_line_reader() -> None:
    """An earlier ts after a later one comes with the next read (where the window counts it late)."""
    data = b"\n".join(line(ts=t) for t in (10.0, 20.0, 65.0, 30.0, 70.0)) + b"\n"
    src = LineSource(io.BytesIO(data))
    assert src.read_until(60.0).ts.tolist() == [10.0, 20.0]
    assert src.read_until(120.0).ts.tolist() == [65.0, 30.0, 70.0]
    assert src.exhausted


def test_empty_and_all_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    src = open_jsonl(empty)
    assert src.first_ts() is None and src.exhausted
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(b"nope\n{}\n")
    src = open_jsonl(bad)
    assert src.first_ts() is None and src.report.bad_count == 2


def test_open_jsonl_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(SourceError, match="is a directory"):
        open_jsonl(tmp_path)


def _read_until_marker(proc: subprocess.Popen, marker: bytes, timeout: float) -> bytes:
    """Read the child's stdout until `marker` shows up (or the deadline)."""
    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.skipif(sys.platform == "win32", reason="select() on pipes")
def test_stdin_through_a_pipe_decides_while_the_stream_is_still_open(tmp_path: Path) -> None:
    """`tail -f events.jsonl | payops run --source -`: a tick happens as soon as an event past its window
    (plus the allowed lateness, 10 s) arrives, with the pipe still open, and bad lines on the way are
    reported with their line numbers."""
    payops = Path(sys.executable).with_name("payops")
    cmd = [str(payops)] if payops.exists() else [sys.executable, "-c", "from payops.cli import main; main()"]
    proc = subprocess.Popen(cmd + ["run", "--source", "-", "--ticks", "2", "--tick-seconds", "0",
                                   "--state-dir", str(tmp_path / "s")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PAYOPS_STATE_DIR": str(tmp_path / "s")})
    try:
        first_minute = _stream(100, start=1764000000.0)  # 50 s of events
        proc.stdin.write(first_minute + b"garbage line\n" + line(ts=1764000071.0) + b"\n")
        proc.stdin.flush()
        out = _read_until_marker(proc, b"Confidence Score", timeout=60.0)
        assert b"tick 1" in out and b"Confidence Score" in out, out.decode(errors="replace")
        assert proc.poll() is None  # still running, waiting for more of the stream
        rest, err = proc.communicate(line(ts=1764000125.0) + b"\n", timeout=60.0)  # then the pipe closes
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert b"tick 2" in out + rest
    assert b"skipped 1 malformed event line(s); first at line 101" in err


def test_many_merchants_are_coded_per_row_and_read_back_the_same() -> None:
    data = b"\n".join(line(ts=1764000000.0 + i, payment_id=f"p{i}", merchant_id=f"m{i}", terminal_id=f"t{i % 3}",
                           status="failure" if i % 5 == 0 else "success", error_code="X" if i % 5 == 0 else None)
                      for i in range(2000)) + b"\n"
    batch = JsonlParser().parse(data)
    assert batch.wide is not None and len(batch.combos) < 10  # not one combination per merchant
    events = batch.to_events()
    assert [e.merchant_id for e in events] == [f"m{i}" for i in range(2000)]
    assert [e.terminal_id for e in events[:4]] == ["t0", "t1", "t2", "t0"] and events[5].error_code == "X"
    narrow = JsonlParser().parse(data[: data.index(b"\n", 5000) + 1])
    assert narrow.wide is None and narrow.to_events() == events[: len(narrow)]


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_parse_equals_serial_parse(tmp_path: Path, monkeypatch, workers: int) -> None:
    from payops.signals import parse_pool

    monkeypatch.setattr(parse_pool, "PARALLEL_CHUNK_BYTES", 3000)
    path = tmp_path / "e.jsonl"
    path.write_bytes(_stream(400, bad_every=23) + b"\n\n" + _stream(100, start=1764000300.0) + b"bad tail")
    serial, parallel = open_jsonl(path, workers=0), open_jsonl(path, workers=workers)
    assert parallel._workers is not None and serial._workers is None
    for end in (1764000100.0, 1764000250.0, 1764001000.0):
        a, b = serial.read_until(end), parallel.read_until(end)
        assert a.ts.tolist() == b.ts.tolist()
        assert [e.bank for e in a.to_events()] == [c[2] for c in (b.combos[i] for i in b.combo.tolist())]
    assert serial.exhausted and parallel.exhausted
    assert serial.report.bad_count == parallel.report.bad_count == 400 // 23 + 1
    assert [(x.line_no, x.reason) for x in serial.report.bad] == [(x.line_no, x.reason) for x in parallel.report.bad]
    assert (serial.report.lines, serial.report.accepted) == (parallel.report.lines, parallel.report.accepted)
