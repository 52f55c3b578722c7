"""The palm-pay backend's own payments as an event source (`--source palm`).

The backend writes a CONTRACT §1 event per payment attempt to its `payment_events` table; this source
reads that table in id (arrival) order through an injected reader, so signals imports nothing of
palm-pay. The cursor is checkpointed: `commit(next_window_start)`, called after each tick's
checkpoint, saves the position up to which no open window needs the rows (through an injected
saver: the agent's store, SQLite or PostgreSQL), and a restarted worker resumes there, rebuilding
its window from the table. Payments are written when they happen, so the wall clock is the table's
watermark: once it is `grace` seconds past a window's end, no event for that window can still come.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from .log_source import LogSource

ROWS_PER_READ = 2_000
POLL_SECONDS = 0.25
GRACE_SECONDS = 2.0  # a payment committed this long after its own time is counted late, not waited for

Reader = Callable[[int, int], Sequence[tuple[int, dict[str, Any]]]]  # (after id, limit) -> [(id, event)]


class PalmSource(LogSource):
    def __init__(self, read_after: Reader, *, count_after: Callable[[int], int] | None = None, start_after: int = 0,
                 save_cursor: Callable[[int], None] | None = None,
                 follow: bool = True, clock: Callable[[], float] = time.time, grace: float = GRACE_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__("palm-pay payment_events")
        self._read_after = read_after
        self._count_after = count_after
        self._cursor = start_after  # last row read
        self.saved_cursor = start_after  # last row no open window needs
        self._save = save_cursor
        self._follow = follow
        self._clock = clock
        self._grace = grace
        self._sleep = sleep

    def _fill(self, end_ts: float) -> bool:
        while True:
            rows = self._read_after(self._cursor, ROWS_PER_READ)
            if rows:
                self._cursor = int(rows[-1][0])
                self._add_group(b"".join(orjson.dumps(event) + b"\n" for _, event in rows), self._cursor)
                return True
            if not self._follow:
                self._eof = True
                return False
            if end_ts == float("inf") or self._clock() >= end_ts + self._grace:
                return False  # caught up: nothing for this window can still arrive
            self._sleep(POLL_SECONDS)

    def resume(self, after_id: int, save_cursor: Callable[[int], None] | None) -> None:
        """Start after a checkpointed cursor (before the first read)."""
        self._cursor = self.saved_cursor = after_id
        self._save = save_cursor

    def commit(self, next_window_start: float) -> int:
        last = self.passed(next_window_start)
        if last is not None:
            self.saved_cursor = last.position
            if self._save is not None:
                self._save(self.saved_cursor)
        return self.saved_cursor

    def lag(self) -> int:
        """Rows written but not read yet (counted by the table when it can; else at most one read's worth)."""
        if self._count_after is not None:
            return self._count_after(self._cursor)
        return len(self._read_after(self._cursor, ROWS_PER_READ))

    def close(self) -> None:
        pass
