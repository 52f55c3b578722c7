"""The seam between the graph and whatever reasons: rules by default, an LLM when configured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from payops.models import Diagnosis, ProposedAction
from payops.signals.window import WindowSnapshot


@dataclass(frozen=True)
class ActionView:
    """An action in force, as a reasoner sees it."""

    tool: str
    target: dict[str, str]
    args: dict[str, Any]
    applied_at: float
    expires_at: float
    action_id: str = ""  # the decision that applied it; what a rollback names


@dataclass(frozen=True)
class Thresholds:
    min_segment_attempts: int = 10
    min_excess_failures: int = 8
    significance_z: float = 4.0
    action_ttl_seconds: float = 1800.0
    no_data_seconds: float = 120.0  # Settings.no_data_seconds: silence before "no data" is alerted
    alert_review_ticks: int = 5  # Settings.alert_review_ticks: an alert-only incident this old is paged again


# Earlier windows the graph keeps for the reasoner: ten minutes at the default tick.
REASONING_HISTORY_WINDOWS = 10


@dataclass(frozen=True)
class ReasoningContext:
    in_force: tuple[ActionView, ...] = ()
    lessons: tuple[dict[str, Any], ...] = ()
    previous: Diagnosis | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Earlier windows of this deployment, oldest first (bounded). Lets a reasoner pool
    # evidence on small segments and see whether the cause of an action in force cleared.
    history: tuple[WindowSnapshot, ...] = ()


@dataclass(frozen=True)
class Decision:
    diagnosis: Diagnosis
    proposal: ProposedAction
    llm_calls: tuple[dict[str, Any], ...] = ()  # tokens, latency, model, fallback reason
    notes: tuple[str, ...] = ()
    # Set when the rules decided because the LLM failed: what the operator is told,
    # e.g. "the LLM timed out (budget 20 s, 3 call(s))".
    fallback: str | None = None


class Reasoner(Protocol):
    name: str

    def decide(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Decision: ...
