"""The operator console: server-rendered pages under /console, same process and roles as the API.

Sign-in exchanges a viewer or operator API key for a session cookie (HttpOnly, SameSite=Strict,
Secure when configured; the key never appears in a URL, a page or a log). Every state-changing
request carries the session's CSRF token. Operators approve, reject and ask for rollbacks through the
same functions as the HTTP API, recorded under their key's identity.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from payops.memory.approvals import ANSWERED

from ..keys import Role
from ..records import DecisionFilter, approval_from, parse_segment
from . import views
from .sessions import Session, SessionStore, csrf_ok

HERE = Path(__file__).resolve().parent
COOKIE = "payops_session"
PAGE_LIMIT = 200  # rows of a timeline page: an operator filters rather than scrolls further
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _state(request: Request) -> Any:
    return _console_state(request.app.state)


def _console_state(app_state: Any) -> Any:
    if not hasattr(app_state, "console_sessions"):
        app_state.console_sessions = SessionStore()
        app_state.console_index = views.DecisionIndex()
    return app_state


def start_warm_up(app_state: Any) -> None:
    """Decode the trail in the background once per process: from the server's start (api/app.py's
    lifespan) or, in an app built without it, from the sign-in page, which every operator passes after
    a restart (sessions live in memory). The first page then finds it done instead of decoding it."""
    state = _console_state(app_state)
    if not getattr(state, "console_warmed", False):
        state.console_warmed = True
        views.warm_up(state.console_index, lambda: app_state.backend.services.audit)


def _clock(request: Request) -> views.Clock:
    return views.Clock(ZoneInfo(request.app.state.backend.settings.display_zone))


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> Response:
    context.update(session=session, clock=_clock(request), now=time.time(), age=views.age_text,
                   operator=session is not None and session.role == Role.OPERATOR.value)
    return _headers(templates.TemplateResponse(request, name, context, status_code=status))


def _session(request: Request) -> Session | None:
    """The caller's live session, or None (no cookie, expired, or its key revoked since)."""
    state = _state(request)
    token = request.cookies.get(COOKIE)
    session = state.console_sessions.get(token)
    if session is None:
        return None
    key = request.app.state.backend.keys.get(session.key_id)
    request.state.console_key = key  # the writes record its principal
    if key is None or not key.active:
        state.console_sessions.end_key(session.key_id)
        return None
    return session


def _to_sign_in(request: Request) -> Response:
    return _headers(RedirectResponse("/console/sign-in", status_code=303))


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:16 * 1024]
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _refused(request: Request, session: Session | None, message: str, status: int) -> Response:
    return _page(request, "error.html", session, status=status, message=message)


CSRF_REFUSAL = "This form expired or did not come from the console (CSRF check)."


async def _write(request: Request,
                 operators_only: str | None = None) -> tuple[Session | None, dict[str, str], Response | None]:
    """A state-changing request's session and form, or the response refusing it: no session (sign in),
    a missing or wrong CSRF token, or (`operators_only` says what) a viewer trying an operator's write."""
    session = _session(request)
    if session is None:
        return None, {}, _to_sign_in(request)
    form = await _form(request)
    if not csrf_ok(session, form.get("csrf")):
        return session, form, _refused(request, session, CSRF_REFUSAL, 403)
    if operators_only is not None and session.role != Role.OPERATOR.value:
        return session, form, _refused(request, session, f"Only operators {operators_only}.", 403)
    return session, form, None


def _audit_console(request: Request, kind: str, session: Session, detail: dict[str, Any]) -> None:
    """Sign-ins, sign-outs and rollback requests go to the agent's audit trail under the key's identity."""
    now = time.time()
    services = request.app.state.backend.services
    services.audit.append(f"console:{session.key_id}:{now:.6f}", kind, now,
                          {"key_id": session.key_id, "key_name": session.name, "role": session.role, **detail})


# -- sign-in --------------------------------------------------------------------------------

@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    start_warm_up(request.app.state)  # decode the trail while the operator types a key
    return _page(request, "sign_in.html", None, error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    state = _state(request)
    client = request.client.host if request.client else "?"
    if not state.console_sessions.allow_sign_in(client):
        return _page(request, "sign_in.html", None, status=429, error="Too many attempts: wait a minute and try again.")
    form = await _form(request)
    key = request.app.state.backend.keys.authenticate(form.get("api_key", "").strip())
    if key is None or key.role == Role.TERMINAL:  # terminals have no business in the console
        return _page(request, "sign_in.html", None, status=401, error="That key cannot sign in here.")
    token, session = state.console_sessions.create(key.key_id, key.name, key.role.value)
    await run_in_threadpool(_audit_console, request, "console_sign_in", session, {"client": client})
    response = RedirectResponse("/console", status_code=303)
    settings = request.app.state.backend.api
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/console",
                        secure=settings.console_secure_cookies,
                        max_age=int(state.console_sessions.absolute_seconds))
    return _headers(response)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = _session(request)
    form = await _form(request)
    if session is not None and csrf_ok(session, form.get("csrf")):
        _state(request).console_sessions.end(request.cookies.get(COOKIE))
        await run_in_threadpool(_audit_console, request, "console_sign_out", session, {})
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return _headers(response)


# -- now ------------------------------------------------------------------------------------

def _now_context(request: Request) -> dict[str, Any]:
    backend = request.app.state.backend
    services = backend.services
    index = _state(request).console_index
    rows = index.rows(services.audit)
    now = views.now_view(rows, views.in_force_of(index.latest_entry), time.time(), backend.settings.tick_seconds)
    book = services.approvals
    pending = [approval_from(a) for a in book.by_status("pending")] if book is not None else []
    return {"view": now, "pending": pending}


@router.get("")
def now_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    return _page(request, "now.html", session, **_now_context(request))


@router.get("/now/fragment")
def now_fragment(request: Request) -> Response:
    """The live part of Now, re-fetched every few seconds by console.js."""
    session = _session(request)
    if session is None:
        return _headers(Response(status_code=401))
    return _page(request, "_now_body.html", session, **_now_context(request))


# -- decisions ------------------------------------------------------------------------------

@router.get("/decisions")
def decisions_page(request: Request, category: str | None = None, segment: str | None = None, tool: str | None = None,
                   outcome: str | None = None) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    segments = (parse_segment(segment),) if segment and "=" in segment else ()
    keep = DecisionFilter(category=category or None, segments=segments,
                          executed=True if outcome == "executed" else None,
                          escalated=True if outcome == "escalated" else None)
    rows = _state(request).console_index.rows(request.app.state.backend.services.audit)
    shown = views.filtered(rows, keep, tool or None, PAGE_LIMIT)
    return _page(request, "decisions.html", session, rows=shown, total=len(rows),
                 filters={"category": category or "", "segment": segment or "", "tool": tool or "",
                          "outcome": outcome or ""})


@router.get("/decisions/{decision_id}")
def decision_page(request: Request, decision_id: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    services = request.app.state.backend.services
    rows = _state(request).console_index.rows(services.audit)
    row = views.find(rows, decision_id[:100])
    if row is None:
        return _refused(request, session, "No such decision (or the prefix matches more than one).", 404)
    entries = services.audit.get(row.id)
    record: dict[str, Any] = next((e.record for e in reversed(entries) if e.kind == "decision"), {})
    others = [e for e in entries if e.kind != "decision"]
    chart = views.chart_series(rows, rows.index(row), row.target_key if row.decision.diagnosis_target else None,
                               _clock(request).zone.key)
    lesson = services.lessons.find(row.id)
    return _page(request, "decision.html", session, row=row, record=record, others=others, chart=chart, lesson=lesson)


# -- incidents ------------------------------------------------------------------------------

@router.get("/incidents")
def incidents_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    rows = _state(request).console_index.rows(request.app.state.backend.services.audit)
    return _page(request, "incidents.html", session, incidents=views.incidents(rows)[:PAGE_LIMIT])


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    rows = _state(request).console_index.rows(request.app.state.backend.services.audit)
    incident = next((i for i in views.incidents(rows) if i.id == incident_id[:100]), None)
    if incident is None:
        return _refused(request, session, "No such incident.", 404)
    first = rows.index(incident.decisions[0])
    chart = views.chart_series(rows, first, incident.segment if incident.segment != "all traffic" else None,
                               _clock(request).zone.key)
    return _page(request, "incident.html", session, incident=incident, chart=chart)


# -- approvals ------------------------------------------------------------------------------

@router.get("/approvals")
def approvals_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    book = request.app.state.backend.services.approvals
    pending = [approval_from(a) for a in book.by_status("pending")] if book is not None else []
    answered = ([approval_from(a) for a in book.by_status(*ANSWERED)][-50:] if book is not None else [])
    return _page(request, "approvals.html", session, pending=pending, answered=list(reversed(answered)))


@router.post("/approvals/{decision_id}")
async def answer_approval(request: Request, decision_id: str) -> Response:
    from ..errors import ApiError
    from ..models import ApprovalAnswer
    from ..ops_routes import _answer

    session, form, refusal = await _write(request, operators_only="approve or reject")
    if refusal is not None or session is None:
        return refusal or _to_sign_in(request)
    note = (form.get("note") or "").strip()[:500] or None
    try:
        await run_in_threadpool(_answer, request, decision_id[:100], form.get("answer") == "approve",
                                ApprovalAnswer(note=note), request.state.console_key)
    except ApiError as exc:
        return _refused(request, session, exc.message, exc.status)
    return _headers(RedirectResponse("/console/approvals", status_code=303))


@router.post("/rollback/{action_id}")
async def request_rollback(request: Request, action_id: str) -> Response:
    """An operator asks for an action in force to be rolled back; the agent applies it on its next tick."""
    from payops.graph.approval import RollbackRefused
    from payops.graph.approval import request_rollback as file_rollback

    session, form, refusal = await _write(request, operators_only="ask for rollbacks")
    if refusal is not None or session is None:
        return refusal or _to_sign_in(request)
    services = request.app.state.backend.services
    index = _state(request).console_index
    index.rows(services.audit)
    note = (form.get("note") or "").strip()[:500] or None
    try:
        def file() -> None:
            with request.app.state.backend.approval_lock:
                file_rollback(services, action_id[:200], views.in_force_of(index.latest_entry), _actor(request), note)

        await run_in_threadpool(file)
    except RollbackRefused as exc:
        return _refused(request, session, f"Rollback not filed: {exc}.", 409)
    return _headers(RedirectResponse("/console/approvals", status_code=303))


def _actor(request: Request) -> str:
    """Who the records name for a console action: the signed-in key's principal (`operator:<key id>`, as
    the HTTP API records it), never free text or a name."""
    return str(request.state.console_key.principal)


# -- palm-pay -------------------------------------------------------------------------------

PALM_LIST = 50  # links shown per status: the counts say how many there are in all


@router.get("/palm")
def palm_page(request: Request) -> Response:
    """Operators: links by status (masked), suspensions awaiting review, two-person requests waiting."""
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    if session.role != Role.OPERATOR.value:
        return _refused(request, session, "Palm-pay records are for operators.", 403)
    palm = request.app.state.backend.palm
    counts = palm.link_status_counts()
    suspended = palm.links_by_status("suspended", PALM_LIST)
    recent = {status: palm.links_by_status(status, 10) for status in ("active", "pending_verification", "revoked")}
    requests = palm.change_requests("pending")
    return _page(request, "palm.html", session, counts=counts, suspended=suspended, recent=recent, requests=requests,
                 me=_actor(request))


@router.post("/palm/requests/{request_id}")
async def answer_palm_request(request: Request, request_id: str) -> Response:
    """The second operator's answer to a two-person change request (the service refuses the requester)."""
    from payops.palmpay import PalmPayError

    session, form, refusal = await _write(request, operators_only="answer change requests")
    if refusal is not None or session is None:
        return refusal or _to_sign_in(request)
    palm = request.app.state.backend.palm
    try:
        if form.get("answer") == "approve":  # a key rotation re-encrypts every link: not on the event loop
            await run_in_threadpool(palm.approve_request, request_id[:100], approved_by=_actor(request))
        else:
            await run_in_threadpool(palm.reject_request, request_id[:100], decided_by=_actor(request),
                                    note=(form.get("note") or "")[:500])
    except PalmPayError as exc:
        return _refused(request, session, exc.message, exc.status)  # the statuses the HTTP API answers
    return _headers(RedirectResponse("/console/palm", status_code=303))


# -- audit, lessons, chat -------------------------------------------------------------------

@router.get("/audit")
def audit_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    services = request.app.state.backend.services
    return _page(request, "audit.html", session, result=services.audit.verify(),
                 checkpoint=views.last_checkpoint(services.audit), tail=services.audit.tail(30)[::-1])


@router.get("/lessons")
def lessons_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    return _page(request, "lessons.html", session, lessons=request.app.state.backend.services.lessons.list(None))


@router.get("/chat")
def chat_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in(request)
    return _page(request, "chat.html", session, question="", answer=None)


@router.post("/chat")
async def chat_ask(request: Request) -> Response:
    from ..ops_routes import ask_chat

    session, form, refusal = await _write(request)
    if refusal is not None or session is None:
        return refusal or _to_sign_in(request)
    question = (form.get("question") or "").strip()[:500]
    # may wait on an LLM
    answer = await run_in_threadpool(ask_chat, request.app.state.backend, question) if question else None
    return _page(request, "chat.html", session, question=question, answer=answer, linked=views.linked_answer)


