"""Fixtures for the tools / guardrails / approval / audit tests (helpers live in guardrails_helpers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from guardrails_helpers import PROXIES, TEMPLATE_REFS, LocalServer, PalmBackend, write_events

from payops.graph.runner import Agent
from payops.graph.services import AgentServices, build_services
from payops.settings import Settings
from payops.signals.sources import open_jsonl


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return write_events(tmp_path / "events.jsonl", failing={"psp_a": 0.9})


@pytest.fixture
def make_agent(tmp_path: Path, events: Path) -> Iterator[Callable[..., Agent]]:
    """make_agent(reasoner, durable=True, clock=None, control_plane=None, palm=None, source=None, **settings)
    -> Agent."""
    opened: list[Agent] = []

    def factory(reasoner: Any, *, durable: bool = True, clock: Callable[[], float] | None = None,
                control_plane: Any = None, palm: Any = None, source: Path | None = None, **settings: Any) -> Agent:
        s = Settings(state_dir=tmp_path / "state", **settings)
        svc: AgentServices = build_services(s, source=open_jsonl(str(source or events)), in_memory=not durable,
                                            control_plane=control_plane, reasoner=reasoner, palm=palm)
        if clock is not None:
            svc.clock = clock
        agent = Agent.durable(svc) if durable else Agent(svc)
        opened.append(agent)
        return agent

    yield factory
    for agent in opened:
        conn = getattr(agent.checkpointer, "conn", None)
        if conn is not None:
            conn.close()
        agent.services.audit.close()
        if agent.services.approvals is not None:
            agent.services.approvals.close()


@pytest.fixture
def local_server() -> Iterator[Callable[..., LocalServer]]:
    """start(handle) -> LocalServer on 127.0.0.1 (an ephemeral port); stopped after the test."""
    started: list[LocalServer] = []

    def start(handle: Callable[[str, str, dict[str, str], Any], tuple[int, Any]]) -> LocalServer:
        server = LocalServer(handle).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def palm_backend(tmp_path: Path) -> Iterator[PalmBackend]:
    """A palm-pay backend with three enrolled, verified (active) links."""
    from payops.palmpay import DevOtpSender, PalmPayOptions, PalmPayService

    otp = DevOtpSender()
    service = PalmPayService(PalmPayOptions(state_dir=tmp_path / "palm"), verification=otp)
    links = []
    for i, (ref, proxy) in enumerate(zip(TEMPLATE_REFS, PROXIES, strict=True)):
        view, delivery = service.create_link(f"user{i}", ref, "left", proxy, "phone", bank="ABSA")
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        links.append(view.palm_pay_id)
    yield PalmBackend(service, links)
    service.close()
