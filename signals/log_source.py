"""What every log-like source shares: events in arrival order, handed out as `LineSource` does, in groups.

A group is what one read of the log returned (a fetch of messages, a page of table rows): its events,
its position in the log, and its latest event time. A group moves to "done" once it has been handed
to the window in full; `passed(next_window_start)` pops the done groups no open window needs any
more, in log order, so that a source acknowledges (NATS) or saves its cursor (palm-pay table) only
up to a point a restarted worker can safely resume from.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batch import EventBatch, concat
from .events import ParseReport
from .jsonl import JsonlParser
from .sources import DEFAULT_MAX_SKEW_SECONDS, clock_start, split_at_end


@dataclass
class Group:
    batch: EventBatch
    position: int  # the log's own position of the group's last item (stream sequence, row id); -1: none
    token: Any  # what the source needs to acknowledge it (a message), or None
    max_ts: float
    # Per message, for a log that deduplicates by sequence (NATS): each message's sequence, and the
    # events of the group up to the end of each (cumulative, rows of the batch as parsed). None: the
    # group's events were handed out once already (restored after a restart) or the log has no messages.
    seqs: np.ndarray | None = None
    ends: np.ndarray | None = None
    size: int = 0  # events of the batch as parsed: `size - len(batch)` of them have been handed out
    first_offset: int = 0  # events of the first message handed out before this group (by a dead worker)

    def handed_frontier(self) -> tuple[int, int] | None:
        """(sequence, events of it handed out) of the first message not handed out in full; None: all were."""
        if self.seqs is None or self.ends is None:
            return None
        taken = self.size - len(self.batch)
        i = int(np.searchsorted(self.ends, taken, side="right"))  # messages [0, i) are handed out in full
        if i == len(self.seqs):
            return None
        before = int(self.ends[i - 1]) if i else 0
        return int(self.seqs[i]), taken - before + (self.first_offset if i == 0 else 0)


class LogSource:
    """Subclasses implement `_fill(end_ts) -> bool`: add one group with `_add_group`, or say there is none now."""

    ordered = False  # a live log: windows wait for the allowed lateness

    def __init__(self, name: str) -> None:
        self.name = name
        self.max_skew_seconds = DEFAULT_MAX_SKEW_SECONDS
        self.report = ParseReport()
        self._parser = JsonlParser(self.report)
        self._next_line_no = 1
        self._pending: deque[Group] = deque()  # read, not yet handed out in full
        self._done: deque[Group] = deque()  # handed out in full, not yet passed by the windows
        self._eof = False
        self.duplicates = 0  # a log that deduplicates by sequence (NATS) counts what it drops here

    def _fill(self, end_ts: float) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _add_group(self, data: bytes, position: int, token: Any = None) -> Group:
        batch = self._parser.parse(data, self._next_line_no)
        self._next_line_no += self._parser.line_count
        return self._add_batch(batch, position, token)

    def _add_batch(self, batch: EventBatch, position: int, token: Any = None) -> Group:
        max_ts = float(batch.ts.max()) if len(batch) else float("-inf")
        group = Group(batch, position, token, max_ts, size=len(batch))
        self._pending.append(group)  # an all-bad group too: passed in log order
        return group

    def first_ts(self) -> float | None:
        """Where the clock starts: as LineSource's (the earliest time most of the first events agree
        with, so an outlier on the first record does not set it), over what the log has now."""
        while self._first_valid() is None and self._fill(float("inf")):
            pass
        if self._first_valid() is None:
            return None
        return clock_start(np.concatenate([g.batch.ts for g in self._pending]), self.max_skew_seconds)

    def _first_valid(self) -> float | None:
        for group in self._pending:
            if len(group.batch):
                return float(group.batch.ts[0])
        return None

    def read_until(self, end_ts: float) -> EventBatch:
        """Events in log order before the first one at or after end_ts (exactly as LineSource, which
        also counts and discards the events max_skew_seconds past end_ts met on the way)."""
        out: list[EventBatch] = []
        while True:
            while self._pending:
                group = self._pending[0]
                discarded = self.report.ahead_of_clock
                head, rest = split_at_end(group.batch, end_ts, self.max_skew_seconds, self.report)
                if self.report.ahead_of_clock != discarded:
                    # An outlier went: the group is passed (acknowledged) by what it really held,
                    # the events handed out (all before end_ts) and the rest.
                    group.max_ts = max(end_ts, float(rest.ts.max()) if rest is not None and len(rest) else end_ts)
                out.append(head)
                if rest is not None:
                    group.batch = rest
                    return concat(out)
                self._done.append(self._pending.popleft())
            if not self._fill(end_ts):
                return concat(out)

    def skip_to(self, ts: float, read_to: float | None = None, *, position: Any = None) -> None:
        """Resume after a restart, as `LineSource.skip_to`: read again what the earlier process had read
        (up to `read_to`, in log order) and keep only the events at or after `ts`, for the windows still
        to decide. The log hands a successor everything from its ack floor (cursor), which holds events
        of windows already decided; without this they would reach the window a second time, as late.

        The kept events go back as a group with no position of its own: the groups they came from stay
        in "done" with their full time span, so none is acknowledged before the windows pass it.
        """
        batch = self.read_until(ts if read_to is None else max(ts, read_to))
        keep = np.flatnonzero(batch.ts >= ts)
        if len(keep):
            self._pending.appendleft(Group(batch.take(keep), -1, None, float("-inf")))

    def position(self) -> dict[str, Any] | None:
        """What a tick's checkpoint records of this source (see NatsSource.position); None: nothing."""
        return None

    @property
    def exhausted(self) -> bool:
        return self._eof and not self._pending

    def passed(self, next_window_start: float) -> Group | None:
        """Pop the done groups whose events are all before the next window; the last of them with a
        position in the log (or None)."""
        last = None
        while self._done and self._done[0].max_ts < next_window_start:
            group = self._done.popleft()
            if group.position >= 0:
                last = group
        return last
