"""The sliding window and its snapshot: columnar aggregation over every segment.

Hot path (see ring.py for the storage): two `np.bincount`s over the window's
event keys give, per (combination, retry, latency bucket), a count and a latency
sum. Every segmentation — each dimension and the pairs bank x route,
method x route, issuer x route — is then a handful of bincounts over those few
thousand cells, not over events. No per-event Python anywhere.

Figures per segment (SegmentStats): attempts, successes, failures by error code,
failure rate, latency mean and p50/p95/p99 (from log buckets, <= 4% relative
error), share of retries and attempts per payment, share of traffic, and the
baseline (failure rate, p95, volume, attempts per payment) with the significance
of today's deviation (baseline.py). The snapshot types live in snapshot.py; this module
re-exports them, so `payops.signals.window` stays the one name importers use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .baseline import (
    LATENCY_OUTLIER_FACTOR,
    RETRY_OUTLIER_FACTOR,
    BaselineTracker,
    binomial_z,
    record_z,
    volume_collapsed,
    wilson_lower_bound,
)
from .batch import WIDE_FIELDS, EventBatch, as_batch
from .events import BUCKET_MID_MS, DIMENSIONS, LATENCY_BUCKETS, BadLine, PaymentEvent
from .ring import COMPACT_FACTOR, COMPACT_MIN_COMBOS, ComboTable, EventRing, encode_keys
from .snapshot import TOP_ERRORS as TOP_ERRORS
from .snapshot import DataQuality as DataQuality
from .snapshot import SegmentStats as SegmentStats
from .snapshot import WindowSnapshot as WindowSnapshot

# Pairs worth blaming together: an issuer failing on one route only, a method
# sent to a route that rejects it, a bank failing one method only (its 3-D Secure
# server fails its cards; its instant payments pass).
SEGMENT_PAIRS: tuple[tuple[str, str], ...] = (("bank", "route"), ("method", "route"), ("issuer", "route"),
                                              ("bank", "method"))
QUANTILES = (0.5, 0.95, 0.99)
# Samples of bad lines kept per snapshot (the count is always exact).
MAX_BAD_SAMPLES = 20
# Dense counting over (combination, retry, bucket) cells while the cell space is at
# most this many times the events (or small anyway); beyond it (very many distinct
# merchants or terminals) a sort-based count is cheaper than zeroing empty cells.
DENSE_CELLS_PER_EVENT = 4
# The window's tail, as a share of its length (20 s of 60): long enough to hold a few dozen attempts
# at modest volume, short enough that a burst over within the window leaves it clean.
TAIL_SHARE = 1.0 / 3.0
DENSE_CELLS_MIN = 1 << 18


class EventWindow:
    """Recent events as columns; `snapshot(end)` aggregates [end - window_seconds, end)."""

    def __init__(self, window_seconds: float = 60.0,
                 baselines: BaselineTracker | None = None, significance_z: float = 3.0) -> None:
        self.window_seconds = window_seconds
        self.table = ComboTable()
        self.ring = EventRing()
        self.baselines = baselines if baselines is not None else BaselineTracker()
        self.significance_z = significance_z
        self._horizon = float("-inf")  # rows older than this were evicted: no later window can see them
        self._reported_end = float("-inf")  # end of the latest evaluated window
        self._max_ts = float("-inf")
        self._late_kept: list[np.ndarray] = []  # times of late arrivals kept in the ring since the last snapshot
        self._last_learned_end: float | None = None
        self._reset_quality()

    def _reset_quality(self) -> None:
        self.bad_lines = 0
        self.bad_samples: list[BadLine] = []
        self.late_events = 0
        self.late_dropped = 0
        self.out_of_order = 0
        self.ahead_of_clock = 0

    def __len__(self) -> int:
        return len(self.ring)

    def add(self, events: EventBatch | Iterable[PaymentEvent]) -> None:
        batch = as_batch(events)
        n = len(batch)
        if n == 0:
            return
        ts = batch.ts
        # Late and out-of-order arrivals are counted, never silently lost.
        running_max = np.maximum.accumulate(ts)
        previous_max = np.maximum(np.concatenate(([self._max_ts], running_max[:-1])), self._max_ts)
        self.out_of_order += int(np.count_nonzero(ts < previous_max))
        self._max_ts = max(self._max_ts, float(running_max[-1]))
        late = ts < self._reported_end
        self.late_events += int(np.count_nonzero(late))
        fresh = ts >= self._horizon
        dropped = n - int(np.count_nonzero(fresh))
        if dropped:
            self.late_dropped += dropped
            batch = batch.take(np.flatnonzero(fresh))
            late = late[fresh]
        if late.any():  # still in the ring: the next snapshot tells whether a window of its own holds them
            self._late_kept.append(batch.ts[late])
        used = np.flatnonzero(np.bincount(batch.combo, minlength=len(batch.combos)))
        lut, wide_lut = self.table.lookup(batch.combos, used, with_wide=batch.wide is None)
        combo = lut[batch.combo]
        if batch.wide is not None:
            wide = {f: self.table.wide_lookup(f, names)[codes] for f, (codes, names) in batch.wide.items()}
        else:
            wide = {f: column[batch.combo] for f, column in wide_lut.items()}
        self.ring.append(batch.ts, batch.latency_ms,
                         encode_keys(combo, batch.attempt, batch.latency_ms), wide, batch.low_amount)

    def note_bad_lines(self, count: int, samples: Iterable[BadLine] = ()) -> None:
        self.bad_lines += count
        for sample in samples:
            if len(self.bad_samples) < MAX_BAD_SAMPLES:
                self.bad_samples.append(sample)

    def note_ahead_of_clock(self, count: int) -> None:
        """Events the source discarded as implausibly far ahead of the clock (shown with this snapshot)."""
        self.ahead_of_clock += count

    def holds_from(self, ts: float) -> bool:
        """Are events at or after `ts` waiting for a window (read ahead within the allowed lateness)?"""
        ring = self.ring
        return len(ring) > 0 and float(ring.ts[ring.head : ring.size].max()) >= ts

    def evict_before(self, horizon: float) -> None:
        self._horizon = max(self._horizon, horizon)
        self.ring.evict_before(self._horizon)
        table = self.table
        if len(table) >= COMPACT_MIN_COMBOS or any(len(table.vocab[f]) >= COMPACT_MIN_COMBOS for f in WIDE_FIELDS):
            live, live_wide = self.ring.live_combos(), self.ring.live_wide()
            sizes = [(len(table), len(live))] + [(len(table.vocab[f]), len(live_wide[f])) for f in WIDE_FIELDS]
            if any(have >= COMPACT_MIN_COMBOS and have > COMPACT_FACTOR * max(used, 1) for have, used in sizes):
                self.table, remap, wide_remap = table.rebuilt(live, live_wide)
                self.ring.remap(remap, wide_remap)

    def snapshot(self, window_end: float, learn: bool = True) -> WindowSnapshot:
        start = window_end - self.window_seconds
        held = len(self.ring)
        self.evict_before(start)
        if self._reported_end == float("-inf"):
            # Before the first window: no window will ever hold them (a jittered first minute,
            # an outlier on line 1). Counted as late, like any event too old for its window.
            before = held - len(self.ring)
            self.late_events += before
            self.late_dropped += before
        if self._late_kept:
            # Late arrivals older than this window (with ticks as long as the window, all of
            # them) were evicted with it: counted in no window.
            self.late_dropped += int(np.count_nonzero(np.concatenate(self._late_kept) < start))
            self._late_kept = []
        snap = aggregate(self.ring, self.table, start, window_end, self.baselines, self.significance_z)
        quality = DataQuality(self.bad_lines, tuple(self.bad_samples), self.late_events, self.late_dropped,
                              self.out_of_order,
                              self.ahead_of_clock)
        snap = WindowSnapshot(snap.window_start, snap.window_end, snap.total, snap.segments, quality, snap.vocab_sizes)
        self._reset_quality()
        self._reported_end = max(self._reported_end, window_end)
        if learn:
            # A tick shorter than the window re-reads overlapping data: weigh it by the new time it covers.
            weight = (1.0 if self._last_learned_end is None
                      else (window_end - self._last_learned_end) / self.window_seconds)
            if weight > 0:
                learn_baselines(snap, self.baselines, self.significance_z, min(weight, 1.0))
                self._last_learned_end = window_end
        return snap


def anomalous(seg: SegmentStats, significance_z: float, z: float | None = None) -> bool:
    """Would learning this window teach the baseline an incident? Failures, latency or retries out of line.
    `z`: the failures' score when the reference is not the one the segment was judged on."""
    if (seg.z if z is None else z) >= significance_z:
        return True
    if seg.baseline_latency_p95_ms and seg.latency_p95_ms > LATENCY_OUTLIER_FACTOR * seg.baseline_latency_p95_ms:
        return True
    return retries_out_of_line(seg)


def retries_out_of_line(seg: SegmentStats) -> bool:
    """More attempts per payment than the segment's usual by RETRY_OUTLIER_FACTOR: retries inflate its volume."""
    return bool(
        seg.baseline_attempts_per_payment
        and seg.attempts_per_payment > RETRY_OUTLIER_FACTOR * seg.baseline_attempts_per_payment
    )


def learn_baselines(snap: WindowSnapshot, baselines: BaselineTracker,
                    significance_z: float, weight: float = 1.0) -> None:
    """Feed normal-looking segments into their baselines; anomalous windows are left out.

    A segment's reference is its own baseline once trusted, its peers (the rest of
    the traffic) before that, so the same `anomalous` test guards warm-up too: an
    incident present when the agent starts is not learned as normal. A segment that
    stays different from its peers for BASELINE_PATIENCE windows from the start is
    taken as structurally different and learned (see baseline.py). A segment whose traffic
    collapsed while its peers kept theirs is not learned either (`baseline.volume_collapsed`).
    """
    total = snap.total
    for seg in (total, *snap.segments):
        if seg.attempts == 0:
            continue
        base = baselines.get(seg.key)
        if (seg.dims and base is not None and base.volume_trusted
                and volume_collapsed(seg.attempts, base.volume, total.attempts, total.baseline_volume or 0.0)):
            continue
        z = None
        if not seg.dims and base is not None and not base.trusted:
            # All traffic has no peers: until trusted, its reference is its own first minutes,
            # a sample as thin as the traffic; judged as if exact, one quiet first minute made
            # every later normal minute "anomalous" and the reference never moved again.
            z = record_z(seg.failures, seg.attempts, base.failure_rate, base.volume * base.windows)
        if anomalous(seg, significance_z, z) and not baselines.out_of_patience(seg.key, weight):
            if seg.dims and (base is None or not base.trusted) and not retries_out_of_line(seg):
                # Out of line with its peers before its own reference is trusted says nothing about how
                # many customers came: the volume is learned (a busy acquirer that always declines more
                # than its peers kept no usual volume in its first half hour, and its black hole went
                # unseen). Retries do inflate it; and a trusted segment's anomaly is an incident, whose
                # traffic (moved away by a reroute, say) is not the usual volume.
                baselines.observe_volume(seg.key, float(seg.attempts), weight)
            continue
        baselines.observe(seg.key, seg.failure_rate, seg.latency_p95_ms, float(seg.attempts),
                          seg.attempts_per_payment, weight)


# -- aggregation -------------------------------------------------------------------


def _quantiles(hist: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-row nearest-rank quantiles (rows: segments, cols: latency buckets) -> (rows, len(QUANTILES))."""
    cum = np.cumsum(hist, axis=1)
    out = np.empty((hist.shape[0], len(QUANTILES)))
    for j, q in enumerate(QUANTILES):
        rank = np.maximum(np.ceil(q * counts), 1)[:, None]
        out[:, j] = BUCKET_MID_MS[np.argmax(cum >= rank, axis=1)]
    return out


@dataclass(frozen=True)
class _Cells:
    """The window reduced to occupied (combination, retry, latency bucket) cells."""

    n: int
    combo: np.ndarray  # per cell
    retry: np.ndarray
    bucket: np.ndarray
    count: np.ndarray  # float64 per cell
    latency_sum: np.ndarray


def _cells(key: np.ndarray, latency: np.ndarray, n_combos: int) -> _Cells:
    n = int(key.shape[0])
    bins = n_combos * 2 * LATENCY_BUCKETS
    if bins <= max(DENSE_CELLS_MIN, DENSE_CELLS_PER_EVENT * n):
        dense = np.bincount(key, minlength=bins)
        occupied = np.flatnonzero(dense)
        count = dense[occupied].astype(np.float64)
        latency_sum = np.bincount(key, weights=latency, minlength=bins)[occupied]
    else:
        occupied, inverse = np.unique(key, return_inverse=True)
        count = np.bincount(inverse).astype(np.float64)
        latency_sum = np.bincount(inverse, weights=latency)
    cell, bucket = np.divmod(occupied, LATENCY_BUCKETS)
    return _Cells(n, cell >> 1, (cell & 1).astype(bool), bucket, count, latency_sum)


def _segmentations(table: ComboTable) -> list[tuple[tuple[str, ...], np.ndarray | None, list[list[str]]]]:
    """(dimension names, segment code per combination or None (counted over rows), vocabularies)."""
    present = [d for d in DIMENSIONS if len(table.vocab[d]) > 1]
    out: list[tuple[tuple[str, ...], np.ndarray | None, list[list[str]]]] = []
    for d in present:
        out.append(((d,), None if d in WIDE_FIELDS else table.codes(d), [table.names(d)]))
    for a, b in SEGMENT_PAIRS:
        if a in present and b in present:
            nb = len(table.vocab[b])
            out.append(((a, b), table.codes(a) * nb + table.codes(b), [table.names(a), table.names(b)]))
    return out


def aggregate(ring: EventRing, table: ComboTable, start: float, end: float, baselines: BaselineTracker,
              significance_z: float = 3.0) -> WindowSnapshot:
    lo, hi = ring.bounds(start, end)
    total_base = baselines.get("*")
    vocab_sizes = {d: len(v) - 1 for d, v in table.vocab.items()}
    if hi == lo:
        rate = total_base.failure_rate if total_base else 0.0
        empty = SegmentStats((), 0, 0, {}, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, rate,
                             total_base.failure_rate if total_base else None,
                             total_base.latency_p95 if total_base else None,
                             total_base.volume if total_base else None,
                             total_base.attempts_per_payment if total_base else None, 0.0, 0.0,
                             0.0 if total_base and total_base.trusted else None, 0.0)
        return WindowSnapshot(start, end, empty, (), vocab_sizes=vocab_sizes)

    key, latency = ring.key[lo:hi], ring.latency_ms[lo:hi]
    cells = _cells(key, latency, len(table))
    n_combos = len(table)
    # Per combination: attempts, retries, latency sum. Failures and the error code are
    # properties of the combination itself.
    count_c = np.bincount(cells.combo, weights=cells.count, minlength=n_combos)
    retry_c = np.bincount(cells.combo[cells.retry], weights=cells.count[cells.retry], minlength=n_combos)
    latency_c = np.bincount(cells.combo, weights=cells.latency_sum, minlength=n_combos)
    active = np.flatnonzero(count_c)
    failed_all, err_all = table.failed(), table.codes("error_code")
    failed_c, err_c = failed_all[active], err_all[active]
    err_names = table.names("error_code")
    n_err = len(err_names)
    total_fail = float(count_c[active][failed_c].sum())
    # Low-amount attempts are rare in normal traffic: counted over their own rows only.
    low_rows = lo + np.flatnonzero(ring.low[lo:hi])
    low_combo = ring.key[low_rows] // (2 * LATENCY_BUCKETS)
    low_c = np.bincount(low_combo, minlength=n_combos).astype(np.float64)
    low_failed = failed_all[low_combo]
    # The tail: rows are sorted by ts, so it is a slice; counted per combination like the low amounts.
    tail_lo = lo + int(np.searchsorted(ring.ts[lo:hi], end - TAIL_SHARE * (end - start), side="left"))
    tail_combo = ring.key[tail_lo:hi] // (2 * LATENCY_BUCKETS)
    tail_c = np.bincount(tail_combo, minlength=n_combos).astype(np.float64)
    tail_failed = failed_all[tail_combo]
    # The lead, the window's first TAIL_SHARE: a fault absent from it began within the window.
    lead_hi = lo + int(np.searchsorted(ring.ts[lo:hi], start + TAIL_SHARE * (end - start), side="left"))
    lead_combo = ring.key[lo:lead_hi] // (2 * LATENCY_BUCKETS)
    lead_c = np.bincount(lead_combo, minlength=n_combos).astype(np.float64)
    lead_failed = failed_all[lead_combo]
    builder = _Builder(baselines, significance_z, cells.n, total_fail, total_base, err_names)

    def by_combination(codes: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Stats per present segment code (sorted) of a segmentation of combinations."""
        present, local = np.unique(codes[active], return_inverse=True)
        k = len(present)
        weights = count_c[active]
        local_of_combo = np.zeros(n_combos, np.int64)
        local_of_combo[active] = local
        hist = np.bincount(local_of_combo[cells.combo] * LATENCY_BUCKETS + cells.bucket, weights=cells.count,
                           minlength=k * LATENCY_BUCKETS).reshape(k, LATENCY_BUCKETS)
        counts = np.bincount(local, weights=weights, minlength=k)
        return present, {
            "counts": counts,
            "fails": np.bincount(local, weights=weights * failed_c, minlength=k),
            "retries": np.bincount(local, weights=retry_c[active], minlength=k),
            "first_fails": np.bincount(local, weights=(weights - retry_c[active]) * failed_c, minlength=k),
            "lat_sum": np.bincount(local, weights=latency_c[active], minlength=k),
            "errs": np.bincount(local * n_err + err_c, weights=weights, minlength=k * n_err).reshape(k, n_err),
            "q": _quantiles(hist, counts),
            "low": np.bincount(local, weights=low_c[active], minlength=k),
            "low_fail": np.bincount(local, weights=low_c[active] * failed_c, minlength=k),
            "tail": np.bincount(local, weights=tail_c[active], minlength=k),
            "tail_fail": np.bincount(local, weights=tail_c[active] * failed_c, minlength=k),
            "lead": np.bincount(local, weights=lead_c[active], minlength=k),
            "lead_fail": np.bincount(local, weights=lead_c[active] * failed_c, minlength=k),
        }

    shared_parts: dict[str, np.ndarray] = {}

    def parts_of(k: np.ndarray) -> dict[str, np.ndarray]:
        cell = k // LATENCY_BUCKETS
        return {"bucket": k - cell * LATENCY_BUCKETS, "err": err_all[cell >> 1], "retry": cell & 1}

    def by_rows(codes: np.ndarray, vocab_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Stats per present code of a many-valued dimension, counted over the window's rows.

        Code 0 (events without this dimension) is counted too and left out by the caller.
        A dimension most events lack (palm terminals) is counted over its own rows only.
        """
        seen = np.bincount(codes, minlength=vocab_size)
        if seen[0] * 2 > len(codes):
            rows = np.flatnonzero(codes)
            codes, parts, lat = codes[rows], parts_of(key[rows]), latency[rows]
            seen[0] = 0
        else:
            if not shared_parts:  # computed once for every dense dimension
                shared_parts.update(parts_of(key))
            parts, lat = shared_parts, latency
        present = np.flatnonzero(seen)
        rank = np.zeros(vocab_size, np.int64)
        rank[present] = np.arange(len(present))
        local = rank[codes]
        k = len(present)
        hist = np.bincount(local * LATENCY_BUCKETS + parts["bucket"],
                           minlength=k * LATENCY_BUCKETS).reshape(k, LATENCY_BUCKETS)
        errs = np.bincount(local * n_err + parts["err"], minlength=k * n_err).reshape(k, n_err)
        counts = seen[present].astype(np.float64)
        return present, {
            "counts": counts,
            "fails": errs[:, 1:].sum(axis=1).astype(np.float64),  # every failure has a code (UNKNOWN if none)
            "retries": np.bincount(local, weights=parts["retry"], minlength=k),
            "first_fails": np.bincount(local, weights=(parts["err"] > 0) & (parts["retry"] == 0), minlength=k),
            "lat_sum": np.bincount(local, weights=lat, minlength=k),
            "errs": errs,
            "q": _quantiles(hist, counts),
        }

    _, stats = by_combination(np.zeros(n_combos, np.int64))
    total = builder.build((), builder.lists(stats), 0)
    segments: list[SegmentStats] = []
    for names, codes, vocabs in _segmentations(table):
        if names[0] in WIDE_FIELDS:
            present, stats = by_rows(ring.wide[names[0]][lo:hi], len(vocabs[0]))
            low_codes = ring.wide[names[0]][low_rows]
            stats["low"] = np.bincount(low_codes, minlength=len(vocabs[0]))[present].astype(np.float64)
            stats["low_fail"] = np.bincount(low_codes, weights=low_failed, minlength=len(vocabs[0]))[present]
            tail_codes = ring.wide[names[0]][tail_lo:hi]
            stats["tail"] = np.bincount(tail_codes, minlength=len(vocabs[0]))[present].astype(np.float64)
            stats["tail_fail"] = np.bincount(tail_codes, weights=tail_failed, minlength=len(vocabs[0]))[present]
            lead_codes = ring.wide[names[0]][lo:lead_hi]
            stats["lead"] = np.bincount(lead_codes, minlength=len(vocabs[0]))[present].astype(np.float64)
            stats["lead_fail"] = np.bincount(lead_codes, weights=lead_failed, minlength=len(vocabs[0]))[present]
        else:
            assert codes is not None  # only the wide fields are counted over rows
            present, stats = by_combination(codes)
        lists = builder.lists(stats)
        values: list[tuple[str, ...]]
        if len(names) == 1:
            values = [(vocabs[0][c],) for c in present.tolist()]
        else:
            nb = len(vocabs[1])
            values = [(vocabs[0][c // nb], vocabs[1][c % nb]) for c in present.tolist()]
        for i, vals in enumerate(values):
            if "" in vals:
                continue  # rows where an optional dimension was absent are not a segment
            segments.append(builder.build(tuple(zip(names, vals, strict=True)), lists, i))
    return WindowSnapshot(start, end, total, tuple(segments), vocab_sizes=vocab_sizes)


def _segment_stats(**fields: object) -> SegmentStats:
    """A SegmentStats without the frozen dataclass __init__ (one object.__setattr__ per field):
    a snapshot of a large network builds thousands. All fields must be given."""
    stats = object.__new__(SegmentStats)
    stats.__dict__.update(fields)
    return stats


class _Builder:
    """SegmentStats from one segmentation's arrays, with baseline and significance."""

    def __init__(self, baselines: BaselineTracker, significance_z: float, n: int, total_fail: float,
                 total_base: object, err_names: list[str]) -> None:
        self.baselines = baselines
        self.z = significance_z
        self.n = n
        self.total_fail = total_fail
        self.total_base = total_base
        self.err_names = err_names

    def lists(self, s: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        """One segmentation's arrays as Python lists (one conversion, not one per field and segment),
        with each segment's error codes as a dict."""
        errs = s["errs"]
        rows, cols = np.nonzero(errs[:, 1:])  # column 0: no error code
        errors: list[dict[str, int]] = [{} for _ in range(errs.shape[0])]
        names = self.err_names
        for r, c, v in zip(rows.tolist(), (cols + 1).tolist(), errs[rows, cols + 1].tolist(), strict=True):
            errors[r][names[c]] = int(v)
        return {"counts": s["counts"].tolist(), "fails": s["fails"].tolist(), "retries": s["retries"].tolist(),
                "first_fails": s["first_fails"].tolist(), "low": s["low"].tolist(), "low_fail": s["low_fail"].tolist(),
                "tail": s["tail"].tolist(), "tail_fail": s["tail_fail"].tolist(),
                "lead": s["lead"].tolist(), "lead_fail": s["lead_fail"].tolist(),
                "lat_sum": s["lat_sum"].tolist(), "q": s["q"].tolist(), "errors": errors}

    def build(self, dims: tuple[tuple[str, str], ...], s: dict[str, list[Any]], i: int) -> SegmentStats:
        count = int(s["counts"][i])
        fails = float(s["fails"][i])
        retries = float(s["retries"][i])
        key = ",".join(f"{k}={v}" for k, v in sorted(dims)) or "*"
        base = self.baselines.get(key)
        volume_base = base
        if base is not None and base.windows <= 0:
            base = None  # only its volume is known (learn_baselines: failures out of line so far)
        peers = self.n - count
        total_base = self.total_base
        if base is not None and base.trusted:
            expected = base.failure_rate
        elif dims and peers > 0:
            expected = (self.total_fail - fails) / peers  # cold start: compare with the rest of traffic
        elif total_base is not None:
            expected = total_base.failure_rate  # type: ignore[attr-defined]
        else:
            expected = fails / count if count else 0.0  # very first window: it is its own reference
        first_attempts = count - retries
        errors = s["errors"][i]
        if len(errors) > TOP_ERRORS * 3:
            errors = dict(sorted(errors.items(), key=lambda kv: -kv[1])[: TOP_ERRORS * 3])
        q = s["q"][i]
        return _segment_stats(
            dims=dims,
            attempts=count,
            failures=int(fails),
            errors=errors,
            latency_mean_ms=float(s["lat_sum"][i]) / count,
            latency_p50_ms=q[0],
            latency_p95_ms=q[1],
            latency_p99_ms=q[2],
            retry_share=retries / count,
            attempts_per_payment=count / first_attempts if first_attempts > 0 else float(count),
            traffic_share=count / self.n if self.n else 0.0,
            expected_failure_rate=float(expected),
            baseline_failure_rate=base.failure_rate if base else None,
            baseline_latency_p95_ms=base.latency_p95 if base else None,
            baseline_volume=volume_base.volume if volume_base else None,
            baseline_attempts_per_payment=base.attempts_per_payment if base else None,
            excess_failures=fails - count * expected,
            z=binomial_z(fails, count, expected),
            volume_ratio=(count / volume_base.volume
                          if volume_base is not None and volume_base.volume_trusted and volume_base.volume > 0
                          else None),
            failure_rate_low=wilson_lower_bound(fails, count, self.z),
            first_attempt_failures=float(s["first_fails"][i]),
            low_amount_attempts=int(s["low"][i]),
            low_amount_failures=int(s["low_fail"][i]),
            tail_attempts=int(s["tail"][i]),
            tail_failures=int(s["tail_fail"][i]),
            lead_attempts=int(s["lead"][i]),
            lead_failures=int(s["lead_fail"][i]),
        )
