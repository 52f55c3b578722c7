"""Storage behind the window: a dictionary of category combinations and a columnar ring.

Every event is reduced at ingest to its time, its latency, one integer
`key = ((combo * 2) + retry) * LATENCY_BUCKETS + latency_bucket`, where `combo`
names its (method, route, bank, issuer, error code) combination in a
`ComboTable`, and a code for each of terminal_id, merchant_id and region (kept
apart: they can have thousands of values, and combined they would make as many
combinations as events). A window is then two `np.bincount`s over `key`; every
segment's figures come from those counts without touching events again, except
the terminal, merchant and region segments, counted over their own rows
(see window.aggregate). 36 bytes per event: a 60 s window at 100,000
payments/min is a few MB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .batch import COMBO_FIELDS, WIDE_FIELDS, Combo
from .events import LATENCY_BUCKETS, Vocabulary, latency_bucket

CORE_FIELDS: tuple[str, ...] = ("method", "route", "bank", "issuer", "error_code")
_CORE_POSITIONS = tuple(COMBO_FIELDS.index(f) for f in CORE_FIELDS)
_WIDE_POSITIONS = tuple(COMBO_FIELDS.index(f) for f in WIDE_FIELDS)

# Rebuild the dictionaries from live rows once they hold this many combinations
# and four times more than the window still uses: names that churn (terminals,
# merchants) must not grow memory without bound in a process that runs for months.
COMPACT_MIN_COMBOS = 50_000
COMPACT_FACTOR = 4


class ComboTable:
    """Distinct (method, route, bank, issuer, error_code) seen, and the vocabulary of every field.

    Each field is coded through its own growing Vocabulary (code 0: absent), so a
    new bank, route, terminal or error code is just a new code: nothing assumes a
    fixed list.
    """

    def __init__(self) -> None:
        self.vocab: dict[str, Vocabulary] = {name: Vocabulary() for name in COMBO_FIELDS}
        self.ids: dict[Combo, int] = {}
        self._codes: list[list[int]] = [[] for _ in CORE_FIELDS]
        self._arrays: dict[str, np.ndarray] = {}
        self._arrays_for = -1

    def __len__(self) -> int:
        return len(self.ids)

    def id_of(self, core: Combo) -> int:
        """Id of a (method, route, bank, issuer, error_code) combination."""
        found = self.ids.get(core)
        if found is None:
            found = len(self.ids)
            self.ids[core] = found
            for column, name, value in zip(self._codes, CORE_FIELDS, core, strict=True):
                column.append(self.vocab[name].code(value))
        return found

    def lookup(self, combos: Sequence[Combo], used: np.ndarray,
               with_wide: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Map a batch's combo ids (only those in `used`) to combination ids in this table and,
        when the batch keeps terminal/merchant/region in its combinations, to their codes."""
        lut = np.zeros(len(combos), np.int64)
        wide = {name: np.zeros(len(combos), np.int64) for name in WIDE_FIELDS} if with_wide else {}
        vocabs = ([(wide[name], self.vocab[name], pos) for name, pos in zip(WIDE_FIELDS, _WIDE_POSITIONS, strict=True)]
                  if with_wide else [])
        for local in used.tolist():
            combo = combos[local]
            lut[local] = self.id_of(tuple(combo[i] for i in _CORE_POSITIONS))
            for column, vocab, pos in vocabs:
                column[local] = vocab.code(combo[pos])
        return lut, wide

    def wide_lookup(self, name: str, names: Sequence[str | None]) -> np.ndarray:
        """Codes in this table's vocabulary of `name` for a list of values (None: absent)."""
        vocab = self.vocab[name]
        return np.fromiter((vocab.code(v) for v in names), np.int64, len(names))

    def codes(self, name: str) -> np.ndarray:
        """Vocabulary code of core field `name` for every combination (index: combo id)."""
        if self._arrays_for != len(self.ids):
            self._arrays = {n: np.asarray(col, np.int64) for n, col in zip(CORE_FIELDS, self._codes, strict=True)}
            self._arrays["failed"] = self._arrays["error_code"] > 0
            self._arrays_for = len(self.ids)
        return self._arrays[name]

    def failed(self) -> np.ndarray:
        return self.codes("failed")

    def names(self, name: str) -> list[str]:
        return self.vocab[name].names

    def rebuilt(self, live: np.ndarray,
                live_wide: dict[str, np.ndarray]) -> tuple[ComboTable, np.ndarray, dict[str, np.ndarray]]:
        """A fresh table with only the live combinations and wide values, and old -> new code maps."""
        fresh = ComboTable()
        by_id = list(self.ids)
        remap = np.full(len(self.ids), -1, np.int64)
        for old in live.tolist():
            remap[old] = fresh.id_of(by_id[old])
        wide_remap = {}
        for name, codes in live_wide.items():
            m = np.zeros(len(self.vocab[name]), np.int64)
            old_names = self.vocab[name].names
            for old in codes.tolist():
                m[old] = fresh.vocab[name].code(old_names[old] or None)
            wide_remap[name] = m
        return fresh, remap, wide_remap


def encode_keys(combo_ids: np.ndarray, attempt: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    cell = combo_ids.astype(np.int64) * 2 + (attempt > 1)
    keys: np.ndarray = cell * LATENCY_BUCKETS + latency_bucket(latency_ms)
    return keys


class EventRing:
    """Columns of the events still inside some future window, in time order.

    Rows [head, size) are live. Appends go to the end; eviction moves `head`; the
    buffer is compacted or doubled when full. Arrivals out of time order are
    appended and the live rows re-sorted once, before the next read.
    """

    COLUMNS = ("ts", "latency_ms", "key", "low", *WIDE_FIELDS)

    def __init__(self, capacity: int = 4096) -> None:
        self.ts = np.empty(capacity, np.float64)
        self.latency_ms = np.empty(capacity, np.float64)
        self.key = np.empty(capacity, np.int64)
        self.low = np.empty(capacity, np.bool_)  # a low amount (amounts.py): card testers' charges
        self.wide = {name: np.empty(capacity, np.int32) for name in WIDE_FIELDS}
        self.head = 0
        self.size = 0
        self.sorted = True

    def __len__(self) -> int:
        return self.size - self.head

    def _column(self, name: str) -> np.ndarray:
        return self.wide[name] if name in self.wide else getattr(self, name)

    def _set_column(self, name: str, value: np.ndarray) -> None:
        if name in self.wide:
            self.wide[name] = value
        else:
            setattr(self, name, value)

    @property
    def nbytes(self) -> int:
        return sum(self._column(name).nbytes for name in self.COLUMNS)

    def last_ts(self) -> float:
        return float(self.ts[self.size - 1]) if self.size > self.head else float("-inf")

    def append(self, ts: np.ndarray, latency_ms: np.ndarray, key: np.ndarray, wide: dict[str, np.ndarray],
               low: np.ndarray | None = None) -> None:
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
        self.low[s:e] = False if low is None else low
        for name, column in self.wide.items():
            column[s:e] = wide[name]
        self.size = e

    def _reserve(self, n: int) -> None:
        cap = self.ts.shape[0]
        live = self.size - self.head
        if self.size + n <= cap:
            return
        new_cap = cap if live + n <= cap // 2 else max(2 * cap, live + n)
        for name in self.COLUMNS:
            old = self._column(name)
            new = old if new_cap == cap else np.empty(new_cap, old.dtype)
            new[:live] = old[self.head : self.size]
            self._set_column(name, new)
        self.head, self.size = 0, live

    def ensure_sorted(self) -> None:
        if self.sorted:
            return
        h, s = self.head, self.size
        order = np.argsort(self.ts[h:s], kind="stable")  # stable: equal times keep arrival order
        for name in self.COLUMNS:
            column = self._column(name)
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

    def remap(self, remap: np.ndarray, wide_remap: dict[str, np.ndarray]) -> None:
        """Rewrite codes after the combo table was rebuilt (old code -> new)."""
        h, s = self.head, self.size
        cell, bucket = np.divmod(self.key[h:s], LATENCY_BUCKETS)
        combo, retry = np.divmod(cell, 2)
        self.key[h:s] = (remap[combo] * 2 + retry) * LATENCY_BUCKETS + bucket
        for name, m in wide_remap.items():
            self.wide[name][h:s] = m[self.wide[name][h:s]]

    def live_combos(self) -> np.ndarray:
        return np.unique(self.key[self.head : self.size] // (2 * LATENCY_BUCKETS))

    def live_wide(self) -> dict[str, np.ndarray]:
        return {name: np.unique(column[self.head : self.size]) for name, column in self.wide.items()}
