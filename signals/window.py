"""The sliding window and its snapshot: columnar aggregation over every segment.

Hot path: each segmentation (a dimension, or a pair such as bank x route) is a
handful of `np.bincount` calls over integer codes; no per-event Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .baseline import BaselineTracker, binomial_z
from .events import BUCKET_MID_MS, DIMENSIONS, LATENCY_BUCKETS, BadLine, Columns, PaymentEvent

# Pairs worth blaming together: an issuer failing on one route only, a method
# sent to a route that rejects it.
SEGMENT_PAIRS: tuple[tuple[str, str], ...] = (("bank", "route"), ("method", "route"), ("issuer", "route"))
QUANTILES = (0.5, 0.95, 0.99)
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
    bad_lines: int = 0
    bad_samples: tuple[BadLine, ...] = ()
    late_events: int = 0


@dataclass(frozen=True)
class WindowSnapshot:
    window_start: float
    window_end: float
    total: SegmentStats
    segments: tuple[SegmentStats, ...]
    quality: DataQuality = field(default_factory=DataQuality)
    vocab_sizes: dict[str, int] = field(default_factory=dict)

    def by_dimension(self, *names: str) -> list[SegmentStats]:
        wanted = tuple(sorted(names))
        return [s for s in self.segments if tuple(sorted(k for k, _ in s.dims)) == wanted]

    def segment(self, **target: str) -> SegmentStats | None:
        dims = tuple(sorted(target.items()))
        for s in self.segments:
            if tuple(sorted(s.dims)) == dims:
                return s
        return None

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
        }


class EventWindow:
    """Columnar ring of recent events; `snapshot()` aggregates the last window."""

    def __init__(self, window_seconds: float = 60.0, baselines: BaselineTracker | None = None, significance_z: float = 3.0) -> None:
        self.window_seconds = window_seconds
        self.columns = Columns()
        self.baselines = baselines if baselines is not None else BaselineTracker()
        self.significance_z = significance_z
        self.late_events = 0
        self.bad_lines = 0
        self.bad_samples: list[BadLine] = []
        self._horizon = float("-inf")  # events older than this were already evicted

    def add(self, events: Iterable[PaymentEvent]) -> None:
        batch = list(events)
        if not batch:
            return
        fresh = [ev for ev in batch if ev.ts >= self._horizon]
        self.late_events += len(batch) - len(fresh)  # counted, never silently lost
        self.columns.extend(fresh)

    def note_bad_lines(self, count: int, samples: Iterable[BadLine] = ()) -> None:
        self.bad_lines += count
        for sample in samples:
            if len(self.bad_samples) < 20:
                self.bad_samples.append(sample)

    def evict_before(self, horizon: float) -> None:
        self._horizon = max(self._horizon, horizon)
        ts = self.columns.view("ts")
        if ts.size and ts.min() < horizon:
            self.columns.keep(ts >= horizon)

    def snapshot(self, window_end: float, learn: bool = True) -> WindowSnapshot:
        start = window_end - self.window_seconds
        self.evict_before(start)
        snap = aggregate(self.columns, start, window_end, self.baselines, self.significance_z)
        snap = WindowSnapshot(
            window_start=snap.window_start,
            window_end=snap.window_end,
            total=snap.total,
            segments=snap.segments,
            quality=DataQuality(self.bad_lines, tuple(self.bad_samples), self.late_events),
            vocab_sizes=snap.vocab_sizes,
        )
        self.bad_lines, self.bad_samples, self.late_events = 0, [], 0
        if learn:
            learn_baselines(snap, self.baselines, self.significance_z)
        return snap


def learn_baselines(snap: WindowSnapshot, baselines: BaselineTracker, significance_z: float) -> None:
    """Feed healthy-looking segments into their baselines; anomalous ones are left out.

    During warm-up (fewer than BASELINE_MIN_WINDOWS windows) every window counts,
    otherwise a reference that starts empty could never be learned.
    """
    for seg in (snap.total, *snap.segments):
        if seg.attempts == 0:
            continue
        known = baselines.get(seg.key)
        warming_up = known is None or not known.trusted
        if seg.z >= significance_z and not warming_up:
            continue
        baselines.observe(seg.key, seg.failure_rate, seg.latency_p95_ms, float(seg.attempts), seg.attempts_per_payment)


def _quantiles(hist: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-row quantiles (rows: segments, cols: latency buckets) -> (rows, len(QUANTILES))."""
    cum = np.cumsum(hist, axis=1)
    out = np.empty((hist.shape[0], len(QUANTILES)))
    for j, q in enumerate(QUANTILES):
        rank = np.maximum(np.ceil(q * counts), 1)[:, None]
        out[:, j] = BUCKET_MID_MS[np.argmax(cum >= rank, axis=1)]
    return out


def _segmentations(cols: Columns) -> list[tuple[tuple[str, ...], np.ndarray, int]]:
    """(dimension names, combined code per row, number of codes) for each segmentation present."""
    present = [d for d in DIMENSIONS if len(cols.vocab[d]) > 1]
    out: list[tuple[tuple[str, ...], np.ndarray, int]] = []
    for d in present:
        out.append(((d,), cols.code_view(d).astype(np.int64), len(cols.vocab[d])))
    for a, b in SEGMENT_PAIRS:
        if a in present and b in present:
            nb = len(cols.vocab[b])
            key = cols.code_view(a).astype(np.int64) * nb + cols.code_view(b)
            out.append(((a, b), key, len(cols.vocab[a]) * nb))
    return out


def aggregate(cols: Columns, start: float, end: float, baselines: BaselineTracker, significance_z: float = 3.0) -> WindowSnapshot:
    ts = cols.view("ts")
    in_window = (ts >= start) & (ts < end)
    failed = cols.view("failed")[in_window]
    latency = cols.view("latency_ms")[in_window].astype(np.float64)
    bucket = cols.view("latency_bucket")[in_window].astype(np.int64)
    attempt = cols.view("attempt")[in_window]
    retry = attempt > 1
    err = cols.code_view("error_code")[in_window].astype(np.int64)
    n_err = len(cols.vocab["error_code"])
    err_names = cols.vocab["error_code"].names
    n = int(in_window.sum())

    def stats_for(key: np.ndarray, k: int) -> dict[str, np.ndarray]:
        counts = np.bincount(key, minlength=k)
        fails = np.bincount(key, weights=failed, minlength=k)
        retries = np.bincount(key, weights=retry, minlength=k)
        lat_sum = np.bincount(key, weights=latency, minlength=k)
        idx = np.flatnonzero(counts)
        # Only failed rows carry an error code, so count those (code 0 = no code).
        errs = np.bincount(key[failed] * n_err + err[failed], minlength=k * n_err).reshape(k, n_err)[idx]
        hist = np.bincount(key * LATENCY_BUCKETS + bucket, minlength=k * LATENCY_BUCKETS).reshape(k, LATENCY_BUCKETS)[idx]
        return {
            "idx": idx,
            "counts": counts[idx],
            "fails": fails[idx],
            "retries": retries[idx],
            "lat_mean": lat_sum[idx] / counts[idx],
            "errs": errs,
            "q": _quantiles(hist, counts[idx].astype(np.float64)),
        }

    total_fail = float(failed.sum())
    total_base = baselines.get("*")

    def build(dims: tuple[tuple[str, str], ...], s: dict[str, np.ndarray], i: int) -> SegmentStats:
        count = int(s["counts"][i])
        fails = float(s["fails"][i])
        key = ",".join(f"{k}={v}" for k, v in sorted(dims)) or "*"
        base = baselines.get(key)
        peers = n - count
        if base is not None and base.trusted:
            expected = base.failure_rate
        elif dims and peers > 0:
            expected = (total_fail - fails) / peers  # cold start: compare with the rest of traffic
        elif total_base is not None:
            expected = total_base.failure_rate
        else:
            expected = fails / count if count else 0.0  # very first window: it is its own reference
        first_attempts = count - float(s["retries"][i])
        errors = {err_names[c]: int(v) for c, v in enumerate(s["errs"][i]) if v and c}
        if len(errors) > TOP_ERRORS * 3:
            errors = dict(sorted(errors.items(), key=lambda kv: -kv[1])[: TOP_ERRORS * 3])
        return SegmentStats(
            dims=dims,
            attempts=count,
            failures=int(fails),
            errors=errors,
            latency_mean_ms=float(s["lat_mean"][i]),
            latency_p50_ms=float(s["q"][i, 0]),
            latency_p95_ms=float(s["q"][i, 1]),
            latency_p99_ms=float(s["q"][i, 2]),
            retry_share=float(s["retries"][i]) / count,
            attempts_per_payment=count / first_attempts if first_attempts > 0 else float(count),
            traffic_share=count / n if n else 0.0,
            expected_failure_rate=float(expected),
            baseline_failure_rate=base.failure_rate if base else None,
            baseline_latency_p95_ms=base.latency_p95 if base else None,
            baseline_volume=base.volume if base else None,
            baseline_attempts_per_payment=base.attempts_per_payment if base else None,
            excess_failures=fails - count * expected,
            z=binomial_z(fails, count, expected),
        )

    if n == 0:
        empty = SegmentStats((), 0, 0, {}, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None, None, 0.0, 0.0)
        if total_base:
            empty = SegmentStats((), 0, 0, {}, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, total_base.failure_rate,
                                 total_base.failure_rate, total_base.latency_p95, total_base.volume,
                                 total_base.attempts_per_payment, 0.0, 0.0)
        return WindowSnapshot(start, end, empty, ())

    total_stats = stats_for(np.zeros(n, np.int64), 1)
    total = build((), total_stats, 0)
    segments: list[SegmentStats] = []
    for names, key_all, k in _segmentations(cols):
        key = key_all[in_window]
        s = stats_for(key, k)
        for i, code in enumerate(s["idx"]):
            values = _decode(cols, names, int(code))
            if any(v == "" for v in values):
                continue  # rows where an optional dimension was absent are not a segment
            segments.append(build(tuple(zip(names, values)), s, i))
    return WindowSnapshot(start, end, total, tuple(segments), vocab_sizes={d: len(v) - 1 for d, v in cols.vocab.items()})


def _decode(cols: Columns, names: tuple[str, ...], code: int) -> tuple[str, ...]:
    if len(names) == 1:
        return (cols.vocab[names[0]].names[code],)
    a, b = names
    nb = len(cols.vocab[b])
    return (cols.vocab[a].names[code // nb], cols.vocab[b].names[code % nb])
