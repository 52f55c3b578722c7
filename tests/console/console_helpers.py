"""A state directory with a real run of the agent in it, and an app serving the console over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from payops.graph.runner import opened
from payops.settings import Settings
from payops.wiring import agent_services, durable_agent


def run_agent(state_dir: Path, ticks: int, scenario: str = "demo", seed: int = 7) -> list[dict[str, Any]]:
    """`payops run --ticks N` on the simulator, in-process: decisions, approvals and lessons on disk."""
    settings = Settings(state_dir=state_dir, webhook_url=None)
    services = agent_services(settings, "simulator", scenario, seed)
    states = []
    with opened(durable_agent(services)) as agent:
        for _ in range(ticks):
            result = agent.tick()
            assert result is not None
            states.append(result.state)
    for thing in (services.audit, services.approvals, services.palm):
        if thing is not None:
            thing.close()
    return states


def sign_in(client: Any, key: str) -> Any:
    return client.post("/console/sign-in", data={"api_key": key}, follow_redirects=False)


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]
