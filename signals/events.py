"""Payment events (CONTRACT.md §1): validation at the edge, then columnar batches.

A bad line never stops a run: it is skipped, counted and reported with its line
number. Names of banks, routes, methods... are data: every categorical column is
coded through a growing vocabulary, so new names may appear at any time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np
import orjson

from payops.errors import BadInput

# Categorical dimensions the agent can blame; order is the column order.
DIMENSIONS: tuple[str, ...] = (
    "method",
    "route",
    "bank",
    "issuer",
    "terminal_id",
    "merchant_id",
    "region",
)
REQUIRED_TEXT = ("payment_id", "method", "route", "bank", "issuer", "status")
OPTIONAL_TEXT = ("terminal_id", "merchant_id", "region", "palm_pay_id", "currency")
ABSENT = ""  # code 0 of every vocabulary: the dimension was not present on the event
# Largest attempt number accepted: an int32 column holds it, and no payment is retried 2^31 times.
MAX_ATTEMPT = 2**31 - 1


class EventError(BadInput, ValueError):
    """A line that breaks CONTRACT.md §1; the message names the field, never echoes values."""


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    ts: float
    payment_id: str
    method: str
    route: str
    bank: str
    issuer: str
    status: str
    latency_ms: float
    attempt: int = 1
    amount: float | None = None
    currency: str = "ZAR"
    error_code: str | None = None
    terminal_id: str | None = None
    merchant_id: str | None = None
    region: str | None = None
    palm_pay_id: str | None = None

    @property
    def success(self) -> bool:
        return self.status == "success"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": self.ts,
            "payment_id": self.payment_id,
            "attempt": self.attempt,
            "method": self.method,
            "route": self.route,
            "bank": self.bank,
            "issuer": self.issuer,
            "status": self.status,
            "error_code": self.error_code,
            "latency_ms": self.latency_ms,
        }
        if self.amount is not None:
            out["amount"] = self.amount
            out["currency"] = self.currency
        for name in ("terminal_id", "merchant_id", "region", "palm_pay_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


# A required field is never None (it raises instead): the overloads let the type checker see that.
@overload
def _number(raw: dict[str, Any], name: str, *, required: Literal[True], minimum: float | None = None) -> float: ...
@overload
def _number(raw: dict[str, Any], name: str, *, required: bool, minimum: float | None = None) -> float | None: ...
def _number(raw: dict[str, Any], name: str, *, required: bool, minimum: float | None = None) -> float | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise EventError(f"missing required field '{name}'")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError(f"field '{name}' must be a number")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise EventError(f"field '{name}' must be finite")
    if minimum is not None and value < minimum:
        raise EventError(f"field '{name}' must be >= {minimum:g}")
    return value


@overload
def _text(raw: dict[str, Any], name: str, *, required: Literal[True]) -> str: ...
@overload
def _text(raw: dict[str, Any], name: str, *, required: bool) -> str | None: ...
def _text(raw: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise EventError(f"missing required field '{name}'")
        return None
    if not isinstance(value, str) or not value:
        raise EventError(f"field '{name}' must be a non-empty string")
    return value


def event_from_dict(raw: Any) -> PaymentEvent:
    """Validate one decoded JSON object against CONTRACT.md §1. Unknown fields are ignored."""
    if not isinstance(raw, dict):
        raise EventError("line is not a JSON object")
    texts = {name: _text(raw, name, required=True) for name in REQUIRED_TEXT}
    status = texts["status"]
    if status not in ("success", "failure"):
        raise EventError("field 'status' must be 'success' or 'failure'")
    attempt_raw = raw.get("attempt", 1)
    if isinstance(attempt_raw, bool) or not isinstance(attempt_raw, int) or not 1 <= attempt_raw <= MAX_ATTEMPT:
        raise EventError(f"field 'attempt' must be an integer from 1 to {MAX_ATTEMPT}")
    error_code = raw.get("error_code")
    if error_code is not None and not isinstance(error_code, str):
        raise EventError("field 'error_code' must be a string or null")
    if status == "failure" and not error_code:
        error_code = "UNKNOWN"  # a failure without a code is still a failure; keep it visible
    if status == "success":
        error_code = None
    optional = {name: _text(raw, name, required=False) for name in OPTIONAL_TEXT}
    return PaymentEvent(
        ts=_number(raw, "ts", required=True, minimum=0.0),
        payment_id=texts["payment_id"],
        method=texts["method"],
        route=texts["route"],
        bank=texts["bank"],
        issuer=texts["issuer"],
        status=status,
        latency_ms=_number(raw, "latency_ms", required=True, minimum=0.0),
        attempt=attempt_raw,
        amount=_number(raw, "amount", required=False, minimum=0.0),
        currency=optional["currency"] or "ZAR",
        error_code=error_code,
        terminal_id=optional["terminal_id"],
        merchant_id=optional["merchant_id"],
        region=optional["region"],
        palm_pay_id=optional["palm_pay_id"],
    )


@dataclass(frozen=True, slots=True)
class BadLine:
    line_no: int
    reason: str


@dataclass
class ParseReport:
    """Data quality of one source: what was read, what was skipped and why.

    `bad` keeps the first `max_kept` reasons for an end-of-run summary (the rejects
    report, see `rejects_json`); `take_new` hands the lines rejected since its last
    call to the window's data-quality section (the count is always exact, the
    samples bounded). Events discarded as implausibly far ahead of the clock are
    counted apart (`ahead_of_clock`, `take_new_ahead`): they were valid lines.
    """

    lines: int = 0  # records seen (blank lines are not records)
    accepted: int = 0
    bad: list[BadLine] = field(default_factory=list)
    # Enough line numbers to find a systematic fault in a file (one writer's lines), few
    # enough that a file of nothing but bad lines keeps the report small (~50 KB).
    max_kept: int = 1000
    ahead_of_clock: int = 0
    _new_ahead: int = field(default=0, repr=False)

    bad_count: int = 0
    _new_count: int = field(default=0, repr=False)
    _new: list[BadLine] = field(default_factory=list, repr=False)

    def reject(self, line_no: int, reason: str) -> None:
        self.bad_count += 1
        self._new_count += 1
        sample = BadLine(line_no, reason)
        if len(self.bad) < self.max_kept:
            self.bad.append(sample)
        if len(self._new) < self.max_kept:
            self._new.append(sample)

    def reject_unsampled(self, count: int) -> None:
        """Count bad lines whose reasons were not kept (merging a worker's report)."""
        self.bad_count += count
        self._new_count += count

    def discard_ahead(self, count: int) -> None:
        """Count valid events discarded because their time is implausibly far ahead of the clock."""
        self.ahead_of_clock += count
        self._new_ahead += count

    def take_new_ahead(self) -> int:
        """Events discarded as ahead of the clock since the previous call."""
        out, self._new_ahead = self._new_ahead, 0
        return out

    def rejects_json(self) -> dict[str, object]:
        """The rejects report: every count, and the first `max_kept` bad lines with their reason."""
        return {"lines": self.lines, "accepted": self.accepted, "bad_count": self.bad_count,
                "ahead_of_clock": self.ahead_of_clock, "bad_kept": len(self.bad),
                "bad": [{"line": b.line_no, "reason": b.reason} for b in self.bad]}

    def take_new(self) -> tuple[int, tuple[BadLine, ...]]:
        """(count, first samples) of the lines rejected since the previous call."""
        out = (self._new_count, tuple(self._new))
        self._new_count, self._new = 0, []
        return out


def parse_line(line: bytes | str, line_no: int, report: ParseReport) -> PaymentEvent | None:
    report.lines += 1
    text = line.strip()
    if not text:
        report.lines -= 1  # blank lines are not records
        return None
    try:
        event = event_from_dict(orjson.loads(text))
    except orjson.JSONDecodeError:
        report.reject(line_no, "not valid JSON")
        return None
    except EventError as exc:
        report.reject(line_no, str(exc))
        return None
    report.accepted += 1
    return event


def parse_lines(lines: Iterable[bytes | str], report: ParseReport, start_line: int = 1) -> Iterator[PaymentEvent]:
    for offset, line in enumerate(lines):
        event = parse_line(line, start_line + offset, report)
        if event is not None:
            yield event


class Vocabulary:
    """Dictionary encoding of one categorical column; code 0 is 'absent'."""

    __slots__ = ("names", "codes")

    def __init__(self) -> None:
        self.names: list[str] = [ABSENT]
        self.codes: dict[str, int] = {ABSENT: 0}

    def code(self, name: str | None) -> int:
        if name is None:
            return 0
        found = self.codes.get(name)
        if found is None:
            found = len(self.names)
            self.codes[name] = found
            self.names.append(name)
        return found

    def __len__(self) -> int:
        return len(self.names)


# Latency is kept as a log-spaced bucket per event so per-segment quantiles are
# one bincount (O(n)) instead of a sort per segment. 1.08x bucket width bounds
# the relative error of a quantile at ~4%, far below what an operator acts on.
LATENCY_BUCKET_GROWTH = 1.08
LATENCY_BUCKET_MIN_MS = 1.0
LATENCY_BUCKETS = 160  # covers 1 ms .. ~220 s; larger values land in the last bucket
_LOG_GROWTH = float(np.log(LATENCY_BUCKET_GROWTH))
BUCKET_UPPER_MS = LATENCY_BUCKET_MIN_MS * LATENCY_BUCKET_GROWTH ** np.arange(1, LATENCY_BUCKETS + 1)
BUCKET_MID_MS = np.sqrt(BUCKET_UPPER_MS * (BUCKET_UPPER_MS / LATENCY_BUCKET_GROWTH))
BUCKET_MID_MS[0] = LATENCY_BUCKET_MIN_MS / 2.0 * (1 + LATENCY_BUCKET_GROWTH)


def latency_bucket(latency_ms: np.ndarray) -> np.ndarray:
    scaled = np.maximum(latency_ms, LATENCY_BUCKET_MIN_MS) / LATENCY_BUCKET_MIN_MS
    idx = np.floor(np.log(scaled) / _LOG_GROWTH).astype(np.int16)
    bucket: np.ndarray = np.clip(idx, 0, LATENCY_BUCKETS - 1)
    return bucket
