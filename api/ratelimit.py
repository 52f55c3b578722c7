"""Token buckets per (endpoint group, API key), in process memory.

A bucket holds up to `burst` tokens and gains `per_second` of them continuously;
each request takes one, and a request that finds less than one is refused with
the seconds until the next token. Buckets live in the server process: several
server processes each enforce the limit on their own (put a shared limiter in
front of them if that matters). Only authenticated keys get buckets, so their
number is bounded by the key table.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .settings import Bucket


@dataclass
class _State:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, buckets: dict[str, Bucket], clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = dict(buckets)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], _State] = {}

    def take(self, group: str, client: str) -> float:
        """Take one token. Returns 0.0 when allowed, else the seconds to wait for the next token."""
        bucket = self._buckets[group]
        now = self._clock()
        with self._lock:
            state = self._state.get((group, client))
            if state is None:
                state = self._state[(group, client)] = _State(bucket.burst, now)
            state.tokens = min(bucket.burst, state.tokens + (now - state.at) * bucket.per_second)
            state.at = now
            if state.tokens >= 1.0:
                state.tokens -= 1.0
                return 0.0
            return (1.0 - state.tokens) / bucket.per_second


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up (HTTP's Retry-After has no fractions)."""
    return str(max(1, math.ceil(wait_s)))
