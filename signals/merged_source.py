"""Several sources as one (`--source palm --source nats://...`), merged by event time.

Each tick asks every source for its events up to the window's end and hands them out together,
stably sorted by time; acknowledgements and cursors go to each source in turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .batch import EventBatch, concat
from .events import BadLine
from .sources import Source, SourcePosition, SourceReport


class MergedSource:
    ordered = False  # a live log or a file among them: windows wait for the allowed lateness

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self.name = " + ".join(getattr(s, "name", type(s).__name__) for s in self.sources)
        self.report = _MergedReport([s.report for s in self.sources])  # a SourceReport

    def first_ts(self) -> float | None:
        firsts = [t for t in (s.first_ts() for s in self.sources) if t is not None]
        return min(firsts) if firsts else None

    def read_until(self, end_ts: float) -> EventBatch:
        batch = concat([s.read_until(end_ts) for s in self.sources])
        if len(batch) > 1:
            batch = batch.take(np.argsort(batch.ts, kind="stable"))
        return batch

    def skip_to(self, ts: float, read_to: float | None = None, *, position: SourcePosition | None = None) -> None:
        """Resume after a restart: every source re-reads what the earlier process had read from it (up to
        `read_to`) and keeps only the events at or after `ts` (see `LineSource.skip_to`), each with the
        position the checkpoint recorded for it."""
        positions = (position or {}).get("sources") or []
        if len(positions) != len(self.sources):  # recorded for other sources (the command line changed): by time
            positions = [None] * len(self.sources)
        for s, p in zip(self.sources, positions, strict=True):
            s.skip_to(ts, read_to, position=p)

    def position(self) -> SourcePosition | None:
        positions = [s.position() for s in self.sources]
        return {"sources": positions} if any(p is not None for p in positions) else None

    @property
    def exhausted(self) -> bool:
        return all(s.exhausted for s in self.sources)

    def commit(self, next_window_start: float) -> None:
        for s in self.sources:
            s.commit(next_window_start)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.sources)

    def lag(self) -> int | None:
        lags = [lag for lag in (s.lag() for s in self.sources) if lag is not None]
        return sum(lags) if lags else None

    def close(self) -> None:
        for s in self.sources:
            s.close()


class _MergedReport:
    """Bad lines of every source, as one report (line numbers are each source's own)."""

    def __init__(self, reports: list[SourceReport]) -> None:
        self._reports = reports

    @property
    def lines(self) -> int:
        return sum(r.lines for r in self._reports)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self._reports)

    @property
    def bad_count(self) -> int:
        return sum(r.bad_count for r in self._reports)

    @property
    def bad(self) -> list[BadLine]:
        return [b for r in self._reports for b in r.bad]

    @property
    def ahead_of_clock(self) -> int:
        return sum(r.ahead_of_clock for r in self._reports)

    def take_new_ahead(self) -> int:
        return sum(r.take_new_ahead() for r in self._reports)

    def take_new(self) -> tuple[int, tuple[BadLine, ...]]:
        count, samples = 0, list[BadLine]()
        for r in self._reports:
            c, s = r.take_new()
            count += c
            samples.extend(s)
        return count, tuple(samples)
