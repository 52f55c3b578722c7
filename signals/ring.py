"""Storage behind the window: a dictionary of category combinations and a columnar ring.

Every event is reduced at ingest to three numbers: its time, its latency and one
integer `key = ((combo * 2) + retry) * LATENCY_BUCKETS + latency_bucket`, where
`combo` names its (dimensions..., error code) combination in a `ComboTable`.
A window is then two `np.bincount`s over `key`; every segment's figures come
from those counts without touching events again (see window.aggregate).
24 bytes per event: a 60 s window at 100,000 payments/min is a few MB.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .batch import COMBO_FIELDS, Combo
from .events import LATENCY_BUCKETS, Vocabulary, latency_bucket

# Rebuild the dictionaries from live rows once they hold this many combinations
# and four times more than the window still uses: names that churn (terminals,
# merchants) must not grow memory without bound in a process that runs for months.
COMPACT_MIN_COMBOS = 50_000
COMPACT_FACTOR = 4


class ComboTable:
    """Distinct (method, route, bank, issuer, terminal_id, merchant_id, region, error_code) seen.

    Each field is coded through its own growing Vocabulary (code 0: absent), so a
    new bank, route or error code is just a new code: nothing assumes a fixed list.
    """

    def __init__(self) -> None:
        self.vocab: dict[str, Vocabulary] = {name: Vocabulary() for name in COMBO_FIELDS}
        self.ids: dict[Combo, int] = {}
        self._codes: list[list[int]] = [[] for _ in COMBO_FIELDS]
        self._arrays: dict[str, np.ndarray] = {}
        self._arrays_for = -1

    def __len__(self) -> int:
        return len(self.ids)

    def id_of(self, combo: Combo) -> int:
        found = self.ids.get(combo)
        if found is None:
            found = len(self.ids)
            self.ids[combo] = found
            for column, vocab, name in zip(self._codes, self.vocab.values(), combo):
                column.append(vocab.code(name))
        return found

    def lookup(self, combos: Sequence[Combo], used: np.ndarray) -> np.ndarray:
        """Map a batch's combo ids (only those in `used`) to ids in this table."""
        lut = np.zeros(len(combos), np.int64)
        for local in used.tolist():
            lut[local] = self.id_of(combos[local])
        return lut

    def codes(self, name: str) -> np.ndarray:
        """Vocabulary code of field `name` for every combination (index: combo id)."""
        if self._arrays_for != len(self.ids):
            self._arrays = {n: np.asarray(col, np.int64) for n, col in zip(COMBO_FIELDS, self._codes)}
            self._arrays["failed"] = self._arrays["error_code"] > 0
            self._arrays_for = len(self.ids)
        return self._arrays[name]

    def failed(self) -> np.ndarray:
        return self.codes("failed")

    def names(self, name: str) -> list[str]:
        return self.vocab[name].names

    def rebuilt(self, live: np.ndarray) -> tuple["ComboTable", np.ndarray]:
        """A fresh table holding only the `live` combo ids, and old id -> new id."""
        fresh = ComboTable()
        by_id = list(self.ids)
        remap = np.full(len(self.ids), -1, np.int64)
        for old in live.tolist():
            remap[old] = fresh.id_of(by_id[old])
        return fresh, remap


def encode_keys(combo_ids: np.ndarray, attempt: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    cell = combo_ids.astype(np.int64) * 2 + (attempt > 1)
    return cell * LATENCY_BUCKETS + latency_bucket(latency_ms)


class EventRing:
    """Columns of the events still inside some future window, in time order.

    Rows [head, size) are live. Appends go to the end; eviction moves `head`; the
    buffer is compacted or doubled when full. Arrivals out of time order are
    appended and the live rows re-sorted once, before the next read.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.ts = np.empty(capacity, np.float64)
        self.latency_ms = np.empty(capacity, np.float64)
        self.key = np.empty(capacity, np.int64)
        self.head = 0
        self.size = 0
        self.sorted = True

    def __len__(self) -> int:
        return self.size - self.head

    @property
    def nbytes(self) -> int:
        return self.ts.nbytes + self.latency_ms.nbytes + self.key.nbytes

    def last_ts(self) -> float:
        return float(self.ts[self.size - 1]) if self.size > self.head else float("-inf")

    def append(self, ts: np.ndarray, latency_ms: np.ndarray, key: np.ndarray) -> None:
        n = int(ts.shape[0])
        if n == 0:
            return
        if self.sorted and (ts[0] < self.last_ts() or (n > 1 and bool(np.any(ts[1:] < ts[:-1])))):
            self.sorted = False
        self._reserve(n)
        s, e = self.size, self.size + n
        self.ts[s:e] = ts
        self.latency_ms[s:e] = latency_ms
        self.key[s:e] = key
        self.size = e

    def _reserve(self, n: int) -> None:
        cap = self.ts.shape[0]
        live = self.size - self.head
        if self.size + n <= cap:
            return
        new_cap = cap if live + n <= cap // 2 else max(2 * cap, live + n)
        for name in ("ts", "latency_ms", "key"):
            old = getattr(self, name)
            new = old if new_cap == cap else np.empty(new_cap, old.dtype)
            new[:live] = old[self.head : self.size]
            setattr(self, name, new)
        self.head, self.size = 0, live

    def ensure_sorted(self) -> None:
        if self.sorted:
            return
        h, s = self.head, self.size
        order = np.argsort(self.ts[h:s], kind="stable")  # stable: equal times keep arrival order
        for name in ("ts", "latency_ms", "key"):
            column = getattr(self, name)
            column[h:s] = column[h:s][order]
        self.sorted = True

    def evict_before(self, horizon: float) -> int:
        """Drop rows with ts < horizon; returns how many."""
        self.ensure_sorted()
        cut = int(np.searchsorted(self.ts[self.head : self.size], horizon, side="left"))
        self.head += cut
        return cut

    def bounds(self, start: float, end: float) -> tuple[int, int]:
        """Row range [lo, hi) of events with start <= ts < end."""
        self.ensure_sorted()
        live = self.ts[self.head : self.size]
        lo, hi = np.searchsorted(live, (start, end), side="left")
        return self.head + int(lo), self.head + int(hi)

    def remap(self, remap: np.ndarray) -> None:
        """Rewrite keys after the combo table was rebuilt (old combo id -> new)."""
        k = self.key[self.head : self.size]
        cell, bucket = np.divmod(k, LATENCY_BUCKETS)
        combo, retry = np.divmod(cell, 2)
        self.key[self.head : self.size] = (remap[combo] * 2 + retry) * LATENCY_BUCKETS + bucket

    def live_combos(self) -> np.ndarray:
        return np.unique(self.key[self.head : self.size] // (2 * LATENCY_BUCKETS))
