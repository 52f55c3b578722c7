"""Per-segment baselines of normal behaviour, and the significance of a deviation.

A baseline learns only from windows where its segment looked normal, so an
incident cannot drag its own reference along. Until a segment has history the
reference is its peers (all other traffic in the same window).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# EWMA weight of the newest healthy window: ~10 windows of memory, so a daily
# wave is followed but one odd minute barely moves the reference.
BASELINE_ALPHA = 0.1
# Windows of history before the baseline is trusted over the peer comparison.
BASELINE_MIN_WINDOWS = 3
# Failure-rate floor for the binomial test: real payment traffic never fails at 0%,
# and a zero reference would make a single failure look infinitely significant.
FAILURE_RATE_FLOOR = 0.01


@dataclass
class SegmentBaseline:
    failure_rate: float
    latency_p95: float
    volume: float
    attempts_per_payment: float
    windows: int = 1

    def update(self, failure_rate: float, latency_p95: float, volume: float, attempts_per_payment: float) -> None:
        a = BASELINE_ALPHA
        self.failure_rate += a * (failure_rate - self.failure_rate)
        self.latency_p95 += a * (latency_p95 - self.latency_p95)
        self.volume += a * (volume - self.volume)
        self.attempts_per_payment += a * (attempts_per_payment - self.attempts_per_payment)
        self.windows += 1

    @property
    def trusted(self) -> bool:
        return self.windows >= BASELINE_MIN_WINDOWS


class BaselineTracker:
    """Baselines keyed by segment key ('bank=FNB', 'bank=FNB,route=psp_a', '*')."""

    def __init__(self) -> None:
        self.baselines: dict[str, SegmentBaseline] = {}

    def get(self, key: str) -> SegmentBaseline | None:
        return self.baselines.get(key)

    def observe(self, key: str, failure_rate: float, latency_p95: float, volume: float, attempts_per_payment: float) -> None:
        known = self.baselines.get(key)
        if known is None:
            self.baselines[key] = SegmentBaseline(failure_rate, latency_p95, volume, attempts_per_payment)
        else:
            known.update(failure_rate, latency_p95, volume, attempts_per_payment)

    def to_json(self) -> dict[str, Any]:
        return {key: asdict(b) for key, b in self.baselines.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BaselineTracker":
        tracker = cls()
        for key, fields in data.items():
            tracker.baselines[key] = SegmentBaseline(**fields)
        return tracker


def binomial_z(failures: float, attempts: float, expected_rate: float) -> float:
    """One-sided z of observed failures against the expected rate; accounts for sample size."""
    if attempts <= 0:
        return 0.0
    p = min(max(expected_rate, FAILURE_RATE_FLOOR), 0.99)
    return (failures - attempts * p) / math.sqrt(attempts * p * (1.0 - p))


def wilson_lower_bound(failures: float, attempts: float, z: float = 1.96) -> float:
    """Lower end of the Wilson interval of a failure rate: what the rate is at least."""
    if attempts <= 0:
        return 0.0
    phat = failures / attempts
    denom = 1 + z * z / attempts
    centre = phat + z * z / (2 * attempts)
    margin = z * math.sqrt(phat * (1 - phat) / attempts + z * z / (4 * attempts * attempts))
    return max(0.0, (centre - margin) / denom)
