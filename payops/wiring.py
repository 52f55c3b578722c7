"""Composition root: builds sources, services and agents for the CLI and other entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from payops.graph.runner import Agent
from payops.graph.services import AgentServices, build_services
from payops.guardrails.notify import FanoutNotifier, ListNotifier, Notifier, WebhookNotifier
from payops.render import decision_json
from payops.settings import Settings
from payops.signals.policy import TrafficPolicy
from payops.signals.scenarios import timed_scenario
from payops.signals.simulator import SCENARIOS, Simulator, default_network
from payops.signals.sources import LineSource, SimulatorSource, Source, open_jsonl
from payops.tools.control_plane import HTTP, PLANES, SHADOW, SIMULATED, ShadowControlPlane, SimulatedControlPlane
from payops.tools.http_control_plane import HttpControlPlane

DEFAULT_SCENARIO = "demo"
SIMULATOR_SOURCES = (None, "simulator", "sim")


class PlaneChoiceError(ValueError):
    """The control plane asked for cannot be used as configured (a usage error, exit 2)."""


def plane_for_source(source_name: str | None, settings: Settings, requested: str | None = None) -> str:
    """Which control plane acts: the one named, else by source.

    The simulator obeys the agent, so it keeps its closed loop (simulated). A file, stdin
    or any other feed cannot respond to a move: with an orchestrator configured the moves
    go there (http); without one they are recorded as what would have run (shadow).
    """
    if requested is not None:
        if requested not in PLANES:
            raise PlaneChoiceError(f"unknown control plane '{requested}' (choose from {', '.join(PLANES)})")
        if requested == HTTP and not settings.orchestrator_url:
            raise PlaneChoiceError("--control-plane http needs PAYOPS_ORCHESTRATOR_URL (the orchestrator's base URL)")
        return requested
    if settings.orchestrator_url:
        return HTTP
    return SIMULATED if source_name in SIMULATOR_SOURCES else SHADOW


def control_plane_named(plane: str, settings: Settings) -> SimulatedControlPlane | HttpControlPlane:
    if plane == HTTP:
        assert settings.orchestrator_url, "plane_for_source checks the URL"
        return HttpControlPlane(settings.orchestrator_url)
    return ShadowControlPlane() if plane == SHADOW else SimulatedControlPlane()


def notifier_for(settings: Settings) -> ListNotifier | FanoutNotifier:
    console = ListNotifier()
    if settings.webhook_url:
        hooks: list[Notifier] = [console, WebhookNotifier(settings.webhook_url)]
        return FanoutNotifier(hooks)
    return console


def simulator_for(scenario: str, seed: int, control_plane: TrafficPolicy, minutes: float | None = None) -> Simulator:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}' (choose from {', '.join(SCENARIOS)})")
    net = default_network()
    return Simulator(timed_scenario(scenario, net, minutes), net, seed=seed, policy=control_plane)


def agent_services(settings: Settings, source_name: str | None, scenario: str, seed: int, *, in_memory: bool = False,
                   control_plane: str | None = None) -> AgentServices:
    """`control_plane`: "simulated", "shadow" or "http"; None chooses by source (plane_for_source).

    Raises PlaneChoiceError, ValueError (unknown scenario) or SourceError.
    """
    # Over HTTP the simulator obeys the adapter's local ledger; a shadow plane steers no traffic.
    plane = control_plane_named(plane_for_source(source_name, settings, control_plane), settings)
    source: Source
    if source_name in SIMULATOR_SOURCES:
        source = SimulatorSource(simulator_for(scenario, seed, plane))
    else:
        source = open_jsonl(source_name)
    return build_services(settings, source=source, in_memory=in_memory, control_plane=plane, notifier=notifier_for(settings))


def durable_agent(services: AgentServices) -> Agent:
    agent = Agent.durable(services)
    agent.resume_source()
    return agent


def replay(events_path: str | Path, out_path: str | Path, window: float, tick: float,
           stats: dict | None = None, source: LineSource | None = None, control_plane: str = SHADOW) -> Iterator[dict]:
    """CONTRACT.md §4: deterministic decisions over a recorded file, nothing on disk but `out`.

    The recorded feed cannot respond to the agent, so actions are shadow ones by default
    (recorded, judged by nobody); "simulated" is the older in-process plane, "http" sends
    them to PAYOPS_ORCHESTRATOR_URL (explicit only: replay is offline otherwise).

    `stats["report"]` receives the source's ParseReport (bad lines with line numbers).
    `source`: `open_jsonl(events_path)` opened by the caller, e.g. before importing this
    module, so that worker processes parse the file while the agent's stack is imported.
    """
    settings = Settings(window_seconds=window, tick_seconds=tick, deployment="replay", webhook_url=None)
    if source is None:
        source = open_jsonl(events_path)
    if stats is not None:
        stats["report"] = source.report
    try:
        plane = control_plane_named(plane_for_source(str(events_path), settings, control_plane), settings)
        services = build_services(settings, source=source, in_memory=True, control_plane=plane, notifier=ListNotifier())
        agent = Agent(services)
        with open(out_path, "wb") as out:
            end = agent.next_window_end()
            while end is not None:
                result = agent.tick(end)
                assert result is not None
                out.write(decision_json(result.state))
                yield result.state
                if source.exhausted:
                    break
                end += tick
    finally:
        source.close()  # parse workers stop now, not at exit
