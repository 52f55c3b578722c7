"""The ASGI app: `create_app()` wires the routers, the guards and the error handlers.

Outside in, every request passes: response headers and request counting,
the generic 500 (nothing internal leaves), the body size limit, then routing,
where each endpoint checks its API key and role (and its rate limit) before it
touches any state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payops.settings import Settings

from . import ops_routes, palm_routes, terminal_routes
from .auth import OPERATOR, READERS, TERMINAL, VIEWER, require
from .backend import Backend
from .errors import BodySizeLimitMiddleware, InternalErrorMiddleware, exception_handlers
from .keys import ApiKey, ApiKeyStore
from .metrics import ApiMetrics
from .models import Health
from .openapi_docs import errors
from .ratelimit import RateLimiter
from .settings import ApiSettings

if TYPE_CHECKING:
    from payops.graph.services import AgentServices
    from payops.palmpay import PalmPayService

DESCRIPTION = """\
Palm-pay endpoints for terminals and enrolment, and the agent's records for operators.

**Auth.** Every endpoint but `/healthz` needs `Authorization: Bearer <API key>`. Keys have one role:
`terminal` (palm-pay endpoints only), `viewer` (reads decisions, approvals, lessons, chat, audit, metrics),
`operator` (a viewer who may also approve / reject, revoke and show palm links, and register terminal keys). \
Create keys with
`payops keys create --name N --role R` (shown once; stored hashed).

**Errors.** Every error is `{code, status, message}`; on palm-pay endpoints also `fallback: "card"`.
Palm-pay refusals use the spec's codes, statuses and messages.

**Limits.** Request bodies up to 16 KiB by default. Payments, OTP verification / resend and enrolment
are rate-limited per key with token buckets (429 with Retry-After).

**Attestation.** A payment's scan must be signed by the terminal's Ed25519 key (`attestation`; keys registered
with `PUT /v1/palm/terminals/{terminal_id}/key`): refused unsigned (422), forged or changed (403), signed more than
2 minutes from the server's clock (403), or with a nonce already used (409). See api/README.md for the signed message.

**Idempotency.** `POST /v1/palm/payments` needs an idempotency key (header `Idempotency-Key` or body
`idempotency_key`): a replay returns the first result and never pays twice.
"""


def _version() -> str:
    try:
        return metadata.version("payops")
    except metadata.PackageNotFoundError:
        return "0"


class ResponseMiddleware:
    """Counts requests by route template and status; marks every response not to be cached or sniffed."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"cache-control", b"no-store"),
                                      (b"x-content-type-options", b"nosniff")]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = route.path if isinstance(route, APIRoute) else "unmatched"
            self.metrics.requests.labels(method=scope.get("method", "?"), route=template, status=str(status[0])).inc()


def create_app(settings: Settings | None = None, services: AgentServices | None = None,
               palm: PalmPayService | None = None, *, keys: ApiKeyStore | None = None,
               api_settings: ApiSettings | None = None, limiter: RateLimiter | None = None,
               background_jobs: bool = False) -> FastAPI:
    """The API over one state directory. Nothing is opened until a request needs it.

    `settings` default to the environment's (PAYOPS_*); `services`, `palm`, `keys` replace what would be
    opened from the state directory (tests, embedding); `limiter` replaces the token buckets.
    `background_jobs` (`payops serve`): palm-pay settlement rounds run while the app is up.
    """
    backend = Backend(settings, services=services, palm=palm, keys=keys, api_settings=api_settings, limiter=limiter)
    metrics = ApiMetrics(backend)
    backend.rate_limited_counter = metrics.rate_limited

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as jobs:
            if background_jobs:
                from payops.palm_jobs import in_background

                from .console.routes import start_warm_up

                jobs.enter_context(in_background(backend.settings, lambda: backend.palm))
                start_warm_up(app.state)  # `payops serve`: the console's first page finds the trail decoded
            yield
        backend.close()  # waits for reads in flight (storage.db): the console's trail decode may be one

    app = FastAPI(
        title="payops API",
        version=_version(),
        description=DESCRIPTION,
        openapi_url=None,  # served below, behind a key like everything else
        docs_url=None,
        redoc_url=None,
        exception_handlers=exception_handlers(),
        generate_unique_id_function=lambda route: route.name,
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.state.metrics = metrics
    app.include_router(palm_routes.router)
    app.include_router(terminal_routes.router)
    app.include_router(ops_routes.router)
    _mount_console(app)

    @app.get("/healthz", response_model=Health, tags=["meta"], summary="Liveness (no key needed)")
    def healthz() -> Health:
        return Health()

    @app.get("/metrics", tags=["meta"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format."}, **errors(401, 403)})
    def prometheus(request: Request, client: ApiKey = Depends(require(*READERS))) -> Response:
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json(client: ApiKey = Depends(require(TERMINAL, VIEWER, OPERATOR))) -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=backend.api.max_body_bytes)
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(ResponseMiddleware, metrics=metrics)
    return app


def _mount_console(app: FastAPI) -> None:
    """The operator console (api/console): HTML pages and their static files, outside the OpenAPI schema."""
    from fastapi.staticfiles import StaticFiles

    from .console.routes import HERE, router

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")


def openapi_schema() -> dict[str, Any]:
    """The app's schema. Building the app opens nothing, so no state directory is needed."""
    return create_app().openapi()
