"""Incident shapes payment teams meet, each with its labels (evals/cases.py conventions).

Every shape picks its victim from the world (a bank, route, scheme, merchant,
terminal) and returns what goes wrong (`Plan`) and what a senior operator would
conclude and do (`Expected`): the CONTRACT §2 category, the segment at fault,
acceptable actions with their exact targets, forbidden actions. Label choices where
the corpus has no precedent are written next to the shape.

Victims are segments with real traffic (a bank with >= 10 % of payments, a route with
>= 15 % of card traffic), chosen before any result is seen: an outage of a bank nobody
pays through is not an incident anyone could see in 60 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from payops.evals.cases import ActionSpec, Expected

from .traffic import Burst, Effect, FeedGap, Plan, RetryStorm, VolumeStep
from .world import World

TRAFFIC_TOOLS = ("reroute_traffic", "suppress_path", "adjust_retry_policy")
MIN_VICTIM_BANK_SHARE = 0.10
MIN_VICTIM_ROUTE_SHARE = 0.15  # of card traffic

INCIDENT_SECONDS = 300.0
BLIP_SECONDS = 30.0
ROUTE_FAIL_CODES = {"GATEWAY_TIMEOUT": 0.45, "NETWORK_ERROR": 0.35, "SYSTEM_ERROR": 0.2}


@dataclass(frozen=True)
class Fault:
    """Where the fault is in the events, for checking labels against data (tests) and the report."""

    kind: str  # failures | latency | volume_drop | burst | gap | retries | misroute | none
    where: dict[str, str]
    start: float  # seconds from the stream's start
    end: float


@dataclass
class Built:
    plan: Plan
    expected: Expected
    fault: Fault
    description: str
    control: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shape:
    name: str
    build: Callable[[World, np.random.Generator, float], Built]
    world: dict[str, Any] = field(default_factory=dict)  # build_world options
    control: bool = False


def _a(tool: str, target: dict[str, str] | None = None) -> ActionSpec:
    return ActionSpec(tool=tool, target=target)


COMMON_FORBIDDEN = (_a("revoke_palm_link"), _a("suppress_path", {}))
QUIET_FORBIDDEN = tuple(_a(t) for t in (*TRAFFIC_TOOLS, "revoke_palm_link"))


def _unique(specs: tuple[ActionSpec, ...]) -> tuple[ActionSpec, ...]:
    out: list[ActionSpec] = []
    for spec in specs:
        if spec not in out:
            out.append(spec)
    return tuple(out)


def _incident(category: str, target: dict[str, str], ok: list[ActionSpec], forbid: tuple[ActionSpec, ...] = (),
              facts: tuple[str, ...] = ()) -> Expected:
    return Expected(category=category, target=target, acceptable_actions=tuple(ok),
                    forbidden_actions=_unique(COMMON_FORBIDDEN + forbid), facts=facts)


def _quiet(category: str = "healthy", target: dict[str, str] | None = None) -> Expected:
    return Expected(category=category, target=target or {}, acceptable_actions=(_a("no_action", {}),),
                    forbidden_actions=QUIET_FORBIDDEN)


def _big_bank(w: World, rng: np.random.Generator) -> str:
    big = [b for b in w.banks if b.share >= MIN_VICTIM_BANK_SHARE]
    p = np.array([b.share for b in big])
    return big[int(rng.choice(len(big), p=p / p.sum()))].name


def route_shares(w: World) -> dict[str, float]:
    out = {r: 0.0 for r in w.card_routes}
    for m in w.merchants:
        out[m.card_route] += m.share
    return out


def _card_route(w: World, rng: np.random.Generator, avoid_wallet: bool = True) -> str:
    shares = route_shares(w)
    wallet = w.extras.get("wallet_route")
    names = [r for r, s in shares.items() if s >= MIN_VICTIM_ROUTE_SHARE and not (avoid_wallet and r == wallet)]
    if not names:  # every route small or the only big one carries the wallet: take the biggest allowed
        names = [max((r for r in shares if not (avoid_wallet and r == wallet)), key=shares.__getitem__)]
    return names[int(rng.integers(0, len(names)))]


def _window(onset: float, seconds: float = INCIDENT_SECONDS) -> tuple[float, float]:
    return onset, onset + seconds


# --- incidents ------------------------------------------------------------------------------------------------

def scheme_outage(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A card scheme's network is down: every bank's cards of that scheme fail on every acquirer.
    # Label: `network` (the scheme's switch, not a bank), target the scheme (`issuer` field);
    # moving traffic between acquirers cannot help, so rerouting is forbidden.
    shares = {s: sum(b.share * b.schemes.get(s, 0.0) for b in w.banks) for s in w.schemes}
    scheme = max(shares, key=shares.__getitem__) if rng.random() < 0.5 else sorted(shares, key=shares.__getitem__)[-2]
    s, e = _window(onset)
    where = {"method": "card", "issuer": scheme}
    plan = Plan([Effect(s, e, where, fail=float(rng.uniform(0.6, 0.9)),
                        codes={"ISSUER_DOWN": 0.5, "NETWORK_ERROR": 0.3, "GATEWAY_TIMEOUT": 0.2})])
    t = {"issuer": scheme}
    exp = _incident("network", t, [_a("alert_ops", t), _a("suppress_path", t)], (_a("reroute_traffic"),),
                    (f"{scheme} card payments fail across banks and acquirers",))
    return Built(plan, exp, Fault("failures", where, s, e), f"card scheme {scheme} down across every bank and acquirer")


def issuer_outage(w: World, rng: np.random.Generator, onset: float) -> Built:
    bank = _big_bank(w, rng)
    s, e = _window(onset)
    plan = Plan([Effect(s, e, {"bank": bank}, fail=float(rng.uniform(0.6, 0.95)),
                        codes={"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4})])
    t = {"bank": bank}
    exp = _incident("issuer", t, [_a("suppress_path", t), _a("alert_ops", t)], facts=(f"{bank} fails on every route",))
    return Built(plan, exp, Fault("failures", t, s, e), f"bank {bank} down on every method and route")


def issuer_one_route(w: World, rng: np.random.Generator, onset: float) -> Built:
    bank, route = _big_bank(w, rng), _card_route(w, rng)
    s, e = _window(onset)
    t = {"bank": bank, "route": route}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.5, 0.85)),
                        codes={"BANK_TIMEOUT": 0.5, "ISSUER_DOWN": 0.3, "SYSTEM_ERROR": 0.2})])
    exp = _incident("issuer", t, [_a("reroute_traffic", t), _a("suppress_path", t)],
                    facts=(f"{bank} fails only through {route}",))
    return Built(plan, exp, Fault("failures", t, s, e), f"bank {bank} degrading on acquirer {route} only (its link)")


def route_outage(w: World, rng: np.random.Generator, onset: float, ramp: bool = False) -> Built:
    route = _card_route(w, rng)
    s, e = _window(onset)
    t = {"route": route}
    peak = float(rng.uniform(0.6, 0.8) if ramp else rng.uniform(0.6, 0.9))
    plan = Plan([Effect(s, e, t, fail=peak, codes=ROUTE_FAIL_CODES, ramp=ramp)])
    exp = _incident("network", t, [_a("reroute_traffic", t), _a("suppress_path", t)],
                    facts=(f"{route} fails across banks",))
    what = f"acquirer {route} ramping up to {peak:.0%} failures" if ramp else f"acquirer {route} outage"
    return Built(plan, exp, Fault("failures", t, s, e), what)


def route_ramp(w: World, rng: np.random.Generator, onset: float) -> Built:
    return route_outage(w, rng, onset, ramp=True)


def route_black_hole(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A processor accepts requests and never answers: ~90 % of the route's results vanish, nothing fails.
    route = _card_route(w, rng)
    s, e = _window(onset)
    t = {"route": route}
    plan = Plan([Effect(s, e, t, keep=float(rng.uniform(0.05, 0.15)))])
    exp = _incident("network", t, [_a("reroute_traffic", t), _a("alert_ops", t)],
                    facts=(f"{route}'s volume fell by about 90 % while other routes kept theirs",))
    return Built(plan, exp, Fault("volume_drop", t, s, e), f"acquirer {route} black-holing requests (volume -90 %)")


def card_testing(w: World, rng: np.random.Generator, onset: float) -> Built:
    # Enumeration at one online merchant: hundreds of small attempts a minute, new payment ids,
    # stolen cards of every bank declined with fraud/validation codes.
    ranked = sorted(w.merchants, key=lambda m: -m.share)
    m = ranked[int(rng.integers(0, max(1, len(ranked) // 2)))]
    s, e = _window(onset)
    burst = Burst(s, e, float(rng.uniform(200, 600)), "card", m.name, m.card_route, float(rng.uniform(0.8, 0.93)),
                  {"SUSPECTED_FRAUD": 0.3, "DO_NOT_HONOR": 0.25, "EXPIRED_CARD": 0.2, "INCORRECT_PIN": 0.15,
                   "INSUFFICIENT_FUNDS": 0.1}, (0.5, 5.0))
    t = {"merchant_id": m.name}
    exp = _incident("security", t, [_a("suppress_path", t), _a("alert_ops", t)], (_a("reroute_traffic"),),
                    (f"hundreds of low-amount declined card attempts a minute at {m.name}, across every bank",))
    return Built(Plan(bursts=[burst]), exp, Fault("burst", t, s, e), f"card testing at merchant {m.name}")


def retry_storm(w: World, rng: np.random.Generator, onset: float) -> Built:
    s, e = _window(onset)
    plan = Plan(storm=RetryStorm(s, e, int(rng.integers(5, 8))))
    exp = _incident("config", {}, [_a("adjust_retry_policy", {})],
                    facts=("failed payments retried many times within seconds, declines included",))
    return Built(plan, exp, Fault("retries", {}, s, e), "retry policy misconfigured: every failure retried fast")


def routing_misconfig(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A routing-table deploy sends an instant-payment method to a card acquirer that does not carry it.
    method = "payshap" if rng.random() < 0.6 else "eft"
    route = _card_route(w, rng)
    s, e = _window(onset)
    plan = Plan([Effect(s, e, {"method": method}, fail=1.0, codes={"ROUTE_NOT_SUPPORTED": 1.0}, timeout=False,
                        send_to=route)])
    t = {"method": method, "route": route}
    exp = _incident("config", t, [_a("reroute_traffic", t)], facts=(f"{method} sent to {route}, which refuses it",))
    return Built(plan, exp, Fault("misroute", t, s, e), f"{method} misrouted to card acquirer {route}")


def latency_only(w: World, rng: np.random.Generator, onset: float) -> Built:
    route = _card_route(w, rng)
    s, e = _window(onset)
    t = {"route": route}
    plan = Plan([Effect(s, e, t, latency_scale=float(rng.uniform(5.0, 10.0)))])
    exp = _incident("network", t, [_a("reroute_traffic", t)], facts=(f"{route} latency several times its normal",))
    return Built(plan, exp, Fault("latency", t, s, e), f"acquirer {route} slow (x5-10 latency), nothing fails")


def month_end_funds(w: World, rng: np.random.Generator, onset: float) -> Built:
    # Month-end: customers run short at every bank (unevenly); the paths are fine: no traffic move.
    s, e = _window(onset)
    level = float(rng.uniform(0.12, 0.25))
    effects = [Effect(s, e, {"bank": b.name}, fail=min(0.6, level * float(rng.uniform(0.6, 1.4))),
                      codes={"INSUFFICIENT_FUNDS": 0.9, "USER_DECLINED": 0.1}, timeout=False) for b in w.banks]
    exp = Expected(category="user", target={}, acceptable_actions=(_a("no_action", {}),),
                   forbidden_actions=QUIET_FORBIDDEN, facts=("insufficient funds up at every bank",))
    return Built(Plan(effects), exp, Fault("failures", {}, s, e), "month-end insufficient-funds surge across banks")


def palm_spoof(w: World, rng: np.random.Generator, onset: float) -> Built:
    owner = max((m for m in w.merchants if any(x.startswith("palm") for x in m.terminals)), key=lambda m: m.share)
    terminal = next(x for x in owner.terminals if x.startswith("palm"))
    s, e = _window(onset)
    burst = Burst(s, e, float(rng.uniform(20, 60)), "palm", owner.name, w.routes_for("palm")[0], 0.95,
                  {"PALM_PAY_SPOOF_DETECTED": 0.85, "PALM_PAY_NOT_REGISTERED": 0.15}, (50.0, 3000.0),
                  terminal=terminal)
    t = {"terminal_id": terminal}
    exp = _incident("security", t, [_a("suppress_path", t), _a("alert_ops", t)],
                    facts=(f"spoofed palms rejected at {terminal}",))
    return Built(Plan(bursts=[burst]), exp, Fault("burst", t, s, e), f"palm spoof burst at terminal {terminal}")


def platform_outage(w: World, rng: np.random.Generator, onset: float) -> Built:
    s, e = _window(onset)
    plan = Plan([Effect(s, e, {}, fail=float(rng.uniform(0.5, 0.85)),
                        codes={"SYSTEM_ERROR": 0.5, "NETWORK_ERROR": 0.3, "GATEWAY_TIMEOUT": 0.2})])
    exp = _incident("network", {}, [_a("alert_ops", {})], (_a("reroute_traffic"),), ("every route and bank fails",))
    return Built(plan, exp, Fault("failures", {}, s, e), "platform-wide outage (our own gateway)")


def feed_stops(w: World, rng: np.random.Generator, onset: float) -> Built:
    # The collector died and came back minutes later (no backfill). Label: `network` on all traffic
    # with an alert ("no data" is a system fault to page about); never healthy, never a traffic move.
    s = onset
    e = onset + float(rng.uniform(180.0, 300.0))
    exp = _incident("network", {}, [_a("alert_ops", {})], QUIET_FORBIDDEN, ("no events arrived for minutes",))
    return Built(Plan(gaps=[FeedGap(s, e)]), exp, Fault("gap", {}, s, e),
                 "event feed stops (collector down), then resumes")


def route_outage_sole_method(w: World, rng: np.random.Generator, onset: float) -> Built:
    # One of three acquirers fails; it also carries the wallet, which has no other route. Moving the
    # card share elsewhere helps; moving or cutting the whole route strands the wallet.
    route = str(w.extras["wallet_route"])
    s, e = _window(onset)
    where = {"route": route}
    plan = Plan([Effect(s, e, where, fail=float(rng.uniform(0.55, 0.85)), codes=ROUTE_FAIL_CODES)])
    card = {"method": "card", "route": route}
    exp = _incident("network", where, [_a("reroute_traffic", card), _a("alert_ops", where)],
                    (_a("suppress_path", where), _a("suppress_path", {"method": "wallet", "route": route})),
                    (f"{route} fails for card and wallet; card has other routes, wallet none",))
    return Built(plan, exp, Fault("failures", where, s, e),
                 f"one of three acquirers ({route}) down; it alone carries the wallet")


def bank_maintenance(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A bank's maintenance window that reaches us as time-outs, not as a clean "issuer down".
    bank = _big_bank(w, rng)
    s, e = _window(onset)
    t = {"bank": bank}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.85, 0.98)), codes={"BANK_TIMEOUT": 1.0})])
    exp = _incident("issuer", t, [_a("suppress_path", t), _a("alert_ops", t)],
                    facts=(f"{bank} times out on every route",))
    return Built(plan, exp, Fault("failures", t, s, e), f"bank {bank} maintenance window seen as time-outs")


def acs_failure(w: World, rng: np.random.Generator, onset: float) -> Built:
    # The bank's 3-D Secure access-control server fails: its card payments fail authentication;
    # its PayShap/EFT keep working. Unknown code on purpose (acquirers invent their own).
    bank = _big_bank(w, rng)
    s, e = _window(onset)
    t = {"bank": bank, "method": "card"}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.5, 0.8)),
                        codes={"3DS_ACS_UNAVAILABLE": 0.7, "DO_NOT_HONOR": 0.3})])
    exp = _incident("issuer", t, [_a("alert_ops", t), _a("suppress_path", t), _a("alert_ops", {"bank": bank})],
                    facts=(f"{bank}'s card payments fail 3-D Secure; its other methods work",))
    return Built(plan, exp, Fault("failures", t, s, e), f"3-D Secure ACS failure at bank {bank} (card only)")


def acquirer_currency(w: World, rng: np.random.Generator, onset: float) -> Built:
    # One acquirer stops settling one currency (an FX feed or a BIN-table change): its USD payments
    # fail fast, its ZAR payments pass. Currency is not a dimension the agent blames: the route is.
    # Two or more of the route's merchants price in dollars: with one, the fault would be that merchant's.
    shared = [r for r in w.card_routes if sum(m.card_route == r for m in w.merchants) >= 2]
    route = shared[int(rng.integers(0, len(shared)))]
    on_route = sorted((m for m in w.merchants if m.card_route == route), key=lambda m: -m.share)
    for m in on_route[:2]:
        m.currency = "USD"
    s, e = _window(onset)
    where = {"route": route, "currency": "USD"}
    plan = Plan([Effect(s, e, where, fail=float(rng.uniform(0.85, 0.98)),
                        codes={"CURRENCY_NOT_SUPPORTED": 0.6, "SYSTEM_ERROR": 0.4}, timeout=False)])
    t = {"route": route}
    ok = [_a("alert_ops", t), _a("reroute_traffic", t)]
    if route == w.extras.get("wallet_route"):
        # The route also carries the wallet, which has no other route: moving its card share (and paging
        # about the wallet) is the mitigation issue 14 asks for, as route_outage_sole_method accepts it.
        ok.append(_a("reroute_traffic", {"method": "card", "route": route}))
    exp = _incident("network", t, ok, facts=(f"USD payments on {route} fail; its ZAR payments pass",))
    return Built(plan, exp, Fault("failures", where, s, e), f"acquirer {route} failing one currency (USD)")


def acquirer_scheme_link(w: World, rng: np.random.Generator, onset: float) -> Built:
    # One acquirer loses its connection to one scheme: that scheme's cards fail there and pass elsewhere.
    route = _card_route(w, rng)
    scheme = ("VISA", "MASTERCARD")[int(rng.integers(0, 2))]
    s, e = _window(onset)
    t = {"issuer": scheme, "route": route}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.7, 0.95)),
                        codes={"NETWORK_ERROR": 0.5, "GATEWAY_TIMEOUT": 0.5})])
    exp = _incident("network", t, [_a("reroute_traffic", t), _a("suppress_path", t)],
                    facts=(f"{scheme} fails on {route} only; other acquirers pass {scheme}",))
    return Built(plan, exp, Fault("failures", t, s, e), f"acquirer {route} lost its {scheme} link")


def merchant_outage(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A merchant's integration breaks (expired API credentials after a deploy): all its payments, any
    # method, are refused; the paths are fine, so moving traffic cannot help (corpus: merchant_outage).
    ranked = sorted(w.merchants, key=lambda m: -m.share)
    m = ranked[int(rng.integers(0, max(1, len(ranked) // 2)))]
    s, e = _window(onset)
    t = {"merchant_id": m.name}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.85, 1.0)),
                        codes={"SYSTEM_ERROR": 0.7, "INVALID_MERCHANT": 0.3}, timeout=False)])
    exp = _incident("network", t, [_a("alert_ops", t)], (_a("reroute_traffic"),),
                    (f"every payment at {m.name} is refused",))
    return Built(plan, exp, Fault("failures", t, s, e), f"merchant {m.name}'s integration broken")


def rail_outage(w: World, rng: np.random.Generator, onset: float) -> Built:
    # The instant-payment rail is down and it has no second route: nothing to reroute to; page, or stop
    # offering it (suppress with the card fallback) while it is down.
    route = w.routes_for("payshap")[0]
    s, e = _window(onset)
    t = {"route": route}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.7, 0.95)),
                        codes={"SYSTEM_ERROR": 0.6, "GATEWAY_TIMEOUT": 0.4})])
    exp = _incident("network", t, [_a("alert_ops", t), _a("suppress_path", t)], (_a("reroute_traffic"),),
                    (f"{route} fails and payshap has no other route",))
    return Built(plan, exp, Fault("failures", t, s, e), f"PayShap rail {route} down, no alternative route")


def subscription_batch(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A subscription merchant's monthly card-on-file run: a few minutes of extra attempts, normal amounts,
    # many declined for funds or expired cards. The customers' side, not a path: no traffic move.
    m = min(w.merchants, key=lambda x: x.share)
    s, e = _window(onset, 180.0)
    burst = Burst(s, e, float(max(60.0, 0.4 * w.ppm)), "card", m.name, m.card_route, float(rng.uniform(0.25, 0.4)),
                  {"INSUFFICIENT_FUNDS": 0.6, "EXPIRED_CARD": 0.3, "DO_NOT_HONOR": 0.1},
                  (max(1.0, 0.5 * m.amount_median), 2.0 * m.amount_median), by_share=True)
    exp = Expected(category="user", target={}, acceptable_actions=(_a("no_action", {}),),
                   forbidden_actions=QUIET_FORBIDDEN,
                   facts=(f"a billing run at {m.name}: declines for funds and expired cards",))
    return Built(Plan(bursts=[burst]), exp, Fault("burst", {"merchant_id": m.name}, s, e),
                 f"monthly subscription billing run at {m.name}")


def palm_scanner_fault(w: World, rng: np.random.Generator, onset: float) -> Built:
    # One palm scanner's sensor fails: its reads time out or error; other scanners are fine (corpus convention).
    owner = max((m for m in w.merchants if any(x.startswith("palm") for x in m.terminals)), key=lambda m: m.share)
    terminal = next(x for x in owner.terminals if x.startswith("palm"))
    s, e = _window(onset)
    t = {"terminal_id": terminal}
    plan = Plan([Effect(s, e, t, fail=float(rng.uniform(0.7, 0.95)),
                        codes={"SYSTEM_ERROR": 0.6, "GATEWAY_TIMEOUT": 0.4})])
    exp = _incident("network", t, [_a("suppress_path", t)], facts=(f"palm reads fail at {terminal} only",))
    return Built(plan, exp, Fault("failures", t, s, e), f"palm scanner fault at terminal {terminal}")


# --- healthy periods and controls ----------------------------------------------------------------------------

def blip(w: World, rng: np.random.Generator, onset: float) -> Built:
    # A 30-second hiccup on the biggest acquirer, over within one window: a healthy period to act on.
    shares = route_shares(w)
    route = max(shares, key=shares.__getitem__)
    s, e = onset, onset + BLIP_SECONDS
    where = {"route": route}
    plan = Plan([Effect(s, e, where, fail=float(rng.uniform(0.6, 0.9)), codes=ROUTE_FAIL_CODES, timeout=False)])
    return Built(plan, _quiet(), Fault("failures", where, s, e), f"30-second blip on {route}, healthy before and after",
                 control=True)


def steady(w: World, rng: np.random.Generator, onset: float) -> Built:
    return Built(Plan(), _quiet(), Fault("none", {}, onset, onset), "steady traffic, no fault", control=True)


def flash_sale(w: World, rng: np.random.Generator, onset: float) -> Built:
    m = max(w.merchants, key=lambda x: x.share)
    factor = float(rng.uniform(3.0, 6.0))
    plan = Plan(volume=[VolumeStep(onset, onset + INCIDENT_SECONDS, factor, ramp=30.0, merchant=m.name)])
    return Built(plan, _quiet(), Fault("none", {"merchant_id": m.name}, onset, onset + INCIDENT_SECONDS),
                 f"flash sale at {m.name}: x{factor:.1f} demand, nothing fails", control=True)


def night_dip(w: World, rng: np.random.Generator, onset: float) -> Built:
    plan = Plan(volume=[VolumeStep(onset, 1e9, float(rng.uniform(0.2, 0.35)), ramp=240.0)])
    return Built(plan, _quiet(), Fault("none", {}, onset, onset), "night: platform demand falls to a quarter",
                 control=True)


def tiny_bank(w: World, rng: np.random.Generator, onset: float) -> Built:
    small = min(w.banks, key=lambda b: b.share)
    return Built(Plan(), _quiet(), Fault("none", {"bank": small.name}, onset, onset),
                 f"a tiny bank ({small.name}) with many declines, as always", control=True)


SHAPES: dict[str, Shape] = {s.name: s for s in (
    Shape("scheme_outage", scheme_outage),
    Shape("issuer_outage", issuer_outage),
    Shape("issuer_one_route", issuer_one_route),
    Shape("route_outage", route_outage),
    Shape("route_ramp", route_ramp),
    Shape("route_black_hole", route_black_hole),
    Shape("card_testing", card_testing),
    Shape("retry_storm", retry_storm),
    Shape("routing_misconfig", routing_misconfig),
    Shape("latency_only", latency_only),
    Shape("month_end_funds", month_end_funds),
    Shape("palm_spoof", palm_spoof),
    Shape("platform_outage", platform_outage),
    Shape("feed_stops", feed_stops),
    Shape("route_outage_sole_method", route_outage_sole_method, {"sole_method_route": True}),
    Shape("bank_maintenance", bank_maintenance),
    Shape("acs_failure", acs_failure),
    Shape("acquirer_currency", acquirer_currency),
    Shape("blip_30s", blip, control=True),
    Shape("control_steady", steady, control=True),
    Shape("control_flash_sale", flash_sale, control=True),
    Shape("control_night_dip", night_dip, control=True),
    Shape("control_tiny_bank", tiny_bank, {"tiny_bank": True}, control=True),
    # Added after the first baseline, at the end so that earlier shapes keep their held-out seeds.
    Shape("acquirer_scheme_link", acquirer_scheme_link),
    Shape("merchant_outage", merchant_outage),
    Shape("rail_outage", rail_outage),
    Shape("subscription_batch", subscription_batch),
    Shape("palm_scanner_fault", palm_scanner_fault),
)}
