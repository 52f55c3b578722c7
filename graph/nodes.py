"""The six steps of one tick, each a small function over the state.

observe -> reason -> decide -> guard -> act | escalate -> learn
"""

from __future__ import annotations

import hashlib
from typing import Any

from langgraph.runtime import Runtime

from payops.guardrails.metrics import blast_radius, palm_metrics
from payops.guardrails.policies import GuardContext, PastAction, RouteHealth, evaluate
from payops.memory.approvals import APPROVED, EXPIRED, PENDING
from payops.memory.lessons import Lesson, Signature, magnitude_bucket
from payops.models import Category, Diagnosis, ExecutionResult, ProposedAction, Verdict, VerdictKind, target_key
from payops.signals.baseline import BaselineTracker
from payops.signals.window import WindowSnapshot
from payops.tools.actions import ProposalError, revalidate, validate_proposal
from payops.tools.control_plane import ActionInForce

from .reasoners.base import ActionView, ReasoningContext
from .reasoners.rules import route_health, segment_methods
from .services import AgentServices, Context, services_of
from .state import AgentState

HISTORY_LIMIT = 200
RECENT_LIMIT = 30


def decision_id_for(thread_id: str, window_end: float) -> str:
    """Deterministic: the same deployment and window always get the same id (idempotency key)."""
    return "d-" + hashlib.sha256(f"{thread_id}|{window_end:.3f}".encode()).hexdigest()[:16]


def _svc(runtime: Runtime[Context]) -> AgentServices:
    return services_of(runtime.context)


def _snapshot(svc: AgentServices) -> WindowSnapshot:
    return svc.scratch["snapshot"]


# -- observe -------------------------------------------------------------------

def observe(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    svc = _svc(runtime)
    window_end = float(state["window_end"])
    if not svc.restored:
        # First tick of this process: bring back what the checkpoint remembers.
        if state.get("baselines"):
            svc.window.baselines = BaselineTracker.from_json(state["baselines"])
        restore = getattr(svc.control_plane, "restore", None)
        if restore and state.get("in_force"):
            restore(state["in_force"])
        svc.restored = True
    if svc.source is not None:
        before = svc.source.report.bad_count
        events = svc.source.read_until(window_end)
        svc.window.add(events)
        new_bad = svc.source.report.bad_count - before
        if new_bad:
            svc.window.note_bad_lines(new_bad, svc.source.report.bad[-new_bad:] if new_bad <= len(svc.source.report.bad) else [])
    snapshot = svc.window.snapshot(window_end)
    svc.scratch["snapshot"] = snapshot
    housekeeping = _housekeeping(svc, window_end)
    return {
        "awaiting": _still_awaiting(state, svc, window_end),
        "tick": int(state.get("tick", 0)) + 1,
        "decision_id": decision_id_for(svc.thread_id, window_end),
        "snapshot": snapshot.digest(),
        "baselines": svc.window.baselines.to_json(),
        "housekeeping": housekeeping,
        "in_force": [a.to_json() for a in svc.control_plane.in_force()],
        "approval": None,
        "llm_calls": [],
    }


def _still_awaiting(state: AgentState, svc: AgentServices, now: float) -> list[dict[str, Any]]:
    """Escalations still waiting: pending in the approval book, or (no book: replay) younger than the approval TTL."""
    out = []
    for waiting in state.get("awaiting", []):
        if svc.approvals is not None:
            found = svc.approvals.get(waiting["decision_id"])
            if found is not None and found.status == PENDING:
                out.append(waiting)
        elif now - waiting["at"] < svc.settings.approval_ttl_seconds:
            out.append(waiting)
    return out


def _housekeeping(svc: AgentServices, now: float) -> list[dict[str, Any]]:
    """What changed in the control plane since the last tick: expiries and approved actions."""
    notes: list[dict[str, Any]] = []
    for expired in svc.control_plane.expire(now):
        notes.append({"op": "rollback", "action_id": expired.action_id, "tool": expired.tool, "target": expired.target, "reason": "ttl expired"})
    if svc.approvals is None:
        return notes
    wall = svc.clock()
    for pending in svc.approvals.by_status(PENDING):
        if pending.expires_at <= wall:
            resume_approval(svc, pending.decision_id, {"approved": False, "approver": "system", "note": "expired unanswered"}, status=EXPIRED)
            notes.append({"op": "approval_expired", "decision_id": pending.decision_id})
    for approved in svc.approvals.by_status(APPROVED):
        proposal = ProposedAction.model_validate(approved.request["proposal"])
        result = svc.control_plane.apply(proposal, approved.decision_id, now)
        svc.approvals.mark_applied(approved.decision_id, wall, result.detail)
        notes.append({"op": "approved_action_applied", "decision_id": approved.decision_id, "tool": proposal.tool,
                      "target": proposal.target, "approver": approved.approver, "result": result.detail})
    return notes


def resume_approval(svc: AgentServices, decision_id: str, answer: dict[str, Any], status: str | None = None) -> None:
    from .approval import resume

    resume(svc, decision_id, answer, status)


# -- reason / decide -------------------------------------------------------------

def _signature(diagnosis: Diagnosis, snapshot: WindowSnapshot) -> Signature:
    seg = snapshot.segment(**diagnosis.target) if diagnosis.target else snapshot.total
    rate = seg.failure_rate if seg else snapshot.total.failure_rate
    dominant = (seg.dominant_error() if seg else None) or "NONE"
    return Signature(diagnosis.category.value, target_key(diagnosis.target), ",".join(sorted(diagnosis.target)) or "*",
                     dominant, magnitude_bucket(rate))


def _views(state: AgentState) -> tuple[ActionView, ...]:
    return tuple(ActionView(a["tool"], a["target"], a["args"], a["applied_at"], a["expires_at"]) for a in state.get("in_force", []))


def reason(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    svc = _svc(runtime)
    snapshot = _snapshot(svc)
    recent = state.get("recent") or []
    previous = Diagnosis.model_validate(recent[-1]["diagnosis"]) if recent else None
    ctx = ReasoningContext(in_force=_views(state), previous=previous, thresholds=svc.thresholds)
    decision = svc.reasoner.decide(snapshot, ctx)
    lessons: list[dict[str, Any]] = []
    if decision.diagnosis.category is not Category.HEALTHY:
        sig = _signature(decision.diagnosis, snapshot)
        lessons = [{"decision_id": l.decision_id, "tool": l.tool, "verdict": l.verdict, "similarity": round(s, 3)}
                   for l, s in svc.lessons.similar(sig, float(state["window_end"]))]
    return {
        "diagnosis": decision.diagnosis.model_dump(mode="json"),
        "proposal": decision.proposal.model_dump(mode="json"),
        "llm_calls": list(decision.llm_calls),
        "lessons_consulted": lessons,
    }


def decide(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Validate the one proposed tool call against its schema; don't repeat what is already under way."""
    svc = _svc(runtime)
    try:
        proposal = revalidate(ProposedAction.model_validate(state["proposal"]))
    except (ProposalError, ValueError) as exc:
        proposal = validate_proposal("alert_ops", {"severity": "warning", "summary": f"invalid proposal rejected: {exc}"}, "the proposal broke its schema")
    key = (proposal.tool, target_key(proposal.target))
    now = float(state["window_end"])
    for waiting in state.get("awaiting", []):
        if (waiting["tool"], waiting["target_key"]) == key:
            proposal = validate_proposal("no_action", {"reason": f"awaiting human approval of {waiting['decision_id']}"})
            break
    if proposal.tool == "alert_ops":
        for past in reversed(state.get("history", [])):
            if (past["tool"], target_key(past["target"])) == key and now - past["at"] < svc.settings.action_cooldown_seconds:
                proposal = validate_proposal("no_action", {"reason": f"ops already alerted ({past.get('decision_id', '')})"})
                break
    return {"proposal": proposal.model_dump(mode="json")}


# -- guard -----------------------------------------------------------------------

def guard_context(state: AgentState, svc: AgentServices, proposal: ProposedAction) -> GuardContext:
    snapshot = _snapshot(svc)
    s = svc.settings
    health = {r: RouteHealth(h, m, rate) for r, (h, m, rate) in route_health(snapshot, s.significance_z).items()}
    history = tuple(PastAction(h["tool"], h["target"], h.get("args", {}), h["at"], h.get("autonomous", True)) for h in state.get("history", []))
    in_force = tuple(PastAction(a["tool"], a["target"], a["args"], a["applied_at"], True) for a in state.get("in_force", []))
    return GuardContext(
        now=float(state["window_end"]),
        permissions=svc.permissions,
        confidence_threshold=s.confidence_threshold,
        max_autonomous_volume=s.max_autonomous_volume,
        cooldown_seconds=s.action_cooldown_seconds,
        max_autonomous_actions_per_hour=s.max_autonomous_actions_per_hour,
        blast_radius=blast_radius(snapshot, proposal.target),
        in_force=in_force,
        history=history,
        routes=health,
        target_methods=frozenset(segment_methods(snapshot, proposal.target)) if proposal.tool == "reroute_traffic" else frozenset(),
        palm_metrics=palm_metrics(snapshot),
    )


def guard(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    svc = _svc(runtime)
    proposal = ProposedAction.model_validate(state["proposal"])
    diagnosis = Diagnosis.model_validate(state["diagnosis"])
    context = guard_context(state, svc, proposal)
    verdict = evaluate(proposal, diagnosis, context)
    return {"verdict": {**verdict.model_dump(mode="json"), "blast_radius": round(context.blast_radius, 4)}}


def after_guard(state: AgentState) -> str:
    kind = state["verdict"]["verdict"]
    if kind == VerdictKind.NEEDS_APPROVAL.value:
        return "escalate"
    return "act"


# -- act / escalate ----------------------------------------------------------------

def act(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    svc = _svc(runtime)
    proposal = ProposedAction.model_validate(state["proposal"])
    verdict = Verdict.model_validate({k: v for k, v in state["verdict"].items() if k != "blast_radius"})
    now = float(state["window_end"])
    if verdict.verdict is VerdictKind.DENY:
        result = ExecutionResult(status="denied", detail="; ".join(verdict.reasons) or "denied by guardrails")
        return {"execution": result.model_dump(mode="json")}
    if proposal.tool == "no_action":
        result = ExecutionResult(status="skipped", detail=proposal.args.get("reason", "no action"))
        return {"execution": result.model_dump(mode="json")}
    result = svc.control_plane.apply(proposal, state["decision_id"], now)
    updates: dict[str, Any] = {"execution": result.model_dump(mode="json")}
    if proposal.tool == "alert_ops":
        svc.notifier.notify("alert", {"decision_id": state["decision_id"], **proposal.args, "target": proposal.target})
    if result.status == "executed":
        history = list(state.get("history", []))
        history.append({"tool": proposal.tool, "target": proposal.target, "args": proposal.args, "at": now, "autonomous": True,
                        "decision_id": state["decision_id"]})
        updates["history"] = history[-HISTORY_LIMIT:]
        updates["in_force"] = [a.to_json() for a in svc.control_plane.in_force()]
    return updates


def escalate(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Needs a human: record the escalation and open an approval request on its own thread."""
    svc = _svc(runtime)
    proposal = ProposedAction.model_validate(state["proposal"])
    reasons = [r["reason"] for r in state["verdict"]["results"] if r["verdict"] != "allow"]
    request = {
        "decision_id": state["decision_id"],
        "proposal": proposal.model_dump(mode="json"),
        "diagnosis": state["diagnosis"],
        "why_approval": reasons,
        "blast_radius": state["verdict"].get("blast_radius"),
        "window_end": state["window_end"],
    }
    approval = None
    if svc.approvals is not None:
        from .approval import open_request

        approval = open_request(svc, request)
    svc.notifier.notify("approval_requested", {"decision_id": state["decision_id"], "tool": proposal.tool,
                                               "target": proposal.target, "why": reasons})
    result = ExecutionResult(status="escalated", detail="human approval required: " + "; ".join(reasons))
    awaiting = list(state.get("awaiting", []))
    awaiting.append({"decision_id": state["decision_id"], "tool": proposal.tool, "target_key": target_key(proposal.target),
                     "at": float(state["window_end"])})
    return {"execution": result.model_dump(mode="json"), "approval": approval, "awaiting": awaiting}


# -- learn ---------------------------------------------------------------------------

def learn(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    svc = _svc(runtime)
    snapshot = _snapshot(svc)
    diagnosis = Diagnosis.model_validate(state["diagnosis"])
    proposal = ProposedAction.model_validate(state["proposal"])
    execution = state["execution"]
    now = float(state["window_end"])
    if execution["status"] in ("executed", "escalated") and proposal.tool != "no_action":
        sig = _signature(diagnosis, snapshot)
        seg = snapshot.segment(**proposal.target) if proposal.target else snapshot.total
        before = {"failure_rate": round(seg.failure_rate, 4), "attempts": float(seg.attempts),
                  "latency_p95_ms": round(seg.latency_p95_ms, 1)} if seg else {}
        svc.lessons.put(Lesson(
            decision_id=state["decision_id"], category=sig.category, target_key=sig.target_key, target_dims=sig.target_dims,
            dominant_error=sig.dominant_error, magnitude=sig.magnitude,
            method_mix=",".join(sorted(segment_methods(snapshot, proposal.target))),
            tool=proposal.tool, args=proposal.args, status=execution["status"], before=before, created_at=now,
        ))
    record = audit_record(state)
    svc.audit.append(state["decision_id"], "decision", now, record)
    recent = list(state.get("recent", []))
    recent.append({"decision_id": state["decision_id"], "window_end": now, "diagnosis": state["diagnosis"],
                   "tool": proposal.tool, "target": proposal.target, "status": execution["status"]})
    return {"recent": recent[-RECENT_LIMIT:]}


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
        "housekeeping": state.get("housekeeping", []),
        "in_force": state.get("in_force", []),
    }


def in_force_records(state: AgentState) -> list[ActionInForce]:
    return [ActionInForce(**a) for a in state.get("in_force", [])]
