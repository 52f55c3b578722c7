"""Making cases: from a simulator scenario (labels from its oracle) or from any event file plus labels."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from payops.models import Category
from payops.signals.events import ParseReport, parse_line
from payops.signals.simulator import NetworkConfig

from .cases import ActionSpec, Case, CaseError, Expected, Generator, iter_lines, write_case
from .networks import network_to_dict, renamed_network
from .scenarios import CONFOUNDERS, PALM_SCENARIOS, build, expected_for, simulator

DEFAULT_START_TS = 1_764_000_000.0
# Generation step: events are produced minute by minute, like the agent reads them.
STEP_SECONDS = 60.0
# Difficulty from the evidence a 60 s window holds about the victim segment: below
# HARD_ATTEMPTS its attempts barely clear the agent's minimum-evidence settings
# (10 attempts, 8 excess failures), below EASY_ATTEMPTS a subtle signal is still noisy.
HARD_ATTEMPTS = 15.0
EASY_ATTEMPTS = 60.0
LOW_VOLUME_PPM = 150.0
HIGH_VOLUME_PPM = 1000.0
# A hand edit of a case's generated events: the event dicts in, the lines to write out (dicts, or raw text
# for a broken line: evals/corpus.py malformed_lines).
EventEdit = Callable[[list[dict[str, Any]]], list[Any]]
# Scenarios whose signal is subtle even with plenty of attempts: one level harder.
SUBTLE = frozenset({"latency_degradation", "mild_latency", "palm_spoof_burst", "palm_scanner_fault", "compound",
                    "issuer_alt_route", "partial_route_outage", "routing_misconfig", "fraud_burst_bank", "retry_storm"})


def victim_share(net: NetworkConfig, target: dict[str, str]) -> float:
    """Expected share of all attempts that fall in the target segment (dimensions taken as independent)."""
    share = 1.0
    if "bank" in target:
        share *= net.banks.get(target["bank"], 0.0) / (sum(net.banks.values()) or 1.0)
    methods_total = sum(net.methods.values()) or 1.0
    if "terminal_id" in target:
        share *= net.methods.get("palm", 0.0) / methods_total / max(len(net.terminals), 1)
    elif "route" in target:
        route = target["route"]
        methods = [target["method"]] if "method" in target else list(net.methods)
        part = 0.0
        for m in methods:
            routes = net.routes_for(m)
            if route in routes:
                part += net.methods.get(m, 0.0) / methods_total * routes[route] / sum(routes.values())
            elif "method" in target:  # a misrouted method: its whole volume lands there
                part += net.methods.get(m, 0.0) / methods_total
        share *= part
    elif "method" in target:
        share *= net.methods.get(target["method"], 0.0) / methods_total
    return share


def default_difficulty(scenario: str, net: NetworkConfig, target: dict[str, str]) -> str:
    per_window = net.payments_per_minute * victim_share(net, target)
    level = 2 if per_window < HARD_ATTEMPTS else 1 if per_window < EASY_ATTEMPTS else 0
    if scenario in SUBTLE:
        level += 1
    return ("easy", "medium", "hard")[min(level, 2)]


def volume_tag(volume: float) -> str:
    return "low-volume" if volume < LOW_VOLUME_PPM else "high-volume" if volume >= HIGH_VOLUME_PPM else "mid-volume"


@dataclass
class SimSpec:
    """One simulator-made case: which scenario, which network and volume, how long."""

    case_id: str
    scenario: str
    seed: int
    volume: float
    lead_in: float = 240.0
    duration: float = 240.0
    tail: float = 60.0
    network: NetworkConfig | None = None  # default: a renamed network drawn from the seed
    params: dict[str, Any] = field(default_factory=dict)
    difficulty: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    start_ts: float = DEFAULT_START_TS
    edit: EventEdit | None = None  # a hand edit of the generated events (the case loses its generator)
    edits: tuple[str, ...] = ()  # what the edit did, in words
    expected: Expected | None = None  # override the oracle's labels (hand edits that move the answer)


def simulate_events(gen: Generator) -> list[dict[str, Any]]:
    """The run's events sorted by ts over the whole file (CONTRACT.md §4 reads files in ts order).

    The simulator returns each step's attempts sorted, but an attempt that starts
    near the end of a step and times out finishes in a later one (retries of 30 s
    timeouts); written step by step, the file would not be sorted.
    """
    sim = simulator(gen)
    end = gen.start_ts + gen.minutes * 60.0
    t = gen.start_ts
    events = []
    while t < end:
        t = min(t + STEP_SECONDS, end)
        events.extend(sim.advance(t))
    events.sort(key=lambda ev: ev.ts)
    return [ev.to_json() for ev in events if ev.ts < end]


def case_from_spec(spec: SimSpec) -> tuple[Case, list[bytes]]:
    net = spec.network or renamed_network(spec.seed, spec.volume)
    if net.payments_per_minute != spec.volume:
        from dataclasses import replace

        net = replace(net, payments_per_minute=float(spec.volume))
    minutes = (spec.lead_in + spec.duration + spec.tail) / 60.0
    gen = Generator(
        scenario=spec.scenario,
        seed=spec.seed,
        lead_in=spec.lead_in,
        duration=spec.duration,
        minutes=minutes,
        start_ts=spec.start_ts,
        network=network_to_dict(net),
        params=dict(spec.params),
    )
    scenario = build(spec.scenario, net, spec.lead_in, spec.duration, spec.params)
    expected = spec.expected or expected_for(scenario, spec.facts)
    events: list[Any] = simulate_events(gen)
    control = expected.category is Category.HEALTHY
    if spec.edit is not None:
        events = spec.edit(events)
    # The case's kind: the scenario for simulator cases, the edit's name for hand-edited ones
    # (a broken merchant on healthy traffic must not carry the tag 'healthy').
    kind = spec.scenario if spec.edit is None and spec.expected is None else spec.case_id.rsplit("-", 1)[0]
    tags = [kind, volume_tag(spec.volume)]
    if spec.scenario in CONFOUNDERS:
        tags.append("confounder")
    palm = (
        spec.scenario in PALM_SCENARIOS or "terminal_id" in expected.target or expected.target.get("method") == "palm"
    )
    case = Case(
        id=spec.case_id,
        description=spec.description or f"{scenario.description} ({spec.volume:g} payments/min, seed {spec.seed})",
        origin="hand-edited" if spec.edit is not None else "simulator",
        edits=spec.edits,
        tags=tuple(dict.fromkeys((*tags, *spec.tags))),
        difficulty=spec.difficulty or default_difficulty(spec.scenario, net, expected.target),
        palm=palm,
        control=control,
        onset=None if control else spec.start_ts + spec.lead_in,  # hand edits place their incident at the same onset
        end=None if control else spec.start_ts + spec.lead_in + spec.duration,
        expected=expected,
        # A hand edit changes the events: re-simulating would not reproduce them.
        generator=None if spec.edit is not None else gen,
    )
    return case, [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]


def record_simulated(spec: SimSpec, root: Path, overwrite: bool = False) -> Case:
    case, lines = case_from_spec(spec)
    folder = write_case(case, lines, root, overwrite)
    return case.model_copy(update={"path": folder})


def check_events(lines: Iterable[bytes]) -> tuple[ParseReport, float | None, float | None]:
    """Parse every line as the agent would: (data-quality report, first ts, last ts)."""
    report = ParseReport()
    first = last = None
    for no, line in enumerate(lines, 1):
        ev = parse_line(line, no, report)
        if ev is not None:
            first = ev.ts if first is None else first
            last = ev.ts
    return report, first, last


def parse_action(text: str) -> ActionSpec:
    """'suppress_path:bank=FNB,route=psp_a' -> ActionSpec; 'reroute_traffic' (no colon) means any target;
    'alert_ops:*' means all traffic ({})."""
    tool, sep, rest = text.partition(":")
    tool = tool.strip()
    if not tool:
        raise CaseError(f"bad action '{text}': expected TOOL[:dim=value,...]")
    if not sep:
        return ActionSpec(tool=tool, target=None)
    target: dict[str, str] = {}
    if rest.strip() not in ("", "*"):
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise CaseError(f"bad target '{part}' in '{text}': expected dim=value")
            target[key.strip()] = value.strip()
    return ActionSpec(tool=tool, target=target)


def record_from_events(
    case_id: str,
    events_path: Path,
    root: Path,
    *,
    category: str,
    onset: float | None,
    end: float | None = None,
    target: dict[str, str] | None = None,
    actions: Iterable[ActionSpec] = (),
    forbidden: Iterable[ActionSpec] = (),
    description: str = "",
    tags: Iterable[str] = (),
    difficulty: str = "medium",
    facts: Iterable[str] = (),
    overwrite: bool = False,
    onset_offset: float | None = None,
) -> tuple[Case, ParseReport]:
    """A case from any CONTRACT.md §1 file plus labels. Bad lines are kept verbatim (the agent must skip them)."""
    if not events_path.is_file():
        raise CaseError(f"no such event file: {events_path}")
    lines = list(iter_lines(events_path))
    report, first, _last = check_events(lines)
    if first is None:
        raise CaseError(f"{events_path}: no valid event in {report.lines} line(s)")
    if onset is None and onset_offset is not None:
        onset = first + onset_offset
    control = Category(category) is Category.HEALTHY
    acceptable = tuple(actions) or ((ActionSpec(tool="no_action", target={}),) if control or category == "user" else ())
    if not control and not acceptable:
        raise CaseError("an incident needs at least one acceptable action (--action TOOL:dim=value)")
    try:
        case = Case(
            id=case_id,
            description=description or f"Recorded from {events_path.name}",
            origin="recorded",
            tags=tuple(tags),
            difficulty=difficulty,
            control=control,
            onset=None if control else onset,
            end=end,
            palm="terminal_id" in (target or {}),
            expected=Expected(
                category=Category(category),
                target=target or {},
                acceptable_actions=acceptable,
                forbidden_actions=tuple(forbidden),
                facts=tuple(facts),
            ),
        )
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        raise CaseError(errors()[0]["msg"] if errors else str(exc)) from None
    folder = write_case(case, lines, root, overwrite)
    return case.model_copy(update={"path": folder}), report
