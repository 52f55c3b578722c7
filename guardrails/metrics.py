"""Figures the guardrails need, computed from a window snapshot (pure functions).

The palm-pay spec's escalation triggers name two metrics; their precise meaning:

- `error_rate`: percentage (0-100) of palm-pay attempts (events with method
  `palm`) in the current window that failed, for any reason (refusals such as
  limits or an inactive link included). `error_rate > 5` therefore means more
  than 5 in 100 palm payment attempts failed in the last window. No palm
  attempts in the window: 0.
- `consecutive_failures`: how many of the targeted link's most recent payment
  attempts failed in a row, as the palm-pay backend recorded them (its
  CONTRACT §1 payment events for that `palm_pay_id`, newest first, counting
  until the first success). `consecutive_failures > 3` means the last four or
  more attempts on that link all failed. 0 when the backend is not attached or
  the link has no attempts.

A trigger naming any other metric cannot be evaluated; the escalation guardrail
treats it as fired (fail closed).

Blast radius: the share (0-1) of the window's attempts an action touches. See
`action_blast_radius` for how each tool's declared scope is estimated.
"""

from __future__ import annotations

from collections.abc import Mapping

from payops.models import ProposedAction
from payops.signals.window import WindowSnapshot
from payops.tools.actions import ActionSpec

PALM_METHOD = "palm"  # CONTRACT §1 method name of palm-pay attempts


def palm_metrics(snapshot: WindowSnapshot | None, consecutive_failures: int = 0,
                 palm_method: str = PALM_METHOD) -> dict[str, float]:
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


def action_blast_radius(spec: ActionSpec | None, proposal: ProposedAction, snapshot: WindowSnapshot | None,
                        link_attempts: int | None = None, palm_method: str = PALM_METHOD) -> float:
    """Share of current traffic one proposed action touches, by the tool's declared scope.

    - "segment": the target segment's share, times `percent`/100 when the tool moves part of it;
    - "link": one palm-pay link's attempts in the window (`link_attempts`, counted by the
      backend) over all attempts; without the backend, bounded above by the palm method's share;
    - "none": informs or does nothing: 0. An unknown tool is treated as touching everything.
    """
    if spec is None:
        return 1.0
    if spec.blast_scope == "none":
        return 0.0
    if spec.blast_scope == "link":
        if snapshot is None or snapshot.total.attempts == 0:
            return 0.0
        if link_attempts is not None:
            return min(1.0, link_attempts / snapshot.total.attempts)
        return blast_radius(snapshot, {"method": palm_method})
    share = blast_radius(snapshot, proposal.target)
    percent = proposal.args.get("percent")
    return share * (float(percent) / 100.0 if percent is not None else 1.0)
