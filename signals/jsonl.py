"""Fast JSON Lines ingest: bytes -> validated columns, bad lines counted with their number.

The schema of CONTRACT.md §1 is a msgspec Struct, so decoding *is* validation and
runs in C; no dict or PaymentEvent per line. A chunk of lines is decoded in one
call; only when some line in it is bad (rare) does the chunk go through the
careful path that finds each bad line, its number and the reason.
Reasons come from `event_from_dict`, the one reference validator, so both paths
say the same thing and never echo a value.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import orjson

from .amounts import low_amount_bar
from .batch import WIDE_FIELDS, Combo, EventBatch, ObjectDetails
from .events import DIMENSIONS, MAX_ATTEMPT, EventError, ParseReport, event_from_dict
from .handoff import hand_over, take_over

_FINITE_MAX = sys.float_info.max  # JSON numbers beyond it decode as infinity: rejected like event_from_dict does
Text = Annotated[str, msgspec.Meta(min_length=1)]
Number = Annotated[float, msgspec.Meta(ge=0, le=_FINITE_MAX)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPT)]


class WireEvent(msgspec.Struct, gc=False):
    """CONTRACT.md §1 as a decoding schema. Unknown fields are ignored; the rules match event_from_dict."""

    ts: Number
    payment_id: Text
    method: Text
    route: Text
    bank: Text
    issuer: Text
    status: Literal["success", "failure"]
    latency_ms: Number
    attempt: Attempt = 1
    amount: Number | None = None
    currency: Text | None = None
    error_code: str | None = None
    terminal_id: Text | None = None
    merchant_id: Text | None = None
    region: Text | None = None
    palm_pay_id: Text | None = None


# The currency rides in the combination key (real feeds have one or a few), so each row's
# low-amount bar comes from its combination: no per-row Python for it.
_ROW_KEY = attrgetter(*DIMENSIONS, "status", "error_code", "currency")
_CORE_KEY = attrgetter("method", "route", "bank", "issuer", "status", "error_code", "currency")
# A chunk with more distinct combinations than this (and than one per this many rows)
# codes terminal, merchant and region per row instead (see batch.WIDE_FIELDS).
WIDE_AFTER_COMBOS = 512
WIDE_ROWS_PER_COMBO = 8
_TS = attrgetter("ts")
_LATENCY = attrgetter("latency_ms")
_ATTEMPT = attrgetter("attempt")
_AMOUNT = attrgetter("amount")
_DECODE_ERRORS = (msgspec.DecodeError, ValueError)  # ValueError covers invalid UTF-8
_NEWLINE, _CR, _OPEN, _CLOSE = (ord(c) for c in "\n\r{}")


class _ComboIds(dict[tuple[Any, ...], int]):
    """Raw (dimensions..., status, error_code, currency) -> combo id; a miss registers the normalised combo.

    With `wide`, the key holds only (method, route, bank, issuer, status, error_code, currency)
    and terminal, merchant and region are left None (they travel per row). The currency is
    not part of the combination (the window does not segment by it): `bars` keeps each
    combo id's low-amount bar (amounts.py) instead.
    """

    def __init__(self, table: list[Combo], wide: bool = False) -> None:
        super().__init__()
        self.table = table
        self.wide = wide
        self.bars: list[float] = []

    def __missing__(self, raw: tuple[Any, ...]) -> int:
        *dims, status, error, currency = raw
        # Same normalisation as event_from_dict: a success has no code, a failure always has one.
        code = None if status == "success" else (error or "UNKNOWN")
        if self.wide:
            dims = [*dims, None, None, None]
        ident = len(self.table)
        self.table.append((*dims, code))
        self.bars.append(low_amount_bar(currency))
        self[raw] = ident
        return ident


class _Codes(dict[str | None, int]):
    """Value -> code in `names` (None is 0)."""

    def __init__(self, names: list[str | None]) -> None:
        super().__init__({None: 0})
        self.names = names

    def __missing__(self, value: str) -> int:
        self[value] = len(self.names)
        self.names.append(value)
        return self[value]


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def explain(line: bytes) -> str:
    """Why a line is not a valid event, in the reference validator's words (no values echoed)."""
    if not _utf8(line):
        return "not valid UTF-8"
    try:
        event_from_dict(orjson.loads(line))
    except orjson.JSONDecodeError:
        return "not valid JSON"
    except EventError as exc:
        return str(exc)
    try:
        msgspec.json.decode(line, type=WireEvent)
    except _DECODE_ERRORS as exc:
        return f"invalid event: {str(exc).split(' - at ')[-1]}"  # the path only, never the value
    return "invalid event"


class JsonlParser:
    """Turns chunks of JSON Lines into EventBatches, counting bad lines in `report`.

    Each chunk gets its own combination table (in order of first appearance), so a
    chunk's batch depends on nothing but its bytes: chunks can be parsed in any
    process and any order, and the window sees the same thing however the stream
    was cut (window.add maps combinations by name).
    """

    def __init__(self, report: ParseReport | None = None, keep_details: bool = True) -> None:
        self.report = report if report is not None else ParseReport()
        self.keep_details = keep_details
        decoder = msgspec.json.Decoder(WireEvent)
        self._decode = decoder.decode
        self._decode_lines = decoder.decode_lines
        self.line_count = 0

    def parse(self, data: bytes, first_line_no: int = 1) -> EventBatch:
        """Complete lines (the last may lack its newline); `first_line_no` numbers the first.

        Sets `line_count` to the number of physical lines in `data` (for the next number).
        """
        rows = self._fast(data)
        if rows is None:
            lines = data.split(b"\n")
            if lines and not lines[-1]:
                lines.pop()
            self.line_count = len(lines)
            rows = self._careful(lines, first_line_no)
        else:
            self.report.lines += len(rows)
        self.report.accepted += len(rows)
        return self.columns(rows)

    def _fast(self, data: bytes) -> list[WireEvent] | None:
        """All lines decoded in one call, or None when some line is not exactly one JSON object.

        `decode_lines` would also accept two objects on one line, or one object over two
        lines; a line-by-line reader rejects both. Every line starting with '{' and ending
        with '}' (then no object can span lines: JSON allows no '{' right after a value)
        and as many objects as lines means one object per line.
        """
        buf = np.frombuffer(data, np.uint8)
        if len(buf) and buf.max() >= 0x80 and not _utf8(data):
            # msgspec checks the UTF-8 of the fields it keeps, not of those it skips (unknown
            # fields): a line that is not text is a bad line, found by the careful path.
            return None
        newlines = np.flatnonzero(buf == _NEWLINE)
        ends = newlines if data.endswith(b"\n") else np.append(newlines, len(buf))
        self.line_count = len(ends)
        if not len(ends):
            return []
        starts = np.concatenate(([0], newlines + 1))[: len(ends)]
        last = ends - 1
        if (last < starts).any():
            return None  # an empty line
        last = last - (buf[last] == _CR)  # CRLF line ends
        if (last < starts).any() or not (buf[starts] == _OPEN).all() or not (buf[last] == _CLOSE).all():
            return None
        try:
            rows = self._decode_lines(data)
        except _DECODE_ERRORS:
            return None
        return rows if len(rows) == len(ends) else None

    def _careful(self, lines: list[bytes], first_line_no: int) -> list[WireEvent]:
        rows = []
        decode, report = self._decode, self.report
        for offset, line in enumerate(lines):
            text = line.strip()
            if not text:
                continue  # blank lines are not records
            report.lines += 1
            try:
                row = decode(text)
            except _DECODE_ERRORS:
                report.reject(first_line_no + offset, explain(text))
                continue
            if text.isascii() or _utf8(text):
                rows.append(row)
            else:
                report.reject(first_line_no + offset, "not valid UTF-8")
        return rows

    def columns(self, rows: list[WireEvent]) -> EventBatch:
        n = len(rows)
        combos: list[Combo] = []
        ids = _ComboIds(combos)
        combo = np.fromiter(map(ids.__getitem__, map(_ROW_KEY, rows)), np.intp, n)
        wide = None
        if len(combos) > max(WIDE_AFTER_COMBOS, n // WIDE_ROWS_PER_COMBO):
            # Terminals, merchants or regions with many values: code them per row instead,
            # or the combinations would be as many as the events.
            combos = []
            ids = _ComboIds(combos, wide=True)
            combo = np.fromiter(map(ids.__getitem__, map(_CORE_KEY, rows)), np.intp, n)
            wide = {}
            for name in WIDE_FIELDS:
                names: list[str | None] = [None]
                codes = np.fromiter(map(_Codes(names).__getitem__, map(attrgetter(name), rows)), np.int64, n)
                wide[name] = (codes, names)
        try:
            amounts = np.fromiter(map(_AMOUNT, rows), np.float64, n)
        except TypeError:  # some rows carry no amount: NaN, never low
            amounts = np.array(list(map(_AMOUNT, rows)), np.float64)
        bars = np.fromiter(ids.bars, np.float64, len(ids.bars))
        return EventBatch(
            ts=np.fromiter(map(_TS, rows), np.float64, n),
            latency_ms=np.fromiter(map(_LATENCY, rows), np.float64, n),
            attempt=np.fromiter(map(_ATTEMPT, rows), np.int64, n),
            combo=combo,
            combos=combos,
            details=ObjectDetails(rows) if self.keep_details else None,
            wide=wide,
            low_amount=amounts <= bars[combo] if n else np.zeros(0, bool),
        )


# -- parsing a file on several cores ---------------------------------------------------


def parse_range(path: str, start: int, end: int, handoff_dir: str | None = None) -> tuple[Any, ...]:
    """Parse bytes [start, end) of a file (whole lines) in a worker process.

    Returns plain picklable parts: the batch's columns (ts, latency, attempt,
    combo, then the codes of each wide field; through a file in `handoff_dir`
    when given, see handoff.py), its combinations and the names of its wide
    fields (no details), the chunk's physical line count, and its report with
    line numbers relative to the chunk (1 = its first line).
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    report = ParseReport()
    parser = JsonlParser(report, keep_details=False)
    batch = parser.parse(data, 1)
    del data
    wide = batch.wide or {}
    wide_names = {name: names for name, (_, names) in wide.items()} if batch.wide is not None else None
    low = batch.low_amount if batch.low_amount is not None else np.zeros(len(batch), bool)
    columns = hand_over((batch.ts, batch.latency_ms, batch.attempt, batch.combo, low,
                         *(codes for codes, _ in wide.values())),
                        handoff_dir, f"{start}.columns")
    return (columns, tuple(batch.combos), wide_names, parser.line_count,
            report.lines, report.accepted, report.bad_count, [(b.line_no, b.reason) for b in report.bad])


def batch_from_range(parsed: tuple[Any, ...]) -> tuple[EventBatch, tuple[Any, ...]]:
    """The EventBatch of a `parse_range` result (columns taken over), and the rest of the result."""
    columns, combos, wide_names, *rest = parsed
    ts, latency, attempt, combo, low, *wide_codes = take_over(columns)
    wide = None
    if wide_names is not None:
        wide = {name: (codes, names) for (name, names), codes in zip(wide_names.items(), wide_codes, strict=True)}
    return EventBatch(ts, latency, attempt, combo, combos, None, wide, low), tuple(rest)
