"""A small, hand-written payment world for the judgement tests: minute by minute, through the real window.

Independent of the simulator on purpose (other names, merchants on every payment, a
route that carries two methods, one of which has no other route), so the rules are
checked on shapes they were not tuned on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from payops.graph.reasoners.base import ActionView, Decision, ReasoningContext, Thresholds
from payops.graph.reasoners.rules import RuleReasoner
from payops.models import Diagnosis
from payops.signals.events import PaymentEvent
from payops.signals.window import EventWindow, SegmentStats, WindowSnapshot

START = 1_790_000_000.0
BANKS = {"Umoya Bank": 0.3, "Kopano Mutual": 0.25, "Sable Trust": 0.2, "Ridge Credit": 0.15, "Lantern Bank": 0.1}
CARD_ROUTES = {"acq one": 0.4, "acq-two": 0.3, "Acq·Three": 0.3}
WALLET_ROUTE = "Acq·Three"  # the wallet has no other route
MERCHANTS = [f"shop {i}" for i in range(10)]
DECLINES = {"INSUFFICIENT_FUNDS": 0.5, "USER_DECLINED": 0.2, "INCORRECT_PIN": 0.12,
            "EXPIRED_CARD": 0.08, "DO_NOT_HONOR": 0.1}
ENUMERATION = {"SUSPECTED_FRAUD": 0.4, "INCORRECT_PIN": 0.25, "DO_NOT_HONOR": 0.2, "EXPIRED_CARD": 0.15}

Tweak = Callable[[list[PaymentEvent], int, np.random.Generator], list[PaymentEvent]]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    w = np.array(list(weights.values()))
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def minute(rng: np.random.Generator, i: int, volume: int = 1000, fail_rate: float = 0.04) -> list[PaymentEvent]:
    """One healthy minute: cards on three routes, a wallet on one of them, merchants on every payment."""
    t0 = START + 60.0 * i
    out = []
    for k in range(volume):
        wallet = rng.random() < 0.2
        route = WALLET_ROUTE if wallet else _pick(rng, CARD_ROUTES)
        failed = rng.random() < fail_rate
        out.append(PaymentEvent(
            ts=t0 + 60.0 * k / volume, payment_id=f"p{i}-{k}", method="wallet" if wallet else "card", route=route,
            bank=_pick(rng, BANKS), issuer="PAYLINK" if wallet else ("VISA" if rng.random() < 0.6 else "MASTERCARD"),
            status="failure" if failed else "success", error_code=_pick(rng, DECLINES) if failed else None,
            latency_ms=float(rng.lognormal(5.8, 0.3)), amount=round(float(rng.lognormal(5.0, 1.0)), 2),
            merchant_id=str(rng.choice(MERCHANTS)),
        ))
    return out


@dataclass
class Run:
    """Decide minute after minute, remembering history and the previous diagnosis like the graph does."""

    reasoner: RuleReasoner = field(default_factory=RuleReasoner)
    window: EventWindow = field(default_factory=lambda: EventWindow(60.0, significance_z=Thresholds().significance_z))
    history: list[WindowSnapshot] = field(default_factory=list)
    previous: Diagnosis | None = None
    in_force: tuple[ActionView, ...] = ()
    decisions: list[Decision] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def step(self, events: list[PaymentEvent], i: int) -> Decision:
        if events:
            self.window.add(events)
        snap = self.window.snapshot(START + 60.0 * (i + 1))
        ctx = ReasoningContext(in_force=self.in_force, previous=self.previous, history=tuple(self.history[-10:]),
                               thresholds=self.thresholds)
        decision = self.reasoner.decide(snap, ctx)
        self.history.append(snap)
        self.previous = decision.diagnosis
        self.decisions.append(decision)
        return decision


def play(minutes: int, tweak: Tweak | None = None, seed: int = 7, volume: int = 1000, run: Run | None = None) -> Run:
    rng = np.random.default_rng(seed)
    run = run or Run()
    for i in range(minutes):
        events = minute(rng, i, volume)
        if tweak is not None:
            events = tweak(events, i, rng)
        run.step(sorted(events, key=lambda e: e.ts), i)
    return run


def card_testing(at: str, from_minute: int, per_minute: int = 300, amounts: bool = True,
                 codes: dict[str, float] | None = None) -> Tweak:
    """Small charges over many cards at one merchant, declined across every bank with card-validity codes."""
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        if i < from_minute:
            return events
        t0 = START + 60.0 * i
        extra = []
        for k in range(per_minute):
            failed = rng.random() < 0.85
            extra.append(PaymentEvent(
                ts=t0 + 60.0 * k / per_minute, payment_id=f"ct{i}-{k}", method="card", route=_pick(rng, CARD_ROUTES),
                bank=_pick(rng, BANKS), issuer="VISA", status="failure" if failed else "success",
                error_code=_pick(rng, codes or ENUMERATION) if failed else None, latency_ms=300.0,
                amount=round(float(rng.uniform(0.5, 5.0)), 2) if amounts else None, merchant_id=at,
            ))
        return events + extra
    return tweak


def drop(match: Callable[[PaymentEvent], bool], share: float, from_minute: int) -> Tweak:
    """Events matching `match` vanish (a processor black-holing requests) with probability `share`."""
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        if i < from_minute:
            return events
        return [e for e in events if not (match(e) and rng.random() < share)]
    return tweak


def pinned(shop: str, route: str) -> Tweak:
    """Every card payment of `shop` goes through `route` (a merchant with one acquirer)."""
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        return [PaymentEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "route": route})
                if e.merchant_id == shop and e.method == "card" else e for e in events]
    return tweak


def scale(factor: float, from_minute: int) -> Tweak:
    """Every segment's volume times `factor` (a night dip below 1, a sale above)."""
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        if i < from_minute:
            return events
        if factor <= 1.0:
            return [e for e in events if rng.random() < factor]
        copies = int(factor)
        out = [PaymentEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "payment_id": f"{e.payment_id}x{c}"})
               for e in events for c in range(copies)]
        return out + [e for e in events if rng.random() < factor - copies]
    return tweak


def fail(match: Callable[[PaymentEvent], bool], rate: float, codes: dict[str, float], from_minute: int,
         until_minute: int = 10**9, first_seconds: float = 60.0) -> Tweak:
    """Matching attempts fail at `rate` with `codes` (within the first `first_seconds` of each minute)."""
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        if not from_minute <= i < until_minute:
            return events
        t0 = START + 60.0 * i
        out = []
        for e in events:
            if match(e) and e.ts - t0 < first_seconds and rng.random() < rate:
                e = PaymentEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "status": "failure",
                                    "error_code": _pick(rng, codes)})
            out.append(e)
        return out
    return tweak


def fail_between(route: str, t_from: float, t_to: float, rate: float = 0.8) -> Tweak:
    """Attempts on `route` between START + t_from and START + t_to fail with GATEWAY_TIMEOUT at `rate`
    (a burst anywhere in a window, or across a window boundary)."""
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        return [PaymentEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "status": "failure",
                                "error_code": "GATEWAY_TIMEOUT"})
                if e.route == route and START + t_from <= e.ts < START + t_to and rng.random() < rate else e
                for e in events]
    return tweak


def chain(*tweaks: Tweak) -> Tweak:
    def tweak(events: list[PaymentEvent], i: int, rng: np.random.Generator) -> list[PaymentEvent]:
        for t in tweaks:
            events = t(events, i, rng)
        return events
    return tweak


def crafted_segment(dims: tuple[tuple[str, str], ...], n: int, x: int, errors: dict[str, int], low_n: int = 0,
                    low_x: int = 0, volume_ratio: float = 1.0) -> SegmentStats:
    """One window's figures for a segment, written by hand (reference 2 %, one attempt per payment)."""
    ex = x - n * 0.02
    z = ex / (n * 0.02 * 0.98) ** 0.5
    return SegmentStats(dims, n, x, errors, 100, 100, 200, 300, 0.0, 1.0, 0.1, 0.02, 0.02, 200, float(n), 1.0, ex, z,
                        volume_ratio=volume_ratio, low_amount_attempts=low_n, low_amount_failures=low_x)
