"""Crafted windows for reasoning tests: cells of traffic aggregated into a WindowSnapshot.

Independent of the signals package's aggregation on purpose: a confounder is
stated exactly (this bank, these routes, these codes), and the LLM cassettes'
request bodies do not change when the window code is optimised.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from itertools import combinations

from payops.graph.reasoners.base import ActionView, ReasoningContext, Thresholds
from payops.models import Diagnosis
from payops.signals.window import SEGMENT_PAIRS, SegmentStats, WindowSnapshot

END = 1_780_000_600.0
FLOOR = 0.01


@dataclass(frozen=True)
class Cell:
    """Attempts sharing every dimension value."""

    dims: Mapping[str, str]
    attempts: int
    errors: Mapping[str, int] = field(default_factory=dict)  # failures by code
    normal_rate: float = 0.04  # what this traffic fails at on a normal day
    p95_ms: float = 500.0
    normal_p95_ms: float = 500.0
    retries: int = 0  # attempts that were retries (attempt > 1)
    normal_apm: float = 1.0
    p50_ms: float | None = None  # median latency; p95 / 1.8 (a lognormal's spread) when not given
    first_fails: int | None = None  # failed first attempts (None: not measured, as in older windows)

    @property
    def failures(self) -> int:
        return sum(self.errors.values())


def _z(failures: float, attempts: float, rate: float) -> float:
    p = min(max(rate, FLOOR), 0.99)
    return (failures - attempts * p) / math.sqrt(attempts * p * (1 - p)) if attempts else 0.0


def _stats(dims: tuple[tuple[str, str], ...], cells: list[Cell], total_attempts: int, baseline: bool) -> SegmentStats:
    n = sum(c.attempts for c in cells)
    x = sum(c.failures for c in cells)
    errors: dict[str, int] = {}
    for c in cells:
        for code, k in c.errors.items():
            errors[code] = errors.get(code, 0) + k
    expected = sum(c.normal_rate * c.attempts for c in cells) / n
    retries = sum(c.retries for c in cells)
    big = [c for c in cells if c.attempts >= 0.05 * n] or cells
    p95 = max(c.p95_ms for c in big)
    p50 = sum((c.p50_ms if c.p50_ms is not None else c.p95_ms / 1.8) * c.attempts for c in cells) / n
    normal_p95 = max(c.normal_p95_ms for c in big)
    normal_apm = sum(c.normal_apm * c.attempts for c in cells) / n
    first_fails = None if any(c.first_fails is None for c in cells) else float(sum(c.first_fails for c in cells))
    values = dict(
        dims=dims, attempts=n, failures=x, errors=errors,
        latency_mean_ms=p95 / 2.0, latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p95 * 1.3,
        retry_share=retries / n, attempts_per_payment=n / max(n - retries, 1), traffic_share=n / total_attempts,
        expected_failure_rate=expected,
        baseline_failure_rate=expected if baseline else None,
        baseline_latency_p95_ms=normal_p95 if baseline else None,
        baseline_volume=float(n) if baseline else None,
        baseline_attempts_per_payment=normal_apm if baseline else None,
        excess_failures=x - n * expected, z=_z(x, n, expected), first_attempt_failures=first_fails,
    )
    known = {f.name for f in fields(SegmentStats)}
    return SegmentStats(**{k: v for k, v in values.items() if k in known})


def window(cells: Iterable[Cell], end: float = END, seconds: float = 60.0, baseline: bool = True) -> WindowSnapshot:
    """Every segmentation the agent's window has: each dimension and the standard pairs."""
    cells = [c for c in cells if c.attempts > 0]
    total_n = sum(c.attempts for c in cells)
    total = _stats((), cells, total_n, baseline)
    present = sorted({k for c in cells for k in c.dims})
    groupings: list[tuple[str, ...]] = [(d,) for d in present]
    groupings += [tuple(sorted(p)) for p in SEGMENT_PAIRS if set(p) <= set(present)]
    segments: list[SegmentStats] = []
    for names in groupings:
        groups: dict[tuple[tuple[str, str], ...], list[Cell]] = {}
        for c in cells:
            if all(n in c.dims for n in names):
                key = tuple((n, c.dims[n]) for n in names)
                groups.setdefault(key, []).append(c)
        for key, members in sorted(groups.items()):
            segments.append(_stats(key, members, total_n, baseline))
    return WindowSnapshot(window_start=end - seconds, window_end=end, total=total, segments=tuple(segments))


def network_cells(banks: Mapping[str, float], routes: Mapping[str, tuple[str, ...]], methods: Mapping[str, float],
                  volume: int, issuers: Mapping[str, str] | None = None, decline_rate: float = 0.04,
                  normal_p95: Mapping[str, float] | None = None) -> list[Cell]:
    """Healthy traffic: `volume` attempts split over banks x methods, each method over the routes carrying it."""
    issuers = issuers or {}
    out = []
    for bank, bw in banks.items():
        for method, mw in methods.items():
            carriers = [r for r, ms in routes.items() if method in ms]
            for route in carriers:
                n = int(round(volume * bw * mw / len(carriers)))
                if n <= 0:
                    continue
                declines = int(round(n * decline_rate))
                p95 = (normal_p95 or {}).get(route, 500.0)
                dims = {"bank": bank, "method": method, "route": route, "issuer": issuers.get(method, method.upper())}
                out.append(Cell(dims, n, {"INSUFFICIENT_FUNDS": declines} if declines else {}, decline_rate, p95, p95))
    return out


def fail(cells: list[Cell], match: Mapping[str, str], rate: float, codes: Mapping[str, float], retried: float = 0.0,
         p95_ms: float | None = None) -> list[Cell]:
    """Cells matching `match` fail at `rate` more with `codes` (shares); `retried` of those failures are retried."""
    out = []
    for c in cells:
        if all(c.dims.get(k) == v for k, v in match.items()):
            extra = c.attempts * rate
            errors = dict(c.errors)
            for code, share in codes.items():
                errors[code] = errors.get(code, 0) + int(round(extra * share))
            retries = int(round(extra * retried))  # only the new (retryable) failures are retried
            c = Cell(c.dims, c.attempts + retries, errors, c.normal_rate, p95_ms or c.p95_ms, c.normal_p95_ms,
                     c.retries + retries,
                     c.normal_apm, c.p50_ms)
        out.append(c)
    return out


def healthy_history(cells: list[Cell], n: int = 5, end: float = END) -> tuple[WindowSnapshot, ...]:
    return tuple(window(cells, end=end - 60.0 * (n - i)) for i in range(n))


def context(history: tuple[WindowSnapshot, ...] = (), in_force: tuple[ActionView, ...] = (),
            previous: Diagnosis | None = None,
            **thresholds: float) -> ReasoningContext:
    return ReasoningContext(in_force=in_force, previous=previous, history=history,
                            thresholds=Thresholds(**thresholds) if thresholds else Thresholds(significance_z=4.0))


# A small payment network used by the crafted cases (names are arbitrary data).
BANKS = {"ABSA": 0.3, "FNB": 0.3, "NEDBANK": 0.25, "CAPITEC": 0.15}
ROUTES = {"psp_a": ("card",), "psp_b": ("card",), "rail": ("payshap",)}
METHODS = {"card": 0.8, "payshap": 0.2}
ISSUERS = {"card": "VISA", "payshap": "PAYSHAP"}


def base_cells(volume: int = 1200, banks: Mapping[str, float] = BANKS) -> list[Cell]:
    return network_cells(banks, ROUTES, METHODS, volume, ISSUERS)


def renamed(cells: list[Cell], dimension: str, old: str, new: str) -> list[Cell]:
    return [Cell({k: (new if k == dimension and v == old else v) for k, v in c.dims.items()}, c.attempts, c.errors,
                 c.normal_rate,
                 c.p95_ms, c.normal_p95_ms, c.retries, c.normal_apm, c.p50_ms) for c in cells]


def pairs(items: Iterable[str]) -> list[tuple[str, str]]:
    return list(combinations(items, 2))
