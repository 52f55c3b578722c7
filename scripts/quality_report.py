"""Quality bar of the reasoning (issue 6 §7), closed loop through the real graph.

For every simulator scenario, VARIANTS incidents the tests never tuned on: a fresh
seed, a network with new bank / route / terminal / scheme names (one bank name is
a prompt injection), a volume drawn log-uniformly from its stratum of 50..5,000
payments/min, and an onset that falls anywhere inside a window. Each runs through
`payops.graph.runner.Agent` with in-memory services whose control plane the
simulator obeys, next to a run of the same incident with no agent.

Scored per incident (the simulator's oracle says what is right):
- first response after onset: the first tick whose diagnosis is not healthy, from
  onset to one window after the incident ends. Right when its category is the
  expected one, its diagnosis names the expected target, and its proposal is one of
  the acceptable tools on that target (or such an action is already in force /
  awaiting approval). A finding the agent only watches (confidence under its floor,
  no action, said so) is not a response. No response at all is a miss. As in the project's oracle
  (signals/oracle.py), an incident is visible once it fills half a window: a wrong
  reading of a window it barely touches is listed as premature, not scored.
- autonomous actions during healthy periods (before onset, between incidents, more
  than one window after the end; all of the healthy scenario): must be zero. Rolling
  back an incident's own mitigation once its cause cleared is listed apart.
- actions that make things worse: an executed traffic-changing action on a segment
  no fault touches, or a run whose payment success ratio from its first action on
  falls significantly below the no-agent run's. Must be zero.

    python scripts/quality_report.py [--variants 2] [--jobs 2] [--seed-base N] [--json out.json]
                                     [--independent-seeds 2] [--independent-seed-base N] [--independent-shape S]
                                     [--only simulator|independent]

Then the same figures on the project's held-out set: the independent incident generator
(evals/independent, its own world model, never tuned on), >= 2 fresh seeds of every shape
replayed through the eval harness (`python -m payops.evals.independent.score` alone).

The reasoner is whatever Settings() configures: the rules by default; with
PAYOPS_LLM_MODEL (and OPENAI_BASE_URL / OPENAI_API_KEY) set, the LLM reasoner.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from quality_network import random_network  # scripts/quality_network.py, beside this script

from payops.evals.independent import score as heldout
from payops.evals.independent.generate import GeneratorError
from payops.settings import Settings
from payops.signals.policy import NoPolicy
from payops.signals.simulator import (
    SCENARIOS,
    NetworkConfig,
    Scenario,
    Simulator,
    build_scenario,
    oracle_for_window,
)
from payops.signals.sources import SimulatorSource
from payops.tools.actions import ACTIONS, MAINTENANCE_ACTIONS
from payops.tools.control_plane import SimulatedControlPlane

START_TS = 1_780_000_000.0  # not the simulator's default start: nothing tuned on it
# Seeds: the tests use small ones. DEV_SEED_BASE is the set the rules were developed against;
# the default is a held-out set, run only to report (pass --seed-base to explore others).
DEV_SEED_BASE = 90_000
HELD_OUT_SEED_BASE = 700_000
MIN_PPM, MAX_PPM = 50.0, 5_000.0
LEAD_IN = 300.0  # five windows of healthy traffic: baselines become trusted after three
DURATION = 600.0
TAIL = 300.0  # after the incident: recovery, rollback recommendations, no new actions
# Payments under way when a fault ends still finish with its errors: timeouts take 8-30 s
# and a storm policy makes up to six attempts. Windows this long after the end are not
# yet "healthy" for counting actions during healthy periods.
FAULT_TAIL = 180.0
QUALITY_BAR = 0.95
# A run "made things worse" when its success ratio after the first action is below the
# no-agent run's by more than this many standard errors and this absolute margin.
HARM_SIGMAS = 3.0
HARM_MARGIN = 0.005


@dataclass(frozen=True)
class Case:
    scenario: str
    variant: int
    seed: int
    ppm: float
    lead_in: float


def cases(variants: int, scenarios: list[str], seed_base: int = HELD_OUT_SEED_BASE) -> list[Case]:
    out = []
    for s_index, name in enumerate(scenarios):
        for v in range(variants):
            seed = seed_base + 1000 * s_index + v
            rng = random.Random(seed * 7 + 1)
            # Stratified log-uniform volume: variant v draws from the v-th slice of 50..5,000.
            lo = math.log(MIN_PPM) + (math.log(MAX_PPM) - math.log(MIN_PPM)) * v / variants
            hi = math.log(MIN_PPM) + (math.log(MAX_PPM) - math.log(MIN_PPM)) * (v + 1) / variants
            ppm = round(math.exp(rng.uniform(lo, hi)), 1)
            out.append(Case(name, v, seed, ppm, LEAD_IN + round(rng.uniform(0.0, 59.0), 1)))
    return out


def scenario_for(case: Case, net: NetworkConfig) -> Scenario:
    if case.scenario == "demo":
        return build_scenario("demo", net)
    return build_scenario(case.scenario, net, lead_in=case.lead_in, duration=DURATION)


def run_length(sc: Scenario) -> float:
    ends = [x.end for x in sc.expectations] + [f.end for f in sc.faults] + [m.end for m in sc.misconfigs]
    return (max(ends) if ends else LEAD_IN + DURATION) + TAIL


def _overlaps(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    return all(a[k] == b[k] for k in set(a) & set(b))


@dataclass
class Incident:
    scenario: str
    variant: int
    ppm: float
    onset: float
    expected: dict[str, Any]
    response: dict[str, Any] | None = None
    lag_ticks: int | None = None
    ok: bool = False
    why: str = ""


@dataclass
class CaseResult:
    case: Case
    network: dict[str, Any]
    incidents: list[Incident] = field(default_factory=list)
    healthy_actions: list[dict[str, Any]] = field(default_factory=list)
    healthy_windows: int = 0
    healthy_findings: list[dict[str, Any]] = field(default_factory=list)  # non-healthy diagnoses in healthy periods
    # wrong findings in windows the incident barely touches
    premature: list[dict[str, Any]] = field(default_factory=list)
    watched: list[dict[str, Any]] = field(default_factory=list)  # low-confidence findings the agent only watched
    harmful: list[str] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)  # mitigations undone after their incident
    # every non-healthy decision in an incident (calibration)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    success_agent: float | None = None
    success_without: float | None = None
    seconds: float = 0.0


def _diagnosis_right(state: dict[str, Any], expected: Any) -> tuple[bool, str]:
    d, want = state["diagnosis"], dict(expected.target)
    if d["category"] != expected.category:
        return False, f"category {d['category']} (expected {expected.category})"
    if d["target"] != want:
        return False, f"target {d['target']} (expected {want})"
    return True, ""


def _acceptable(state: dict[str, Any], expected: Any) -> tuple[bool, str]:
    p, want = state["proposal"], dict(expected.target)
    right, why = _diagnosis_right(state, expected)
    if not right:
        return False, why
    if p["tool"] in expected.actions and (p["tool"] == "no_action" or p["target"] == want):
        return True, ""
    # The right action may already be under way (in force, or waiting for a human).
    for a in state.get("in_force", []):
        if a["tool"] in expected.actions and a["target"] == want:
            return True, ""
    for w in state.get("awaiting", []):
        key = ",".join(f"{k}={want[k]}" for k in sorted(want)) or "*"
        if w["tool"] in expected.actions and w["target_key"] == key:
            return True, ""
    return False, f"action {p['tool']} on {p['target']} (acceptable: {'/'.join(expected.actions)} on {want})"


def agent_states(case: Case, net: NetworkConfig,
                 sc: Scenario) -> tuple[list[dict[str, Any]], list[tuple[float, int, int]], float]:
    """Closed loop through the real graph; returns every tick's state and (end, payments, paid) counters."""
    from payops.graph.runner import Agent
    from payops.graph.services import build_services

    settings = Settings(deployment=f"quality-{case.scenario}-{case.variant}")
    cp = SimulatedControlPlane()
    sim = Simulator(sc, net, seed=case.seed, start_ts=START_TS, policy=cp)
    agent = Agent(build_services(settings, source=SimulatorSource(sim), in_memory=True, control_plane=cp))
    horizon = run_length(sc)
    states: list[dict[str, Any]] = []
    counters: list[tuple[float, int, int]] = []
    while not states or states[-1]["window_end"] - START_TS < horizon:
        result = agent.tick()
        assert result is not None
        states.append(result.state)
        counters.append((result.state["window_end"], sim.payments, sim.paid))
    return states, counters, settings.window_seconds


def run_case(case: Case, trace: bool = False, runner=None) -> CaseResult:
    t0 = time.perf_counter()
    net = random_network(case.seed, case.ppm)
    sc = scenario_for(case, net)
    states, counters, window = (runner or agent_states)(case, net, sc)
    # The same incident, same seed, with nobody acting.
    base = Simulator(sc, net, seed=case.seed, start_ts=START_TS, policy=NoPolicy())
    base_counters = []
    for end, _, _ in counters:
        base.advance(end)
        base_counters.append((end, base.payments, base.paid))
    res = score(case, net, sc, states, counters, base_counters, window)
    res.seconds = round(time.perf_counter() - t0, 2)
    if trace:
        for s in states:
            d, p, e = s["diagnosis"], s["proposal"], s["execution"]
            print(f"{s['window_end'] - START_TS:7.0f} {d['category']:8s} {d['confidence']:.2f} "
                  f"{_fmt_target(d['target']):45s} {p['tool']:19s} {_fmt_target(p['target']):35s} {e['status']:9s} "
                  f"{d['summary'][:90]}")
            if p["tool"] == "no_action" and p["args"].get("reason") not in ("traffic healthy",):
                print(f"{'':8s}reason: {p['args'].get('reason', '')[:200]}")
    return res


def score(case: Case, net: NetworkConfig, sc: Scenario, states: list[dict[str, Any]],
          counters: list[tuple[float, int, int]], base_counters: list[tuple[float, int, int]],
          window: float) -> CaseResult:
    res = CaseResult(case, {"banks": list(net.banks), "routes": list(net.routes), "terminals": list(net.terminals),
                            "ppm": net.payments_per_minute})
    settle = window + FAULT_TAIL
    periods = [(START_TS + x.onset, START_TS + x.end + settle) for x in sc.expectations]
    fault_targets = [(START_TS + f.start, START_TS + f.end + settle, dict(f.target)) for f in sc.faults]
    fault_targets += [(START_TS + m.start, START_TS + m.end + settle,
                       {"method": m.route_method[0], "route": m.route_method[1]} if m.route_method else {})
                      for m in sc.misconfigs]

    onsets = sorted(START_TS + x.onset for x in sc.expectations)
    for x in sc.expectations:
        onset = START_TS + x.onset
        # The first response must come while this incident is the newest one.
        until = min([START_TS + x.end + window] + [o for o in onsets if o > onset])
        inc = Incident(case.scenario, case.variant, case.ppm, x.onset,
                       {"category": x.category, "target": dict(x.target), "actions": list(x.actions)})
        after = [s for s in states if onset < s["window_end"] <= until]
        for i, s in enumerate(after):
            if s["diagnosis"]["category"] == "healthy":
                continue
            ok, why = _acceptable(s, x)
            rel_end = s["window_end"] - START_TS
            if not ok and s["proposal"]["tool"] == "no_action" \
                    and s["proposal"]["args"].get("reason", "").startswith("watching"):
                # The agent said it is watching, not acting or asserting (confidence below its floor).
                res.watched.append({"t": round(rel_end), "category": s["diagnosis"]["category"],
                                    "target": s["diagnosis"]["target"], "confidence": s["diagnosis"]["confidence"]})
                continue
            if not ok and oracle_for_window(sc, rel_end - window, rel_end).expectation is not x:
                # The project's oracle: an incident is visible once it fills half the window. A wrong
                # reading of a window it barely touches is a premature finding, reported apart.
                res.premature.append({"t": round(rel_end), "category": s["diagnosis"]["category"],
                                      "target": s["diagnosis"]["target"], "tool": s["proposal"]["tool"],
                                      "status": s["execution"]["status"]})
                continue
            if inc.response is None:
                inc.response = {"t": round(s["window_end"] - START_TS, 1), "category": s["diagnosis"]["category"],
                                "target": s["diagnosis"]["target"], "confidence": s["diagnosis"]["confidence"],
                                "tool": s["proposal"]["tool"], "action_target": s["proposal"]["target"],
                                "status": s["execution"]["status"], "summary": s["diagnosis"]["summary"]}
                inc.lag_ticks, inc.ok, inc.why = i + 1, ok, why
        if inc.response is None:
            inc.why = "no response during the incident"
        res.incidents.append(inc)

    # Calibration: every non-healthy diagnosis while an incident runs, judged against the
    # incident that started last (category and target; later actions are deduplicated).
    for s in states:
        end = s["window_end"]
        live = [x for x in sc.expectations if START_TS + x.onset < end <= START_TS + x.end + window]
        if s["diagnosis"]["category"] == "healthy" or not live:
            continue
        x = max(live, key=lambda e: e.onset)
        ok, why = _diagnosis_right(s, x)
        res.decisions.append({"confidence": s["diagnosis"]["confidence"], "ok": ok, "t": round(end - START_TS),
                              "why": why})

    for s in states:
        end = s["window_end"]
        if any(a - window < end <= b for a, b in periods):
            continue  # overlaps an incident (or its tail)
        res.healthy_windows += 1
        if s["diagnosis"]["category"] != "healthy":
            res.healthy_findings.append({"t": round(end - START_TS), "category": s["diagnosis"]["category"],
                                         "target": s["diagnosis"]["target"],
                                         "confidence": s["diagnosis"]["confidence"]})

    first_action_at = None
    for s in states:
        tool, status, end = s["proposal"]["tool"], s["execution"]["status"], s["window_end"]
        if status != "executed" or tool == "no_action":
            continue
        spec = ACTIONS.get(tool)
        in_incident = any(a < end <= b for a, b in periods)
        if not in_incident and tool in MAINTENANCE_ACTIONS:
            # Undoing an incident's mitigation once its cause cleared closes that incident; it is
            # listed apart, not counted as a new action in a healthy period.
            res.rollbacks.append({"t": round(end - START_TS, 1), "tool": tool, "target": s["proposal"]["target"]})
        elif not in_incident:
            res.healthy_actions.append({"t": round(end - START_TS, 1), "tool": tool, "target": s["proposal"]["target"],
                                        "category": s["diagnosis"]["category"], "summary": s["diagnosis"]["summary"]})
        if spec is not None and spec.changes_traffic:
            first_action_at = end if first_action_at is None else first_action_at
            active = [t for a, b, t in fault_targets if a < end <= b]
            if not any(_overlaps(s["proposal"]["target"], t) for t in active):
                res.harmful.append(f"t={end - START_TS:.0f}: {tool} on {s['proposal']['target']} "
                                   "touches no faulty segment")
    if first_action_at is not None:
        i = next(k for k, (end, _, _) in enumerate(counters) if end >= first_action_at)
        _, p0, s0 = counters[i]
        _, p1, s1 = counters[-1]
        _, q0, r0 = base_counters[i]
        _, q1, r1 = base_counters[-1]
        if p1 > p0 and q1 > q0:
            a, b = (s1 - s0) / (p1 - p0), (r1 - r0) / (q1 - q0)
            res.success_agent, res.success_without = round(a, 4), round(b, 4)
            se = math.sqrt(a * (1 - a) / (p1 - p0) + b * (1 - b) / (q1 - q0)) or 1e-9
            if b - a > max(HARM_MARGIN, HARM_SIGMAS * se):
                res.harmful.append(f"success ratio after the first action {a:.3f} vs {b:.3f} with no agent")
    return res


def _fmt_target(t: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(t.items())) or "*"


def report(results: list[CaseResult]) -> tuple[float, int, int]:
    incidents = [i for r in results for i in r.incidents]
    right = sum(i.ok for i in incidents)
    figure = right / len(incidents) if incidents else 1.0
    healthy = [(r.case, a) for r in results for a in r.healthy_actions]
    harmful = [(r.case, h) for r in results for h in r.harmful]
    print(f"\n{'scenario':20s} {'v':>1s} {'ppm':>7s} {'lag':>3s} {'category':8s} {'conf':>5s} {'tool':19s} "
          f"{'status':9s} target")
    for i in incidents:
        r = i.response or {}
        print(f"{i.scenario:20s} {i.variant:1d} {i.ppm:7.0f} {i.lag_ticks or '-':>3} {r.get('category', '-'):8s} "
              f"{r.get('confidence', 0):5.2f} {r.get('tool', '-'):19s} {r.get('status', '-'):9s} "
              f"{_fmt_target(r.get('target', {}))}  {'ok' if i.ok else 'MISS: ' + i.why}")
    lags = sorted(i.lag_ticks for i in incidents if i.lag_ticks)
    autonomous = sum(1 for i in incidents if i.ok and (i.response or {}).get("status") == "executed")
    print(f"\nfirst response right: {right}/{len(incidents)} = {figure:.1%} (bar {QUALITY_BAR:.0%})"
          f"; median lag {lags[len(lags) // 2] if lags else '-'} tick(s); {autonomous} right and executed autonomously")
    print(f"autonomous actions during healthy periods: {len(healthy)}")
    for case, a in healthy:
        print(f"  {case.scenario} v{case.variant} t={a['t']}: {a['tool']} on {_fmt_target(a['target'])} "
              f"({a['category']}: {a['summary']})")
    rollbacks = [(r.case, b) for r in results for b in r.rollbacks]
    print(f"mitigations rolled back after their incident cleared (not counted above): {len(rollbacks)}")
    windows = sum(r.healthy_windows for r in results)
    findings = [(r.case, f) for r in results for f in r.healthy_findings]
    print(f"non-healthy diagnoses in healthy windows (no action needed; a chance-alarm rate): "
          f"{len(findings)}/{windows}")
    for case, f in findings[:12]:
        print(f"  {case.scenario} v{case.variant} t={f['t']}: {f['category']} {_fmt_target(f['target'])} "
              f"({f['confidence']:.2f})")
    premature = [(r.case, p) for r in results for p in r.premature]
    print(f"premature wrong findings (windows less than half into an incident; not scored as its first response): "
          f"{len(premature)}")
    for case, p in premature:
        print(f"  {case.scenario} v{case.variant} t={p['t']}: {p['category']} {_fmt_target(p['target'])} "
              f"-> {p['tool']} ({p['status']})")
    watched = [(r.case, w) for r in results for w in r.watched]
    print(f"wrong low-confidence findings during incidents that the agent only watched (no action, not scored): "
          f"{len(watched)}")
    for case, w in watched[:12]:
        print(f"  {case.scenario} v{case.variant} t={w['t']}: {w['category']} {_fmt_target(w['target'])} "
              f"({w['confidence']:.2f})")
    print(f"actions that made things worse: {len(harmful)}")
    for case, h in harmful:
        print(f"  {case.scenario} v{case.variant}: {h}")
    decisions = [d for r in results for d in r.decisions]
    if decisions:
        print("calibration (every non-healthy diagnosis during incidents): confidence bin -> share with the right "
              "category and target")
        for lo, hi in ((0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)):
            got = [d for d in decisions if lo <= d["confidence"] < hi]
            if got:
                print(f"  [{lo:.1f}, {min(hi, 1.0):.1f}): {sum(d['ok'] for d in got)}/{len(got)} = "
                      f"{sum(d['ok'] for d in got) / len(got):.0%}")
    return figure, len(healthy), len(harmful)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=2, help="incidents per scenario (volume strata of 50..5,000/min)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    ap.add_argument("--json", help="also write every result here")
    ap.add_argument("--trace", metavar="SCENARIO:VARIANT", help="print every tick of one incident run and stop")
    ap.add_argument("--seed-base", type=int, default=HELD_OUT_SEED_BASE,
                    help=f"first seed (default: the held-out set; {DEV_SEED_BASE} is the development set)")
    ap.add_argument("--only", choices=("simulator", "independent"), help="print one set only (default: both)")
    heldout.add_arguments(ap, prefix="independent-")
    args = ap.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    if args.trace:
        name, _, variant = args.trace.partition(":")
        case = next(c for c in cases(args.variants, list(SCENARIOS), args.seed_base)
                    if c.scenario == name and c.variant == int(variant or 0))
        print(case)
        res = run_case(case, trace=True)
        report([res])
        return 0
    try:
        plan = heldout.held_out_plan(args.independent_seeds, args.independent_seed_base, args.independent_shape)
    except GeneratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok = True
    if args.only != "independent":
        print("== simulator set (closed loop, signals/simulator scenarios on new networks)")
        todo = cases(args.variants, names, args.seed_base)
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(run_case, todo))
        figure, healthy, harmful = report(results)
        print(
            f"{len(todo)} runs ({sum(len(r.incidents) for r in results)} incidents) in {time.perf_counter() - t0:.0f}s"
        )
        if args.json:
            with open(args.json, "w") as fh:
                json.dump([{**asdict(r), "case": asdict(r.case)} for r in results], fh, indent=1, default=str)
        ok = figure >= QUALITY_BAR and healthy == 0 and harmful == 0
    if args.only != "simulator":
        print("\n== held-out set (independent generator, evals/independent; replayed through the eval harness)")
        t0 = time.perf_counter()
        summary = heldout.report(heldout.run_all(plan, max(1, args.jobs)))
        print(f"{len(plan)} streams in {time.perf_counter() - t0:.0f}s")
        ok = ok and summary.meets_bar
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
