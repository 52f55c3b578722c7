"""The agent's state: what flows from node to node, and what the checkpoint keeps between ticks.

Every checkpointed field is a plain JSON value with a named shape (a TypedDict below), so a type
checker follows a tick node to node while the checkpoint stays what it always was: TypedDicts are
plain dicts at run time, the same keys and values as before they were named, and a checkpoint
written before they were still resumes (tests/core/test_core_graph.py).

One field is not checkpointed: `window`, the live `WindowSnapshot` that observe computes and every
later node of the same tick reads. It is an `UntrackedValue` channel: handed from node to node
through the state, never written to the checkpoint, and left out of the graph's output
(`TickOutput`), so a run's result holds JSON values only. Live objects that outlive a tick (the
event window, the stores) live in `graph.services`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NotRequired, cast

from langgraph.channels.untracked_value import UntrackedValue

# typing_extensions' TypedDict: pydantic (LangGraph's input/output JSON schemas, Studio) refuses
# typing.TypedDict below Python 3.12. Same runtime dict: the checkpoint format is unchanged.
from typing_extensions import TypedDict

from payops.signals.window import WindowSnapshot

if TYPE_CHECKING:
    from payops.models import Diagnosis, ExecutionResult, ProposedAction
    from payops.tools.control_plane import ControlPlane

Target = dict[str, str]  # event dimension -> value (CONTRACT §3); {} for all traffic


class SnapshotDigest(TypedDict):
    """`WindowSnapshot.digest()`: the window's key figures, as the audit trail and the decision keep them."""

    window_start: float
    window_end: float
    attempts: int
    failures: int
    failure_rate: float
    latency_p95_ms: float
    attempts_per_payment: float
    top_errors: dict[str, int]
    bad_lines: int
    late_events: int
    late_dropped: int
    ahead_of_clock: int


class DiagnosisJson(TypedDict):
    """`payops.models.Diagnosis`, dumped as JSON."""

    category: str
    target: Target
    summary: str
    evidence: list[str]
    alternatives: list[str]
    confidence: float
    reasoner: str


class ProposalJson(TypedDict):
    """`payops.models.ProposedAction`, dumped as JSON."""

    tool: str
    target: Target
    args: dict[str, Any]
    rationale: str


class GuardrailResultJson(TypedDict):
    rule: str
    verdict: str  # allow | needs_approval | deny
    reason: str


class VerdictJson(TypedDict):
    """`payops.models.Verdict` plus the figures guard measured for it."""

    verdict: str  # allow | needs_approval | deny
    results: list[GuardrailResultJson]
    blast_radius: float
    permission: str | None
    palm_metrics: NotRequired[dict[str, Any]]  # palm-pay operations only


class ExecutionJson(TypedDict):
    """`payops.models.ExecutionResult`, dumped as JSON."""

    status: str  # executed | escalated | denied | skipped | failed | unknown
    detail: str
    action_id: str | None
    plane: str | None


class ApprovalOpened(TypedDict):
    """The approval request escalate opened (graph.approval.open_request)."""

    decision_id: str
    status: str
    expires_at: float


class InForceJson(TypedDict):
    """`payops.tools.control_plane.ActionInForce.to_json()`."""

    action_id: str
    tool: str
    target: Target
    args: dict[str, Any]
    applied_at: float
    expires_at: float
    confirmed: bool


class HistoryEntry(TypedDict):
    """An executed action (autonomously, or applied after a human's approval), for cooldowns and caps."""

    tool: str
    target: Target
    args: dict[str, Any]
    at: float
    autonomous: bool
    decision_id: str
    status: NotRequired[str]  # executed | unknown (autonomous ones)
    approver: NotRequired[str | None]  # approved ones
    category: NotRequired[str]  # the diagnosis acted on: an alert about another cause is not a repeat


class RecentDecision(TypedDict):
    """One of the last decisions: the short-term incident buffer."""

    decision_id: str
    window_end: float
    diagnosis: DiagnosisJson
    tool: str
    target: Target
    status: str
    figures: dict[str, Any] | None  # the diagnosed segment's figures (memory.outcomes.Figures), or None


class Awaiting(TypedDict):
    """An escalation waiting for a human (graph.recheck watches its finding meanwhile)."""

    decision_id: str
    tool: str
    target_key: str
    at: float
    finding: Target
    seen: NotRequired[list[dict[str, Any]]]  # the finding's figures in the windows seen while waiting


class Housekeeping(TypedDict, total=False):
    """What changed since the previous tick, one note per event; `op` says which, and which keys it has:
    reconcile, rollback, approval_expired, approved_action_applied, approved_action_void, and the outcome
    notes of memory.outcomes.conclude."""

    op: str
    decision_id: str
    action_id: str
    tool: str | None
    target: Target
    args: dict[str, Any]
    outcome: str
    detail: str
    applied_at: float
    expires_at: float
    reason: str
    approver: str | None
    note: str | None
    voided: str | None
    execution: dict[str, Any]
    result: str
    status: str
    at: float


class LessonBrief(TypedDict, total=False):
    """`memory.lessons.Lesson.brief()`: a similar past incident as the reasoner and the audit trail see it."""

    decision_id: str
    category: str
    tool: str
    target: str
    verdict: str
    dominant_error: str
    magnitude: str
    at: float
    failure_rate_before: float | None
    failure_rate_after: float | None
    similarity: float
    imported: bool


class TrackRecordJson(TypedDict):
    """`memory.lessons.TrackRecord.to_json()`: the proposal's record on similar incidents."""

    tool: str
    prior: float
    helped_weight: float
    not_helped_weight: float
    posterior: float
    adjusted: float
    counts: dict[str, int]
    prior_strength: float
    lessons: list[str]
    harmed_ids: list[str]
    forced_approval: bool


class WatchJson(TypedDict):
    """`memory.outcomes.Watch`, dumped as JSON: an executed action under outcome evaluation."""

    decision_id: str
    action_id: str
    tool: str
    target: Target
    args: dict[str, Any]
    status: str
    approver: str | None
    decided_at: float
    applied_at: float
    expires_at: float
    signature: dict[str, str]
    diagnosis: dict[str, Any]
    before: dict[str, Any]
    expected: dict[str, Any]
    prior_target: dict[str, Any] | None
    others_in_force: list[str]
    after: dict[str, Any] | None
    windows: int


LlmCall = dict[str, Any]  # one model call's record, shaped by graph.reasoners.llm (model, tokens, latency, ok...)


class TickOutput(TypedDict, total=False):
    """Everything a tick checkpoints (and a run returns): the state without the live window."""

    # clock
    tick: int
    window_end: float
    decision_id: str
    # observe
    snapshot: SnapshotDigest  # the window's key figures
    # how far the tick read its log (signals.Source.position): a resume counts nothing twice
    source_position: dict[str, Any]
    # reason / decide
    diagnosis: DiagnosisJson
    proposal: ProposalJson
    llm_calls: list[LlmCall]
    llm_fallback: str | None  # set when the rules decided because the LLM failed (timed out, unreachable, invalid)
    lessons_consulted: list[LessonBrief]  # similar past lessons (brief form), best first
    track_record: TrackRecordJson | None  # the proposal's record on similar incidents and the confidence adjustment
    # guard / act
    verdict: VerdictJson
    execution: ExecutionJson
    approval: ApprovalOpened | None
    # memory that outlives a tick
    in_force: list[InForceJson]
    history: list[HistoryEntry]  # executed actions (bounded), newest last
    recent: list[RecentDecision]  # short-term incident buffer: last decisions (bounded)
    baselines: dict[str, Any]  # signals.baseline.BaselineTracker.to_json()
    awaiting: list[Awaiting]  # escalations waiting for a human
    housekeeping: list[Housekeeping]  # expiries, approved actions applied, outcomes this tick
    watching: list[WatchJson]  # executed actions under outcome evaluation (memory.outcomes.Watch)


class AgentState(TickOutput, total=False):
    """The graph's state: what it checkpoints, plus this tick's live window (observe writes it)."""

    window: Annotated[WindowSnapshot, UntrackedValue(WindowSnapshot)]


class TickInput(TypedDict, total=False):
    window_end: float


# -- one accessor per model: a pydantic model or a live object as the JSON its field holds ------------

def diagnosis_json(diagnosis: Diagnosis) -> DiagnosisJson:
    return cast(DiagnosisJson, diagnosis.model_dump(mode="json"))


def proposal_json(proposal: ProposedAction) -> ProposalJson:
    return cast(ProposalJson, proposal.model_dump(mode="json"))


def execution_json(result: ExecutionResult) -> ExecutionJson:
    return cast(ExecutionJson, result.model_dump(mode="json"))


def in_force_json(plane: ControlPlane) -> list[InForceJson]:
    return [cast(InForceJson, a.to_json()) for a in plane.in_force()]


def digest_json(snapshot: WindowSnapshot) -> SnapshotDigest:
    return cast(SnapshotDigest, snapshot.digest())
