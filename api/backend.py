"""The live objects behind the API, opened on first use.

Building the app does no I/O (so `payops openapi` needs no state directory);
the agent's services, the palm-pay backend and the key table open on the first
request that needs them, on the same state directory as the agent.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from payops.settings import Settings

from .errors import ApiError
from .keys import ApiKey, ApiKeyStore
from .ratelimit import RateLimiter, retry_after_header
from .settings import ApiSettings

if TYPE_CHECKING:
    from prometheus_client import Counter as PromCounter

    from payops.graph.services import AgentServices
    from payops.palmpay import PalmPayService

log = logging.getLogger("payops.api")


class Backend:
    def __init__(self, settings: Settings | None = None, *, services: AgentServices | None = None,
                 palm: PalmPayService | None = None, keys: ApiKeyStore | None = None,
                 api_settings: ApiSettings | None = None, limiter: RateLimiter | None = None) -> None:
        self.settings = settings or (services.settings if services is not None else Settings())
        self.api = api_settings or ApiSettings()
        self.limiter = limiter or RateLimiter(self.api.buckets())
        self._services = services
        self._palm = palm
        self._keys = keys
        self._agent: Any = None
        self._owned: list[Any] = []  # what this backend opened, and so closes
        self._open_lock = threading.Lock()
        # One approval answer at a time in this process: resume() reads, then writes the thread.
        self.approval_lock = threading.Lock()
        # Refusals by rate-limit group, counted for /metrics; create_app sets it (ApiMetrics.rate_limited).
        self.rate_limited_counter: PromCounter | None = None

    # -- lazily opened ------------------------------------------------------------------

    @property
    def keys(self) -> ApiKeyStore:
        with self._open_lock:
            if self._keys is None:
                self._keys = ApiKeyStore.in_state_dir(self.settings.ensure_state_dir())
                self._owned.append(self._keys)
            return self._keys

    @property
    def services(self) -> AgentServices:
        with self._open_lock:
            if self._services is None:
                from payops.graph.services import build_services

                self._services = build_services(self.settings)
                self._owned.append(self._services)
            if self._services.approvals is not None and self._services.approval_graph is None:
                from payops.graph.runner import Agent

                # Attaches the approval graph on the agent's checkpointer, exactly as `payops approve` does.
                self._agent = Agent.durable(self._services)
            return self._services

    @property
    def palm(self) -> PalmPayService:
        with self._open_lock:
            if self._palm is None:
                from payops.palmpay import PalmPayOptions, PalmPayService
                from payops.palmpay.otp_delivery import sender_from_settings

                # PAYOPS_OTP_SENDER: the SMS-gateway webhook in production; the in-memory default
                # delivers nothing (`payops serve` says so at start-up).
                self._palm = PalmPayService(PalmPayOptions.from_settings(self.settings),
                                            verification=sender_from_settings())
                self._owned.append(self._palm)
            return self._palm

    def chat_model(self) -> Any:
        """The chat's LLM (None without PAYOPS_LLM_MODEL), built once."""
        with self._open_lock:
            if not hasattr(self, "_chat_model"):
                from payops.chat import chat_model_from_settings

                self._chat_model = chat_model_from_settings(self.settings)
            return self._chat_model

    def warm_up(self) -> None:
        """Open everything now (for `payops serve`), so the first request does not pay for it."""
        _ = self.keys, self.services, self.palm

    # -- guards -------------------------------------------------------------------------

    def limit(self, group: str, client: ApiKey, *, on_palm_path: bool) -> None:
        wait = self.limiter.take(group, client.key_id)
        if wait > 0:
            log.warning("rate limit %s hit by key %s (%s)", group, client.key_id, client.name)
            if self.rate_limited_counter is not None:
                self.rate_limited_counter.labels(group=group).inc()
            message = "Too many requests — please retry later" + (" or use a card" if on_palm_path else "")
            raise ApiError("RATE_LIMITED", 429, message, headers={"Retry-After": retry_after_header(wait)})

    def close(self) -> None:
        """Close what this backend opened (not what the caller passed in); the next request reopens it.

        An ASGI server may run the app's lifespan more than once (test clients do, per client).
        """
        with self._open_lock:
            things: list[Any] = []
            for owned in self._owned:
                if owned is self._services and owned is not None:
                    things += [owned.audit, owned.approvals, owned.palm]
                    self._services = None
                elif owned is self._keys:
                    things.append(owned)
                    self._keys = None
                elif owned is self._palm:
                    things.append(owned)
                    self._palm = None
            if self._agent is not None:
                things.append(getattr(self._agent.checkpointer, "conn", None))
                if self._services is not None:  # the caller's services: detach the graph whose checkpointer closes
                    self._services.approval_graph = None
                self._agent = None
            self._owned.clear()
        for thing in things:
            closer = getattr(thing, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # best effort at shutdown
                    log.debug("closing %s failed", type(thing).__name__)
