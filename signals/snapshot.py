"""The window's snapshot: per-segment figures (SegmentStats), what the window could not use (DataQuality), and
the snapshot of one window that the reasoners read (WindowSnapshot).

Split out of window.py, which builds these; importers keep using `payops.signals.window`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .events import BadLine

TOP_ERRORS = 6


@dataclass(frozen=True)
class SegmentStats:
    dims: tuple[tuple[str, str], ...]  # (("bank", "FNB"), ("route", "psp_a")); () is all traffic
    attempts: int
    failures: int
    errors: dict[str, int]
    latency_mean_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    retry_share: float
    attempts_per_payment: float
    traffic_share: float
    expected_failure_rate: float
    baseline_failure_rate: float | None
    baseline_latency_p95_ms: float | None
    baseline_volume: float | None
    baseline_attempts_per_payment: float | None
    excess_failures: float
    z: float
    # Added fields (defaults keep older constructors working):
    volume_ratio: float | None = None  # attempts / baseline attempts per window, once the baseline is trusted
    failure_rate_low: float = 0.0  # Wilson lower bound of the failure rate at the significance z
    # Failed first attempts (None: not measured). Retries beyond these are second and later
    # retries of one payment, which a policy that retries a failure once never makes.
    first_attempt_failures: float | None = None
    # Attempts whose amount is at or below its currency's low bar (amounts.py), and how many of
    # them failed: a burst of small charges over many cards is how card testers work.
    low_amount_attempts: int = 0
    low_amount_failures: int = 0
    # Attempts and failures in the last TAIL_SHARE of the window: is a fault still there at the
    # window's end (a 30 s blip is over), and was it there before (a fault only in the tail is young)?
    tail_attempts: int = 0
    tail_failures: int = 0
    # ... and in the first TAIL_SHARE: a fault absent from it began within the window (seconds old).
    lead_attempts: int = 0
    lead_failures: int = 0

    @property
    def target(self) -> dict[str, str]:
        return dict(self.dims)

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.dims)) or "*"

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def successes(self) -> int:
        return self.attempts - self.failures

    def error_share(self, *codes: str) -> float:
        if not self.failures:
            return 0.0
        return sum(self.errors.get(c, 0) for c in codes) / self.failures

    def dominant_error(self) -> str | None:
        return max(self.errors, key=self.errors.__getitem__) if self.errors else None


@dataclass(frozen=True)
class DataQuality:
    """What the window could not use, or used late, since the previous snapshot."""

    bad_lines: int = 0  # lines skipped by the source (not JSON, or breaking CONTRACT.md §1)
    bad_samples: tuple[BadLine, ...] = ()  # line number + reason of the first few
    late_events: int = 0  # arrived after a window covering their time was evaluated (or before the first window)
    late_dropped: int = 0  # of those, too old for any later window: counted here, in no window
    out_of_order_events: int = 0  # earlier than an event that arrived before them (late ones included)
    ahead_of_clock: int = 0  # discarded by the source: implausibly far ahead of the clock (a broken clock)


@dataclass(frozen=True)
class WindowSnapshot:
    window_start: float
    window_end: float
    total: SegmentStats
    segments: tuple[SegmentStats, ...]
    quality: DataQuality = field(default_factory=DataQuality)
    vocab_sizes: dict[str, int] = field(default_factory=dict)
    # Failure codes of all traffic over recent windows that did not stand out (set by the reasoner's
    # references; empty: not known). What "the usual failures" look like when nothing is wrong.
    usual_errors: dict[str, int] = field(default_factory=dict)

    @cached_property
    def _index(self) -> dict[tuple[tuple[str, str], ...], SegmentStats]:
        return {tuple(sorted(s.dims)): s for s in self.segments}

    def by_dimension(self, *names: str) -> list[SegmentStats]:
        wanted = tuple(sorted(names))
        return [s for s in self.segments if tuple(sorted(k for k, _ in s.dims)) == wanted]

    def segment(self, **target: str) -> SegmentStats | None:
        return self._index.get(tuple(sorted(target.items())))

    def values(self, dimension: str) -> list[str]:
        return [dict(s.dims)[dimension] for s in self.by_dimension(dimension)]

    def digest(self) -> dict[str, object]:
        """Key figures for the audit trail."""
        t = self.total
        return {
            "window_start": self.window_start,
            "window_end": self.window_end,
            "attempts": t.attempts,
            "failures": t.failures,
            "failure_rate": round(t.failure_rate, 4),
            "latency_p95_ms": round(t.latency_p95_ms, 1),
            "attempts_per_payment": round(t.attempts_per_payment, 3),
            "top_errors": dict(sorted(t.errors.items(), key=lambda kv: -kv[1])[:TOP_ERRORS]),
            "bad_lines": self.quality.bad_lines,
            "late_events": self.quality.late_events,
            "late_dropped": self.quality.late_dropped,
            "ahead_of_clock": self.quality.ahead_of_clock,
        }
