"""The simulated payment network: banks, methods, routes, issuers, terminals, merchants, regions.

Names are data. `default_network` is a small South African mix; `random_network`
builds one of any size from a seed; `rename_network` gives every bank, route,
issuer, terminal, merchant and region a fresh name, for tests that no name is
assumed anywhere (methods keep theirs: they are CONTRACT.md vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from .policy import RetryPolicy

PALM_METHOD = "palm"  # CONTRACT.md §1 method name; palm payments happen at terminals
# Payments per minute the simulator is built and tested for (the brief's range).
MIN_PAYMENTS_PER_MINUTE = 10.0
MAX_PAYMENTS_PER_MINUTE = 100_000.0


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
    merchants: Mapping[str, float] = field(default_factory=dict)  # optional dimension: none when empty
    regions: Mapping[str, float] = field(default_factory=dict)  # optional dimension: none when empty

    def __post_init__(self) -> None:
        if not self.banks or not self.methods or not self.routes:
            raise ValueError("a network needs at least one bank, method and route")
        if not self.payments_per_minute > 0:
            raise ValueError("payments_per_minute must be > 0")
        if not 0.0 <= self.daily_wave <= 1.0:
            raise ValueError("daily_wave must be within 0..1")

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
        issuers={"card": {"VISA": 0.55, "MASTERCARD": 0.45}, "payshap": {"PAYSHAP": 1.0}, "palm": {"PAYSHAP": 1.0},
                 "eft": {"EFT": 1.0}},
        terminals=("T1", "T2", "T3", "T4", "T5", "T6"),
        payments_per_minute=payments_per_minute,
    )


def with_volume(net: NetworkConfig, payments_per_minute: float) -> NetworkConfig:
    return replace(net, payments_per_minute=payments_per_minute)


# -- generated networks -------------------------------------------------------------

_CONSONANTS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(_CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
                   for _ in range(syllables))


def _names(rng: np.random.Generator, count: int, make: Callable[[np.random.Generator], str],
           taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        name = make(rng)
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def _zipf_weights(rng: np.random.Generator, count: int) -> np.ndarray:
    """Uneven shares, as real banks and merchants have: a few big, a long tail."""
    w = 1.0 / np.arange(1, count + 1) ** 0.8
    rng.shuffle(w)
    shares: np.ndarray = w / w.sum()
    return shares


def random_network(seed: int = 0, *, banks: int = 5, card_routes: int = 2, terminals: int = 6, merchants: int = 0,
                   regions: int = 0, payments_per_minute: float = 600.0, daily_wave: float = 0.0,
                   extra_methods: tuple[str, ...] = ()) -> NetworkConfig:
    """A network of the given size with made-up names: card (on `card_routes` routes), payshap and
    palm on a shared rail, eft on a switch, and each of `extra_methods` (e.g. "wallet") on a route
    of its own with a 5% share. Every scenario of the library can be built on it."""
    if banks < 1 or card_routes < 2:
        raise ValueError("a generated network needs >= 1 bank and >= 2 card routes")
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    bank_names = _names(rng, banks, lambda r: _word(r, 3).upper(), taken)
    card = _names(rng, card_routes, lambda r: "psp_" + _word(r, 2), taken)
    rail, switch = _names(rng, 2, lambda r: _word(r, 2) + "_rail", taken)
    card_w = _zipf_weights(rng, card_routes)
    routes = {name: RouteSpec(("card",), float(w), float(rng.uniform(250, 450)))
              for name, w in zip(card, card_w, strict=True)}
    routes[rail] = RouteSpec(("payshap", PALM_METHOD), 1.0, float(rng.uniform(350, 550)))
    routes[switch] = RouteSpec(("eft",), 1.0, float(rng.uniform(450, 750)))
    schemes = _names(rng, 2, lambda r: _word(r, 2).upper(), taken)
    instant, eft = _names(rng, 2, lambda r: _word(r, 3).upper(), taken)
    methods = {"card": 0.6, "payshap": 0.18, PALM_METHOD: 0.12, "eft": 0.1}
    issuers: dict[str, dict[str, float]] = {"card": {schemes[0]: 0.55, schemes[1]: 0.45}, "payshap": {instant: 1.0},
                                            PALM_METHOD: {instant: 1.0}, "eft": {eft: 1.0}}
    for method in extra_methods:
        route = _names(rng, 1, lambda r: _word(r, 2) + "_gw", taken)[0]
        issuer = _names(rng, 1, lambda r: _word(r, 3).upper(), taken)[0]
        routes[route] = RouteSpec((method,), 1.0, float(rng.uniform(200, 500)))
        methods[method] = 0.05
        issuers[method] = {issuer: 1.0}
    return NetworkConfig(
        banks=dict(zip(bank_names, _zipf_weights(rng, banks).tolist(), strict=True)),
        methods=methods,
        routes=routes,
        issuers=issuers,
        terminals=tuple(_names(rng, terminals, lambda r: "T-" + _word(r, 2).upper(), taken)),
        payments_per_minute=payments_per_minute,
        daily_wave=daily_wave,
        merchants=dict(zip(_names(rng, merchants, lambda r: "m_" + _word(r, 3), taken),
                           _zipf_weights(rng, merchants).tolist(), strict=True)) if merchants else {},
        regions=dict(zip(_names(rng, regions, lambda r: _word(r, 3).capitalize(), taken),
                         _zipf_weights(rng, regions).tolist(), strict=True)) if regions else {},
    )


def rename_network(net: NetworkConfig, seed: int = 0) -> tuple[NetworkConfig, dict[str, dict[str, str]]]:
    """The same network under fresh names (banks, routes, issuers, terminals, merchants, regions).

    Returns the renamed network and, per dimension, old name -> new name.
    """
    rng = np.random.default_rng(seed)
    taken = set(net.banks) | set(net.routes) | set(net.terminals) | set(net.merchants) | set(net.regions)
    taken |= {i for per in net.issuers.values() for i in per}
    issuers = sorted({i for per in net.issuers.values() for i in per})
    mapping = {
        "bank": dict(zip(net.banks, _names(rng, len(net.banks), lambda r: _word(r, 3).upper(), taken), strict=True)),
        "route": dict(zip(net.routes, _names(rng, len(net.routes), lambda r: _word(r, 2) + "_" + _word(r, 1), taken),
                          strict=True)),
        "issuer": dict(zip(issuers, _names(rng, len(issuers), lambda r: _word(r, 2).upper(), taken), strict=True)),
        "terminal_id": dict(zip(net.terminals, _names(rng, len(net.terminals), lambda r: "K" + _word(r, 2), taken),
                                strict=True)),
        "merchant_id": dict(zip(net.merchants, _names(rng, len(net.merchants), lambda r: "m_" + _word(r, 3), taken),
                                strict=True)),
        "region": dict(zip(net.regions, _names(rng, len(net.regions), lambda r: _word(r, 3).capitalize(), taken),
                           strict=True)),
    }
    bank, route, issuer = mapping["bank"], mapping["route"], mapping["issuer"]
    renamed = replace(
        net,
        banks={bank[k]: v for k, v in net.banks.items()},
        routes={route[k]: v for k, v in net.routes.items()},
        issuers={m: {issuer[i]: w for i, w in per.items()} for m, per in net.issuers.items()},
        terminals=tuple(mapping["terminal_id"][t] for t in net.terminals),
        merchants={mapping["merchant_id"][k]: v for k, v in net.merchants.items()},
        regions={mapping["region"][k]: v for k, v in net.regions.items()},
    )
    return renamed, mapping
