"""What the LLM is shown: the window's evidence summary and the rule engine's hypotheses.

Aggregates only, never raw events (no payment ids, amounts or palm references).
Names of banks, routes and terminals appear as JSON string values inside a data
block; the prompt says they are labels, and `llm.py` never lets a name reach an
action unless it is a segment of this very window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from payops.models import Category, Diagnosis, ProposedAction, target_key
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import background_mix, error_mix, excess_by_family, shares
from .rules import RuleReasoner, prepared
from .selection import route_health

MAX_HYPOTHESES = 5
MAX_LESSONS = 3
LESSON_KEYS = ("category", "target", "tool", "verdict", "similarity", "dominant_error", "magnitude", "failure_rate_before", "failure_rate_after")


@dataclass(frozen=True)
class Hypothesis:
    id: str
    target: dict[str, str]


@dataclass(frozen=True)
class Briefing:
    data: dict[str, Any]
    hypotheses: tuple[Hypothesis, ...]
    rules: Diagnosis
    rules_proposal: ProposedAction

    def target_of(self, hypothesis_id: str) -> dict[str, str] | None:
        return next((dict(h.target) for h in self.hypotheses if h.id == hypothesis_id), None)

    def id_of(self, target: dict[str, str]) -> str | None:
        key = target_key(target)
        return next((h.id for h in self.hypotheses if target_key(h.target) == key), None)

    def json(self) -> str:
        return self.json_of(self.data)

    @staticmethod
    def json_of(value: Any) -> str:
        # Sorted keys and fixed rounding: the same window always gives the same bytes (cassettes match on body).
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def _segment_facts(seg: SegmentStats, snapshot: WindowSnapshot) -> dict[str, Any]:
    fam = shares(excess_by_family(seg, background_mix(snapshot.total, seg)))
    return {
        "attempts": seg.attempts,
        "failures": seg.failures,
        "failure_rate": _r(seg.failure_rate),
        "expected_failure_rate": _r(seg.expected_failure_rate),
        "z": _r(seg.z, 1),
        "excess_failures": _r(seg.excess_failures, 1),
        "share_of_traffic": _r(seg.traffic_share, 2),
        "errors": error_mix(seg, top=4),
        "excess_by_code_family": {k: _r(v, 2) for k, v in sorted(fam.items()) if v >= 0.05},
        "latency_p95_ms": round(seg.latency_p95_ms),
        "baseline_latency_p95_ms": round(seg.baseline_latency_p95_ms) if seg.baseline_latency_p95_ms else None,
    }


def brief(snapshot: WindowSnapshot, context: ReasoningContext, rules: RuleReasoner, decision_rules: Any) -> Briefing:
    """The data block for one window. `decision_rules` is the rule engine's Decision for it."""
    snapshot = prepared(snapshot, context)  # the same references the rule engine judged by
    total = snapshot.total
    targets: list[dict[str, str]] = [dict(h["target"]) for h in rules.hypotheses(snapshot, context, limit=MAX_HYPOTHESES)]
    reading: Diagnosis = decision_rules.diagnosis
    if reading.category is not Category.HEALTHY and target_key(reading.target) not in {target_key(t) for t in targets}:
        targets.insert(0, dict(reading.target))  # e.g. a retry storm on all traffic, a slow route
    targets = targets[:MAX_HYPOTHESES]
    hypotheses = tuple(Hypothesis(f"H{i + 1}", t) for i, t in enumerate(targets))
    listed = []
    for h in hypotheses:
        seg = snapshot.segment(**h.target) if h.target else total
        entry: dict[str, Any] = {"id": h.id, "target": h.target}
        if seg is not None:
            entry.update(_segment_facts(seg, snapshot))
        listed.append(entry)
    rules_id = next((h.id for h in hypotheses if target_key(h.target) == target_key(reading.target)), "none")
    health = route_health(snapshot, context.thresholds.significance_z)
    data: dict[str, Any] = {
        "window": {
            "seconds": round(snapshot.window_end - snapshot.window_start),
            "attempts": total.attempts,
            "failures": total.failures,
            "failure_rate": _r(total.failure_rate),
            "expected_failure_rate": _r(total.expected_failure_rate),
            "attempts_per_payment": _r(total.attempts_per_payment, 3),
            "normal_attempts_per_payment": _r(total.baseline_attempts_per_payment, 3),
            "retry_share": _r(total.retry_share, 3),
            "latency_p95_ms": round(total.latency_p95_ms),
            "top_errors": error_mix(total, top=6),
        },
        "hypotheses": listed,
        "rule_engine": {
            "category": reading.category.value,
            "hypothesis": rules_id,
            "confidence": reading.confidence,
            "summary": reading.summary,
            "proposed_tool": decision_rules.proposal.tool,
        },
        "routes": [{"route": r, "healthy": h, "methods": sorted(m), "failure_rate": _r(rate)}
                   for r, (h, m, rate) in sorted(health.items())],
        "in_force": [{"tool": a.tool, "target": a.target, "age_seconds": round(snapshot.window_end - a.applied_at)}
                     for a in context.in_force],
        "similar_lessons": [{k: l[k] for k in LESSON_KEYS if k in l} for l in context.lessons[:MAX_LESSONS]],
    }
    return Briefing(data, hypotheses, reading, decision_rules.proposal)


def action_data(briefing: Briefing, diagnosis: dict[str, Any], target: dict[str, str], destinations: dict[str, float]) -> str:
    """The data block of the second call: the diagnosis, its target, and what a tool call needs."""
    data = briefing.data
    return Briefing.json_of({
        "diagnosis": diagnosis,
        "target": target,
        "reroute_destinations": destinations,  # healthy routes that carry every method of the target, by volume
        "routes": data["routes"],
        "in_force": data["in_force"],
        "rule_engine_proposed_tool": data["rule_engine"]["proposed_tool"],
    })
