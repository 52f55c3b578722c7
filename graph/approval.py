"""Human approval as its own LangGraph thread per request, so the agent keeps ticking.

`open_request` starts thread `approval:<decision_id>`, which pauses in
`interrupt()`. An operator resumes it from any process (`payops approve|reject`)
with `Command(resume=...)`; the answer is validated and recorded, and an approved
action is applied by the agent on its next tick (idempotent by decision id).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ConfigDict, Field

from payops.memory.approvals import APPROVED, EXPIRED, PENDING, REJECTED

from .services import AgentServices, Context, services_of


class ApprovalAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: bool
    approver: str = Field(..., min_length=1, max_length=100)
    note: str | None = Field(None, max_length=1000)


class ApprovalState(TypedDict, total=False):
    request: dict[str, Any]
    answer: dict[str, Any]
    status: str


def await_decision(state: ApprovalState) -> dict[str, Any]:
    # Nothing before interrupt(): this node runs again from the top on resume.
    # response_schema: a bad resume value raises ValidationError and the thread stays paused.
    answer = interrupt(state["request"], response_schema=ApprovalAnswer)
    parsed = answer if isinstance(answer, ApprovalAnswer) else ApprovalAnswer.model_validate(answer)
    return {"answer": parsed.model_dump()}


def record_decision(state: ApprovalState, runtime: Runtime[Context]) -> dict[str, Any]:
    svc = services_of(runtime.context)
    answer = state["answer"]
    decision_id = state["request"]["decision_id"]
    status = state.get("status") or (APPROVED if answer["approved"] else REJECTED)
    changed = svc.approvals.decide(decision_id, status, answer["approver"], answer.get("note"), svc.clock()) if svc.approvals else False
    if not changed and svc.approvals is not None:  # this node re-run after a kill: the book already holds this answer
        found = svc.approvals.get(decision_id)
        changed = found is not None and found.status == status and found.approver == answer["approver"]
    svc.audit.append(decision_id, "approval", svc.clock(),
                     approval_record(decision_id, status, answer["approver"], answer.get("note"),
                                     state["request"].get("proposal"), changed))
    return {"status": status}


def approval_record(decision_id: str, status: str, approver: str, note: str | None, proposal: Any,
                    recorded: bool) -> dict[str, Any]:
    """The "approval" audit record (one per decision id: memory/audit.py)."""
    return {"decision_id": decision_id, "status": status, "approver": approver, "note": note, "proposal": proposal,
            "recorded": recorded}


def build_approval_graph(checkpointer: Any = None) -> Any:
    g = StateGraph(ApprovalState, context_schema=Context)
    g.add_node("await_decision", await_decision)
    g.add_node("record_decision", record_decision)
    g.add_edge(START, "await_decision")
    g.add_edge("await_decision", "record_decision")
    g.add_edge("record_decision", END)
    return g.compile(checkpointer=checkpointer)


def thread_for(decision_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": f"approval:{decision_id}"}}


def open_request(svc: AgentServices, request: dict[str, Any]) -> dict[str, Any]:
    assert svc.approvals is not None and svc.approval_graph is not None, "approvals need a durable checkpointer"
    decision_id = request["decision_id"]
    created = svc.clock()
    expires = created + svc.settings.approval_ttl_seconds
    request = {**request, "created_at": created, "expires_at": expires}
    existing = svc.approvals.get(decision_id)
    if existing is None:
        svc.approvals.open(decision_id, f"approval:{decision_id}", created, expires, request)
        svc.approval_graph.invoke({"request": request}, thread_for(decision_id), context=Context(services=svc))
        existing = svc.approvals.get(decision_id)
    elif existing.status == PENDING and not svc.approval_graph.get_state(thread_for(decision_id)).next:
        # A worker died between recording the request and pausing its thread; the tick that takes
        # the window over starts the thread with the request as first recorded.
        svc.approval_graph.invoke({"request": existing.request}, thread_for(decision_id), context=Context(services=svc))
    assert existing is not None
    return {"decision_id": decision_id, "status": existing.status, "expires_at": existing.expires_at}


class ApprovalNotPending(Exception):
    pass


class ApprovalExpired(ApprovalNotPending):
    """The request's expiry passed before the answer came; it is recorded as expired instead."""


EXPIRY_ANSWER = {"approved": False, "approver": "system", "note": "expired unanswered"}


def resume(svc: AgentServices, decision_id: str, answer: dict[str, Any], status: str | None = None) -> str:
    """Answer a pending request (from any process). Returns the recorded status.

    An answer that arrives after the request expired does not count: the request is
    closed as expired (and the caller told so), whether or not the agent ticked since.
    """
    assert svc.approvals is not None and svc.approval_graph is not None
    found = svc.approvals.get(decision_id)
    if found is None or found.status != PENDING:
        raise ApprovalNotPending(f"no pending approval request {decision_id}")
    parsed = ApprovalAnswer.model_validate(answer)  # bad input: clear error, thread stays paused
    if status is None and found.expires_at <= svc.clock():
        resume(svc, decision_id, EXPIRY_ANSWER, status=EXPIRED)
        raise ApprovalExpired(f"approval request {decision_id} expired before the answer; recorded as expired")
    update = {"status": status} if status else None  # e.g. "expired" rather than a plain rejection
    result = svc.approval_graph.invoke(Command(resume=parsed.model_dump(), update=update),
                                       thread_for(decision_id), context=Context(services=svc))
    return str(result.get("status", ""))



class RollbackRefused(ValueError):
    """A rollback request that cannot be filed (no such action in force, the book is not kept)."""


def request_rollback(svc: AgentServices, action_id: str, in_force: list[dict[str, Any]], operator: str,
                     note: str | None) -> str:
    """An operator's request to roll back an action in force, applied by the agent on its next tick.

    The agent runs elsewhere (`payops run` / `tick`), so the request goes into the approval book already
    approved by the operator, with the proposal `rollback_action`: the tick's housekeeping applies it
    exactly once through the control plane and audits it under the operator's identity, as it does an
    approved action. Returns the request's id.
    """
    if svc.approvals is None:
        raise RollbackRefused("this deployment keeps no approval book")
    action = next((a for a in in_force if a.get("action_id") == action_id), None)
    if action is None:
        raise RollbackRefused("no such action in force")
    if any(a.request.get("rollback_of") == action_id for a in svc.approvals.by_status(APPROVED)):
        raise RollbackRefused("a rollback of this action is already filed")  # a double submit, or a second operator
    now = svc.clock()
    request_id = f"rb-{action_id}-{int(now)}"
    reason = f"operator rollback request: {note}" if note else "operator rollback request"
    proposal = {"tool": "rollback_action", "target": {},  # the action id names what is undone
                "args": {"action_id": action_id, "reason": reason[:500]}}
    request = {"decision_id": request_id, "proposal": proposal, "window_end": now, "rollback_of": action_id,
               "why_approval": [f"requested by {operator}"]}
    svc.approvals.open(request_id, f"rollback:{action_id}", now, now + svc.settings.approval_ttl_seconds, request)
    if not svc.approvals.decide(request_id, APPROVED, operator, note, now):
        raise RollbackRefused("a rollback of this action is already filed")  # the same second: the book kept the first
    svc.audit.append(request_id, "approval", now, approval_record(request_id, APPROVED, operator, note, proposal, True))
    return request_id
