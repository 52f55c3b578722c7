"""One error shape for every non-2xx answer, and the handlers that produce it.

Palm-pay refusals keep the spec's code, HTTP status and message; every error on
a palm-pay path carries the card-fallback hint, so a terminal always knows what
to offer instead. Nothing else goes out: no exception text, no stack, no input
value (validation errors name the field and the rule, never what was sent).
Unexpected exceptions become a generic 500 with a request id to find the log
line, which names the exception type and where it was raised, not its message
(a message may quote a value).

The branches of the exception tree (payops/errors.py) are mapped to statuses here
and nowhere else (HTTP_STATUSES); the answer names the branch, not the message.
An error that reaches only the root (a PayopsError of no branch) is a 500 like any
unexpected one.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payops.errors import BadInput, Conflict, NotFound, PayopsError, Unavailable
from payops.palmpay import PalmPayError
from payops.palmpay.errors import CARD_FALLBACK, SUPPLEMENTAL_ERRORS

log = logging.getLogger("payops.api")

PALM_PREFIX = "/v1/palm"
_MAX_FIELD_ERRORS = 10
_MAX_TEXT = 200


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(..., description="Where: 'body.amount', 'query.limit', 'header.idempotency-key'.")
    message: str = Field(..., description="The rule it breaks (never the value sent).")


class ErrorBody(BaseModel):
    """Every error response. `fallback` is "card" on palm-pay endpoints."""

    model_config = ConfigDict(extra="forbid")

    code: str
    status: int
    message: str
    fallback: str | None = None
    fields: list[FieldError] | None = None
    request_id: str | None = Field(None, description="On 500 only: quote it to find the server log line.")


class ApiError(PayopsError):
    """A refusal by the API layer itself (auth, rate limit, state conflicts on ops endpoints)."""

    def __init__(self, code: str, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.code, self.status, self.message, self.headers = code, status, message, headers or {}


def unauthorized() -> ApiError:
    return ApiError("UNAUTHORIZED", 401, "Unauthorized", headers={"WWW-Authenticate": "Bearer"})


def forbidden() -> ApiError:
    return ApiError("FORBIDDEN", 403, "Forbidden")


def _is_palm(path: str) -> bool:
    return path == PALM_PREFIX or path.startswith(PALM_PREFIX + "/")


def error_response(path: str, code: str, status: int, message: str, *, headers: dict[str, str] | None = None,
                   fields: list[FieldError] | None = None, request_id: str | None = None) -> JSONResponse:
    body = ErrorBody(code=code, status=status, message=message, fallback=CARD_FALLBACK if _is_palm(path) else None,
                     fields=fields, request_id=request_id)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


_GENERIC = {
    401: ("UNAUTHORIZED", "Unauthorized"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    406: ("NOT_ACCEPTABLE", "Not acceptable"),
    413: ("PAYLOAD_TOO_LARGE", "Request body too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
}


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors()[:_MAX_FIELD_ERRORS]:
        where = ".".join(str(p) for p in err.get("loc", ()))[:_MAX_TEXT]
        out.append(FieldError(field=where or "request", message=str(err.get("msg", "invalid"))[:_MAX_TEXT]))
    return out


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    path = request.url.path
    if _is_palm(path):
        entry = SUPPLEMENTAL_ERRORS["PALM_PAY_INVALID_INPUT"]
        return error_response(path, "PALM_PAY_INVALID_INPUT", entry.status, entry.message, fields=_field_errors(exc))
    return error_response(path, "INVALID_INPUT", 422, "The request is not valid", fields=_field_errors(exc))


async def on_palm_error(request: Request, exc: PalmPayError) -> JSONResponse:
    # The spec's code, status and message; `detail` stays in the backend's own audit log.
    return error_response(request.url.path, exc.code, exc.status, exc.message)


async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request.url.path, exc.code, exc.status, exc.message, headers=exc.headers)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:
        # FastAPI's only 400: a body it could not parse (not UTF-8, not JSON). Same answer as any invalid body.
        return await on_validation_error(request,
                                         RequestValidationError([{"loc": ("body",), "msg": "not a JSON document"}]))
    code, message = _GENERIC.get(exc.status_code, ("HTTP_ERROR", "Request failed"))
    headers = dict(exc.headers or {})
    return error_response(request.url.path, code, exc.status_code, message, headers=headers or None)


# The one mapping of the exception tree to HTTP: status, code and the message sent (never the exception's text).
HTTP_STATUSES: dict[type[PayopsError], tuple[int, str, str]] = {
    BadInput: (422, "INVALID_INPUT", "The request is not valid"),
    NotFound: (404, "NOT_FOUND", "Not found"),
    Conflict: (409, "CONFLICT", "The request conflicts with the current state"),
    Unavailable: (503, "UNAVAILABLE", "Temporarily unavailable; try again later"),
}


async def on_payops_error(request: Request, exc: PayopsError) -> JSONResponse:
    """A branch of the tree that no route turned into an ApiError: its status from HTTP_STATUSES."""
    path = request.url.path
    status, code, message = next(entry for branch, entry in HTTP_STATUSES.items() if isinstance(exc, branch))
    log.info("%s %s answered %d: %s at %s", request.method, path, status, type(exc).__name__, where_raised(exc))
    if status == 422 and _is_palm(path):
        entry = SUPPLEMENTAL_ERRORS["PALM_PAY_INVALID_INPUT"]
        return error_response(path, "PALM_PAY_INVALID_INPUT", entry.status, entry.message)
    return error_response(path, code, status, message)


def where_raised(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


class InternalErrorMiddleware:
    """Turns any exception that escaped the handlers into the generic 500 (and never re-raises it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the last line of defence: nothing internal leaves the process
            request_id = uuid.uuid4().hex[:16]
            log.error("request %s %s %s failed: %s at %s", request_id, scope.get("method"), scope.get("path"),
                      type(exc).__name__, where_raised(exc))
            if started:
                return  # the status line is out; all that is left is to end the connection
            response = error_response(scope.get("path", ""), "INTERNAL_ERROR", 500, "Internal error",
                                      request_id=request_id)
            await response(scope, receive, send)


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413, before any handler parses them.

    Reads at most max_bytes + 1 bytes whatever Content-Length claims, so a lying or
    chunked client cannot make the server buffer more.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True  # unparseable length: refuse rather than guess
            if too_big:
                await self._refuse(scope, receive, send)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        code, message = _GENERIC[413]
        response = error_response(scope.get("path", ""), code, 413, message, headers={"Connection": "close"})
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def exception_handlers() -> dict[Any, Any]:
    return {
        RequestValidationError: on_validation_error,
        PalmPayError: on_palm_error,
        ApiError: on_api_error,
        StarletteHTTPException: on_http_error,
        # The branches, not the root: a bare PayopsError escapes to InternalErrorMiddleware's 500.
        **{branch: on_payops_error for branch in HTTP_STATUSES},
    }
