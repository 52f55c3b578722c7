"""Time is injected: every component asks a Clock, so tests control midnight and DST."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], "datetime | float"]
"""A callable returning the current time: a timezone-aware datetime or epoch seconds."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def clock_epoch(clock: Clock) -> float:
    """Epoch seconds from either kind of clock; a naive datetime is refused (its zone is a guess)."""
    now = clock()
    if isinstance(now, datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the clock returned a naive datetime; palm-pay needs timezone-aware times")
        return now.timestamp()
    return float(now)


class ManualClock:
    """A clock that moves only when told to (tests, demos, replays)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now = self._now + step
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware times")
        with self._lock:
            self._now = when
