"""The scenario library: incidents on a timeline, and what a perfect operator would conclude.

Scenarios pick their victims by role ("the second bank", "the busiest card
route", "the middle terminal"), so they work on any network and any names.
Every CONTRACT.md §2 category is covered; `Expectation`s are the oracle's
ground truth (see oracle.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .network import PALM_METHOD, NetworkConfig
from .policy import RetryPolicy


@dataclass(frozen=True)
class Fault:
    """While active, payments matching `target` fail with `rate` using `errors`, and/or slow down."""

    target: Mapping[str, str]
    start: float  # seconds after the simulation start
    end: float
    rate: float = 0.0
    errors: Mapping[str, float] = field(default_factory=dict)
    latency_factor: float = 1.0
    replaces_user_declines: bool = False  # user-side surges: the extra failures are declines


@dataclass(frozen=True)
class Misconfig:
    """A bad configuration push: routes a method to a route that rejects it, or a retry policy."""

    start: float
    end: float
    route_method: tuple[str, str] | None = None  # (method, route): method forced onto route
    share: float = 1.0  # share of that method's traffic forced
    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class Expectation:
    """The oracle: what a perfect operator would conclude and do, from `onset` on."""

    category: str
    target: Mapping[str, str]
    actions: tuple[str, ...]  # acceptable tools
    onset: float
    end: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    faults: tuple[Fault, ...] = ()
    misconfigs: tuple[Misconfig, ...] = ()
    expectations: tuple[Expectation, ...] = ()


def _ranked(weights: Mapping[str, float]) -> list[str]:
    return sorted(weights, key=lambda k: (-weights[k], k))


def _busiest_multi_route_method(net: NetworkConfig) -> tuple[str, str, str]:
    """(method, busiest route, alternative route) for the busiest method carried by 2+ routes."""
    for method in _ranked(net.methods):
        routes = _ranked(net.routes_for(method))
        if len(routes) >= 2:
            return method, routes[0], routes[1]
    raise ValueError("scenario needs a method carried by two routes")


def build_scenario(name: str, net: NetworkConfig, lead_in: float = 300.0, duration: float = 600.0) -> Scenario:
    """A named incident after a healthy lead-in of `lead_in` seconds, lasting `duration`."""
    s, e = lead_in, lead_in + duration
    banks = _ranked(net.banks)
    method, route, alt = _busiest_multi_route_method(net)
    victim_bank = banks[1] if len(banks) > 1 else banks[0]
    terminal = net.terminals[len(net.terminals) // 2] if net.terminals else None
    palm_route = next((r for r in _ranked({k: v.weight for k, v in net.routes.items()})
                       if PALM_METHOD in net.routes[r].methods), None)

    if name == "healthy":
        return Scenario(name, "Normal traffic with noise; nothing to do.")
    if name == "issuer_outage":
        return Scenario(name, f"Issuer {victim_bank} degraded on every route.",
                        faults=(Fault({"bank": victim_bank}, s, e, 0.65, {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4}),),
                        expectations=(Expectation("issuer", {"bank": victim_bank}, ("suppress_path", "alert_ops"),
                                                  s, e),))
    if name == "issuer_route":
        return Scenario(name, f"Issuer {victim_bank} fails only on route {route}.",
                        faults=(Fault({"bank": victim_bank, "route": route}, s, e, 0.7,
                                      {"ISSUER_DOWN": 0.5, "DO_NOT_HONOR": 0.5}),),
                        expectations=(Expectation("issuer", {"bank": victim_bank, "route": route},
                                                  ("reroute_traffic", "suppress_path"), s, e),))
    if name == "route_outage":
        return Scenario(name, f"Route {route} failing for every bank.",
                        faults=(Fault({"route": route}, s, e, 0.55, {"GATEWAY_TIMEOUT": 0.6, "NETWORK_ERROR": 0.4}),),
                        expectations=(Expectation("network", {"route": route}, ("reroute_traffic", "suppress_path"),
                                                  s, e),))
    if name == "system_wide":
        return Scenario(name, "Platform-wide failure: every route and bank.",
                        faults=(Fault({}, s, e, 0.4, {"SYSTEM_ERROR": 0.7, "NETWORK_ERROR": 0.3}),),
                        expectations=(Expectation("network", {}, ("alert_ops",), s, e),))
    if name == "latency_degradation":
        return Scenario(name, f"Route {route} slows down sharply, some timeouts.",
                        faults=(Fault({"route": route}, s, e, 0.06, {"GATEWAY_TIMEOUT": 1.0}, latency_factor=6.0),),
                        expectations=(Expectation("network", {"route": route}, ("reroute_traffic",), s, e),))
    if name == "retry_storm":
        storm = RetryPolicy(max_attempts=6, backoff_ms=0.0, retry_all_errors=True)
        return Scenario(name, "A retry-policy push retries every failure six times with no backoff.",
                        faults=(Fault({"bank": victim_bank}, s, e, 0.4, {"BANK_TIMEOUT": 1.0}),),
                        misconfigs=(Misconfig(s, e, retry=storm),),
                        expectations=(Expectation("config", {}, ("adjust_retry_policy",), s, e),))
    if name == "routing_misconfig":
        wrong = next((r for r in _ranked({k: v.weight for k, v in net.routes.items()})
                      if method not in net.routes[r].methods), None)
        other = next((m for m in _ranked(net.methods)
                      if m != method and wrong is not None and m not in net.routes[wrong].methods), None)
        if wrong is None or other is None:
            raise ValueError("routing_misconfig needs a route that does not carry some method")
        return Scenario(name, f"A routing push sends {other} to {wrong}, which rejects it.",
                        misconfigs=(Misconfig(s, e, route_method=(other, wrong), share=0.8),),
                        expectations=(Expectation("config", {"method": other, "route": wrong}, ("reroute_traffic",),
                                                  s, e),))
    if name == "user_decline_surge":
        return Scenario(name, "Month-end: insufficient funds up across every bank.",
                        faults=(Fault({}, s, e, 0.14, {"INSUFFICIENT_FUNDS": 0.85, "USER_DECLINED": 0.15},
                                      replaces_user_declines=True),),
                        expectations=(Expectation("user", {}, ("no_action",), s, e),))
    if name == "palm_spoof_burst":
        if terminal is None:
            raise ValueError("palm scenarios need terminals")
        return Scenario(name, f"Spoofed palms presented at terminal {terminal}.",
                        faults=(Fault({"terminal_id": terminal}, s, e, 0.75, {"PALM_PAY_SPOOF_DETECTED": 1.0}),),
                        expectations=(Expectation("security", {"terminal_id": terminal}, ("suppress_path", "alert_ops"),
                                                  s, e),))
    if name == "palm_scanner_fault":
        if terminal is None:
            raise ValueError("palm scenarios need terminals")
        return Scenario(name, f"The palm scanner of terminal {terminal} misreads every hand.",
                        faults=(Fault({"terminal_id": terminal}, s, e, 0.85, {"PALM_PAY_NOT_REGISTERED": 1.0}),),
                        expectations=(Expectation("network", {"terminal_id": terminal}, ("suppress_path",), s, e),))
    if name == "palm_limit_surge":
        if palm_route is None:
            raise ValueError("palm scenarios need a palm route")
        return Scenario(name, "Many palm users hit their daily limit (payday shopping).",
                        faults=(Fault({"method": PALM_METHOD}, s, e, 0.3,
                                      {"PALM_PAY_DAILY_LIMIT": 0.8, "PALM_PAY_TRANSACTION_LIMIT": 0.2},
                                      replaces_user_declines=True),),
                        expectations=(Expectation("user", {"method": PALM_METHOD}, ("no_action",), s, e),))
    if name == "demo":
        parts = [build_scenario(n, net, lead_in=t, duration=300.0)
                 for n, t in (("route_outage", 180.0), ("retry_storm", 600.0), ("user_decline_surge", 960.0),
                              ("system_wide", 1260.0))]
        return Scenario(name, "Healthy, a route outage, a retry storm, a decline surge, a platform failure, recovery.",
                        faults=tuple(f for p in parts for f in p.faults),
                        misconfigs=tuple(m for p in parts for m in p.misconfigs),
                        expectations=tuple(x for p in parts for x in p.expectations))
    raise KeyError(name)


SCENARIOS: tuple[str, ...] = (
    "healthy", "issuer_outage", "issuer_route", "route_outage", "system_wide", "latency_degradation",
    "retry_storm", "routing_misconfig", "user_decline_surge", "palm_spoof_burst", "palm_scanner_fault",
    "palm_limit_surge", "demo",
)


def timed_scenario(name: str, net: NetworkConfig, minutes: float | None = None) -> Scenario:
    """A scenario fitted into `minutes` of stream: a healthy lead-in (a third, at most 5 min),
    the incident, and a recovery tail (a sixth, at most 2 min). `demo` keeps its own timeline."""
    if minutes is None or name == "demo":
        return build_scenario(name, net)
    total = minutes * 60.0
    lead_in = min(300.0, total / 3.0)
    return build_scenario(name, net, lead_in=lead_in, duration=max(total - lead_in - min(120.0, total / 6.0), 60.0))
