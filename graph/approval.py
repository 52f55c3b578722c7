"""Human approval as its own LangGraph thread per request, so the agent keeps ticking.

`open_request` starts thread `approval:<decision_id>`, which pauses in
`interrupt()`. An operator resumes it from any process with `Command(resume=...)`;
the answer is validated and recorded, and an approved action is applied by the
agent on its next tick (idempotent by decision id).

`answer()` is the one use case both entrypoints call (`payops approve|reject` and
`POST /v1/approvals/{id}/approve|reject`): the approver is the authenticated
operator's principal, `operator:<key id>`, checked against the key store; free
text, an unknown or revoked key and a non-operator key are refused, so an agent
proposal that needs a human (its spec permission is `human_required`, or a
guardrail escalated it) gets one authenticated human's approval, never the
agent's own word. The graph's answer schema refuses free text too.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from payops.errors import BadInput, Conflict, NotFound, PayopsError, Unavailable
from payops.memory.approvals import APPROVED, EXPIRED, PENDING, REJECTED, SUPERSEDED, ApprovalError

from .services import AgentServices, Context, services_of

# An authenticated human: an operator API key's principal (api/keys.py), never a typed name.
OPERATOR_PRINCIPAL = re.compile(r"^operator:[0-9a-f]{12}$")
SYSTEM = "system"  # the answer of an expiry or a supersession: a rejection nobody gave


class ApprovalAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: bool
    approver: str = Field(..., min_length=1, max_length=100)
    note: str | None = Field(None, max_length=1000)

    @model_validator(mode="after")
    def _an_authenticated_operator(self) -> ApprovalAnswer:
        if self.approver == SYSTEM and not self.approved:
            return self
        if not OPERATOR_PRINCIPAL.match(self.approver):
            raise ValueError("the approver must be an authenticated operator (operator:<key id>), not free text")
        return self


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
    changed = (svc.approvals.decide(decision_id, status, answer["approver"], answer.get("note"), svc.clock())
               if svc.approvals else False)
    if not changed and svc.approvals is not None:  # this node re-run after a kill: the book already holds this answer
        found = svc.approvals.get(decision_id)
        changed = found is not None and found.status == status and found.approver == answer["approver"]
        if found is not None and not changed:
            # Another answer closed it first (a human and the agent's supersession, or an expiry, at once):
            # the book holds the winner and the trail its record; the loser is not written as the answer.
            return {"status": found.status}
    svc.audit.append(decision_id, "approval", svc.clock(),
                     approval_record(decision_id, status, answer["approver"], answer.get("note"),
                                     state["request"].get("proposal"), changed))
    return {"status": status}


def record_answer_if_missing(svc: AgentServices, found: Any, now: float, entries: Any = None) -> None:
    """The book closed a request whose "approval" record never reached the trail (the process was killed
    between the two writes): write it from the book, which holds the answer. `entries`: the request's
    trail when the caller has read it already."""
    if any(e.kind == "approval" for e in (svc.audit.get(found.decision_id) if entries is None else entries)):
        return
    svc.audit.append(found.decision_id, "approval", now,
                     approval_record(found.decision_id, found.status, found.approver or SYSTEM, found.note,
                                     found.request.get("proposal"), True))


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


class ApprovalNotPending(Conflict):
    """The request is not pending (answered, expired, applied...); `status` names what it is, when known."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApprovalExpired(ApprovalNotPending):
    """The request's expiry passed before the answer came; it is recorded as expired instead."""


EXPIRY_ANSWER = {"approved": False, "approver": SYSTEM, "note": "expired unanswered"}


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




def supersede(svc: AgentServices, request_id: str, decision_id: str) -> str | None:
    """Close a waiting request before the agent makes the same move on its own (the guardrails now
    allow it); None when closed (or no book: replay), else why the move must not run.
    The book's conditional update decides a race with a human answering it: whoever closes it first
    wins, so the move never runs twice. A crash after closing redoes the tick, which then finds
    nothing waiting and acts under the same decision id (idempotent)."""
    if svc.approvals is None:
        return None
    note = f"superseded: the guardrails allowed the same move on its own at {decision_id}"
    with suppress(ApprovalNotPending):  # answered meanwhile: the book below says how
        resume(svc, request_id, {"approved": False, "approver": SYSTEM, "note": note}, status=SUPERSEDED)
    found = svc.approvals.get(request_id)
    if found is not None and found.status == SUPERSEDED:
        return None
    return (f"approval request {request_id} was answered first ({found.status if found else 'gone'}); "
            "it is not repeated on the agent's own authority")


# -- answering: the one use case behind `payops approve|reject` and POST /v1/approvals/... ---------

class ApprovalsUnavailable(Unavailable, RuntimeError):
    """This deployment keeps no approval book."""


class ApprovalNotFound(NotFound, LookupError):
    """No request with that id (or id prefix)."""


class ApprovalAmbiguous(BadInput, LookupError):
    """The id prefix matches more than one request."""


class ApproverRefused(PayopsError, PermissionError):
    """The approver is not an authenticated, active operator."""


class BadAnswer(BadInput, ValueError):
    """The answer does not validate (e.g. a note over 1,000 characters); the request stays pending."""


class OperatorKey(Protocol):
    """An API key as the key store returns it (api.keys.ApiKey)."""

    @property
    def principal(self) -> str: ...

    @property
    def active(self) -> bool: ...


class OperatorKeys(Protocol):
    """The key store (api.keys.ApiKeyStore): who holds a key id."""

    def get(self, key_id: str) -> OperatorKey | None: ...


@dataclass(frozen=True)
class Answered:
    decision_id: str
    status: str
    approver: str


def check_approver(approver: str, operators: OperatorKeys) -> None:
    """Raise ApproverRefused unless `approver` is the principal of an active operator key in `operators`."""
    if not isinstance(approver, str) or not OPERATOR_PRINCIPAL.match(approver):
        raise ApproverRefused("the approver must be an authenticated operator (operator:<key id>), not free text")
    key = operators.get(approver.split(":", 1)[1])
    if key is None or not key.active or key.principal != approver:
        raise ApproverRefused("the approver's operator key is unknown or revoked")


def answer(svc: AgentServices, decision_ref: str, *, approved: bool, approver: str, note: str | None,
           operators: OperatorKeys, lock: AbstractContextManager[Any] | None = None) -> Answered:
    """Approve or reject a pending request (by id or an unambiguous prefix) as an authenticated operator.

    Raises ApproverRefused, ApprovalsUnavailable, ApprovalAmbiguous, ApprovalNotFound, BadAnswer,
    ApprovalExpired (recorded as expired) or ApprovalNotPending (its message names the status).
    `lock`: held around find and resume (one answer at a time in a server process).
    """
    check_approver(approver, operators)
    if svc.approvals is None or svc.approval_graph is None:
        raise ApprovalsUnavailable("approvals are not kept in this deployment")
    with lock or nullcontext():
        try:
            found = svc.approvals.find(decision_ref)
        except ApprovalError as exc:
            raise ApprovalAmbiguous(str(exc)) from None
        if found is None:
            raise ApprovalNotFound(f"no approval request {decision_ref}")
        try:
            status = resume(svc, found.decision_id, {"approved": approved, "approver": approver, "note": note})
        except ApprovalExpired:
            raise
        except ApprovalNotPending:
            now = svc.approvals.get(found.decision_id)
            status = now.status if now else found.status
            raise ApprovalNotPending(f"request {found.decision_id} is no longer pending (status: {status})",
                                     status) from None
        except ValidationError:
            raise BadAnswer("the note must be at most 1000 characters") from None
    return Answered(found.decision_id, status, approver)


class RollbackRefused(Conflict, ValueError):
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
