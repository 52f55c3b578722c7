"""Ops endpoints over the agent's records: decisions, approvals, lessons, why, chat, audit.

Reads come from the same stores the CLI reads (audit trail, approval book,
lesson store) on the agent's state directory. Approve and reject call the one
use case `payops approve|reject` call too (graph.approval.answer):
the answer is recorded and the agent applies an approved action on its next
tick. The approver recorded is the calling key's principal, `operator:<key id>` (names can be
reused across deployments; ids cannot).
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import Field, StringConstraints

from payops.models import Category

from .auth import OPERATOR, READERS, require
from .errors import ApiError
from .keys import ApiKey
from .models import (
    Approval,
    ApprovalAnswer,
    ApprovalResult,
    AuditVerification,
    ChatAnswer,
    ChatQuestion,
    DecisionDetail,
    DecisionPage,
    Explanation,
    Lesson,
)
from .openapi_docs import errors
from .records import (
    DecisionFilter,
    approval_from,
    audit_record,
    decision_entry,
    decision_from,
    newest_first,
    parse_segment,
)

router = APIRouter(prefix="/v1", tags=["ops"])

DecisionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="Decision id.")]
# Approvals accept an unambiguous prefix, matched with SQL LIKE: no '_' (LIKE's any-character) in it.
ApprovalId = Annotated[str, Path(pattern=r"^[A-Za-z0-9.:-]{1,100}$",
                                 description="Decision id, or an unambiguous prefix of it.")]
ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "superseded", "applied", "voided"]
Verdict = Literal["helped", "no_effect", "harmed", "inconclusive"]
EpochOrTime = Annotated[float, Field(allow_inf_nan=False)] | datetime
SEGMENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,31}=[^=]{1,100}$"


def _services(request: Request) -> Any:
    return request.app.state.backend.services


def _ts(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, float):
        return value
    try:
        return value.timestamp()  # a naive time is taken as the server's local time
    except (ValueError, OverflowError, OSError):
        raise ApiError("INVALID_INPUT", 422, "since/until is outside the range of epoch times") from None


# -- decisions ------------------------------------------------------------------------

@router.get("/decisions", response_model=DecisionPage, summary="List decisions, newest first",
            responses=errors(401, 403, 422))
def list_decisions(
    request: Request,
    since: Annotated[EpochOrTime | None,
                     Query(description="Window end at or after (epoch seconds or ISO 8601).")] = None,
    until: Annotated[EpochOrTime | None,
                     Query(description="Window end at or before (epoch seconds or ISO 8601).")] = None,
    category: Annotated[Category | None, Query(description="Diagnosis category.")] = None,
    segment: Annotated[list[Annotated[str, StringConstraints(pattern=SEGMENT_PATTERN)]], Query(
        description="key=value in the blamed segment or the action's target, e.g. route=psp_a; repeat to AND.",
        max_length=8)] = [],  # noqa: B006 - FastAPI copies defaults
    executed: Annotated[bool | None,
                        Query(description="Only decisions whose action ran autonomously (or not).")] = None,
    escalated: Annotated[bool | None, Query(description="Only decisions sent to a human (or not).")] = None,
    before_seq: Annotated[int | None, Query(ge=1, description="Cursor: decisions older than this audit seq.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    client: ApiKey = Depends(require(*READERS)),
) -> DecisionPage:
    keep = DecisionFilter(
        since=_ts(since), until=_ts(until), category=category.value if category else None,
        segments=tuple(parse_segment(s) for s in segment), executed=executed, escalated=escalated,
        before_seq=before_seq,
    )
    cap = request.app.state.backend.api.decisions_max_page
    items, cursor = newest_first(_services(request).audit.entries("decision"), keep, min(limit, cap))
    return DecisionPage(items=items, next_before_seq=cursor)


def _entries_of(request: Request, decision_id: str) -> list[Any]:
    entries = _services(request).audit.get(decision_id)
    if decision_entry(entries) is None:
        raise ApiError("NOT_FOUND", 404, "No such decision in the audit trail")
    return entries


@router.get("/decisions/{decision_id}", response_model=DecisionDetail, summary="One decision and all its records",
            responses=errors(401, 403, 404, 422))
def get_decision(decision_id: DecisionId, request: Request,
                 client: ApiKey = Depends(require(*READERS))) -> DecisionDetail:
    entries = _entries_of(request, decision_id)
    head = decision_entry(entries)
    assert head is not None
    return DecisionDetail(decision=decision_from(head), records=[audit_record(e) for e in entries])


@router.get("/decisions/{decision_id}/why", response_model=Explanation, summary="Why: the decision explained",
            responses=errors(401, 403, 404, 422))
def why(decision_id: DecisionId, request: Request, client: ApiKey = Depends(require(*READERS))) -> Explanation:
    """Deterministic, from the audit records only (the same text as `payops why`)."""
    from payops.memory.explain import explain_decision

    return Explanation(decision_id=decision_id, explanation=explain_decision(_entries_of(request, decision_id)))


# -- approvals ------------------------------------------------------------------------

@router.get("/approvals", response_model=list[Approval], summary="Approval requests (pending by default)",
            responses=errors(401, 403, 422))
def list_approvals(request: Request, status: ApprovalStatus = "pending",
                   client: ApiKey = Depends(require(*READERS))) -> list[Approval]:
    book = _services(request).approvals
    return [] if book is None else [approval_from(a) for a in book.by_status(status)]


def _answer(request: Request, decision_id: str, approved: bool, body: ApprovalAnswer | None,
            client: ApiKey) -> ApprovalResult:
    """graph.approval.answer (the use case `payops approve|reject` calls too), its errors mapped to HTTP."""
    from payops.graph import approval

    backend = request.app.state.backend
    try:
        done = approval.answer(backend.services, decision_id, approved=approved, approver=client.principal,
                               note=body.note if body else None, operators=backend.keys, lock=backend.approval_lock)
    except approval.ApproverRefused as exc:
        raise ApiError("FORBIDDEN", 403, str(exc)) from None
    except approval.ApprovalsUnavailable:
        raise ApiError("UNAVAILABLE", 503, "Approvals are not kept in this deployment") from None
    except approval.ApprovalAmbiguous:
        raise ApiError("AMBIGUOUS_ID", 409, "The id matches more than one request; give more of it") from None
    except approval.ApprovalNotFound:
        raise ApiError("NOT_FOUND", 404, "No such approval request") from None
    except approval.ApprovalExpired:
        raise ApiError("APPROVAL_EXPIRED", 410,
                       "The request expired before the answer; it is recorded as expired") from None
    except approval.ApprovalNotPending as exc:
        raise ApiError("APPROVAL_NOT_PENDING", 409,
                       f"The request is no longer pending (status: {exc.status})") from None
    except approval.BadAnswer as exc:
        raise ApiError("INVALID_INPUT", 422, str(exc)) from None
    return ApprovalResult(decision_id=done.decision_id, status=done.status, approver=done.approver)


@router.post("/approvals/{decision_id}/approve", response_model=ApprovalResult, summary="Approve a pending action",
             responses=errors(401, 403, 404, 409, 410, 413, 422, 503))
def approve(decision_id: ApprovalId, request: Request, body: ApprovalAnswer | None = None,
            client: ApiKey = Depends(require(OPERATOR))) -> ApprovalResult:
    """Same semantics as `payops approve` (an unambiguous id prefix works too); the agent applies it on its next
    tick."""
    return _answer(request, decision_id, True, body, client)


@router.post("/approvals/{decision_id}/reject", response_model=ApprovalResult, summary="Reject a pending action",
             responses=errors(401, 403, 404, 409, 410, 413, 422, 503))
def reject(decision_id: ApprovalId, request: Request, body: ApprovalAnswer | None = None,
           client: ApiKey = Depends(require(OPERATOR))) -> ApprovalResult:
    return _answer(request, decision_id, False, body, client)


# -- lessons --------------------------------------------------------------------------

def _lesson(stored: Any) -> Lesson:
    data = stored.model_dump(mode="json")
    return Lesson.model_validate({k: v for k, v in data.items() if k in Lesson.model_fields})


@router.get("/lessons", response_model=list[Lesson], summary="Lessons learned from outcomes",
            responses=errors(401, 403, 422))
def list_lessons(
    request: Request,
    category: Annotated[Category | None, Query()] = None,
    verdict: Annotated[Verdict | None, Query()] = None,
    tool: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    client: ApiKey = Depends(require(*READERS)),
) -> list[Lesson]:
    lessons = _services(request).lessons.list(category.value if category else None, verdict=verdict, tool=tool)
    return [_lesson(x) for x in lessons]


@router.get("/lessons/{decision_id}", response_model=Lesson, summary="One lesson", responses=errors(401, 403, 404, 422))
def get_lesson(decision_id: DecisionId, request: Request, client: ApiKey = Depends(require(*READERS))) -> Lesson:
    found = _services(request).lessons.find(decision_id)
    if found is None:
        raise ApiError("NOT_FOUND", 404, "No such lesson")
    return _lesson(found)


# -- chat -----------------------------------------------------------------------------

@router.post("/chat", response_model=ChatAnswer, summary="Ask the ops chat one question (read-only)",
             responses=errors(401, 403, 413, 422, 503))
def chat(body: ChatQuestion, request: Request, client: ApiKey = Depends(require(*READERS))) -> ChatAnswer:
    """Answered from the audit trail and lessons only; the chat can never execute an action."""
    return ask_chat(request.app.state.backend, body.question)


def ask_chat(backend: Any, question: str) -> ChatAnswer:
    """One question to payops.chat (issue 7): its read-only lookups over the audit trail and lessons,
    through the LLM when one is configured, else from the records directly."""
    try:
        chat_module = importlib.import_module("payops.chat")
    except ModuleNotFoundError as exc:
        if exc.name != "payops.chat":
            raise
        raise ApiError("UNAVAILABLE", 503, "The chat is not available in this deployment") from None
    svc = backend.services
    # read and shown in the display zone
    tools = chat_module.ChatTools(svc.audit, svc.lessons, backend.settings.display_tz())
    try:
        reply = chat_module.ask(question, tools, backend.chat_model())
    except chat_module.ChatError:
        raise ApiError("INVALID_INPUT", 422, "The question could not be read (times: HH:MM, today, yesterday, "
                       "an ISO time or epoch seconds)") from None
    return ChatAnswer(answer=reply.text, decision_ids=list(reply.cited), note=reply.note)


# -- audit ----------------------------------------------------------------------------

@router.get("/audit/verify", response_model=AuditVerification, summary="Check the audit trail's hash chain",
            responses=errors(401, 403))
def audit_verify(request: Request, client: ApiKey = Depends(require(*READERS))) -> AuditVerification:
    """200 either way: `ok` says whether the chain holds; otherwise the first bad record is named."""
    r = _services(request).audit.verify()
    return AuditVerification(ok=r.ok, count=r.count, head_hash=r.head_hash, first_bad_seq=r.first_bad_seq,
                             first_bad_decision=r.first_bad_decision, reason=r.reason)
