"""Attempts on the held-out platform: first attempts, outcomes, retries, faults, bursts, collector jitter.

Everything is columnar (numpy), deterministic per seed. Times are seconds from the
stream's start until `to_lines`, which adds the epoch and writes CONTRACT §1 lines
in the order a collector delivers them (finish time plus a delivery delay: a few
seconds out of order).

A `Plan` says what goes wrong: `Effect`s change the outcome of matching attempts
(failures with their codes, slowness, attempts that never come back, traffic sent
to the wrong route), `Burst`s add attempts nobody's customers made (card testing,
spoofing), `VolumeStep`s change demand (flash sale, night), a `RetryStorm` is a
misconfigured retry policy, a `FeedGap` is the collector being down.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import orjson

from .world import NOISE_CODES, RAIL_ISSUERS, USER_CODES, World

# Declines the customer may try again (a different card, a top-up): the platform does not retry them.
CUSTOMER_RETRY_CODES = ("INSUFFICIENT_FUNDS", "INCORRECT_PIN", "USER_DECLINED", "DO_NOT_HONOR")
CUSTOMER_RETRY_P = 0.12
CUSTOMER_RETRY_GAP = (15.0, 120.0)  # seconds: the customer re-enters details
# Technical failures the platform's retry policy retries once or twice, after a short back-off.
TECHNICAL_CODES = ("NETWORK_ERROR", "GATEWAY_TIMEOUT", "SYSTEM_ERROR", "BANK_TIMEOUT", "ISSUER_DOWN")
PLATFORM_RETRY_P = 0.5
PLATFORM_RETRY_GAP = (1.0, 5.0)
PLATFORM_MAX_ATTEMPTS = 3
# A retried hard decline is declined again: the customer's account did not change in seconds.
STICKY_DECLINE_P = 0.85
# Collectors batch and ship: a delivery delay of about a second, now and then several.
DELIVERY_DELAY_MEAN = 1.2
DELIVERY_DELAY_MAX = 8.0
# Technical failures end at a time-out: a gateway gives up after 8-30 s.
TIMEOUT_LATENCY_MS = (8_000.0, 30_000.0)
FAST_FAIL_LATENCY_MS = (40.0, 400.0)
# A real feed has no first second: payments under way, time-outs pending and customers' retries
# of earlier declines are already there. Traffic starts this long before the stream and only
# events that finish inside [0, duration) are written, so the first and last windows look like
# any other (no warm-up dip in failures, no tail made only of slow time-outs).
WARMUP_SECONDS = 180.0

# Categorical columns, named as CONTRACT §1 names the fields (labels use the same names).
# Every payment id looks alike, whoever made the payment: an id must not give the label away.
PAYMENT_PREFIX = "p-"
COLUMNS = ("merchant_id", "method", "route", "bank", "issuer", "terminal_id", "region", "currency")


@dataclass(frozen=True)
class Effect:
    """What happens to attempts matching `where` (dimension -> name) between start and end (seconds)."""

    start: float
    end: float
    where: Mapping[str, str]
    fail: float = 0.0  # extra failure probability (the peak, when ramping)
    codes: Mapping[str, float] = field(default_factory=dict)
    ramp: bool = False  # failure probability grows linearly from 0 at start to `fail` at end
    timeout: bool = True  # failures take a time-out's latency (else they fail fast)
    latency_scale: float = 1.0  # matched attempts are this much slower (success or not)
    keep: float = 1.0  # share of matched attempts whose result reaches the collector (black hole: ~0.1)
    send_to: str | None = None  # a routing mistake: matched attempts go to this route


@dataclass(frozen=True)
class Burst:
    """Attempts added by someone other than the customers: per_minute over many payment ids."""

    start: float
    end: float
    per_minute: float
    method: str
    merchant: str
    route: str
    fail: float
    codes: Mapping[str, float]
    amount: tuple[float, float]  # uniform range, major units
    terminal: str | None = None
    by_share: bool = False  # payers' banks by market share (real customers) instead of evenly (card lists)


@dataclass(frozen=True)
class VolumeStep:
    """Demand times `factor` between start and end, reached over `ramp` seconds; one merchant or all."""

    start: float
    end: float
    factor: float
    ramp: float = 60.0
    merchant: str | None = None


@dataclass(frozen=True)
class RetryStorm:
    """A retry policy pushed by mistake: every failure, declines included, retried fast up to max_attempts."""

    start: float
    end: float
    max_attempts: int = 6
    gap: tuple[float, float] = (0.3, 2.0)
    retry_p: float = 0.95


@dataclass(frozen=True)
class FeedGap:
    """The collector is down: nothing delivered between start and end (no backfill on restart)."""

    start: float
    end: float


@dataclass
class Plan:
    effects: list[Effect] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    volume: list[VolumeStep] = field(default_factory=list)
    storm: RetryStorm | None = None
    gaps: list[FeedGap] = field(default_factory=list)


@dataclass
class Attempts:
    """Columns of attempts; categorical columns hold names (object arrays)."""

    t: np.ndarray  # start time, seconds
    pid: np.ndarray
    attempt: np.ndarray
    amount: np.ndarray
    cols: dict[str, np.ndarray]
    palm_id: np.ndarray
    status_ok: np.ndarray | None = None
    code: np.ndarray | None = None
    latency: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: np.ndarray) -> Attempts:
        return Attempts(self.t[idx], self.pid[idx], self.attempt[idx], self.amount[idx],
                        {k: v[idx] for k, v in self.cols.items()}, self.palm_id[idx],
                        None if self.status_ok is None else self.status_ok[idx],
                        None if self.code is None else self.code[idx],
                        None if self.latency is None else self.latency[idx])

    def decided(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(status_ok, code, latency): drawn by outcomes() (or a burst) before anything reads them."""
        if self.status_ok is None or self.code is None or self.latency is None:
            raise ValueError("attempts read before their outcomes were drawn")
        return self.status_ok, self.code, self.latency


def concat(parts: list[Attempts]) -> Attempts:
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("no attempts")
    first = parts[0]
    return Attempts(np.concatenate([p.t for p in parts]), np.concatenate([p.pid for p in parts]),
                    np.concatenate([p.attempt for p in parts]), np.concatenate([p.amount for p in parts]),
                    {k: np.concatenate([p.cols[k] for p in parts]) for k in first.cols},
                    np.concatenate([p.palm_id for p in parts]),
                    np.concatenate([p.status_ok for p in parts]), np.concatenate([p.code for p in parts]),
                    np.concatenate([p.latency for p in parts]))


def _choice(rng: np.random.Generator, mix: Mapping[str, float], n: int) -> np.ndarray:
    names = list(mix)
    p = np.array([mix[k] for k in names], dtype=float)
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]


def _demand(world: World, plan: Plan, merchant: str, seconds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Expected first attempts per second for one merchant: its share, a slow wobble, the plan's steps."""
    share = next(m.share for m in world.merchants if m.name == merchant)
    phase = rng.uniform(0, 2 * np.pi)
    rate = world.ppm / 60.0 * share * (1.0 + 0.05 * np.sin(seconds / 420.0 * 2 * np.pi + phase))
    for step in plan.volume:
        if step.merchant not in (None, merchant):
            continue
        up = np.clip((seconds - step.start) / max(step.ramp, 1e-9), 0.0, 1.0)
        down = np.clip((step.end - seconds) / max(step.ramp, 1e-9), 0.0, 1.0)
        rate = rate * (1.0 + (step.factor - 1.0) * np.minimum(up, down))
    return rate


def _ids(rng: np.random.Generator, n: int, prefix: str) -> np.ndarray:
    raw = rng.integers(0, 2**62, size=n, dtype=np.int64)
    return np.array([f"{prefix}{x:016x}" for x in raw], dtype=object)


def first_attempts(world: World, plan: Plan, duration: float, rng: np.random.Generator) -> Attempts:
    seconds = np.arange(-int(WARMUP_SECONDS), int(duration), dtype=float)
    parts: list[Attempts] = []
    banks = {b.name: b.share for b in world.banks}
    wallet_route = world.extras.get("wallet_route")
    rails = {m: world.routes_for(m)[0] for m in ("payshap", "eft", "palm")}
    for m in world.merchants:
        counts = rng.poisson(_demand(world, plan, m.name, seconds, rng))
        n = int(counts.sum())
        if n == 0:
            continue
        t = np.repeat(seconds, counts) + rng.uniform(0.0, 1.0, size=n)
        method = _choice(rng, world.method_mix, n)
        palm_terms = [x for x in m.terminals if x.startswith("palm")]
        shop_terms = [x for x in m.terminals if not x.startswith("palm")]
        if not palm_terms:
            method[method == "palm"] = "card"  # no scanner here: the customer pays by card
        route = np.empty(n, dtype=object)
        route[method == "card"] = m.card_route
        route[method == "wallet"] = wallet_route
        for meth, r in rails.items():
            route[method == meth] = r
        bank = _choice(rng, banks, n)
        issuer = np.empty(n, dtype=object)
        for b in world.banks:
            sel = (bank == b.name) & (method == "card")
            issuer[sel] = _choice(rng, b.schemes, int(sel.sum()))
        for meth, name in RAIL_ISSUERS.items():
            issuer[method == meth] = name
        terminal = np.full(n, None, dtype=object)
        if shop_terms:
            present = (method == "card") & (rng.random(n) >= m.online_share)
            terminal[present] = np.array(shop_terms, dtype=object)[rng.integers(0, len(shop_terms), int(present.sum()))]
        if palm_terms:
            palm = method == "palm"
            terminal[palm] = np.array(palm_terms, dtype=object)[rng.integers(0, len(palm_terms), int(palm.sum()))]
        amount = np.round(m.amount_median * rng.lognormal(0.0, 0.9, size=n), 2)
        palm_id = np.full(n, None, dtype=object)
        is_palm = method == "palm"
        palm_id[is_palm] = _ids(rng, int(is_palm.sum()), "pp-")
        cols = {"merchant_id": np.full(n, m.name, dtype=object), "method": method, "route": route, "bank": bank,
                "issuer": issuer, "terminal_id": terminal, "region": np.full(n, m.region, dtype=object),
                "currency": np.full(n, m.currency, dtype=object)}
        parts.append(Attempts(t, _ids(rng, n, PAYMENT_PREFIX), np.ones(n, dtype=np.int64), amount, cols, palm_id))
    out = parts[0] if len(parts) == 1 else _concat_plain(parts)
    return out


def _concat_plain(parts: list[Attempts]) -> Attempts:
    first = parts[0]
    return Attempts(np.concatenate([p.t for p in parts]), np.concatenate([p.pid for p in parts]),
                    np.concatenate([p.attempt for p in parts]), np.concatenate([p.amount for p in parts]),
                    {k: np.concatenate([p.cols[k] for p in parts]) for k in first.cols},
                    np.concatenate([p.palm_id for p in parts]))


def _matches(a: Attempts, where: Mapping[str, str]) -> np.ndarray:
    mask = np.ones(len(a), dtype=bool)
    for dim, value in where.items():
        mask &= a.cols[dim] == value
    return mask


def misroute(a: Attempts, plan: Plan) -> None:
    """Routing mistakes first: the attempt is then judged on the route it really went to."""
    for e in plan.effects:
        if e.send_to is not None:
            sel = (a.t >= e.start) & (a.t < e.end) & _matches(a, e.where)
            a.cols["route"][sel] = e.send_to


def outcomes(world: World, plan: Plan, a: Attempts, rng: np.random.Generator) -> None:
    """Status, error code and latency of every attempt: normal life, then the plan's effects."""
    n = len(a)
    method, route, bank = a.cols["method"], a.cols["route"], a.cols["bank"]
    ok = np.ones(n, dtype=bool)
    code = np.full(n, None, dtype=object)
    latency = np.empty(n, dtype=float)
    decline_p = np.zeros(n)
    for meth, level in world.decline_level.items():
        decline_p[method == meth] = level
    timeout_p = np.zeros(n)
    for b in world.banks:
        sel = bank == b.name
        decline_p[sel] *= b.decline_scale
        timeout_p[sel] = b.timeout_rate
    noise_p = np.zeros(n)
    for r in world.routes:
        sel = route == r.name
        noise_p[sel] = r.noise
        latency[sel] = r.latency_median_ms * rng.lognormal(0.0, r.latency_sigma, size=int(sel.sum()))
    u = rng.random(n)
    declined = u < decline_p
    for meth in world.decline_level:
        sel = declined & (method == meth)
        code[sel] = _choice(rng, USER_CODES[meth], int(sel.sum()))
    technical = ~declined & (u < decline_p + noise_p)
    code[technical] = _choice(rng, NOISE_CODES, int(technical.sum()))
    bank_to = ~declined & ~technical & (u < decline_p + noise_p + timeout_p)
    code[bank_to] = "BANK_TIMEOUT"
    ok &= ~(declined | technical | bank_to)
    latency[declined] *= 0.7  # a decline comes straight back
    slow = technical | bank_to
    latency[slow] = rng.uniform(*TIMEOUT_LATENCY_MS, size=int(slow.sum()))
    for e in plan.effects:
        sel = (a.t >= e.start) & (a.t < e.end) & _matches(a, e.where)
        if e.send_to is not None:
            # Sent to a route that does not carry this method: refused at once.
            where_but_route = {k: v for k, v in e.where.items() if k != "route"}
            sel = (a.t >= e.start) & (a.t < e.end) & (route == e.send_to) & _matches(a, where_but_route)
        if not sel.any():
            continue
        latency[sel] *= e.latency_scale
        if e.fail <= 0.0:
            continue
        p = np.full(int(sel.sum()), e.fail)
        if e.ramp:
            p *= np.clip((a.t[sel] - e.start) / max(e.end - e.start, 1e-9), 0.0, 1.0)
        hit_local = rng.random(len(p)) < p
        hit = np.flatnonzero(sel)[hit_local]
        ok[hit] = False
        code[hit] = _choice(rng, e.codes, len(hit))
        latency[hit] = rng.uniform(*(TIMEOUT_LATENCY_MS if e.timeout else FAST_FAIL_LATENCY_MS), size=len(hit))
    a.status_ok, a.code, a.latency = ok, code, np.round(latency, 1)


def retries(world: World, plan: Plan, first: Attempts, rng: np.random.Generator) -> Attempts:
    """Follow-up attempts (same payment_id, attempt + 1): the platform's policy, customers, a storm."""
    parts = [first]
    prev = first
    storm = plan.storm
    for _ in range(max(PLATFORM_MAX_ATTEMPTS, storm.max_attempts if storm else 0) - 1):
        prev_ok, prev_codes, prev_latency = prev.decided()
        failed = ~prev_ok
        finish = prev.t + prev_latency / 1000.0
        in_storm = np.zeros(len(prev), dtype=bool)
        if storm is not None:
            in_storm = failed & (finish >= storm.start) & (finish < storm.end) & (prev.attempt < storm.max_attempts)
        technical = failed & np.isin(prev_codes, TECHNICAL_CODES) & (prev.attempt < PLATFORM_MAX_ATTEMPTS)
        customer = failed & np.isin(prev_codes, CUSTOMER_RETRY_CODES) & (prev.attempt == 1)
        u = rng.random(len(prev))
        go_storm = in_storm & (u < (storm.retry_p if storm else 0.0))
        go = go_storm | (~in_storm & ((technical & (u < PLATFORM_RETRY_P)) | (customer & (u < CUSTOMER_RETRY_P))))
        idx = np.flatnonzero(go)
        if idx.size == 0:
            break
        nxt = prev.take(idx)
        storm_low, storm_high = storm.gap if storm else (1, 1)
        gap = np.where(go_storm[idx], rng.uniform(storm_low, storm_high, size=idx.size),
                       np.where(technical[idx], rng.uniform(*PLATFORM_RETRY_GAP, size=idx.size),
                                rng.uniform(*CUSTOMER_RETRY_GAP, size=idx.size)))
        nxt.t = finish[idx] + gap
        nxt.attempt = prev.attempt[idx] + 1
        prev_code = prev_codes[idx]
        outcomes(world, plan, nxt, rng)
        sticky = np.isin(prev_code, CUSTOMER_RETRY_CODES + ("EXPIRED_CARD", "SUSPECTED_FRAUD", "RESTRICTED_CARD")) & (
            rng.random(idx.size) < STICKY_DECLINE_P)
        nxt_ok, nxt_codes, _ = nxt.decided()  # the arrays themselves: set in place
        nxt_ok[sticky] = False
        nxt_codes[sticky] = prev_code[sticky]
        if storm is not None:
            # The retry engine gives up at its last attempt and says so.
            last = go_storm[idx] & (nxt.attempt >= storm.max_attempts) & ~nxt_ok & (rng.random(idx.size) < 0.6)
            nxt_codes[last] = "RETRY_EXHAUSTED"
        keep = nxt.t < float(first.t.max()) + 1.0  # a retry after the stream ends is not in the file (cut later anyway)
        nxt = nxt.take(np.flatnonzero(keep))
        if not len(nxt):
            break
        parts.append(nxt)
        prev = nxt
    return concat(parts)


def burst_attempts(world: World, burst: Burst, rng: np.random.Generator) -> Attempts:
    seconds = np.arange(int(burst.start), int(burst.end), dtype=float)
    counts = rng.poisson(burst.per_minute / 60.0, size=len(seconds))
    n = int(counts.sum())
    t = np.repeat(seconds, counts) + rng.uniform(0.0, 1.0, size=n)
    merchant = next(m for m in world.merchants if m.name == burst.merchant)
    if burst.by_share:
        bank = _choice(rng, {b.name: b.share for b in world.banks}, n)
    else:
        # Stolen card lists and fake palms span every bank: drawn evenly, not by market share.
        bank = np.array([b.name for b in world.banks], dtype=object)[rng.integers(0, len(world.banks), n)]
    if burst.method == "card":
        issuer = _choice(rng, {s: 1.0 for s in world.schemes}, n)
    else:
        issuer = np.full(n, RAIL_ISSUERS.get(burst.method, burst.method.upper()), dtype=object)
    cols = {"merchant_id": np.full(n, merchant.name, dtype=object), "method": np.full(n, burst.method, dtype=object),
            "route": np.full(n, burst.route, dtype=object), "bank": bank, "issuer": issuer,
            "terminal_id": np.full(n, burst.terminal, dtype=object),
            "region": np.full(n, merchant.region, dtype=object),
            "currency": np.full(n, merchant.currency, dtype=object)}
    palm_id = _ids(rng, n, "pp-") if burst.method == "palm" else np.full(n, None, dtype=object)
    a = Attempts(t, _ids(rng, n, PAYMENT_PREFIX), np.ones(n, dtype=np.int64),
                 np.round(rng.uniform(*burst.amount, size=n), 2), cols, palm_id)
    fail = rng.random(n) < burst.fail
    a.status_ok = ~fail
    a.code = np.full(n, None, dtype=object)
    a.code[fail] = _choice(rng, burst.codes, int(fail.sum()))
    a.latency = np.round(rng.uniform(150.0, 900.0, size=n), 1)
    return a


def simulate(world: World, plan: Plan, duration: float, rng: np.random.Generator) -> Attempts:
    first = first_attempts(world, plan, duration, rng)
    misroute(first, plan)
    outcomes(world, plan, first, rng)
    every = retries(world, plan, first, rng)
    parts = [every] + [burst_attempts(world, b, rng) for b in plan.bursts]
    a = concat(parts)
    # Black holes: the processor swallows the request; no result ever reaches the collector.
    lost = np.zeros(len(a), dtype=bool)
    for e in plan.effects:
        if e.keep < 1.0:
            sel = (a.t >= e.start) & (a.t < e.end) & _matches(a, e.where)
            lost |= sel & (rng.random(len(a)) >= e.keep)
    return a.take(np.flatnonzero(~lost))


def delivery_order(a: Attempts, plan: Plan, duration: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(finish times, order of delivery) after the collector's delay, for events finishing inside the stream;
    events arriving during a feed gap are never delivered."""
    _, _, latency = a.decided()
    finish = a.t + latency / 1000.0
    arrival = finish + np.minimum(rng.exponential(DELIVERY_DELAY_MEAN, size=len(a)), DELIVERY_DELAY_MAX)
    keep = (finish >= 0.0) & (finish < duration)
    for g in plan.gaps:
        keep &= ~((arrival >= g.start) & (arrival < g.end))
    idx = np.flatnonzero(keep)
    return finish, idx[np.argsort(arrival[idx], kind="stable")]


def to_lines(a: Attempts, plan: Plan, start_ts: float, duration: float, rng: np.random.Generator) -> Iterator[bytes]:
    finish, order = delivery_order(a, plan, duration, rng)
    c = a.cols
    status_ok, code, latency = a.decided()
    for i in order:
        ev: dict[str, object] = {
            "ts": round(start_ts + float(finish[i]), 3), "payment_id": a.pid[i], "attempt": int(a.attempt[i]),
            "amount": float(a.amount[i]), "currency": c["currency"][i], "method": c["method"][i],
            "route": c["route"][i],
            "bank": c["bank"][i], "issuer": c["issuer"][i], "status": "success" if status_ok[i] else "failure",
            "error_code": code[i], "latency_ms": float(latency[i]), "merchant_id": c["merchant_id"][i],
            "region": c["region"][i],
        }
        if c["terminal_id"][i] is not None:
            ev["terminal_id"] = c["terminal_id"][i]
        if a.palm_id[i] is not None:
            ev["palm_pay_id"] = a.palm_id[i]
        yield orjson.dumps(ev) + b"\n"
