"""Figures the guardrails need, computed from a window snapshot.

The palm-pay spec's escalation triggers name two metrics; their precise meaning:

- `error_rate`: percentage (0-100) of palm-pay attempts (method `palm`) in the
  current window that failed, for any reason. `error_rate > 5` therefore means
  more than 5 in 100 palm payments failed in the last window.
- `consecutive_failures`: the number of failed attempts in a row, most recent
  first, of the palm-pay link the action targets, as the palm-pay backend counts
  them (0 when the backend is not attached or the link is unknown).
"""

from __future__ import annotations

from typing import Mapping

from payops.signals.window import WindowSnapshot


def palm_metrics(snapshot: WindowSnapshot | None, consecutive_failures: int = 0, palm_method: str = "palm") -> dict[str, float]:
    metrics: dict[str, float] = {"consecutive_failures": float(consecutive_failures)}
    seg = snapshot.segment(method=palm_method) if snapshot is not None else None
    metrics["error_rate"] = 100.0 * seg.failure_rate if seg is not None and seg.attempts else 0.0
    return metrics


def blast_radius(snapshot: WindowSnapshot | None, target: Mapping[str, str]) -> float:
    """Share of the window's attempts that the target segment carries (1.0 for all traffic)."""
    if snapshot is None or snapshot.total.attempts == 0:
        return 0.0
    if not target:
        return 1.0
    seg = snapshot.segment(**dict(target))
    if seg is not None:
        return seg.attempts / snapshot.total.attempts
    # A combination the window does not aggregate: bound it by its smallest single dimension.
    shares = [s.attempts for k, v in target.items() if (s := snapshot.segment(**{k: v})) is not None]
    return min(shares) / snapshot.total.attempts if len(shares) == len(target) else 0.0
