"""A closed-loop payment simulator: a network of banks, routes, methods and terminals,
incidents on a timeline, and traffic that obeys the control plane.

Names are configuration: scenarios pick their victims by role ("the second bank",
"the busiest card route"), so any names work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from .events import PaymentEvent
from .policy import NoPolicy, RetryPolicy, TrafficPolicy, matches

RETRYABLE = frozenset({"BANK_TIMEOUT", "GATEWAY_TIMEOUT", "NETWORK_ERROR", "SYSTEM_ERROR", "ISSUER_DOWN"})
USER_DECLINES = {"INSUFFICIENT_FUNDS": 0.5, "USER_DECLINED": 0.2, "INCORRECT_PIN": 0.12, "EXPIRED_CARD": 0.08, "DO_NOT_HONOR": 0.1}
# A payment's last attempt reports RETRY_EXHAUSTED once a policy allowed this many
# attempts; with the usual 1 retry the last attempt keeps its own error code.
RETRY_EXHAUSTED_AFTER = 3
PALM_DECLINES = {"PALM_PAY_NOT_REGISTERED": 0.45, "PALM_PAY_DAILY_LIMIT": 0.2, "PALM_PAY_TRANSACTION_LIMIT": 0.15, "PALM_PAY_LINK_INACTIVE": 0.2}


@dataclass(frozen=True)
class RouteSpec:
    methods: tuple[str, ...]
    weight: float = 1.0  # default share among routes that carry the method
    latency_ms: float = 350.0


@dataclass(frozen=True)
class NetworkConfig:
    banks: Mapping[str, float]
    methods: Mapping[str, float]
    routes: Mapping[str, RouteSpec]
    issuers: Mapping[str, Mapping[str, float]]  # method -> issuer -> weight
    terminals: tuple[str, ...] = ()  # palm terminals
    payments_per_minute: float = 600.0
    daily_wave: float = 0.0  # amplitude of a 24 h sine on volume (0..1)
    user_decline_rate: float = 0.04
    system_noise_rate: float = 0.004
    default_retry: RetryPolicy = RetryPolicy()

    def routes_for(self, method: str) -> dict[str, float]:
        return {name: r.weight for name, r in self.routes.items() if method in r.methods}


def default_network(payments_per_minute: float = 600.0) -> NetworkConfig:
    return NetworkConfig(
        banks={"ABSA": 0.24, "FNB": 0.26, "NEDBANK": 0.18, "STANDARD": 0.2, "CAPITEC": 0.12},
        methods={"card": 0.6, "payshap": 0.18, "palm": 0.12, "eft": 0.1},
        routes={
            "psp_a": RouteSpec(("card",), 0.6, 320.0),
            "psp_b": RouteSpec(("card",), 0.4, 380.0),
            "payshap_rail": RouteSpec(("payshap", "palm"), 1.0, 450.0),
            "eft_switch": RouteSpec(("eft",), 1.0, 600.0),
        },
        issuers={"card": {"VISA": 0.55, "MASTERCARD": 0.45}, "payshap": {"PAYSHAP": 1.0}, "palm": {"PAYSHAP": 1.0}, "eft": {"EFT": 1.0}},
        terminals=("T1", "T2", "T3", "T4", "T5", "T6"),
        payments_per_minute=payments_per_minute,
    )


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
    palm_route = next((r for r in _ranked({k: v.weight for k, v in net.routes.items()}) if "palm" in net.routes[r].methods), None)

    if name == "healthy":
        return Scenario(name, "Normal traffic with noise; nothing to do.")
    if name == "issuer_outage":
        return Scenario(name, f"Issuer {victim_bank} degraded on every route.",
                        faults=(Fault({"bank": victim_bank}, s, e, 0.65, {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4}),),
                        expectations=(Expectation("issuer", {"bank": victim_bank}, ("suppress_path", "alert_ops"), s, e),))
    if name == "issuer_route":
        return Scenario(name, f"Issuer {victim_bank} fails only on route {route}.",
                        faults=(Fault({"bank": victim_bank, "route": route}, s, e, 0.7, {"ISSUER_DOWN": 0.5, "DO_NOT_HONOR": 0.5}),),
                        expectations=(Expectation("issuer", {"bank": victim_bank, "route": route}, ("reroute_traffic", "suppress_path"), s, e),))
    if name == "route_outage":
        return Scenario(name, f"Route {route} failing for every bank.",
                        faults=(Fault({"route": route}, s, e, 0.55, {"GATEWAY_TIMEOUT": 0.6, "NETWORK_ERROR": 0.4}),),
                        expectations=(Expectation("network", {"route": route}, ("reroute_traffic", "suppress_path"), s, e),))
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
        wrong = next((r for r in _ranked({k: v.weight for k, v in net.routes.items()}) if method not in net.routes[r].methods), None)
        other = next((m for m in _ranked(net.methods) if m != method and wrong is not None and m not in net.routes[wrong].methods), None)
        if wrong is None or other is None:
            raise ValueError("routing_misconfig needs a route that does not carry some method")
        return Scenario(name, f"A routing push sends {other} to {wrong}, which rejects it.",
                        misconfigs=(Misconfig(s, e, route_method=(other, wrong), share=0.8),),
                        expectations=(Expectation("config", {"method": other, "route": wrong}, ("reroute_traffic",), s, e),))
    if name == "user_decline_surge":
        return Scenario(name, "Month-end: insufficient funds up across every bank.",
                        faults=(Fault({}, s, e, 0.14, {"INSUFFICIENT_FUNDS": 0.85, "USER_DECLINED": 0.15}, replaces_user_declines=True),),
                        expectations=(Expectation("user", {}, ("no_action",), s, e),))
    if name == "palm_spoof_burst":
        if terminal is None:
            raise ValueError("palm scenarios need terminals")
        return Scenario(name, f"Spoofed palms presented at terminal {terminal}.",
                        faults=(Fault({"terminal_id": terminal}, s, e, 0.75, {"PALM_PAY_SPOOF_DETECTED": 1.0}),),
                        expectations=(Expectation("security", {"terminal_id": terminal}, ("suppress_path", "alert_ops"), s, e),))
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
                        faults=(Fault({"method": "palm"}, s, e, 0.3, {"PALM_PAY_DAILY_LIMIT": 0.8, "PALM_PAY_TRANSACTION_LIMIT": 0.2}, replaces_user_declines=True),),
                        expectations=(Expectation("user", {"method": "palm"}, ("no_action",), s, e),))
    if name == "demo":
        parts = [build_scenario(n, net, lead_in=t, duration=300.0)
                 for n, t in (("route_outage", 180.0), ("retry_storm", 600.0), ("user_decline_surge", 960.0), ("system_wide", 1260.0))]
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


def _pick(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = list(weights)
    w = np.fromiter(weights.values(), float, len(names))
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _pick_code(rng: np.random.Generator, dist: Mapping[str, float]) -> str:
    return _pick(rng, dist)


class Simulator:
    """Generates CONTRACT.md §1 events second by second, obeying a TrafficPolicy."""

    def __init__(self, scenario: Scenario, network: NetworkConfig | None = None, seed: int = 0,
                 start_ts: float = 1_764_000_000.0, policy: TrafficPolicy | None = None) -> None:
        self.scenario = scenario
        self.net = network or default_network()
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.start_ts = start_ts
        self.now = start_ts
        self.policy: TrafficPolicy = policy or NoPolicy()
        self._counter = 0
        self.diverted = 0  # payments not attempted on their path because it was suppressed
        self.payments = 0
        self.paid = 0

    # -- time-varying model ---------------------------------------------------
    def _rate_per_second(self, t: float) -> float:
        base = self.net.payments_per_minute / 60.0
        if self.net.daily_wave:
            base *= 1.0 + self.net.daily_wave * math.sin(2 * math.pi * (t - self.start_ts) / 86_400.0)
        return max(base, 0.0)

    def _active(self, t: float) -> tuple[list[Fault], list[Misconfig]]:
        rel = t - self.start_ts
        faults = [f for f in self.scenario.faults if f.start <= rel < f.end]
        misconfigs = [m for m in self.scenario.misconfigs if m.start <= rel < m.end]
        return faults, misconfigs

    # -- generation -----------------------------------------------------------
    def advance(self, until_ts: float) -> list[PaymentEvent]:
        """All events that finish in [now, until_ts), sorted by ts."""
        events: list[PaymentEvent] = []
        second = self.now
        while second < until_ts:
            step_end = min(second + 1.0, until_ts)
            expected = self._rate_per_second(second) * (step_end - second)
            faults, misconfigs = self._active(second)
            for _ in range(int(self.rng.poisson(expected))):
                t0 = second + float(self.rng.random()) * (step_end - second)
                events.extend(self._payment(t0, faults, misconfigs))
            second = step_end
        self.now = until_ts
        events.sort(key=lambda ev: ev.ts)
        return events

    def _payment(self, t0: float, faults: list[Fault], misconfigs: list[Misconfig]) -> list[PaymentEvent]:
        rng = self.rng
        self.payments += 1
        self._counter += 1
        payment_id = f"sim{self.seed}-{self._counter}"
        method = _pick(rng, self.net.methods)
        bank = _pick(rng, self.net.banks)
        terminal = self.net.terminals[int(rng.integers(len(self.net.terminals)))] if method == "palm" and self.net.terminals else None
        dims: dict[str, str] = {"method": method, "bank": bank}
        if terminal:
            dims["terminal_id"] = terminal
        diversion = self.policy.suppression(dims)
        if diversion is not None:
            if diversion.fallback_method is None or diversion.fallback_method == method:
                self.diverted += 1
                return []
            method = diversion.fallback_method  # the customer took the offered fallback
            dims = {"method": method, "bank": bank}
            terminal = None
        issuer = _pick(rng, self.net.issuers.get(method, {"OTHER": 1.0}))
        dims["issuer"] = issuer
        candidates = self.net.routes_for(method) or {"unsupported": 1.0}
        route = _pick(rng, candidates)
        for m in misconfigs:
            if m.route_method and m.route_method[0] == method and rng.random() < m.share:
                route = m.route_method[1]
        override = self.policy.reroute({**dims, "route": route}, candidates, float(rng.random()))
        if override is not None:
            route = override
        dims["route"] = route
        if self.policy.suppression(dims) is not None:  # a suppressed route or bank x route path
            self.diverted += 1
            return []
        retry = self.policy.retry_policy(dims)
        if retry is None:
            retry = next((m.retry for m in misconfigs if m.retry), None) or self.net.default_retry
        amount = round(float(rng.lognormal(5.0, 1.0)), 2)
        palm_pay_id = f"pp-{int(rng.integers(1, 5000)):05d}" if method == "palm" else None

        events = []
        t = t0
        sticky: str | None = None  # a decline repeats on every retry: the customer's balance did not change
        for attempt in range(1, max(retry.max_attempts, 1) + 1):
            error, latency = self._outcome(dims, faults, method)
            if sticky is not None:
                error = sticky
            elif error is not None and error not in RETRYABLE:
                sticky = error
            final = attempt >= retry.max_attempts
            if error is not None and final and attempt >= RETRY_EXHAUSTED_AFTER:
                error = "RETRY_EXHAUSTED"
            t += latency / 1000.0
            events.append(PaymentEvent(
                ts=round(t, 3), payment_id=payment_id, attempt=attempt, amount=amount, currency="ZAR",
                method=method, route=route, bank=bank, issuer=issuer,
                status="success" if error is None else "failure", error_code=error,
                latency_ms=round(latency, 1), terminal_id=terminal, palm_pay_id=palm_pay_id,
            ))
            if error is None:
                self.paid += 1
                break
            if not (retry.retry_all_errors or error in RETRYABLE) or final:
                break
            t += retry.backoff_ms / 1000.0
        return events

    def _outcome(self, dims: Mapping[str, str], faults: list[Fault], method: str) -> tuple[str | None, float]:
        rng = self.rng
        route_spec = self.net.routes.get(dims["route"])
        base_latency = route_spec.latency_ms if route_spec else 200.0
        latency = float(base_latency * rng.lognormal(0.0, 0.35))
        if route_spec is None or method not in route_spec.methods:
            return "ROUTE_NOT_SUPPORTED", float(rng.uniform(40, 120))
        decline_rate = self.net.user_decline_rate
        for fault in faults:
            if not matches(fault.target, dims):
                continue
            latency *= fault.latency_factor
            if fault.replaces_user_declines:
                decline_rate = 0.0
            if rng.random() < fault.rate:
                code = _pick_code(rng, fault.errors)
                if code in ("BANK_TIMEOUT", "GATEWAY_TIMEOUT"):
                    latency = max(latency, float(rng.uniform(8_000, 30_000)))
                return code, latency
        if rng.random() < decline_rate:
            return _pick_code(rng, PALM_DECLINES if method == "palm" else USER_DECLINES), latency
        if rng.random() < self.net.system_noise_rate:
            return _pick_code(rng, {"NETWORK_ERROR": 0.5, "SYSTEM_ERROR": 0.3, "GATEWAY_TIMEOUT": 0.2}), latency
        return None, latency


def with_volume(net: NetworkConfig, payments_per_minute: float) -> NetworkConfig:
    return replace(net, payments_per_minute=payments_per_minute)
