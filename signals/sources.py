"""Sources of payment events: the simulator, a JSONL file, stdin.

Every source hands out events in time order up to a requested instant, as a
columnar EventBatch (iterable as PaymentEvents for callers that want objects);
the agent drives the clock. Bad lines are skipped and reported through `report`
(`report.take_new()` gives the ones since the last call, with line numbers).
A big file is parsed by worker processes (parse_pool.py); `open_jsonl` decides when.
"""

from __future__ import annotations

import gzip
import io
import logging
import multiprocessing
import os
import stat
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, cast

import numpy as np

from payops.errors import Unavailable

from . import parse_pool
from .batch import EventBatch, concat
from .events import BadLine, ParseReport
from .jsonl import JsonlParser, batch_from_range
from .parse_pool import ParallelChunks, WorkersFailed
from .simulator import Simulator

# Bytes read per call. Big enough that per-call overhead vanishes, small enough
# that a live pipe is not held back: `read1` returns whatever is there already.
CHUNK_BYTES = 1 << 20
# A file at least this big is parsed by worker processes on the other cores while
# this one runs the agent: for a replay, parsing is most of the work. Below it the
# fork is not worth it.
PARALLEL_MIN_BYTES = 32 << 20
MAX_PARSE_WORKERS = 2  # the machines this runs on have 2 cores
# An event this far ahead of the clock is a broken clock (milliseconds taken for
# seconds, a wrong year), not a delay: it is counted and discarded. Never waiting
# for it is what keeps one such line from stalling a run (ticks would walk to it);
# ten minutes is far beyond any collector's delay, and it bounds what the ring holds
# ahead of the clock. The agent's setting (max_clock_skew_seconds) overrides it.
DEFAULT_MAX_SKEW_SECONDS = 600.0
# Past the skew, events that agree with each other are a feed resuming after a silence, and the clock
# walks to them; this far ahead they are a broken clock however many agree (a wrong year, milliseconds
# taken for seconds): a day of quiet windows is the most a run will walk through.
MAX_GAP_SECONDS = 86_400.0
# The clock starts at the earliest of the first events that most of them agree with
# (within the skew): one outlier on line 1 must not set it.
FIRST_TS_SAMPLE = 1000


_log = logging.getLogger(__name__)


class SourceError(Unavailable):
    """The source cannot be read at all (missing file, permission)."""


SourcePosition = dict[str, Any]  # what a tick's checkpoint records of its source (JSON; see NatsSource.position)


class SourceReport(Protocol):
    """What a source reports of the records it could not use (a ParseReport, or several as one)."""

    @property
    def lines(self) -> int: ...

    @property
    def accepted(self) -> int: ...

    @property
    def bad_count(self) -> int: ...

    @property
    def ahead_of_clock(self) -> int: ...

    @property
    def bad(self) -> list[BadLine]:
        """The first rejected records kept, with their line numbers and reasons."""
        ...

    def take_new(self) -> tuple[int, tuple[BadLine, ...]]:
        """(count, first samples) of the records rejected since the previous call."""
        ...

    def take_new_ahead(self) -> int:
        """Events discarded as implausibly far ahead of the clock since the previous call."""
        ...


class Source(Protocol):
    """What the agent asks of an event source. Every source implements every member: where one means
    nothing for a source (a file has no lag and acknowledges nothing), it is a no-op or answers None,
    so the runner calls each one directly. A new source (Kafka) implements these and passes
    tests/signals/test_signals_source_contract.py."""

    @property
    def report(self) -> SourceReport:
        """Records the source could not use (bad lines, events far ahead of the clock)."""
        ...

    # True when events come in time order (the simulator): a window can be decided as soon
    # as the clock reaches its end, with no allowed lateness to wait for.
    ordered: bool
    # Messages redelivered after a restart and dropped as already counted (by stream sequence) since this
    # source was opened; 0 for a source nothing is redelivered from. Shown, never dropped in silence.
    duplicates: int

    def first_ts(self) -> float | None:
        """Event time the run starts at, or None if there are no events."""

    def read_until(self, end_ts: float) -> EventBatch:
        """Events not handed out yet, up to end_ts (exclusive). Live sources may block for them."""

    @property
    def exhausted(self) -> bool:
        """True when no event will ever come again."""

    def skip_to(self, ts: float, read_to: float | None = None, *, position: SourcePosition | None = None) -> None:
        """Resume after a restart, before the first read: the windows from `ts` on are still to decide, the
        earlier process read up to `read_to` and its last checkpoint recorded `position()`."""

    def position(self) -> SourcePosition | None:
        """What this tick's checkpoint records so that a successor counts nothing twice; None: nothing."""

    def commit(self, next_window_start: float) -> int | None:
        """The tick is checkpointed: acknowledge (save a cursor for) what no window from here on needs;
        the new ack floor (cursor), or None for a source with nothing to acknowledge."""

    def lag(self) -> int | None:
        """Events (messages, rows) on the log not read yet; None for a source without a log."""

    def close(self) -> None:
        """Release what the source holds (a connection, worker processes, a file)."""


def clock_start(ts: np.ndarray, max_skew_seconds: float) -> float:
    """The earliest of the first FIRST_TS_SAMPLE times that at least half of them agree with
    (within the skew): the first event's time for an ordinary stream, never an outlier's."""
    ts = np.sort(ts[:FIRST_TS_SAMPLE])
    agree = np.searchsorted(ts, ts + max_skew_seconds, side="right") - np.arange(len(ts))
    wanted = min((len(ts) + 1) // 2, int(agree.max()))  # a sample spread wider than the skew: its densest stretch
    return float(ts[int(np.argmax(agree >= wanted))])


def split_at_end(batch: EventBatch, end_ts: float, max_skew_seconds: float,
                 report: ParseReport) -> tuple[EventBatch, EventBatch | None]:
    """(events before the first at or after end_ts, the rest from it on or None if there is none).

    An event max_skew_seconds or more past end_ts is a broken clock when it stands alone (the next
    event is back near the clock) or when it is more than MAX_GAP_SECONDS ahead: counted in `report`
    and left out. Two or more in a row that agree with each other are the feed resuming after a
    silence (a collector down, a quiet night): the run stops there and the clock walks to them, tick
    by tick, as it would through any quiet stretch. One at the very end of what has been read cannot
    be told apart yet: it waits too, bounded by MAX_GAP_SECONDS.
    """
    ts = batch.ts
    ahead_from = end_ts + max_skew_seconds
    later = np.flatnonzero(ts >= end_ts)
    if not later.size:  # the whole batch is before the end: nothing can be ahead of it
        return batch, None
    first = int(later[0])
    if ts[first] < ahead_from:  # the usual tick: the first later event is near the clock and is the cut
        return batch.take(slice(0, first)), batch.take(slice(first, None))
    far = ts >= ahead_from
    plausible = far & (ts < end_ts + MAX_GAP_SECONDS)
    resumes = np.zeros(len(ts), dtype=bool)
    if len(ts):
        nxt = np.append(ts[1:], np.nan)
        resumes[:-1] = plausible[:-1] & (nxt[:-1] >= ahead_from) & (np.abs(nxt[:-1] - ts[:-1]) < max_skew_seconds)
        resumes[-1] = plausible[-1]
    stop = np.flatnonzero(((ts >= end_ts) & ~far) | resumes)
    cut = int(stop[0]) if stop.size else len(ts)
    head = batch if cut == len(ts) else batch.take(slice(0, cut))
    ahead = head.ts >= ahead_from
    if ahead.any():
        report.discard_ahead(int(np.count_nonzero(ahead)))
        head = head.take(np.flatnonzero(~ahead))
    return head, (batch.take(slice(cut, None)) if stop.size else None)


class SimulatorSource:
    ordered = True
    duplicates = 0  # nothing is redelivered

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

    def skip_to(self, ts: float, read_to: float | None = None, *, position: SourcePosition | None = None) -> None:
        """Resume after a restart: the simulated clock continues where the thread stopped."""
        if ts > self.simulator.now:
            self.simulator.now = ts

    @property
    def exhausted(self) -> bool:
        return False

    def position(self) -> None:
        return None  # the simulator is regenerated, not re-read: nothing to record

    def commit(self, next_window_start: float) -> None:
        pass  # nothing to acknowledge

    def lag(self) -> None:
        return None  # no log to fall behind on

    def close(self) -> None:
        pass


class LineSource:
    """Events from a stream of JSON lines in file order (a file, or stdin for `tail -f`).

    Reads in chunks and parses each into columns. `read_until(end)` hands out the
    events before the first one (in file order) at or after `end`, exactly as a
    line-by-line reader would: a later line with an earlier time is handed out on
    the next call, where the window counts it as late.
    """

    ordered = False
    duplicates = 0  # a file or a pipe is read once: nothing is redelivered

    def __init__(self, stream: IO[bytes], name: str = "<stream>", chunk_bytes: int = CHUNK_BYTES,
                 workers: ParallelChunks | None = None, max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS) -> None:
        self.name = name
        self.max_skew_seconds = max_skew_seconds
        self.report = ParseReport()
        self._parser = JsonlParser(self.report)
        self._stream = stream
        self._read = getattr(stream, "read1", None) or stream.read
        self._chunk_bytes = chunk_bytes
        self._workers = workers
        self._tail = b""  # an incomplete last line, waiting for the rest
        self._next_line_no = 1
        self._pending: list[EventBatch] = []
        self._eof = False
        # A pipe or terminal (`tail -f | payops run --source -`): never wait for more lines than needed.
        self._live = workers is None and not _regular_file(stream)

    def _fill_from_workers(self, workers: ParallelChunks) -> bool:
        try:
            parsed = workers.next()
        except WorkersFailed as failed:
            # Parse the rest here: slower, never stuck. Chunks come back in file order, so
            # the file is whole from the first one not handed back.
            _log.warning("payops: parse workers failed (%s); parsing %s in this process instead",
                         " ".join(str(failed).split())[:200], self.name)  # one line, whatever the error said
            self._workers = None
            self._stream.seek(failed.resume_at)
            return self._fill()
        if parsed is None:
            self._eof = True
            return False
        batch, (line_count, lines, accepted, bad_count, bad) = batch_from_range(parsed)
        report, first = self.report, self._next_line_no
        report.lines += lines
        report.accepted += accepted
        for line_no, reason in bad:
            report.reject(first + line_no - 1, reason)
        report.reject_unsampled(bad_count - len(bad))
        self._next_line_no += line_count
        if len(batch):
            self._pending.append(batch)
        return True

    def _fill(self) -> bool:
        """Parse the next chunk into pending; False at end of stream."""
        if self._eof:
            return False
        if self._workers is not None:
            return self._fill_from_workers(self._workers)
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
        batch = self._parser.parse(data, self._next_line_no)
        self._next_line_no += self._parser.line_count
        if len(batch):
            self._pending.append(batch)
        return True

    def first_ts(self) -> float | None:
        """The earliest time most of the first FIRST_TS_SAMPLE events agree with.

        The smallest t among them with at least half of them in [t, t + max skew]: the
        first event's time for an ordinary file, never an outlier's (ts=1e12 or 0 on line 1).
        """
        while ((not self._pending or (not self._live and sum(map(len, self._pending)) < FIRST_TS_SAMPLE))
               and self._fill()):
            pass  # a live stream: the first lines there are (waiting for a sample could wait for ever)
        if not self._pending:
            return None
        return clock_start(np.concatenate([b.ts for b in self._pending]), self.max_skew_seconds)

    def read_until(self, end_ts: float) -> EventBatch:
        """Events in file order before the first one at or after `end_ts`.

        Events max_skew_seconds or more past `end_ts` met on the way are counted in the
        report (`ahead_of_clock`) and discarded: waiting for them could stall the run.
        """
        out: list[EventBatch] = []
        while True:
            while self._pending:
                head, rest = split_at_end(self._pending[0], end_ts, self.max_skew_seconds, self.report)
                out.append(head)
                if rest is not None:
                    self._pending[0] = rest
                    return concat(out)
                self._pending.pop(0)
            if not self._fill():
                return concat(out)

    def skip_to(self, ts: float, read_to: float | None = None, *, position: SourcePosition | None = None) -> None:
        """Resume after a restart: read what an earlier process read (up to `read_to`, in file order)
        again, keeping only the events at or after `ts` (for the windows still to decide)."""
        batch = self.read_until(ts if read_to is None else max(ts, read_to))
        keep = np.flatnonzero(batch.ts >= ts)
        if len(keep):
            self._pending.insert(0, batch.take(keep))

    @property
    def exhausted(self) -> bool:
        return self._eof and not self._pending

    def position(self) -> None:
        return None  # a file is read again from its start: nothing to record

    def commit(self, next_window_start: float) -> None:
        pass  # nothing to acknowledge

    def lag(self) -> None:
        return None  # a file or a pipe has no log to fall behind on

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        if self._stream is not getattr(sys.stdin, "buffer", None):
            self._stream.close()


def _regular_file(stream: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no file descriptor (an in-memory stream): all there already
        return not hasattr(stream, "fileno") or isinstance(stream, io.BytesIO)


def parse_workers(size: int) -> int:
    """Worker processes worth using for a file of `size` bytes (0: parse in this process)."""
    # Read through the module: a test or benchmark that sets parse_pool.PARSE_START_METHOD is obeyed here too.
    if size < PARALLEL_MIN_BYTES or parse_pool.PARSE_START_METHOD not in multiprocessing.get_all_start_methods():
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return min(cores, MAX_PARSE_WORKERS) if cores > 1 else 0


GZIP_MAGIC = b"\x1f\x8b"


def open_jsonl(path: str | Path, workers: int | None = None,
               max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS) -> LineSource:
    """A file source, plain or gzip-compressed (told by its first bytes); '-' is stdin. Raises
    SourceError with a one-line reason.

    `workers`: processes parsing a big file on other cores (None: decide by size and cores; 0: none).
    """
    if str(path) == "-":
        return LineSource(_stdin_bytes(), "<stdin>", max_skew_seconds=max_skew_seconds)
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
    if p.is_file():
        if stream.read(2) == GZIP_MAGIC:  # a compressed file (events.jsonl.gz): read through, one process
            stream.seek(0)
            unpacked = cast(IO[bytes], _Gunzipped(stream, p))  # a BufferedIOBase: the read1/read/fileno used
            return LineSource(unpacked, str(p), max_skew_seconds=max_skew_seconds)
        stream.seek(0)
    size = os.fstat(stream.fileno()).st_size
    count = parse_workers(size) if workers is None else workers
    if count > 0 and p.is_file():
        return LineSource(stream, str(p), workers=ParallelChunks(str(p), size, count),
                          max_skew_seconds=max_skew_seconds)
    return LineSource(stream, str(p), max_skew_seconds=max_skew_seconds)


class _Gunzipped(gzip.GzipFile):
    """A gzip file whose damage (truncated, not gzip after all) is a SourceError with a one-line reason:
    an EOFError would reach the command line as click's bare "Aborted."."""

    def __init__(self, raw: IO[bytes], path: Path) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._path = path

    def read1(self, size: int = -1) -> bytes:
        return self._checked(super().read1, size)

    def read(self, size: int | None = -1) -> bytes:
        return self._checked(super().read, size)

    def _checked(self, read: Callable[[Any], bytes], size: Any) -> bytes:
        try:
            return read(size)
        except (EOFError, OSError, zlib.error) as exc:
            reason = "ends early (truncated?)" if isinstance(exc, EOFError) else "is damaged"
            raise SourceError(f"compressed event file {reason}: {self._path}") from None


def _stdin_bytes() -> IO[bytes]:
    """stdin as bytes; SourceError when there is none (closed: `payops run --source - <&-`)."""
    stream: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise SourceError("stdin is closed: nothing to read events from (use a file, or pipe events in)")
    try:
        os.fstat(stream.fileno())
    except (OSError, ValueError):
        raise SourceError("stdin is closed: nothing to read events from (use a file, or pipe events in)") from None
    return stream
