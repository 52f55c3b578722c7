"""Reading a generated stream back with the project's own event parser (signals.events), to check labels.

`segment_stats` answers "does the labelled segment really carry the fault?": its attempts
per minute, failure rate and latency before the onset and during the fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import median

from payops.signals.events import ParseReport, PaymentEvent, parse_lines


@dataclass(frozen=True)
class SegmentStats:
    attempts: int
    per_minute: float
    failure_rate: float
    median_latency_ms: float
    payments: int  # distinct payment ids
    max_attempt: int


def parse(lines: Iterable[bytes]) -> tuple[list[PaymentEvent], ParseReport]:
    report = ParseReport()
    return list(parse_lines(lines, report)), report


def _matches(e: PaymentEvent, where: Mapping[str, str]) -> bool:
    return all(getattr(e, k) == v for k, v in where.items())


def segment_stats(events: Iterable[PaymentEvent], where: Mapping[str, str], start: float, end: float) -> SegmentStats:
    chosen = [e for e in events if start <= e.ts < end and _matches(e, where)]
    minutes = max(end - start, 1e-9) / 60.0
    if not chosen:
        return SegmentStats(0, 0.0, 0.0, 0.0, 0, 0)
    return SegmentStats(len(chosen), len(chosen) / minutes, sum(not e.success for e in chosen) / len(chosen),
                        float(median(e.latency_ms for e in chosen)), len({e.payment_id for e in chosen}),
                        max(e.attempt for e in chosen))
