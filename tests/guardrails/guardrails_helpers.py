"""Helpers for the tools / guardrails / approval / audit tests (imported by conftest and tests).

Agents here run on a small JSONL event stream written by the test and a stub
reasoner that proposes exactly what the test asks for, so each test controls
the proposal and checks what the guardrails, approvals, control plane and audit
trail make of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from payops.graph.reasoners.base import Decision, ReasoningContext
from payops.models import Category, Diagnosis, ProposedAction

START = 1_764_000_000.0  # event time of the first event


def write_events(path: Path, minutes: int = 30, per_minute: int = 60, failing: dict[str, float] | None = None,
                 palm_share: float = 0.0, start: float = START, append: bool = False) -> Path:
    """Card traffic over routes psp_a / psp_b, banks ABSA / FNB; `failing` route -> failure share."""
    failing = failing or {}
    lines = []
    n = int(start)
    for minute in range(minutes):
        for i in range(per_minute):
            n += 1
            route = "psp_a" if i % 2 == 0 else "psp_b"
            palm = palm_share and (i % int(1 / palm_share) == 0)
            fail = (i // 2) % 10 < 10 * failing.get(route, 0.0)
            event = {
                "ts": start + minute * 60 + i * (60 / per_minute), "payment_id": f"p{n}",
                "method": "palm" if palm else "card", "route": route, "bank": "ABSA" if i % 4 < 2 else "FNB",
                "issuer": "VISA", "status": "failure" if fail else "success",
                "error_code": "GATEWAY_TIMEOUT" if fail else None, "latency_ms": 300.0,
            }
            lines.append(orjson.dumps(event))
    with path.open("ab" if append else "wb") as out:
        out.write(b"\n".join(lines) + b"\n")
    return path


@dataclass
class StubReasoner:
    """Proposes whatever the test sets; the diagnosis carries the given confidence."""

    proposal: ProposedAction
    confidence: float = 0.95
    category: Category = Category.NETWORK
    name: str = "stub"
    calls: int = 0
    llm_calls: tuple[dict[str, Any], ...] = ()  # call metadata, as an LLM reasoner would report it

    def decide(self, snapshot: Any, context: ReasoningContext) -> Decision:
        self.calls += 1
        diagnosis = Diagnosis(category=self.category, target=dict(self.proposal.target), summary="stub diagnosis",
                              evidence=("route=psp_a: 30/30 failed (100.0%) vs expected 2%",),
                              alternatives=("issuer: rejected, failures span banks",), confidence=self.confidence,
                              reasoner=self.name)
        return Decision(diagnosis, self.proposal, self.llm_calls)

    def propose(self, proposal: ProposedAction, confidence: float | None = None) -> None:
        self.proposal = proposal
        if confidence is not None:
            self.confidence = confidence


class Clock:
    """An injectable wall clock (AgentServices.clock)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- a local HTTP server (127.0.0.1, an ephemeral port) for webhook and orchestrator tests --------

@dataclass
class LocalServer:
    """Runs `handle(method, path, headers, body) -> (status, json body | None)` in a thread."""

    handle: Callable[[str, str, dict[str, str], Any], tuple[int, Any]]
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = orjson.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers, body))
                status, payload = outer.handle(self.command, self.path, headers, body)
                if status == 0:  # drop the connection without answering
                    self.close_connection = True
                    return
                data = orjson.dumps(payload) if payload is not None else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# -- a palm-pay backend with enrolled, active links ------------------------------------------------

TEMPLATE_REFS = ("tpl_ref_SECRET_alpha_0001", "tpl_ref_SECRET_bravo_0002", "tpl_ref_SECRET_charlie_003")
PROXIES = ("0821234567", "0839876543", "0845550123")


@dataclass
class PalmBackend:
    service: Any
    links: list[str]
    template_refs: tuple[str, ...] = TEMPLATE_REFS
    proxies: tuple[str, ...] = PROXIES
