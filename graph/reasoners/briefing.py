"""What the LLM is shown: the window's evidence summary and the rule engine's hypotheses.

Aggregates only, never raw events (no payment ids, amounts or palm references).
Names of banks, routes and terminals appear as JSON string values inside a data
block; the prompt says they are labels, and `llm.py` never lets a name reach an
action unless it is a segment of this very window.

Labels are quoted data: control characters are removed from every string, and
`<`, `>` and `&` are written as JSON escapes (\u003c, \u003e, \u0026), so no
label can close the `<data>` block or open another tag (`</data>` in a bank name
stays inside its JSON string). A JSON reader sees the same text minus the controls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import orjson

from payops.models import Category, Diagnosis, ProposedAction, target_key
from payops.signals.window import SegmentStats, WindowSnapshot

from .base import ReasoningContext
from .evidence import background_mix, error_mix, excess_by_family, shares
from .rules import RuleReasoner, prepared
from .selection import route_health

# Removed from every string shown to the model: C0/C1 controls, DEL, line/paragraph
# separators and bidi overrides (a newline or a reversed run would let a label pose as prompt text).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Written as JSON escapes so the data block's delimiters cannot occur inside it.
_MARKUP = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}

MAX_HYPOTHESES = 5
MAX_LESSONS = 3
LESSON_KEYS = ("category", "target", "tool", "verdict", "similarity", "dominant_error", "magnitude",
               "failure_rate_before", "failure_rate_after")


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
        return quoted_data(value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub("", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def quoted_data(value: Any) -> str:
    """JSON for a `<data>` block: control characters removed, markup characters escaped, keys sorted."""
    return orjson.dumps(_clean(value), option=orjson.OPT_SORT_KEYS).decode().translate(_MARKUP)


def quoted_text(text: str) -> str:
    """Free text (a rejection reason) for a prompt: the same cleaning, outside JSON."""
    return _CONTROL.sub("", text).translate(_MARKUP)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def _segment_facts(seg: SegmentStats, snapshot: WindowSnapshot) -> dict[str, Any]:
    fam = shares(excess_by_family(seg, background_mix(snapshot, seg)))
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
    targets: list[dict[str, str]] = [dict(cast(dict[str, str], h["target"]))
                                     for h in rules.hypotheses(snapshot, context, limit=MAX_HYPOTHESES)]
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
        "similar_lessons": [{k: lesson[k] for k in LESSON_KEYS if k in lesson}
                            for lesson in context.lessons[:MAX_LESSONS]],
    }
    return Briefing(data, hypotheses, reading, decision_rules.proposal)


def action_data(briefing: Briefing, diagnosis: dict[str, Any], target: dict[str, str],
                destinations: dict[str, float]) -> str:
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
