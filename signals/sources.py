"""Sources of payment events: the simulator, a JSONL file, stdin.

Every source hands out events in time order up to a requested instant; the agent
drives the clock. Bad lines are skipped and reported through `report`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Iterator, Protocol

from .events import ParseReport, PaymentEvent, parse_line
from .simulator import Simulator


class SourceError(Exception):
    """The source cannot be read at all (missing file, permission)."""


class Source(Protocol):
    report: ParseReport

    def first_ts(self) -> float | None:
        """Event time the run starts at, or None if there are no events."""

    def read_until(self, end_ts: float) -> list[PaymentEvent]:
        """Events with ts < end_ts not handed out yet. Live sources may block for them."""

    @property
    def exhausted(self) -> bool:
        """True when no event will ever come again."""


class SimulatorSource:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.report = ParseReport()

    def first_ts(self) -> float | None:
        return self.simulator.now

    def read_until(self, end_ts: float) -> list[PaymentEvent]:
        if end_ts <= self.simulator.now:
            return []
        events = self.simulator.advance(end_ts)
        self.report.lines += len(events)
        self.report.accepted += len(events)
        return events

    def skip_to(self, ts: float) -> None:
        """Resume after a restart: the simulated clock continues where the thread stopped."""
        if ts > self.simulator.now:
            self.simulator.now = ts

    @property
    def exhausted(self) -> bool:
        return False


class LineSource:
    """Events from a stream of JSON lines in ts order (a file, or stdin for `tail -f`)."""

    def __init__(self, stream: IO[bytes], name: str = "<stream>") -> None:
        self.name = name
        self.report = ParseReport()
        self._lines: Iterator[bytes] = iter(stream)
        self._line_no = 0
        self._pending: PaymentEvent | None = None
        self._done = False

    def _next_event(self) -> PaymentEvent | None:
        for line in self._lines:
            self._line_no += 1
            event = parse_line(line, self._line_no, self.report)
            if event is not None:
                return event
        self._done = True
        return None

    def first_ts(self) -> float | None:
        if self._pending is None and not self._done:
            self._pending = self._next_event()
        return self._pending.ts if self._pending else None

    def read_until(self, end_ts: float) -> list[PaymentEvent]:
        out: list[PaymentEvent] = []
        if self._pending is None and not self._done:
            self._pending = self._next_event()
        while self._pending is not None and self._pending.ts < end_ts:
            out.append(self._pending)
            self._pending = self._next_event()
        return out

    @property
    def exhausted(self) -> bool:
        return self._done and self._pending is None


def open_jsonl(path: str | Path) -> LineSource:
    """A file source; '-' is stdin. Raises SourceError with a one-line reason."""
    if str(path) == "-":
        return LineSource(sys.stdin.buffer, "<stdin>")
    p = Path(path)
    try:
        stream = p.open("rb")
    except FileNotFoundError:
        raise SourceError(f"no such file: {p}") from None
    except IsADirectoryError:
        raise SourceError(f"is a directory, not an event file: {p}") from None
    except PermissionError:
        raise SourceError(f"permission denied: {p}") from None
    except OSError as exc:
        raise SourceError(f"cannot read {p}: {exc.strerror}") from None
    return LineSource(stream, str(p))
