"""Tamper evidence for palm-pay's audit log and PII access log: batches sealed by signed checkpoints.

The access log gets a row on every payment, so nothing is added to the write path (no
chain column, no shared head row that every payment would queue on: payments on
different links never wait on one lock). Instead `seal_logs` chains the rows written since
the last checkpoint — HMAC-SHA256 under the audit key from the key provider, one chain per
log, in id order — and appends a signed checkpoint (count, last id, head) to the
checkpoint file outside the database (storage/chain.py). It runs when the service closes
(every CLI command, the end of `payops run`/`serve`) and from `payops audit seal` (cron).

`verify_logs` recomputes each chain from the first row and checks it passes through every
checkpoint: an edited, deleted or inserted sealed row, a truncation and a wipe are caught,
and the log is named. Rows written after the last checkpoint are reported as unsealed: a
forged row there would be sealed by the next checkpoint, so seal often (the exposure is
one sealing interval).

PostgreSQL assigns ids before commit, so a slow transaction can commit a lower id after a
higher one was sealed; sealing there leaves the last `PG_SEAL_GRACE_S` seconds for later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payops.storage.chain import GENESIS, Chainer, CheckpointFile, verify_checkpoints
from payops.storage.keys import AUDIT_HMAC, CHECKPOINT_SIGNING, KeyChain, KeySet, key_chain

_logger = logging.getLogger("payops.palmpay.sealing")

# Longer than any palm-pay write transaction takes (they hold a link row for milliseconds).
PG_SEAL_GRACE_S = 10.0
CHECKPOINT_FILE = "audit.checkpoints"
# A long-lived service seals every 5 minutes: the window in which a row forged straight into the
# database would be sealed as genuine; short enough to matter, cheap (~85k rows/s sealed).
SEAL_EVERY_S = 300.0

LOGS: dict[str, tuple[str, str]] = {
    "palmpay.audit": ("audit_log", "id, ts, palm_pay_id, actor, action, from_status, to_status, outcome, reason"),
    "palmpay.access": ("access_log", "id, ts, palm_pay_id, field, actor, purpose"),
}
TITLES = {"palmpay.audit": "palm-pay audit log", "palmpay.access": "palm-pay PII access log"}


@dataclass(frozen=True)
class SealKeys:
    hmac: KeySet
    checkpoints: CheckpointFile


@dataclass(frozen=True)
class LogCheck:
    log: str
    ok: bool
    count: int
    sealed: int = 0  # rows covered by the newest checkpoint
    checkpoints: int = 0
    at_id: int | None = None
    reason: str = ""

    @property
    def title(self) -> str:
        return TITLES.get(self.log, self.log)


def seal_keys(
    state_dir: str | Path, *, chain: KeyChain | None = None, checkpoint_path: str | Path | None = None
) -> SealKeys:
    """The audit key and checkpoint file, as the agent's trail finds them (same settings, same file)."""
    chain = chain or key_chain(state_dir)
    path = Path(checkpoint_path or os.environ.get("PAYOPS_AUDIT_CHECKPOINT_PATH") or Path(state_dir) / CHECKPOINT_FILE)
    sealed_before = path.exists() and path.stat().st_size > 0
    hmac_keys = chain.obtain(AUDIT_HMAC, data_exists=sealed_before, what="the sealed palm-pay logs")
    signing = chain.obtain(CHECKPOINT_SIGNING, data_exists=sealed_before, what=f"the signed checkpoints in {path}")
    return SealKeys(hmac_keys, CheckpointFile(path, signing))


def _payload(log: str, row: Any) -> bytes:
    return log.encode() + b"|" + json.dumps(list(row), separators=(",", ":"), ensure_ascii=True).encode()


def _rows(store: Any, log: str, after_id: int | None, before_ts: float | None = None) -> list[Any]:
    """Rows in id order: after `after_id` (None: every row, whatever its id — a forged id 0 included)."""
    table, columns = LOGS[log]
    sql = f"SELECT {columns} FROM {table} WHERE " + ("1 = 1" if after_id is None else "id > ?")
    args: tuple[Any, ...] = () if after_id is None else (after_id,)
    if before_ts is not None:
        sql += " AND ts <= ?"
        args = (*args, before_ts)
    with store.read() as tx:
        return list(tx.c.execute(sql + " ORDER BY id", args).fetchall())


def seal_logs(store: Any, keys: SealKeys, *, now: float | None = None) -> dict[str, int]:
    """Chain the rows since each log's last checkpoint and sign a new one. Returns rows sealed per log."""
    now = time.time() if now is None else now
    grace = now - PG_SEAL_GRACE_S if getattr(store, "dialect", "sqlite") == "postgres" else None
    sealed: dict[str, int] = {}
    for log in LOGS:
        last = keys.checkpoints.last(log)
        count, last_id, head = (last.count, last.last_id, last.head) if last else (0, 0, GENESIS)
        rows = _rows(store, log, last_id, grace)
        if not rows:
            sealed[log] = 0
            continue
        chain = Chainer(keys.hmac.active_key, head)
        for row in rows:
            chain.step(_payload(log, row))
        keys.checkpoints.write(log, count + len(rows), int(rows[-1][0]), chain.head, now, mac_key=keys.hmac.active)
        sealed[log] = len(rows)
    return sealed


class PeriodicSealer:
    """A daemon thread that seals every `every_s` seconds while a long-lived service (serve, run) is open."""

    def __init__(self, store: Any, keys: Callable[[], SealKeys], every_s: float) -> None:
        self._store, self._keys, self._every = store, keys, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="palmpay-sealer", daemon=True)

    def start(self) -> PeriodicSealer:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            seal_on_close(self._store, self._keys)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def seal_interval() -> float:
    """`PAYOPS_AUDIT_SEAL_SECONDS` (0 turns the thread off); a forged row can hide at most this long."""
    try:
        return max(0.0, float(os.environ.get("PAYOPS_AUDIT_SEAL_SECONDS", SEAL_EVERY_S)))
    except ValueError:
        return SEAL_EVERY_S


def seal_on_close(store: Any, keys: Callable[[], SealKeys]) -> None:
    """Best effort at shutdown: a failure is logged loudly (the next seal covers the rows), never raised."""
    try:
        seal_logs(store, keys())
    except Exception as exc:  # noqa: BLE001 - closing must still close the store
        _logger.warning("palm-pay logs not sealed at close: %s", exc)


def verify_logs(store: Any, keys: SealKeys) -> list[LogCheck]:
    """Each log recomputed from its first row and checked against its signed checkpoints."""
    cps_all, broken = keys.checkpoints.read()
    out = []
    for log in LOGS:
        rows = _rows(store, log, None)
        cps = [c for c in cps_all if c.log == log]
        if broken:
            out.append(LogCheck(log, False, len(rows), reason=broken[0]))
            continue
        heads: dict[int, tuple[int, str]] = {}
        # Each stretch of rows is recomputed with the HMAC key version its checkpoint names (a key rotated
        # since still verifies what it sealed); a checkpoint that does not say is from before rotation
        # was recorded: the oldest version. Rows past the last checkpoint: the active key.
        oldest = next(iter(keys.hmac.versions))
        stretches = [(c.last_id, c.mac_key or oldest) for c in cps]
        chain, chain_key, i = None, None, 0
        for n, row in enumerate(rows, 1):
            while i < len(stretches) and stretches[i][0] < int(row[0]):
                i += 1
            key_id = stretches[i][1] if i < len(stretches) else keys.hmac.active
            if key_id != chain_key:
                key = keys.hmac.key(key_id)
                if key is None:
                    break  # its key is gone: the checkpoint there will not match, and verify says so
                chain, chain_key = Chainer(key, chain.head if chain is not None else GENESIS), key_id
            assert chain is not None  # set on the first row: its key id differs from None
            heads[int(row[0])] = (n, chain.step(_payload(log, row)))
        problem = verify_checkpoints(log, heads, len(rows), int(rows[-1][0]) if rows else 0, cps)
        sealed = cps[-1].count if cps else 0
        if problem is not None:
            out.append(LogCheck(log, False, len(rows), sealed, len(cps), problem.at_id, problem.reason))
        else:
            out.append(LogCheck(log, True, len(rows), sealed, len(cps)))
    return out
