"""Simulator networks as data: to and from plain dicts (case.yaml), and renamed variants.

The corpus must not lean on the simulator's default names, so each case gets a
network whose banks, routes, terminals and secondary methods are drawn from name
pools (and whose sizes and mixes vary). `card` and `palm` keep their names: the
simulator gives them meaning (palm terminals, the card fallback).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from payops.signals.simulator import NetworkConfig, RouteSpec

BANK_NAMES = (
    "Kestrel Bank", "UMOYA_MUTUAL", "bank-07", "Harbour Trust", "Sable Savings", "Ikhaya Bank", "NORTHCAPE",
    "Baobab Credit", "Marula Bank", "Fynbos Mutual", "TELKOM_PAY_BANK", "Karoo Co-op", "Protea Bank",
    "Impala Financial", "Zebra Bank", "bk_delta", "Tide Bank", "Vaal Savings", "Limpopo Union", "Aloe Bank",
)
CARD_ROUTE_NAMES = ("acq_north", "gw-2", "Stripe-ish", "psp_omega", "switch_east", "acquirer-B", "cardnet_1", "PRC_9",
                    "sg-core", "orbit_pay")
RAIL_NAMES = ("instant_rail", "rtc_hub", "fastlane", "rail-za-1", "ipn_switch")
SLOW_RAIL_NAMES = ("batch_switch", "eft_gw", "ach_bridge", "acb-link")
TERMINAL_NAMES = ("LANE-01", "LANE-02", "LANE-03", "LANE-04", "kiosk_a", "kiosk_b", "POS/17", "POS/18", "till-9",
                  "till-10", "gate_w", "gate_e")
INSTANT_METHOD_NAMES = ("instant_eft", "rtp", "payshap")
SLOW_METHOD_NAMES = ("eft", "debit_order", "bank_transfer")
CARD_SCHEMES = (("VISA", "MASTERCARD"), ("VISA", "MASTERCARD", "AMEX"), ("CUP", "VISA"), ("MASTERCARD", "DINERS"))
RAIL_ISSUERS = ("PAYSHAP", "RTC", "INSTANT")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def network_to_dict(net: NetworkConfig) -> dict[str, Any]:
    """Every field of the network as plain data (fields the simulator adds later come along too)."""
    out: dict[str, Any] = {}
    for f in fields(net):
        value = getattr(net, f.name)
        if f.name == "routes":
            out["routes"] = {name: {"methods": list(r.methods), "weight": r.weight, "latency_ms": r.latency_ms}
                             for name, r in value.items()}
        elif f.name == "default_retry":
            continue  # scenarios change retries through misconfigs; the platform default stays the simulator's
        else:
            out[f.name] = _plain(value)
    return out


def network_from_dict(data: dict[str, Any]) -> NetworkConfig:
    known = {f.name for f in fields(NetworkConfig)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            continue  # written by a newer simulator: ignored rather than refused
        if name == "routes":
            value = {str(k): RouteSpec(tuple(v["methods"]), float(v.get("weight", 1.0)),
                                       float(v.get("latency_ms", 350.0)))
                     for k, v in value.items()}
        elif name == "terminals":
            value = tuple(value)
        elif name in ("payments_per_minute", "daily_wave", "user_decline_rate", "system_noise_rate"):
            value = float(value)
        kwargs[name] = value
    return NetworkConfig(**kwargs)


def _weights(rng: np.random.Generator, n: int, floor: float = 0.04) -> list[float]:
    w = rng.dirichlet(np.full(n, 2.0))
    w = np.maximum(w, floor)
    return [round(float(x), 3) for x in w / w.sum()]


def renamed_network(seed: int, payments_per_minute: float, *, palm: bool = True, tiny_bank: bool = False,
                    noise: float = 0.004, decline: float = 0.04,
                    slow_route_latency: float | None = None) -> NetworkConfig:
    """A network unlike the default: other names, 3-7 banks, 2-3 card routes, optional palm terminals."""
    rng = np.random.default_rng(10_000 + seed)
    n_banks = int(rng.integers(3, 8))
    banks = [str(b) for b in rng.choice(BANK_NAMES, n_banks, replace=False)]
    bank_w = _weights(rng, n_banks, floor=0.08)
    if tiny_bank:
        banks.append("Tiny Rural Bank")
        bank_w = [round(w * 0.98, 3) for w in bank_w] + [0.02]
    card_routes = [str(r) for r in rng.choice(CARD_ROUTE_NAMES, int(rng.integers(2, 4)), replace=False)]
    rail = str(rng.choice(RAIL_NAMES))
    slow = str(rng.choice(SLOW_RAIL_NAMES))
    instant = str(rng.choice(INSTANT_METHOD_NAMES))
    slow_method = str(rng.choice(SLOW_METHOD_NAMES))
    schemes = CARD_SCHEMES[int(rng.integers(len(CARD_SCHEMES)))]
    card_share = float(rng.uniform(0.5, 0.7))
    palm_share = float(rng.uniform(0.1, 0.18)) if palm else 0.0
    rest = max(0.05, 1.0 - card_share - palm_share)
    methods = {"card": round(card_share, 3), instant: round(rest * 0.6, 3), slow_method: round(rest * 0.4, 3)}
    if palm:
        methods["palm"] = round(palm_share, 3)
    route_w = _weights(rng, len(card_routes), floor=0.2)
    routes = {name: RouteSpec(("card",), w, round(float(rng.uniform(250, 450)), 0))
              for name, w in zip(card_routes, route_w, strict=True)}
    routes[rail] = RouteSpec((instant, "palm") if palm else (instant,), 1.0, round(float(rng.uniform(380, 520)), 0))
    routes[slow] = RouteSpec((slow_method,), 1.0, slow_route_latency or round(float(rng.uniform(550, 800)), 0))
    scheme_w = _weights(rng, len(schemes), floor=0.15)
    issuers: dict[str, dict[str, float]] = {"card": dict(zip(schemes, scheme_w, strict=True)),
                                            instant: {str(rng.choice(RAIL_ISSUERS)): 1.0},
                                            slow_method: {"EFT": 1.0}}
    if palm:
        issuers["palm"] = dict(issuers[instant])
    terminals: tuple[str, ...] = ()
    if palm:
        terminals = tuple(str(t) for t in rng.choice(TERMINAL_NAMES, int(rng.integers(3, 9)), replace=False))
    return NetworkConfig(banks=dict(zip(banks, bank_w, strict=True)), methods=methods, routes=routes, issuers=issuers,
                         terminals=terminals, payments_per_minute=float(payments_per_minute),
                         user_decline_rate=decline, system_noise_rate=noise)
