"""A plain, obviously-correct window aggregation: one Python dict per segment, per event.

Not used by the agent. It is the reference the columnar window is tested against
(tests/signals) and the naive baseline the benchmark measures it against
(scripts/bench_signals.py). Latency quantiles here are exact (nearest rank);
the window's come from log buckets (<= 4% relative error).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .events import DIMENSIONS

PAIRS = (("bank", "route"), ("method", "route"), ("issuer", "route"), ("bank", "method"))
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class RefStats:
    attempts: int = 0
    failures: int = 0
    retries: int = 0
    first_attempt_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def latency_mean_ms(self) -> float:
        return sum(self.latencies) / len(self.latencies)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(math.ceil(q * len(ordered)), 1) - 1]

    @property
    def retry_share(self) -> float:
        return self.retries / self.attempts

    @property
    def attempts_per_payment(self) -> float:
        first = self.attempts - self.retries
        return self.attempts / first if first > 0 else float(self.attempts)


def segment_keys(event: Mapping[str, Any]) -> list[str]:
    """'*', 'bank=FNB', ..., 'bank=FNB,route=psp_a' (dimensions sorted, as SegmentStats.key)."""
    keys = ["*"]
    for d in DIMENSIONS:
        if event.get(d) is not None:
            keys.append(f"{d}={event[d]}")
    for a, b in PAIRS:
        if event.get(a) is not None and event.get(b) is not None:
            first, second = sorted((a, b))
            keys.append(f"{first}={event[first]},{second}={event[second]}")
    return keys


def naive_window(events: Iterable[Mapping[str, Any]], start: float, end: float) -> dict[str, RefStats]:
    """Every segment's figures over events with start <= ts < end (events as CONTRACT.md §1 dicts)."""
    out: dict[str, RefStats] = {}
    for ev in events:
        if not start <= ev["ts"] < end:
            continue
        failed = ev["status"] != "success"
        code = (ev.get("error_code") or "UNKNOWN") if failed else None
        retry = ev.get("attempt", 1) > 1
        for key in segment_keys(ev):
            stats = out.get(key)
            if stats is None:
                stats = out[key] = RefStats()
            stats.attempts += 1
            stats.failures += failed
            stats.retries += retry
            stats.first_attempt_failures += failed and not retry
            if code is not None:
                stats.errors[code] += 1
            stats.latencies.append(float(ev["latency_ms"]))
    return out
