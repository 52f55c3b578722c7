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
from payops.tools.control_plane import SimulatedControlPlane
from payops.tools.http_control_plane import HttpControlPlane

DEFAULT_SCENARIO = "demo"
# A replay's audit trail lives in memory and is never read back after the run: it keeps
# the latest records only (~3 KB each), or it would grow with run length (issue 16).
REPLAY_AUDIT_RECORDS = 1000


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


def agent_services(settings: Settings, source_name: str | None, scenario: str, seed: int, *, in_memory: bool = False) -> AgentServices:
    # The orchestrator over HTTP when configured (the simulator then obeys its local ledger), else in-process.
    control_plane: SimulatedControlPlane | HttpControlPlane = (
        HttpControlPlane(settings.orchestrator_url) if settings.orchestrator_url else SimulatedControlPlane())
    source: Source
    if source_name in (None, "simulator", "sim"):
        source = SimulatorSource(simulator_for(scenario, seed, control_plane))
    else:
        source = open_jsonl(source_name, max_skew_seconds=settings.max_clock_skew_seconds)
    return build_services(settings, source=source, in_memory=in_memory, control_plane=control_plane, notifier=notifier_for(settings))


def durable_agent(services: AgentServices) -> Agent:
    agent = Agent.durable(services)
    agent.resume_source()
    return agent


def replay(events_path: str | Path, out_path: str | Path, window: float, tick: float,
           stats: dict | None = None, source: LineSource | None = None) -> Iterator[dict]:
    """CONTRACT.md §4: deterministic decisions over a recorded file, nothing on disk but `out`.

    `stats["report"]` receives the source's ParseReport (bad lines with line numbers).
    `source`: `open_jsonl(events_path)` opened by the caller, e.g. before importing this
    module, so that worker processes parse the file while the agent's stack is imported.
    """
    settings = Settings(window_seconds=window, tick_seconds=tick, deployment="replay", webhook_url=None)
    if source is None:
        source = open_jsonl(events_path)
    source.max_skew_seconds = settings.max_clock_skew_seconds  # before the clock is set from the first events
    if stats is not None:
        stats["report"] = source.report
    try:
        notes = ListNotifier()
        services = build_services(settings, source=source, in_memory=True, control_plane=SimulatedControlPlane(), notifier=notes)
        agent = Agent(services)
        ticks = 0
        with open(out_path, "wb") as out:
            end = agent.next_window_end()
            while end is not None:
                result = agent.tick(end)
                assert result is not None
                out.write(decision_json(result.state))
                notes.drain()  # alerts are in the decisions already; kept, they would grow with the run
                ticks += 1
                if ticks % REPLAY_AUDIT_RECORDS == 0:
                    services.audit.forget_all_but(REPLAY_AUDIT_RECORDS)
                yield result.state
                if agent.drained(end):
                    break
                end += tick
    finally:
        source.close()  # parse workers stop now, not at exit
