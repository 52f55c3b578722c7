"""Scenarios for the corpus: the simulator's library plus confounders built from its parts.

The simulator (payops.signals.simulator) owns the incident library and the
oracle (`Expectation`). Confounders that it does not name — a user surge at one
bank, a fraud burst, two incidents at once, volume steps, a normally slow route —
(and a route outage on a route whose second method has nowhere else to go) are composed
here from the same `Fault`/`Misconfig`/`Expectation` pieces, so the
closed loop can re-run them exactly like the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from payops.models import Category
from payops.signals.policy import TrafficPolicy
from payops.signals.simulator import SCENARIOS, Expectation, Fault, NetworkConfig, Scenario, Simulator, build_scenario

from .cases import ActionSpec, Expected, Generator
from .networks import network_from_dict

# Tools that change traffic: an unwanted one is what makes things worse.
TRAFFIC_TOOLS = ("reroute_traffic", "suppress_path", "adjust_retry_policy")
# Never acceptable without a human, whatever the incident: cannot be undone.
IRREVERSIBLE_TOOLS = ("revoke_palm_link",)
PALM_SCENARIOS = frozenset({"palm_spoof_burst", "palm_scanner_fault", "palm_limit_surge"})


class SteppedSimulator(Simulator):
    """The simulator with volume steps ((seconds after start, multiplier), ...): flash sales, night dips."""

    def __init__(self, *args: Any, volume_steps: tuple[tuple[float, float], ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.volume_steps = tuple(sorted(volume_steps))

    def _rate_per_second(self, t: Any) -> Any:
        # Works for a scalar second or an array of seconds (the vectorised simulator asks for many at once).
        rate = super()._rate_per_second(t)
        rel = np.asarray(t, dtype=float) - self.start_ts
        factor = np.ones_like(rel)
        for offset, multiplier in self.volume_steps:
            factor = np.where(rel >= offset, multiplier, factor)
        return rate * factor


def _ranked(weights: Mapping[str, float]) -> list[str]:
    return sorted(weights, key=lambda k: (-weights[k], k))


def _card_routes(net: NetworkConfig) -> list[str]:
    return _ranked(net.routes_for("card"))


# -- confounders ----------------------------------------------------------------------
# Each takes (net, start, end, params) and returns a Scenario with its Expectation.

def _big_bank_outage(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    bank = _ranked(net.banks)[0]
    return Scenario("big_bank_outage",
                    f"The largest issuer, {bank}, degrades on every route: every route's failure rate rises with it.",
                    faults=(Fault({"bank": bank}, s, e, p.get("rate", 0.6),
                                  {"ISSUER_DOWN": 0.7, "BANK_TIMEOUT": 0.3}),),
                    expectations=(Expectation("issuer", {"bank": bank}, ("suppress_path", "alert_ops"), s, e),))


def _issuer_alt_route(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    bank = _ranked(net.banks)[0]
    route = _card_routes(net)[-1]  # the least busy card route
    return Scenario("issuer_alt_route", f"Issuer {bank} fails only on the smaller card route {route}.",
                    faults=(Fault({"bank": bank, "route": route}, s, e, p.get("rate", 0.75),
                                  {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4}),),
                    expectations=(Expectation("issuer", {"bank": bank, "route": route},
                                              ("reroute_traffic", "suppress_path"), s, e),))


def _partial_route_outage(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    route = _card_routes(net)[0]
    return Scenario("partial_route_outage",
                    f"Route {route} drops a quarter of its attempts (intermittent gateway errors).",
                    faults=(Fault({"route": route}, s, e, p.get("rate", 0.25),
                                  {"GATEWAY_TIMEOUT": 0.5, "NETWORK_ERROR": 0.5}),),
                    expectations=(Expectation("network", {"route": route},
                                              ("reroute_traffic", "suppress_path"), s, e),))


def _mild_latency(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    route = _card_routes(net)[0]
    return Scenario("mild_latency", f"Route {route} is 3.5x slower with no extra failures.",
                    faults=(Fault({"route": route}, s, e, 0.0, {"GATEWAY_TIMEOUT": 1.0},
                                  latency_factor=p.get("factor", 3.5)),),
                    expectations=(Expectation("network", {"route": route}, ("reroute_traffic",), s, e),))


def _user_surge_one_bank(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    bank = _ranked(net.banks)[1]
    return Scenario("user_surge_one_bank",
                    f"Salaries at {bank} are paid late: insufficient funds concentrate on one bank.",
                    faults=(Fault({"bank": bank}, s, e, p.get("rate", 0.3),
                                  {"INSUFFICIENT_FUNDS": 0.9, "USER_DECLINED": 0.1},
                                  replaces_user_declines=True),),
                    expectations=(Expectation("user", {"bank": bank}, ("no_action",), s, e),))


def _fraud_burst_bank(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    bank = _ranked(net.banks)[1]
    return Scenario("fraud_burst_bank", f"A card-testing attack: SUSPECTED_FRAUD declines burst on {bank}'s cards.",
                    faults=(Fault({"bank": bank, "method": "card"}, s, e,
                                  p.get("rate", 0.35), {"SUSPECTED_FRAUD": 1.0}),),
                    expectations=(Expectation("security", {"bank": bank}, ("alert_ops", "suppress_path"), s, e),))


def shared_route(net: NetworkConfig) -> tuple[str, str, str]:
    """(route, a method it carries that has another route, a method it carries that has none)."""
    for name in _ranked({n: r.weight for n, r in net.routes.items()}):
        methods = net.routes[name].methods
        movable = [m for m in methods if len(net.routes_for(m)) > 1]
        stuck = [m for m in methods if len(net.routes_for(m)) == 1]
        if movable and stuck:
            return name, movable[0], stuck[0]
    raise ValueError("scenario needs a route carrying a method with another route and one without")


def _shared_route_outage(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    route, movable, stuck = shared_route(net)
    return Scenario("shared_route_outage",
                    f"Route {route} fails; it carries {movable} (which has other routes) and {stuck} (which has none).",
                    faults=(Fault({"route": route}, s, e, p.get("rate", 0.6),
                                  {"GATEWAY_TIMEOUT": 0.6, "NETWORK_ERROR": 0.4}),),
                    expectations=(Expectation("network", {"route": route}, ("reroute_traffic", "alert_ops"), s, e),))


def _card_schemes(net: NetworkConfig) -> list[str]:
    return _ranked(net.issuers.get("card", {}))


def _scheme_outage(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    scheme = _card_schemes(net)[0]
    return Scenario("scheme_outage",
                    f"Card scheme {scheme} fails across every bank and card route; the other schemes work.",
                    faults=(Fault({"issuer": scheme}, s, e, p.get("rate", 0.6),
                                  {"ISSUER_DOWN": 0.5, "NETWORK_ERROR": 0.5}),),
                    expectations=(Expectation("network", {"issuer": scheme}, ("alert_ops", "suppress_path"), s, e),))


def _scheme_route_link(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    scheme = _card_schemes(net)[0]
    route = _card_routes(net)[0]
    return Scenario("scheme_route_link",
                    f"The link between acquirer {route} and scheme {scheme} fails; {scheme} works on the other routes.",
                    faults=(Fault({"issuer": scheme, "route": route}, s, e, p.get("rate", 0.7),
                                  {"GATEWAY_TIMEOUT": 0.6, "NETWORK_ERROR": 0.4}),),
                    expectations=(Expectation("network", {"issuer": scheme, "route": route},
                                              ("reroute_traffic", "suppress_path"), s, e),))


def _route_ramp(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    route = _card_routes(net)[0]
    steps = tuple(p.get("steps", (0.12, 0.25, 0.4, 0.55)))
    span = (e - s) / len(steps)
    return Scenario("route_ramp",
                    f"Route {route} degrades step by step ({', '.join(f'{r:.0%}' for r in steps)} of its attempts "
                    "fail).",
                    faults=tuple(Fault({"route": route}, s + i * span, s + (i + 1) * span, rate,
                                       {"GATEWAY_TIMEOUT": 0.6, "NETWORK_ERROR": 0.4})
                                 for i, rate in enumerate(steps)),
                    expectations=(Expectation("network", {"route": route},
                                              ("reroute_traffic", "suppress_path"), s, e),))


def _compound(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
    bank = _ranked(net.banks)[1]
    return Scenario("compound",
                    f"Month-end declines everywhere while issuer {bank} is down: the operational fault is the issuer.",
                    faults=(Fault({"bank": bank}, s, e, 0.65, {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4}),
                            Fault({}, s, e, 0.1,
                                  {"INSUFFICIENT_FUNDS": 0.9, "USER_DECLINED": 0.1}, replaces_user_declines=True)),
                    expectations=(Expectation("issuer", {"bank": bank}, ("suppress_path", "alert_ops"), s, e),))


def _quiet(name: str, description: str) -> Callable[[NetworkConfig, float, float, Mapping[str, Any]], Scenario]:
    def build(net: NetworkConfig, s: float, e: float, p: Mapping[str, Any]) -> Scenario:
        return Scenario(name, description)
    return build


CONFOUNDERS: dict[str, Callable[[NetworkConfig, float, float, Mapping[str, Any]], Scenario]] = {
    "big_bank_outage": _big_bank_outage,
    "issuer_alt_route": _issuer_alt_route,
    "partial_route_outage": _partial_route_outage,
    "mild_latency": _mild_latency,
    "user_surge_one_bank": _user_surge_one_bank,
    "fraud_burst_bank": _fraud_burst_bank,
    "compound": _compound,
    "shared_route_outage": _shared_route_outage,
    "scheme_outage": _scheme_outage,
    "scheme_route_link": _scheme_route_link,
    "route_ramp": _route_ramp,
    # no-fault controls
    "noisy_healthy": _quiet("noisy_healthy", "High but steady background noise and declines; nothing changes."),
    "tiny_bank": _quiet("tiny_bank", "Low volume with a tiny bank whose few failures look alarming in percent."),
    "volume_step": _quiet("volume_step", "A flash sale: volume jumps 2.5x, failure rates unchanged."),
    "traffic_dip": _quiet("traffic_dip", "A night dip: volume falls to a third, failure rates unchanged."),
    "slow_route_normal": _quiet("slow_route_normal", "One rail is always slow (seconds); that is its normal."),
}

SCENARIO_NAMES: tuple[str, ...] = tuple(n for n in SCENARIOS if n != "demo") + tuple(CONFOUNDERS)


def build(name: str, net: NetworkConfig, lead_in: float, duration: float,
          params: Mapping[str, Any] | None = None) -> Scenario:
    params = params or {}
    if name in CONFOUNDERS:
        return CONFOUNDERS[name](net, lead_in, lead_in + duration, params)
    if name not in SCENARIOS or name == "demo":
        raise ValueError(f"unknown scenario '{name}' (choose from {', '.join(SCENARIO_NAMES)})")
    return build_scenario(name, net, lead_in=lead_in, duration=duration)


def simulator(gen: Generator, policy: TrafficPolicy | None = None, duration: float | None = None) -> Simulator:
    """A fresh simulator for a case's generator spec (optionally with a longer incident), obeying `policy`."""
    net = network_from_dict(gen.network)
    scenario = build(gen.scenario, net, gen.lead_in, duration if duration is not None else gen.duration, gen.params)
    steps = tuple((float(a), float(b)) for a, b in gen.params.get("volume_steps", ()))
    return SteppedSimulator(scenario, net, seed=gen.seed, start_ts=gen.start_ts, policy=policy, volume_steps=steps)


def expected_for(scenario: Scenario, facts: tuple[str, ...] = ()) -> Expected:
    """The oracle's answer as case labels: category, acceptable actions with targets, forbidden actions."""
    if not scenario.expectations:
        return Expected(category=Category.HEALTHY, acceptable_actions=(ActionSpec(tool="no_action", target={}),),
                        forbidden_actions=tuple(ActionSpec(tool=t) for t in (*TRAFFIC_TOOLS, *IRREVERSIBLE_TOOLS)),
                        facts=facts)
    x = scenario.expectations[0]
    target = dict(x.target)
    acceptable = tuple(ActionSpec(tool=t, target={} if t == "no_action" else target) for t in x.actions)
    forbidden = [ActionSpec(tool=t) for t in IRREVERSIBLE_TOOLS]
    forbidden.append(ActionSpec(tool="suppress_path", target={}))  # switching off all payments never helps
    if x.category == "user":
        forbidden += [ActionSpec(tool=t) for t in TRAFFIC_TOOLS]  # declines are the customers', not the path's
    if x.category == "network" and (not target or set(target) == {"issuer"}):
        # platform-wide, or a card scheme every acquirer carries: nowhere healthy to go
        forbidden.append(ActionSpec(tool="reroute_traffic"))
    return Expected(category=Category(x.category), target=target, acceptable_actions=acceptable,
                    forbidden_actions=tuple({a.label(): a for a in forbidden}.values()), facts=facts)
