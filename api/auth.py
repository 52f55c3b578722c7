"""Who may call what: a bearer API key per client, checked on every request.

    terminal  customer-present palm-pay work only (enrol, verify, resend the code, pay, show)
    viewer    reads the agent's records (decisions, approvals, lessons, why, chat, audit, metrics)
    operator  what a viewer reads, plus approve / reject, and palm-pay administration: suspend, and
              revoke / reactivate / limits / key rotation as change requests a second operator approves

A missing, malformed, unknown or revoked key is 401; a valid key outside its
role is 403. Neither says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError, forbidden, unauthorized
from .keys import ApiKey, Role

log = logging.getLogger("payops.api")

bearer = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", bearerFormat="payops_<key id>_<secret>",
    description="An API key from `payops keys create --name N --role terminal|viewer|operator`, "
                "sent as `Authorization: Bearer <key>`.",
)

TERMINAL, VIEWER, OPERATOR = Role.TERMINAL, Role.VIEWER, Role.OPERATOR
READERS = (VIEWER, OPERATOR)


def require(*roles: Role) -> Callable[..., ApiKey]:
    allowed = frozenset(roles)

    def authorised(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> ApiKey:
        key = request.app.state.backend.keys.authenticate(credentials.credentials if credentials else None)
        if key is None:
            log.info("401 on %s %s", request.method, request.url.path)  # never the presented key
            raise unauthorized()
        if key.role not in allowed:
            log.info("403 on %s %s for key %s (%s)", request.method, request.url.path, key.key_id, key.role.value)
            raise forbidden()
        request.state.client = key
        _refuse_unknown_query(request)
        return key

    return authorised


def _refuse_unknown_query(request: Request) -> None:
    """A misspelt filter (`?categroy=issuer`) must not silently return everything: unknown query names are 422.

    The names an operation takes are read from the app's own OpenAPI schema (built once, cached by FastAPI).
    Checked after authentication, so an anonymous caller learns nothing about the parameters.
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    operation = request.app.openapi()["paths"].get(route.path, {}).get(request.method.lower(), {})
    names = {p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"}
    if any(name not in names for name in request.query_params):
        palm = request.url.path.startswith("/v1/palm")
        raise ApiError("PALM_PAY_INVALID_INPUT" if palm else "INVALID_INPUT", 422, "Unknown query parameter")
