"""A closed-loop payment simulator: a network (network.py), incidents on a timeline
(scenarios.py), and traffic that obeys the control plane (policy.TrafficPolicy).

Generation is vectorised with numpy over each `advance` interval, so 100,000
payments/min is cheap: per-second Poisson arrivals (with the daily wave), then
method, bank, terminal, issuer and route for every payment at once, then one
vectorised pass per retry attempt. The control plane is asked once per distinct
path for suppression and retry policy (they depend on the path only) and once
per payment for reroutes (they also take the payment's random draw). The policy
is constant within one `advance`: the agent changes it between ticks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .amounts import low_amount_mask
from .batch import WIDE_FIELDS, Combo, EventBatch, concat
from .events import PaymentEvent
from .network import (  # re-exported: other modules import these from here
    PALM_METHOD,
    NetworkConfig,
    RouteSpec,
    default_network,
    random_network,
    rename_network,
    with_volume,
)
from .oracle import OracleAnswer, oracle_at, oracle_for_window, oracle_timeline
from .policy import NoPolicy, RetryPolicy, TrafficPolicy
from .scenarios import SCENARIOS, Expectation, Fault, Misconfig, Scenario, build_scenario, timed_scenario

__all__ = [
    "PALM_METHOD", "NetworkConfig", "RouteSpec", "default_network", "random_network", "rename_network", "with_volume",
    "OracleAnswer", "oracle_at", "oracle_for_window", "oracle_timeline", "SCENARIOS", "Expectation", "Fault",
    "Misconfig", "Scenario", "build_scenario", "timed_scenario", "Simulator", "SimDetails", "write_stream",
]

RETRYABLE = frozenset({"BANK_TIMEOUT", "GATEWAY_TIMEOUT", "NETWORK_ERROR", "SYSTEM_ERROR", "ISSUER_DOWN"})
USER_DECLINES = {"INSUFFICIENT_FUNDS": 0.5, "USER_DECLINED": 0.2, "INCORRECT_PIN": 0.12, "EXPIRED_CARD": 0.08,
                 "DO_NOT_HONOR": 0.1}
PALM_DECLINES = {"PALM_PAY_NOT_REGISTERED": 0.45, "PALM_PAY_DAILY_LIMIT": 0.2, "PALM_PAY_TRANSACTION_LIMIT": 0.15,
                 "PALM_PAY_LINK_INACTIVE": 0.2}
SYSTEM_NOISE = {"NETWORK_ERROR": 0.5, "SYSTEM_ERROR": 0.3, "GATEWAY_TIMEOUT": 0.2}
TIMEOUT_CODES = frozenset({"BANK_TIMEOUT", "GATEWAY_TIMEOUT"})
# A payment's last attempt reports RETRY_EXHAUSTED once a policy allowed this many
# attempts; with the usual 1 retry the last attempt keeps its own error code.
RETRY_EXHAUSTED_AFTER = 3
UNSUPPORTED_ROUTE = "unsupported"  # where a method no route carries ends up
UNKNOWN_ISSUER = "OTHER"
UNKNOWN_ROUTE_LATENCY_MS = 200.0
LATENCY_SIGMA = 0.35  # lognormal spread of a route's latency
REJECT_LATENCY_MS = (40.0, 120.0)  # a route refusing a method answers fast
TIMEOUT_LATENCY_MS = (8_000.0, 30_000.0)
_CORE = ("method", "route", "bank", "issuer")


class _Names:
    """A growing list of names for one field; index 0 is 'absent' (None)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str | None] = [None]
        self.index: dict[str, int] = {}
        for name in names:
            self.code(name)

    def code(self, name: str | None) -> int:
        if name is None:
            return 0
        found = self.index.get(name)
        if found is None:
            found = self.index[name] = len(self.names)
            self.names.append(name)
        return found

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class SimDetails:
    """Payment ids, amounts and palm-pay ids of simulated rows, as arrays (see batch.RowDetails)."""

    prefix: str
    payment_no: np.ndarray
    amount: np.ndarray
    palm_no: np.ndarray  # 0: not a palm payment

    def take(self, index: np.ndarray | slice) -> SimDetails:
        return SimDetails(self.prefix, self.payment_no[index], self.amount[index], self.palm_no[index])

    @classmethod
    def join(cls, parts: Sequence[SimDetails]) -> SimDetails | None:
        if any(p.prefix != parts[0].prefix for p in parts):
            return None
        return cls(parts[0].prefix,
                   *(np.concatenate([getattr(p, f) for p in parts]) for f in ("payment_no", "amount", "palm_no")))

    def extras(self, i: int) -> tuple[str, float | None, str, str | None]:
        palm = int(self.palm_no[i])
        palm_id = f"pp-{palm:05d}" if palm else None
        return f"{self.prefix}{int(self.payment_no[i])}", float(self.amount[i]), "ZAR", palm_id


def _draw(rng: np.random.Generator, weights: Mapping[str, float], size: int) -> tuple[list[str], np.ndarray]:
    names = list(weights)
    w = np.fromiter(weights.values(), float, len(names))
    return names, rng.choice(len(names), size=size, p=w / w.sum())


class Simulator:
    """Generates CONTRACT.md §1 events, obeying a TrafficPolicy."""

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
        net = self.net
        issuers = [i for per in net.issuers.values() for i in per]
        codes = [*RETRYABLE, *USER_DECLINES, *PALM_DECLINES, *SYSTEM_NOISE, "ROUTE_NOT_SUPPORTED", "RETRY_EXHAUSTED"]
        codes += [c for f in scenario.faults for c in f.errors]
        self.names = {
            "method": _Names(net.methods), "route": _Names([*net.routes, UNSUPPORTED_ROUTE]), "bank": _Names(net.banks),
            "issuer": _Names([*issuers, UNKNOWN_ISSUER]), "terminal_id": _Names(net.terminals),
            "merchant_id": _Names(net.merchants), "region": _Names(net.regions),
            "error_code": _Names(sorted(set(codes))),
        }
        self.combos: list[Combo] = []  # shared by every batch this simulator makes
        self._combo_ids: dict[tuple[int, ...], int] = {}
        self._held: EventBatch | None = None  # attempts that finish after the last advance_sorted's end

    # -- time-varying model ---------------------------------------------------
    def _rate_per_second(self, t: np.ndarray) -> np.ndarray:
        base = self.net.payments_per_minute / 60.0
        rate = np.full(t.shape, base)
        if self.net.daily_wave:
            rate = rate * (1.0 + self.net.daily_wave * np.sin(2 * math.pi * (t - self.start_ts) / 86_400.0))
        positive: np.ndarray = np.maximum(rate, 0.0)
        return positive

    # -- generation -----------------------------------------------------------
    def advance(self, until_ts: float) -> list[PaymentEvent]:
        """All events that finish in [now, until_ts), sorted by ts, as objects."""
        return self.advance_batch(until_ts).to_events()

    def advance_sorted(self, until_ts: float) -> EventBatch:
        """Events that finish before `until_ts`, in ts order, as columns.

        A payment started just before `until_ts` may finish after it (a 30 s timeout
        and its retry): those attempts are held back and handed out by a later call,
        so consecutive calls form one stream sorted by ts, as a live feed would be.
        """
        fresh = self.advance_batch(until_ts) if until_ts > self.now else EventBatch.empty()
        batch = concat([self._held, fresh]) if self._held is not None else fresh
        order = np.argsort(batch.ts, kind="stable")
        cut = int(np.searchsorted(batch.ts[order], until_ts, side="left"))
        self._held = batch.take(order[cut:]) if cut < len(batch) else None
        return batch.take(order[:cut])

    def advance_batch(self, until_ts: float) -> EventBatch:
        """All events of payments started in [now, until_ts), sorted by ts, as columns."""
        if until_ts <= self.now:
            return EventBatch.empty()
        steps = int(math.ceil(until_ts - self.now - 1e-9))
        starts = self.now + np.arange(steps, dtype=np.float64)
        widths = np.minimum(starts + 1.0, until_ts) - starts
        counts = self.rng.poisson(self._rate_per_second(starts) * widths)
        self.now = until_ts
        second = np.repeat(np.arange(steps), counts)
        n = int(second.shape[0])
        t0 = starts[second] + self.rng.random(n) * widths[second]
        rel = starts[second] - self.start_ts  # incidents switch on and off at whole seconds
        return self._payments(t0, rel)

    def _payments(self, t0: np.ndarray, rel: np.ndarray) -> EventBatch:
        rng, net, names = self.rng, self.net, self.names
        n = int(t0.shape[0])
        payment_no = self._counter + np.arange(1, n + 1)
        self._counter += n
        self.payments += n
        method_names, method = _draw(rng, net.methods, n)
        method = np.array([names["method"].code(m) for m in method_names], np.int64)[method]
        bank_names, bank = _draw(rng, net.banks, n)
        bank = np.array([names["bank"].code(b) for b in bank_names], np.int64)[bank]
        cols: dict[str, np.ndarray] = {"method": method, "bank": bank}
        for field_name, weights in (("merchant_id", net.merchants), ("region", net.regions)):
            if weights:
                found, idx = _draw(rng, weights, n)
                cols[field_name] = np.array([names[field_name].code(x) for x in found], np.int64)[idx]
            else:
                cols[field_name] = np.zeros(n, np.int64)
        terminal = np.zeros(n, np.int64)
        palm = method == names["method"].code(PALM_METHOD)
        if net.terminals and palm.any():
            terminal_codes = np.array([names["terminal_id"].code(t) for t in net.terminals])
            terminal[palm] = terminal_codes[rng.integers(len(net.terminals), size=int(palm.sum()))]
        cols["terminal_id"] = terminal
        keep = np.ones(n, bool)

        # Suppressed before a route is chosen (a bank, method or terminal): diverted or offered a fallback.
        if not isinstance(self.policy, NoPolicy):
            for rows, dims in self._groups(cols, ("method", "bank", "terminal_id", "merchant_id", "region")):
                diversion = self.policy.suppression(dims)
                if diversion is None:
                    continue
                fallback = diversion.fallback_method
                if fallback is None or fallback == dims["method"]:
                    keep[rows] = False
                else:
                    cols["method"][rows] = names["method"].code(fallback)
                    cols["terminal_id"][rows] = 0  # the customer took the offered fallback, away from the terminal

        cols["issuer"] = np.zeros(n, np.int64)
        cols["route"] = np.zeros(n, np.int64)
        for m_code in np.unique(cols["method"]).tolist():
            rows = np.flatnonzero(cols["method"] == m_code)
            m_name = names["method"].names[m_code]
            issuer_names, pick = _draw(rng, net.issuers.get(m_name, {UNKNOWN_ISSUER: 1.0}), rows.size)
            cols["issuer"][rows] = np.array([names["issuer"].code(x) for x in issuer_names])[pick]
            route_names, pick = _draw(rng, net.routes_for(m_name) or {UNSUPPORTED_ROUTE: 1.0}, rows.size)
            cols["route"][rows] = np.array([names["route"].code(x) for x in route_names])[pick]
        misconfigs = self.scenario.misconfigs
        for mc in misconfigs:
            if mc.route_method is None:
                continue
            forced_method, forced_route = mc.route_method
            hit = (cols["method"] == names["method"].code(forced_method)) & (rel >= mc.start) & (rel < mc.end)
            hit &= rng.random(n) < mc.share
            cols["route"][hit] = names["route"].code(forced_route)
        draws = rng.random(n)

        if not isinstance(self.policy, NoPolicy):
            path = ("method", "bank", "terminal_id", "merchant_id", "region", "issuer", "route")
            for rows, dims in self._groups(cols, path, keep):
                m_name = dims["method"]
                candidates = net.routes_for(m_name) or {UNSUPPORTED_ROUTE: 1.0}
                for r in rows.tolist():  # the draw is per payment
                    override = self.policy.reroute(dims, candidates, float(draws[r]))
                    if override is not None:
                        cols["route"][r] = names["route"].code(override)
            for rows, dims in self._groups(cols, path, keep):
                if self.policy.suppression(dims) is not None:  # a suppressed route or bank x route path
                    keep[rows] = False

        # Retry policy: the control plane's, else a misconfiguration's in force, else the network default.
        default = net.default_retry
        max_attempts = np.full(n, max(default.max_attempts, 1), np.int64)
        backoff = np.full(n, default.backoff_ms)
        retry_all = np.full(n, default.retry_all_errors)
        from_plane = np.zeros(n, bool)
        if not isinstance(self.policy, NoPolicy):
            path = ("method", "bank", "terminal_id", "merchant_id", "region", "issuer", "route")
            for rows, dims in self._groups(cols, path, keep):
                policy = self.policy.retry_policy(dims)
                if policy is not None:
                    self._set_retry(rows, policy, max_attempts, backoff, retry_all)
                    from_plane[rows] = True
        for mc in reversed(misconfigs):  # the first misconfiguration in force wins
            if mc.retry is None:
                continue
            rows = np.flatnonzero(~from_plane & (rel >= mc.start) & (rel < mc.end))
            self._set_retry(rows, mc.retry, max_attempts, backoff, retry_all)

        self.diverted += int(n - keep.sum())
        live = np.flatnonzero(keep)
        amount = np.round(rng.lognormal(5.0, 1.0, n), 2)
        palm_no = np.where(cols["method"] == names["method"].code(PALM_METHOD), rng.integers(1, 5000, n), 0)
        return self._attempts(live, t0, rel, cols, max_attempts, backoff, retry_all, payment_no, amount, palm_no)

    @staticmethod
    def _set_retry(rows: np.ndarray, policy: RetryPolicy, max_attempts: np.ndarray, backoff: np.ndarray,
                   retry_all: np.ndarray) -> None:
        max_attempts[rows] = max(policy.max_attempts, 1)
        backoff[rows] = policy.backoff_ms
        retry_all[rows] = policy.retry_all_errors

    def _groups(self, cols: dict[str, np.ndarray], fields: Sequence[str],
                keep: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, dict[str, str]]]:
        """(row indices, dims) for each distinct path among the kept rows; dims as the policy sees them."""
        rows_all = np.flatnonzero(keep) if keep is not None else np.arange(cols["method"].shape[0])
        if rows_all.size == 0:
            return
        uniq, inverse = self._factorize([cols[f][rows_all] for f in fields], [len(self.names[f]) for f in fields])
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
        for g, codes in enumerate(uniq):
            # code 0 is the one None (absent) name: those fields are left out
            dims = {f: name for f, c in zip(fields, codes, strict=True) if (name := self.names[f].names[c]) is not None}
            yield rows_all[order[bounds[g] : bounds[g + 1]]], dims

    # -- attempts and outcomes ------------------------------------------------------
    def _attempts(self, live: np.ndarray, t0: np.ndarray, rel: np.ndarray, cols: dict[str, np.ndarray],
                  max_attempts: np.ndarray, backoff: np.ndarray, retry_all: np.ndarray, payment_no: np.ndarray,
                  amount: np.ndarray, palm_no: np.ndarray) -> EventBatch:
        err_names = self.names["error_code"]
        retryable = np.zeros(len(err_names), bool)  # every code the simulator emits is registered up front
        retryable[[err_names.code(code) for code in RETRYABLE]] = True
        exhausted_code = err_names.code("RETRY_EXHAUSTED")
        t = t0.copy()
        sticky = np.zeros(t0.shape[0], np.int64)  # a decline repeats on every retry: the balance did not change
        out_rows, out_attempt, out_ts, out_latency, out_err = [], [], [], [], []
        alive = live
        attempt = 1
        while alive.size:
            err, latency = self._outcome(alive, rel, cols)
            held = sticky[alive]
            err = np.where(held > 0, held, err)
            newly = (held == 0) & (err > 0) & ~retryable[err]
            sticky[alive[newly]] = err[newly]
            final = attempt >= max_attempts[alive]
            err = np.where((err > 0) & final & (attempt >= RETRY_EXHAUSTED_AFTER), exhausted_code, err)
            t[alive] += latency / 1000.0
            out_rows.append(alive)
            out_attempt.append(np.full(alive.size, attempt, np.int64))
            out_ts.append(np.round(t[alive], 3))
            out_latency.append(np.round(latency, 1))
            out_err.append(err)
            go_on = (err > 0) & (retry_all[alive] | retryable[err]) & ~final
            self.paid += int(np.count_nonzero(err == 0))
            alive = alive[go_on]
            t[alive] += backoff[alive] / 1000.0
            attempt += 1
        rows = np.concatenate(out_rows) if out_rows else np.empty(0, np.int64)
        ts = np.concatenate(out_ts) if out_ts else np.empty(0)
        order = np.argsort(ts, kind="stable")
        rows = rows[order]
        err = np.concatenate(out_err)[order] if out_err else np.empty(0, np.int64)
        combo = self._combo_ids_of(cols, rows, err)
        return EventBatch(
            ts=ts[order],
            latency_ms=(np.concatenate(out_latency) if out_latency else np.empty(0))[order],
            attempt=(np.concatenate(out_attempt) if out_attempt else np.empty(0, np.int64))[order],
            combo=combo,
            combos=self.combos,
            details=SimDetails(f"sim{self.seed}-", payment_no[rows], amount[rows], palm_no[rows]),
            wide={f: (cols[f][rows], self.names[f].names) for f in WIDE_FIELDS},
            low_amount=low_amount_mask(amount[rows]),  # simulated amounts are ZAR
        )

    def _outcome(self, idx: np.ndarray, rel: np.ndarray, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(error code per attempt, 0 = success; latency ms) for payments `idx`."""
        rng, net, names = self.rng, self.net, self.names
        k = idx.size
        method, route = cols["method"][idx], cols["route"][idx]
        route_names = names["route"].names
        method_names = names["method"].names
        # route_names[0] is None (absent), never a route of the network
        base = np.array([net.routes[r].latency_ms if r is not None and r in net.routes else UNKNOWN_ROUTE_LATENCY_MS
                         for r in route_names[1:]])
        base = np.concatenate(([UNKNOWN_ROUTE_LATENCY_MS], base))
        supports = np.zeros((len(method_names), len(route_names)), bool)
        for ri, r in enumerate(route_names):
            if r is not None and r in net.routes:
                for m in net.routes[r].methods:
                    if m in names["method"].index:
                        supports[names["method"].index[m], ri] = True
        latency = base[route] * rng.lognormal(0.0, LATENCY_SIGMA, k)
        err = np.zeros(k, np.int64)
        undecided = supports[method, route]
        rejected = ~undecided
        err[rejected] = names["error_code"].code("ROUTE_NOT_SUPPORTED")
        latency[rejected] = rng.uniform(*REJECT_LATENCY_MS, int(rejected.sum()))
        decline_rate = np.full(k, net.user_decline_rate)
        for fault in self.scenario.faults:
            hit = (undecided & (rel[idx] >= fault.start) & (rel[idx] < fault.end)
                   & self._matches(fault.target, cols, idx))
            if not hit.any():
                continue
            latency[hit] *= fault.latency_factor
            if fault.replaces_user_declines:
                decline_rate[hit] = 0.0
            fire = hit & (rng.random(k) < fault.rate)
            if fire.any() and fault.errors:
                self._assign(err, fire, fault.errors)
                timeouts = fire & np.isin(err, [names["error_code"].code(c) for c in TIMEOUT_CODES])
                latency[timeouts] = np.maximum(latency[timeouts], rng.uniform(*TIMEOUT_LATENCY_MS, int(timeouts.sum())))
                undecided &= ~fire
        decline = undecided & (rng.random(k) < decline_rate)
        palm = method == names["method"].code(PALM_METHOD)
        self._assign(err, decline & palm, PALM_DECLINES)
        self._assign(err, decline & ~palm, USER_DECLINES)
        undecided &= ~decline
        self._assign(err, undecided & (rng.random(k) < net.system_noise_rate), SYSTEM_NOISE)
        return err, latency

    def _assign(self, err: np.ndarray, mask: np.ndarray, dist: Mapping[str, float]) -> None:
        count = int(np.count_nonzero(mask))
        if count:
            found, pick = _draw(self.rng, dist, count)
            err[mask] = np.array([self.names["error_code"].code(c) for c in found])[pick]

    def _matches(self, target: Mapping[str, str], cols: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        hit = np.ones(idx.size, bool)
        for dim, value in target.items():
            if dim not in cols or value not in self.names[dim].index:
                return np.zeros(idx.size, bool)
            hit &= cols[dim][idx] == self.names[dim].index[value]
        return hit

    def _combo_ids_of(self, cols: dict[str, np.ndarray], rows: np.ndarray, err: np.ndarray) -> np.ndarray:
        """Combination ids over (method, route, bank, issuer, error); terminal, merchant and region
        travel as per-row codes (batch.wide), so many of them do not multiply the combinations."""
        if rows.size == 0:
            return np.empty(0, np.intp)
        uniq, inverse = self._factorize([cols[f][rows] for f in _CORE] + [err],
                                        [len(self.names[f]) for f in (*_CORE, "error_code")])
        lut = np.empty(len(uniq), np.intp)
        for i, codes in enumerate(uniq):
            found = self._combo_ids.get(codes)
            if found is None:
                found = self._combo_ids[codes] = len(self.combos)
                method, route, bank, issuer, error = (self.names[f].names[c]
                                                      for f, c in zip((*_CORE, "error_code"), codes, strict=True))
                self.combos.append((method, route, bank, issuer, None, None, None, error))
            lut[i] = found
        ids: np.ndarray = lut[inverse]
        return ids

    @staticmethod
    def _factorize(columns: list[np.ndarray], radices: list[int]) -> tuple[list[tuple[int, ...]], np.ndarray]:
        """Distinct rows of small-integer columns (as tuples) and each row's index among them."""
        space = math.prod(radices)
        if space >= 2**62:  # absurdly many names: fall back to a row-wise unique
            uniq, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
            return [tuple(r) for r in uniq.tolist()], inverse.reshape(-1)
        key = np.zeros(columns[0].shape[0], np.int64)
        for column, radix in zip(columns, radices, strict=True):
            key = key * radix + column
        if space <= max(1 << 22, 4 * key.shape[0]):  # dense: no sort
            seen = np.bincount(key, minlength=space)
            keys = np.flatnonzero(seen)
            rank = np.zeros(space, np.int64)
            rank[keys] = np.arange(keys.shape[0])
            inverse = rank[key]
        else:
            keys, inverse = np.unique(key, return_inverse=True)
        out = []
        for k in keys.tolist():
            codes = []
            for radix in reversed(radices):
                k, c = divmod(k, radix)
                codes.append(c)
            out.append(tuple(reversed(codes)))
        return out, inverse


def write_stream(sim: Simulator, end_ts: float, out: BinaryIO, step: float = 60.0) -> int:
    """Write the simulator's events up to `end_ts` as JSON Lines sorted by ts; returns the count."""
    n = 0
    t = sim.now
    while t < end_ts:
        t = min(t + step, end_ts)
        batch = sim.advance_sorted(t)
        out.write(batch.to_jsonl())
        n += len(batch)
    return n
