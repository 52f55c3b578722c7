"""Composition root: builds sources, services and agents for the CLI and other entry points."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from payops.decisions import decision_json
from payops.errors import BadInput
from payops.graph.runner import Agent
from payops.graph.services import AgentServices, build_services
from payops.guardrails.dead_letters import DeadLetters
from payops.guardrails.notify import FanoutNotifier, ListNotifier, Notifier, WebhookNotifier
from payops.settings import Settings
from payops.signals.merged_source import MergedSource
from payops.signals.palm_source import PalmSource
from payops.signals.policy import TrafficPolicy
from payops.signals.scenarios import timed_scenario
from payops.signals.simulator import SCENARIOS, Simulator, default_network
from payops.signals.sources import LineSource, SimulatorSource, Source, open_jsonl
from payops.tools.control_plane import HTTP, PLANES, SHADOW, SIMULATED, ShadowControlPlane, SimulatedControlPlane
from payops.tools.http_control_plane import HttpControlPlane
from payops.tools.palm_ops import PalmOps

DEFAULT_SCENARIO = "demo"
# A replay's audit trail lives in memory and is never read back after the run: it keeps
# the latest records only (~3 KB each), or it would grow with run length (issue 16).
REPLAY_AUDIT_RECORDS = 1000


class PlaneChoiceError(BadInput, ValueError):
    """The control plane asked for cannot be used as configured (a usage error, exit 2)."""


def plane_for_source(source_name: str | Sequence[str] | None, settings: Settings,
                     requested: str | None = None) -> str:
    """Which control plane acts: the one named, else by source.

    The simulator obeys the agent, so it keeps its closed loop (simulated). A file, stdin,
    a NATS log, the palm-pay backend's payments, or several merged, cannot respond to a
    move: with an orchestrator configured the moves go there (http); without one they are
    recorded as what would have run (shadow).
    """
    if requested is not None:
        if requested not in PLANES:
            raise PlaneChoiceError(f"unknown control plane '{requested}' (choose from {', '.join(PLANES)})")
        if requested == HTTP and not settings.orchestrator_url:
            raise PlaneChoiceError("--control-plane http needs PAYOPS_ORCHESTRATOR_URL (the orchestrator's base URL)")
        return requested
    if settings.orchestrator_url:
        return HTTP
    return SIMULATED if _source_names(source_name) in (["simulator"], ["sim"]) else SHADOW


def _source_names(source_name: str | Sequence[str] | None) -> list[str]:
    names = [source_name] if source_name is None or isinstance(source_name, str) else list(source_name)
    return [n for n in names if n is not None] or ["simulator"]


def control_plane_named(plane: str, settings: Settings) -> SimulatedControlPlane | HttpControlPlane:
    if plane == HTTP:
        assert settings.orchestrator_url, "plane_for_source checks the URL"
        return HttpControlPlane(settings.orchestrator_url)
    return ShadowControlPlane() if plane == SHADOW else SimulatedControlPlane()


def notifier_for(settings: Settings) -> ListNotifier | FanoutNotifier:
    console = ListNotifier()
    if settings.webhook_url:
        # Deliveries given up are kept in the state folder, listed by `payops pending` (never only counted).
        dead = DeadLetters.in_state_dir(settings.ensure_state_dir())
        hooks: list[Notifier] = [console, WebhookNotifier(settings.webhook_url, dead_letters=dead)]
        return FanoutNotifier(hooks)
    return console


def simulator_for(scenario: str, seed: int, control_plane: TrafficPolicy, minutes: float | None = None) -> Simulator:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}' (choose from {', '.join(SCENARIOS)})")
    net = default_network()
    return Simulator(timed_scenario(scenario, net, minutes), net, seed=seed, policy=control_plane)


def agent_services(settings: Settings, source_name: str | Sequence[str] | None, scenario: str, seed: int, *,
                   in_memory: bool = False, control_plane: str | None = None) -> AgentServices:
    """Services with their event source: the simulator, a file, stdin, a NATS stream, the palm-pay
    backend's payments (`palm`), or several of the last four merged by event time.

    `control_plane`: "simulated", "shadow" or "http"; None chooses by source (plane_for_source).
    Raises PlaneChoiceError, ValueError (unknown scenario, bad combination) or SourceError.
    """
    names = _source_names(source_name)
    # Over HTTP the simulator obeys the adapter's local ledger; a shadow plane steers no traffic.
    plane = control_plane_named(plane_for_source(source_name, settings, control_plane), settings)
    if len(names) == 1 and names[0] in ("simulator", "sim"):
        source: Source = SimulatorSource(simulator_for(scenario, seed, plane))
        return build_services(settings, source=source, in_memory=in_memory, control_plane=plane,
                              notifier=notifier_for(settings))
    if any(n in ("simulator", "sim") for n in names):
        raise ValueError("the simulator is a closed loop of its own: it cannot be combined with another --source")
    palm = None if in_memory else PalmOps.from_settings(settings)
    opened: list[Any] = []
    try:
        for name in names:
            opened.append(_open_source(name, settings, palm))
    except Exception:
        for done in opened:
            done.close()
        raise
    # cast: MergedSource's report is a duck-typed ParseReport (_MergedReport), which the Source protocol refuses
    source = opened[0] if len(opened) == 1 else cast(Source, MergedSource(opened))
    services = build_services(settings, source=source, in_memory=in_memory, control_plane=plane,
                              notifier=notifier_for(settings), palm=palm)
    for palm_source in (s for s in opened if isinstance(s, PalmSource)):
        _resume_palm_cursor(palm_source, services, settings.deployment)
    return services


def _open_source(name: str, settings: Settings, palm: PalmOps | None) -> Any:
    source = _open_source_named(name, settings, palm)
    source.max_skew_seconds = settings.max_clock_skew_seconds  # before the clock is set from the first events
    return source


def _open_source_named(name: str, settings: Settings, palm: PalmOps | None) -> Any:
    if name.startswith("nats://"):
        from payops.signals.nats_source import open_nats

        return open_nats(name, settings.deployment)
    if name == "palm":
        if palm is None:
            raise ValueError("--source palm reads the palm-pay backend's database: not available in memory")
        return PalmSource(lambda after, limit: [(r.id, r.event)
                                                for r in palm.service.payment_events_after(after, limit)],
                          count_after=lambda after: palm.service.payment_events_count_after(after))
    return open_jsonl(name, max_skew_seconds=settings.max_clock_skew_seconds)


CURSORS = ("sources",)  # namespace in the agent's store (SQLite or PostgreSQL): one cursor per partition


def _resume_palm_cursor(source: PalmSource, services: AgentServices, deployment: str) -> None:
    """Resume after the rows no open window needed when the last tick was checkpointed."""
    store = services.lessons.store
    key = f"palm:{deployment}"
    item = store.get(CURSORS, key)
    source.resume(int(item.value["after_id"]) if item else 0,
                  lambda after_id: store.put(CURSORS, key, {"after_id": after_id}, index=False))


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
    source.max_skew_seconds = settings.max_clock_skew_seconds  # before the clock is set from the first events
    if stats is not None:
        stats["report"] = source.report
    try:
        plane = control_plane_named(plane_for_source(str(events_path), settings, control_plane), settings)
        notes = ListNotifier()
        services = build_services(settings, source=source, in_memory=True, control_plane=plane, notifier=notes)
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
