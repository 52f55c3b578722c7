"""Sources of payment events: the simulator, a JSONL file, stdin.

Every source hands out events in time order up to a requested instant, as a
columnar EventBatch (iterable as PaymentEvents for callers that want objects);
the agent drives the clock. Bad lines are skipped and reported through `report`
(`report.take_new()` gives the ones since the last call, with line numbers).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from .batch import EventBatch, concat
from .events import ParseReport
from .jsonl import JsonlParser
from .simulator import Simulator

# Bytes read per call. Big enough that per-call overhead vanishes, small enough
# that a live pipe is not held back: `read1` returns whatever is there already.
CHUNK_BYTES = 1 << 20


class SourceError(Exception):
    """The source cannot be read at all (missing file, permission)."""


class Source(Protocol):
    report: ParseReport

    def first_ts(self) -> float | None:
        """Event time the run starts at, or None if there are no events."""

    def read_until(self, end_ts: float) -> EventBatch:
        """Events not handed out yet, up to end_ts (exclusive). Live sources may block for them."""

    @property
    def exhausted(self) -> bool:
        """True when no event will ever come again."""


class SimulatorSource:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.report = ParseReport()

    def first_ts(self) -> float | None:
        return self.simulator.now

    def read_until(self, end_ts: float) -> EventBatch:
        batch = self.simulator.advance_sorted(end_ts)
        self.report.lines += len(batch)
        self.report.accepted += len(batch)
        return batch

    def skip_to(self, ts: float) -> None:
        """Resume after a restart: the simulated clock continues where the thread stopped."""
        if ts > self.simulator.now:
            self.simulator.now = ts

    @property
    def exhausted(self) -> bool:
        return False


class LineSource:
    """Events from a stream of JSON lines in file order (a file, or stdin for `tail -f`).

    Reads in chunks and parses each into columns. `read_until(end)` hands out the
    events before the first one (in file order) at or after `end`, exactly as a
    line-by-line reader would: a later line with an earlier time is handed out on
    the next call, where the window counts it as late.
    """

    def __init__(self, stream: IO[bytes], name: str = "<stream>", chunk_bytes: int = CHUNK_BYTES) -> None:
        self.name = name
        self.report = ParseReport()
        self._parser = JsonlParser(self.report)
        self._stream = stream
        self._read = getattr(stream, "read1", None) or stream.read
        self._chunk_bytes = chunk_bytes
        self._tail = b""  # an incomplete last line, waiting for the rest
        self._next_line_no = 1
        self._pending: list[EventBatch] = []
        self._eof = False

    def _fill(self) -> bool:
        """Parse the next chunk into pending; False at end of stream."""
        if self._eof:
            return False
        chunk = self._read(self._chunk_bytes)
        if not chunk:
            self._eof = True
            data, self._tail = self._tail, b""
        else:
            data = self._tail + chunk
            cut = data.rfind(b"\n") + 1
            data, self._tail = data[:cut], data[cut:]
            if not data:
                return True  # no complete line yet
        first = self._next_line_no
        self._next_line_no += data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        batch = self._parser.parse(data, first)
        if len(batch):
            self._pending.append(batch)
        return True

    def first_ts(self) -> float | None:
        while not self._pending and self._fill():
            pass
        return float(self._pending[0].ts[0]) if self._pending else None

    def read_until(self, end_ts: float) -> EventBatch:
        out: list[EventBatch] = []
        while True:
            while self._pending:
                batch = self._pending[0]
                later = np.flatnonzero(batch.ts >= end_ts)
                if later.size:
                    cut = int(later[0])
                    out.append(batch.take(slice(0, cut)))
                    self._pending[0] = batch.take(slice(cut, None))
                    return concat(out)
                out.append(self._pending.pop(0))
            if not self._fill():
                return concat(out)

    @property
    def exhausted(self) -> bool:
        return self._eof and not self._pending

    def close(self) -> None:
        if self._stream is not sys.stdin.buffer:
            self._stream.close()


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
