"""Fast JSON Lines ingest: bytes -> validated columns, bad lines counted with their number.

The schema of CONTRACT.md §1 is a msgspec Struct, so decoding *is* validation and
runs in C; no dict or PaymentEvent per line. A chunk is decoded line by line in
one comprehension; only when some line in it is bad (rare) does the chunk go
through the careful path that finds each bad line, its number and the reason.
Reasons come from `event_from_dict`, the one reference validator, so both paths
say the same thing and never echo a value.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import Annotated, Literal

import msgspec
import numpy as np
import orjson

from .batch import Combo, EventBatch, ObjectDetails
from .events import DIMENSIONS, MAX_ATTEMPT, EventError, ParseReport, event_from_dict

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


_ROW_KEY = attrgetter(*DIMENSIONS, "status", "error_code")
_TS = attrgetter("ts")
_LATENCY = attrgetter("latency_ms")
_ATTEMPT = attrgetter("attempt")
_DECODE_ERRORS = (msgspec.DecodeError, ValueError)  # ValueError covers invalid UTF-8


class _ComboIds(dict):  # type: ignore[type-arg]
    """Raw (dimensions..., status, error_code) -> combo id; a miss registers the normalised combo."""

    def __init__(self, table: list[Combo]) -> None:
        super().__init__()
        self.table = table

    def __missing__(self, raw: tuple) -> int:  # type: ignore[type-arg]
        *dims, status, error = raw
        # Same normalisation as event_from_dict: a success has no code, a failure always has one.
        code = None if status == "success" else (error or "UNKNOWN")
        ident = len(self.table)
        self.table.append((*dims, code))
        self[raw] = ident
        return ident


def explain(line: bytes) -> str:
    """Why a line is not a valid event, in the reference validator's words (no values echoed)."""
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
    """Turns chunks of JSON Lines into EventBatches. One per source: it owns the combo table."""

    def __init__(self, report: ParseReport | None = None, keep_details: bool = True) -> None:
        self.report = report if report is not None else ParseReport()
        self.keep_details = keep_details
        self.combos: list[Combo] = []
        self._ids = _ComboIds(self.combos)
        self._decode = msgspec.json.Decoder(WireEvent).decode

    def parse(self, data: bytes, first_line_no: int = 1) -> EventBatch:
        """Complete lines (the last may lack its newline); `first_line_no` numbers the first."""
        lines = data.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        decode = self._decode
        try:
            rows = [decode(line) for line in lines if line]
        except _DECODE_ERRORS:
            rows = self._careful(lines, first_line_no)
        else:
            self.report.lines += len(rows)
        self.report.accepted += len(rows)
        return self.columns(rows)

    def _careful(self, lines: list[bytes], first_line_no: int) -> list[WireEvent]:
        rows = []
        decode, report = self._decode, self.report
        for offset, line in enumerate(lines):
            text = line.strip()
            if not text:
                continue  # blank lines are not records
            report.lines += 1
            try:
                rows.append(decode(text))
            except _DECODE_ERRORS:
                report.reject(first_line_no + offset, explain(text))
        return rows

    def columns(self, rows: list[WireEvent]) -> EventBatch:
        n = len(rows)
        return EventBatch(
            ts=np.fromiter(map(_TS, rows), np.float64, n),
            latency_ms=np.fromiter(map(_LATENCY, rows), np.float64, n),
            attempt=np.fromiter(map(_ATTEMPT, rows), np.int64, n),
            combo=np.fromiter(map(self._ids.__getitem__, map(_ROW_KEY, rows)), np.intp, n),
            combos=self.combos,
            details=ObjectDetails(rows) if self.keep_details else None,
        )
