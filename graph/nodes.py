"""The nodes of one tick, each a small function over the state (graph/builder.py wires them):

observe -> assess -> reason -> decide -> guard -> act | escalate -> learn

assess, the outcome-watching job, lives in graph/watching.py. observe hands the window it computed to
the later nodes through the state's `window` field (never checkpointed); each node returns a partial
update of the state.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any, cast

from langgraph.runtime import Runtime

from payops.guardrails.policies import evaluate, known_tool, safe_destination
from payops.memory.approvals import APPLIED, APPROVED, EXPIRED, PENDING, VOIDED
from payops.memory.lessons import ScoredLesson, track_record
from payops.memory.outcomes import EVALUATED_TOOLS
from payops.models import Category, Diagnosis, ExecutionResult, ProposedAction, Verdict, VerdictKind, target_key
from payops.signals.baseline import BaselineTracker
from payops.signals.figures import tick_figures
from payops.signals.window import WindowSnapshot
from payops.tools.actions import ACTIONS, Permission, ProposalError, revalidate, validate_proposal
from payops.tools.control_plane import SHADOW
from payops.tools.executor import execute

from .approval import open_request, record_answer_if_missing, resume, supersede
from .guarding import HISTORY_LIMIT, guard_context, history_of
from .reasoners.base import REASONING_HISTORY_WINDOWS, ActionView, ReasoningContext
from .reasoners.rules import RuleReasoner
from .recheck import cleared_reason, remember
from .services import AgentServices, Context, services_of
from .state import (
    AgentState,
    ApprovalOpened,
    Awaiting,
    Housekeeping,
    LessonBrief,
    TrackRecordJson,
    VerdictJson,
    diagnosis_json,
    digest_json,
    execution_json,
    in_force_json,
    proposal_json,
)
from .watching import moves_are_real, signature, target_figures, watch_for

RECENT_LIMIT = 30
LESSONS_FOR_REASONER = 5  # similar lessons handed to the reasoner and recorded in the audit trail
TRACK_RECORD_LESSONS = 10  # similar lessons of the proposed tool behind its confidence adjustment


def decision_id_for(thread_id: str, window_end: float) -> str:
    """Deterministic: the same deployment and window always get the same id (idempotency key)."""
    return "d-" + hashlib.sha256(f"{thread_id}|{window_end:.3f}".encode()).hexdigest()[:16]


def _svc(runtime: Runtime[Context]) -> AgentServices:
    return services_of(runtime.context)


def _snapshot(state: AgentState) -> WindowSnapshot:
    """This tick's window, as observe computed it (a live object: never checkpointed)."""
    return state["window"]


# -- observe -------------------------------------------------------------------

def observe(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    svc = _svc(runtime)
    window_end = float(state["window_end"])
    if not svc.restored:
        # First tick of this process: bring back what the checkpoint remembers.
        if state.get("baselines"):
            svc.window.baselines = BaselineTracker.from_json(state["baselines"])
        if state.get("in_force"):
            svc.control_plane.restore(state["in_force"])
        svc.restored = True
    if svc.source is not None:
        # Event time: the window is decided once the stream has passed its end by the allowed
        # lateness, so events a few seconds out of order still count in it; what is read
        # beyond the end waits in the window's ring for the next window.
        lateness = 0.0 if svc.source.ordered else svc.settings.allowed_lateness_seconds
        svc.window.add(svc.source.read_until(window_end + lateness))  # columnar batch (or PaymentEvents)
        bad_count, bad_samples = svc.source.report.take_new()  # lines skipped since the last tick, with numbers
        if bad_count:
            svc.window.note_bad_lines(bad_count, bad_samples)
        ahead = svc.source.report.take_new_ahead()
        if ahead:
            svc.window.note_ahead_of_clock(ahead)
    snapshot = svc.window.snapshot(window_end)
    housekeeping = _housekeeping(svc, window_end, state, snapshot)
    # Read this tick, checkpointed with it: a successor drops what this tick counted (by stream sequence).
    position = svc.source.position() if svc.source is not None else None
    return {
        **({"source_position": position} if position is not None else {}),
        "window": snapshot,
        "awaiting": [cast(Awaiting, remember(cast(dict[str, Any], w), snapshot))
                     for w in _still_awaiting(state, svc, window_end)],
        "tick": int(state.get("tick", 0)) + 1,
        "decision_id": decision_id_for(svc.thread_id, window_end),
        "snapshot": digest_json(snapshot),
        "baselines": svc.window.baselines.to_json(),
        "housekeeping": housekeeping,
        "in_force": in_force_json(svc.control_plane),
        "approval": None,
        "llm_calls": [],
        "llm_fallback": None,
    }


def _still_awaiting(state: AgentState, svc: AgentServices, now: float) -> list[Awaiting]:
    """Escalations still waiting: pending in the approval book, or (no book: replay) younger than the approval TTL."""
    out = []
    for waiting in state.get("awaiting", []):
        if svc.approvals is not None:
            found = svc.approvals.get(waiting["decision_id"])
            if found is not None and found.status == PENDING:
                out.append(waiting)
            elif found is not None:
                record_answer_if_missing(svc, found, svc.clock())  # a kill between book and trail left it out
        elif now - waiting["at"] < svc.settings.approval_ttl_seconds:
            out.append(waiting)
    return out


def _housekeeping(svc: AgentServices, now: float, state: AgentState, snapshot: WindowSnapshot) -> list[Housekeeping]:
    """What changed since the last tick, each recorded in the audit trail like any action:
    unknown outcomes reconciled, actions rolled back at their TTL, approval requests
    expired, approved actions applied (once: the decision id is the idempotency key)."""
    notes: list[Housekeeping] = []
    for settled in svc.control_plane.reconcile(now):
        note: Housekeeping = {"op": "reconcile", "action_id": settled.action_id, "tool": settled.tool,
                              "target": settled.target, "outcome": settled.outcome, "detail": settled.detail}
        notes.append(note)
        svc.audit.append(settled.action_id, "reconcile", now, {"decision_id": settled.action_id, **note})
        svc.notifier.notify("rollback_failed" if settled.outcome == "rollback_failed" else "reconciled", dict(note))
    for expired in svc.control_plane.expire(now):
        note = {"op": "rollback", "action_id": expired.action_id, "tool": expired.tool, "target": expired.target,
                "args": expired.args, "applied_at": expired.applied_at, "expires_at": expired.expires_at,
                "reason": "ttl expired"}
        notes.append(note)
        execution = {"status": "executed", "detail": "rolled back", "plane": svc.control_plane.plane}
        svc.audit.append(expired.action_id, "rollback", now, {"decision_id": expired.action_id, **note,
                                                               "execution": execution})
    if svc.approvals is None:
        return notes
    wall = svc.clock()
    for pending in svc.approvals.by_status(PENDING):
        if pending.expires_at <= wall:
            resume_approval(svc, pending.decision_id,
                            {"approved": False, "approver": "system", "note": "expired unanswered"}, status=EXPIRED)
            notes.append({"op": "approval_expired", "decision_id": pending.decision_id})
            svc.notifier.notify("approval_expired", {"decision_id": pending.decision_id,
                                                     "tool": pending.request.get("proposal", {}).get("tool")})
    seen_while_waiting = {w["decision_id"]: w.get("seen") or [] for w in state.get("awaiting", [])}
    for approved in svc.approvals.by_status(APPROVED):
        kept = seen_while_waiting.get(approved.decision_id, [])
        notes.append(_apply_approved(svc, approved, now, wall, kept, snapshot))
    return notes


def _apply_approved(svc: AgentServices, approved: Any, now: float, wall: float, kept: list[dict[str, Any]],
                    snapshot: WindowSnapshot) -> Housekeeping:
    """Apply one approved action, unless the world changed: a deny rule now refuses it, or the
    finding it answered has cleared (graph.recheck; `kept`: its windows seen while it waited)."""
    assert svc.approvals is not None, "housekeeping applies approved actions only with an approval book"
    entries = svc.audit.get(approved.decision_id)
    # Applied already, and the process was killed before the book said so: finish that application
    # (execute replays by decision id), never re-judge it: the action is out there.
    applied_before = any(e.kind == "approved_action" and "voided" not in e.record for e in entries)
    try:
        proposal = revalidate(ProposedAction.model_validate(approved.request["proposal"]))
        refusal = None if applied_before else (
            _refusal_now(svc, proposal, now, snapshot)
            or cleared_reason(approved.request, proposal, snapshot, kept, svc.thresholds))
    except (ProposalError, ValueError) as exc:
        proposal, refusal = None, f"the approved proposal no longer validates: {exc}"
    raw = approved.request.get("proposal", {})
    record_answer_if_missing(svc, approved, now, entries)  # the approver's process killed between book and trail
    record: dict[str, Any] = {"decision_id": approved.decision_id, "tool": raw.get("tool"),
                              "target": raw.get("target", {}), "args": raw.get("args", {}),
                              "approver": approved.approver, "note": approved.note}
    if refusal is not None or proposal is None:
        result = ExecutionResult(status="denied", detail=f"approved but not applied: {refusal}")
        record["voided"] = refusal  # the audit trail's note: why the approval was voided
        op, status = "approved_action_void", VOIDED
    else:
        result = execute(proposal, approved.decision_id, now, control_plane=svc.control_plane, palm=svc.palm,
                         approver=approved.approver)
        op, status = "approved_action_applied", APPLIED
    record["execution"] = result.model_dump(mode="json")
    # The record first, then the book: a kill between the two re-applies next tick (idempotent by
    # decision id) and the record is the same or superseded; the other order lost the record for ever.
    svc.audit.append(approved.decision_id, "approved_action", now, record)
    svc.approvals.close_as(approved.decision_id, status, wall, f"{result.status}: {result.detail}")
    # record is built as dict[str, Any] above; its keys are all Housekeeping's
    note: Housekeeping = {"op": op, **record, "result": result.detail, "status": result.status, "at": now}  # type: ignore[typeddict-item]
    svc.notifier.notify(op, {k: note[k] for k in ("decision_id", "tool", "target", "approver", "status", "result")})
    return note


def _refusal_now(svc: AgentServices, proposal: ProposedAction, now: float, snapshot: WindowSnapshot) -> str | None:
    """The deny rules re-checked at apply time (a route may have turned unhealthy while a human decided)."""
    context = guard_context({"window_end": now, "window": snapshot}, svc, proposal)
    diagnosis = Diagnosis(category=Category.HEALTHY, summary="re-check at apply time", confidence=1.0)
    for rule in (known_tool, safe_destination):
        verdict = rule(proposal, diagnosis, context)
        if verdict.verdict is VerdictKind.DENY:
            return verdict.reason
    return None


def resume_approval(svc: AgentServices, decision_id: str, answer: dict[str, Any], status: str | None = None) -> None:
    resume(svc, decision_id, answer, status)


# -- reason / decide -------------------------------------------------------------

def _views(state: AgentState) -> tuple[ActionView, ...]:
    return tuple(ActionView(a["tool"], a["target"], a["args"], a["applied_at"], a["expires_at"], a.get("action_id", ""))
                 for a in state.get("in_force", []))


def reason(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    svc = _svc(runtime)
    snapshot = _snapshot(state)
    now = float(state["window_end"])
    recent = state.get("recent") or []
    previous = Diagnosis.model_validate(recent[-1]["diagnosis"]) if recent else None
    # Earlier snapshots of this process (not checkpointed: after a restart the reasoner starts cautious).
    history = svc.recent_windows
    ctx = ReasoningContext(in_force=_views(state), previous=previous, thresholds=svc.thresholds,
                           history=tuple(h for h in history if h.window_end < snapshot.window_end))
    if not history or history[-1].window_end < snapshot.window_end:
        history.append(snapshot)
        del history[:-REASONING_HISTORY_WINDOWS]
    # The reasoner receives the lessons of incidents like this one; "like this one" is the
    # deterministic rules' reading of the window (0.2 ms), since the reasoner has not spoken yet.
    # A lesson whose action is still in force is this very incident's mitigation, not a past incident.
    current = {a["action_id"] for a in state.get("in_force", [])}

    def past(found: list[ScoredLesson]) -> list[ScoredLesson]:
        return [s for s in found if s.lesson.decision_id not in current]

    first = (svc.fallback_reasoner or RuleReasoner()).decide(snapshot, ctx)
    if first.diagnosis.category is not Category.HEALTHY:
        sig = signature(first.diagnosis, snapshot)
        similar = past(svc.lessons.similar(sig, now, limit=LESSONS_FOR_REASONER))
        ctx = replace(ctx, lessons=tuple(s.lesson.brief(s.score) for s in similar))
    decision = svc.reasoner.decide(snapshot, ctx)
    diagnosis, proposal = decision.diagnosis, decision.proposal
    lessons: list[LessonBrief] = []
    record: TrackRecordJson | None = None
    if diagnosis.category is not Category.HEALTHY:
        sig = signature(diagnosis, snapshot)
        similar = past(svc.lessons.similar(sig, now, limit=LESSONS_FOR_REASONER))
        lessons = [cast(LessonBrief, s.lesson.brief(s.score)) for s in similar]
        if proposal.tool in EVALUATED_TOOLS:
            # The proposal's confidence follows its record on similar incidents (Beta posterior);
            # an action that harmed on one is held below the approval threshold.
            record_of = past(svc.lessons.similar(sig, now, tool=proposal.tool, limit=TRACK_RECORD_LESSONS))
            track = track_record(proposal.tool, diagnosis.confidence, record_of, svc.settings.confidence_threshold)
            if track.lessons:
                record = cast(TrackRecordJson, track.to_json())
                counts = record["counts"]
                line = (f"past outcomes of {proposal.tool} on {len(track.lessons)} similar incident(s): "
                        f"{counts['helped']} helped, {counts['no_effect']} no effect, "
                        f"{counts['harmed']} harmed; confidence {track.prior:.2f} -> {track.adjusted:.2f}")
                if track.forced_approval:
                    line += f" (harmed on {', '.join(track.harmed_ids)}: not autonomous)"
                diagnosis = diagnosis.model_copy(update={"confidence": round(track.adjusted, 3),
                                                         "evidence": (*diagnosis.evidence, line)})
    return {
        "diagnosis": diagnosis_json(diagnosis),
        "proposal": proposal_json(proposal),
        "llm_calls": list(decision.llm_calls),
        "llm_fallback": decision.fallback,  # the rules decided because the LLM failed: shown in the cycle
        "lessons_consulted": lessons,
        "track_record": record,
    }


def decide(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    """Validate the one proposed tool call against its schema; don't repeat what is already under way."""
    svc = _svc(runtime)
    try:
        proposal = revalidate(ProposedAction.model_validate(state["proposal"]))
    except (ProposalError, ValueError) as exc:
        proposal = validate_proposal("alert_ops",
                                     {"severity": "warning", "summary": f"invalid proposal rejected: {exc}"},
                                     "the proposal broke its schema")
    key = (proposal.tool, target_key(proposal.target))
    now = float(state["window_end"])
    if proposal.tool == "alert_ops":
        # The same alert within the cooldown is a repeat; the same place under another diagnosis is news
        # (a route alerted as failing, then read as card testing: ops must hear the new reading).
        category = state["diagnosis"]["category"]
        for past in reversed(state.get("history", [])):
            if (past["tool"], target_key(past["target"])) == key and past.get("category", category) == category \
                    and now - past["at"] < svc.settings.action_cooldown_seconds:
                proposal = validate_proposal("no_action",
                                             {"reason": f"ops already alerted ({past.get('decision_id', '')})"})
                break
    return {"proposal": proposal_json(proposal)}


def _waiting_for(state: AgentState, proposal: ProposedAction) -> str | None:
    """The escalation still waiting for a human on this very move, if any. The move then runs on its
    own only if the guardrails now allow it (evidence held for its youth or margin has lasted a
    second window), closing that request first (act); otherwise this tick waits too (guard)."""
    key = (proposal.tool, target_key(proposal.target))
    for waiting in state.get("awaiting", []):
        if (waiting["tool"], waiting["target_key"]) == key:
            return waiting["decision_id"]
    return None


# -- guard -----------------------------------------------------------------------

def guard(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    svc = _svc(runtime)
    proposal = ProposedAction.model_validate(state["proposal"])
    diagnosis = Diagnosis.model_validate(state["diagnosis"])
    context = guard_context(state, svc, proposal)
    verdict = evaluate(proposal, diagnosis, context)
    waiting = _waiting_for(state, proposal)
    updates: AgentState = {}
    if waiting and verdict.verdict is not VerdictKind.ALLOW:
        # Still needs a human: the request already open is the one they answer.
        proposal = validate_proposal("no_action", {"reason": f"awaiting human approval of {waiting}"})
        context = guard_context(state, svc, proposal)
        verdict = evaluate(proposal, diagnosis, context)
        updates = {"proposal": proposal_json(proposal)}
    spec = ACTIONS.get(proposal.tool)
    figures: dict[str, Any] = {"blast_radius": round(context.blast_radius, 4),
                               "permission": context.permissions.level(spec).value if spec else None}
    if spec is not None and spec.palm:
        figures["palm_metrics"] = dict(context.palm_metrics)
    return {**updates, "verdict": cast(VerdictJson, {**verdict.model_dump(mode="json"), **figures})}


def after_guard(state: AgentState) -> str:
    kind = state["verdict"]["verdict"]
    if kind == VerdictKind.NEEDS_APPROVAL.value:
        return "escalate"
    return "act"


# -- act / escalate ----------------------------------------------------------------

def act(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    svc = _svc(runtime)
    proposal = ProposedAction.model_validate(state["proposal"])
    verdict = Verdict.model_validate({k: state["verdict"][k] for k in ("verdict", "results")})
    now = float(state["window_end"])
    history = history_of(state)
    updates: AgentState = {"history": history}
    if verdict.verdict is VerdictKind.DENY:
        result = ExecutionResult(status="denied", detail="; ".join(verdict.reasons) or "denied by guardrails")
        return {**updates, "execution": execution_json(result)}
    if proposal.tool == "no_action":
        result = ExecutionResult(status="skipped", detail=proposal.args.get("reason", "no action"))
        return {**updates, "execution": execution_json(result)}
    supersedes = _waiting_for(state, proposal)
    if supersedes:
        refused = supersede(svc, supersedes, state["decision_id"])
        if refused is not None:
            return {**updates, "execution": execution_json(ExecutionResult(status="skipped", detail=refused))}
        updates["awaiting"] = [w for w in state.get("awaiting", []) if w["decision_id"] != supersedes]
    # Palm-pay operations go to the palm-pay backend, the rest to the traffic control plane.
    result = execute(proposal, state["decision_id"], now, control_plane=svc.control_plane, palm=svc.palm)
    if supersedes:
        result = result.model_copy(update={"detail": f"{result.detail} (supersedes approval request {supersedes})"})
    updates["execution"] = execution_json(result)
    if proposal.tool == "alert_ops":
        payload = {"decision_id": state["decision_id"], **proposal.args, "target": proposal.target}
        if svc.control_plane.plane == SHADOW:
            payload["plane"] = SHADOW  # receivers can tell a trial's alert from a live one
        svc.notifier.notify("alert", payload)
    elif result.status == "executed" and state["verdict"].get("permission") == Permission.SUPERVISED.value:
        svc.notifier.notify("supervised_action", {"decision_id": state["decision_id"], "tool": proposal.tool,
                                                  "target": proposal.target, "result": result.detail})
    if result.status in ("executed", "unknown"):  # unknown may have been applied: it counts for cooldowns and caps
        history.append({"tool": proposal.tool, "target": proposal.target, "args": proposal.args, "at": now,
                        "autonomous": True, "decision_id": state["decision_id"], "status": result.status,
                        "category": state["diagnosis"]["category"]})
        updates["history"] = history[-HISTORY_LIMIT:]
        updates["in_force"] = in_force_json(svc.control_plane)
    return updates


def escalate(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    """Needs a human: record the escalation and open an approval request on its own thread."""
    svc = _svc(runtime)
    proposal = ProposedAction.model_validate(state["proposal"])
    reasons = [r["reason"] for r in state["verdict"]["results"] if r["verdict"] != "allow"]
    diagnosis = state["diagnosis"]
    request = {
        "decision_id": state["decision_id"],
        "action": proposal.tool,
        "target": proposal.target,
        "proposal": proposal.model_dump(mode="json"),
        "diagnosis": diagnosis,
        "evidence": list(diagnosis.get("evidence", [])),
        "alternatives": list(diagnosis.get("alternatives", [])),
        "why_approval": reasons,
        "blast_radius": state["verdict"].get("blast_radius"),
        "window_end": state["window_end"],
    }
    approval = None
    if svc.approvals is not None:
        approval = open_request(svc, request)
    svc.notifier.notify("approval_requested", {"decision_id": state["decision_id"], "tool": proposal.tool,
                                               "target": proposal.target, "why": reasons,
                                               "expires_at": approval["expires_at"] if approval else None})
    result = ExecutionResult(status="escalated", detail="human approval required: " + "; ".join(reasons))
    awaiting = list(state.get("awaiting", []))
    awaiting.append({"decision_id": state["decision_id"], "tool": proposal.tool,
                     "target_key": target_key(proposal.target), "at": float(state["window_end"]),
                     # the finding's segment, watched while the request waits (graph.recheck)
                     "finding": dict(diagnosis.get("target") or proposal.target)})
    return {"execution": execution_json(result), "approval": cast("ApprovalOpened | None", approval),
            "awaiting": awaiting, "history": history_of(state)}


# -- learn ---------------------------------------------------------------------------

def learn(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    """Write the decision's audit record; an action that now changes traffic starts being evaluated."""
    svc = _svc(runtime)
    snapshot = _snapshot(state)
    proposal = ProposedAction.model_validate(state["proposal"])
    execution = state["execution"]
    now = float(state["window_end"])
    updates: AgentState = {}
    watching = list(state.get("watching") or [])
    if execution["status"] == "executed" and proposal.tool in EVALUATED_TOOLS and moves_are_real(svc) \
            and all(w["decision_id"] != state["decision_id"] for w in watching):
        watch = watch_for(svc, state, snapshot, state["decision_id"], state["diagnosis"], proposal, "executed", None,
                          now, now)
        if watch is not None:
            updates["watching"] = [*watching, watch]
    record = audit_record(state)
    record["track_record"] = state.get("track_record")
    diagnosed = state.get("diagnosis")
    record["figures"] = tick_figures(snapshot, diagnosed.get("target") if diagnosed else None)  # the console's charts
    source_lag = _source_lag(svc)
    if source_lag is not None and svc.source is not None:
        record["source"] = {"partition": svc.settings.deployment, "lag": source_lag}  # /metrics reads it
        if svc.source.duplicates:  # a log's redeliveries dropped after a restart
            record["source"]["duplicates"] = svc.source.duplicates
    svc.audit.append(state["decision_id"], "decision", now, record)
    recent = list(state.get("recent", []))
    recent.append({"decision_id": state["decision_id"], "window_end": now, "diagnosis": state["diagnosis"],
                   "tool": proposal.tool, "target": proposal.target, "status": execution["status"],
                   "figures": target_figures(state["diagnosis"], snapshot)})
    updates["recent"] = recent[-RECENT_LIMIT:]
    return updates


def _source_lag(svc: AgentServices) -> int | None:
    """Messages (or rows) on the partition's log not read yet; None for sources without a lag."""
    if svc.source is None:
        return None
    try:
        return svc.source.lag()
    except Exception:  # the log is unreachable right now: the decision is recorded without the figure
        return None


def audit_record(state: AgentState) -> dict[str, Any]:
    """Everything needed to answer "why did you do that?" later."""
    return {
        "decision_id": state["decision_id"],
        "tick": state.get("tick"),
        "window_end": state["window_end"],
        "snapshot": state.get("snapshot"),
        "diagnosis": state.get("diagnosis"),
        "proposal": state.get("proposal"),
        "verdict": state.get("verdict"),
        "execution": state.get("execution"),
        "approval": state.get("approval"),
        "lessons_consulted": state.get("lessons_consulted", []),
        "llm_calls": state.get("llm_calls", []),
        "llm_fallback": state.get("llm_fallback"),
        "housekeeping": state.get("housekeeping", []),
        "in_force": state.get("in_force", []),
    }
