"""Tamper evidence shared by every log: a keyed hash chain and signed head checkpoints.

Chain: `mac_n = HMAC-SHA256(K, "payops.chain.v2|" + mac_{n-1} + "|" + payload_n)`, hex.
K comes from the key provider (storage/keys.py), never from the database, so whoever
can write the database cannot re-chain it after an edit.

Checkpoints: one JSON line per checkpoint in a file outside the database (a setting;
by default next to it), each signed with Ed25519:

    {"v": 1, "log": "agent", "count": 120, "last_id": 120, "head": "<hex>",
     "at": 1764000000.0, "key_id": "k...", "sig": "<base64 Ed25519 signature>"}

The signature covers the canonical JSON of every other field. A checkpoint says
"this log had `count` rows, the last with id `last_id`, and the chain's head was
`head`". Verification recomputes the chain and checks every checkpoint it passes,
so a wipe, a truncation (even with the head row fixed), a re-chain and a forged
append are each caught (see `verify_checkpoints`). Logs whose rows carry no MAC
column (the palm-pay audit and PII access logs: written on every payment) are
chained at verification time and sealed in batches by these checkpoints.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from payops.files import private_dir

from .keys import KeySet

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

GENESIS = "0" * 64
_DOMAIN = b"payops.chain.v2|"
FORMAT = 1


def chain_mac(key: bytes, prev: str, payload: bytes) -> str:
    return hmac.new(key, _DOMAIN + prev.encode("ascii") + b"|" + payload, hashlib.sha256).hexdigest()


class Chainer:
    """A running chain over payloads (keyed state copied per step: no re-keying on the hot path)."""

    def __init__(self, key: bytes, head: str = GENESIS) -> None:
        self._base = hmac.new(key, _DOMAIN, hashlib.sha256)
        self.head = head

    def step(self, payload: bytes) -> str:
        mac = self._base.copy()
        mac.update(self.head.encode("ascii") + b"|" + payload)
        self.head = mac.hexdigest()
        return self.head


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Checkpoint:
    log: str
    count: int
    last_id: int
    head: str
    at: float
    key_id: str
    line: int = 0  # line number in the file (for messages)
    mac_key: str | None = None  # the HMAC key version the rows up to last_id were chained with (None: not said)

    def body(self) -> dict[str, Any]:
        body = {"v": FORMAT, "log": self.log, "count": self.count, "last_id": self.last_id, "head": self.head,
                "at": self.at, "key_id": self.key_id}
        if self.mac_key is not None:  # older checkpoints were signed without it: their bodies stay as signed
            body["mac_key"] = self.mac_key
        return body


def _private(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


class CheckpointFile:
    """Append-only JSON lines, signed; several processes append under a file lock."""

    def __init__(self, path: str | Path, signing: KeySet) -> None:
        self.path = Path(path)
        self._signing = signing
        self._public: dict[str, Ed25519PublicKey] = {
            kid: _private(seed).public_key() for kid, seed in signing.versions.items()
        }

    def write(self, log: str, count: int, last_id: int, head: str, at: float, mac_key: str | None = None) -> Checkpoint:
        cp = Checkpoint(log, int(count), int(last_id), head, float(at), self._signing.active, mac_key=mac_key)
        sig = _private(self._signing.active_key).sign(canonical_json(cp.body()))
        line = json.dumps({**cp.body(), "sig": base64.b64encode(sig).decode("ascii")}, sort_keys=True) + "\n"
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with _locked(fd):
                os.write(fd, line.encode("ascii"))
                os.fsync(fd)
        finally:
            os.close(fd)
        return cp

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def _checked(self, n: int, raw: str, log: str | None) -> Checkpoint | str | None:
        """Line n as a checkpoint whose signature holds, a problem line, or None (blank, another log)."""
        if not raw.strip():
            return None
        try:
            obj = json.loads(raw)
            sig = base64.b64decode(obj.pop("sig"), validate=True)
            cp = Checkpoint(str(obj["log"]), int(obj["count"]), int(obj["last_id"]), str(obj["head"]), float(obj["at"]),
                            str(obj["key_id"]), n, None if obj.get("mac_key") is None else str(obj["mac_key"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return f"checkpoint line {n} is not a checkpoint"
        if log is not None and cp.log != log:
            return None
        public = self._public.get(cp.key_id)
        try:
            if public is None:
                raise InvalidSignature
            public.verify(sig, canonical_json(cp.body()))
        except InvalidSignature:
            return f"checkpoint line {n} ({cp.log}) has a bad signature"
        return cp

    def read(self, log: str | None = None) -> tuple[list[Checkpoint], list[str]]:
        """Checkpoints whose signature holds (in file order), and a problem line for each that does not."""
        good: list[Checkpoint] = []
        bad: list[str] = []
        for n, raw in enumerate(self._lines(), 1):
            found = self._checked(n, raw, log)
            if isinstance(found, Checkpoint):
                good.append(found)
            elif found is not None:
                bad.append(found)
        return good, bad

    def last(self, log: str) -> Checkpoint | None:
        """The newest good checkpoint of `log`: read from the end, one signature check in the usual case
        (the file only grows; `read` is the full check verify makes)."""
        lines = self._lines()
        for n in range(len(lines), 0, -1):
            found = self._checked(n, lines[n - 1], log)
            if isinstance(found, Checkpoint):
                return found
        return None


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ChainProblem:
    log: str
    at_id: int | None
    reason: str


def verify_checkpoints(log: str, heads: dict[int, tuple[int, str]], count: int, last_id: int,
                       checkpoints: Iterable[Checkpoint]) -> ChainProblem | None:
    """Check a recomputed chain against the signed checkpoints of `log`.

    `heads`: for each row id reached, (rows counted so far, chain head after that row).
    The newest checkpoint must not claim more rows than exist (wipe, truncation); every
    checkpoint's (count, last_id, head) must be a point the recomputed chain passes
    through (edit, re-chain, insertion or deletion before it).
    """
    for cp in checkpoints:
        if cp.count > count:
            what = "wiped" if count == 0 else "truncated"
            return ChainProblem(log, cp.last_id, f"{what}: a signed checkpoint (line {cp.line}) says {cp.count} "
                                f"record(s) up to id {cp.last_id}; the log now holds {count}")
        if cp.count == 0:
            continue
        reached = heads.get(cp.last_id)
        if reached is None:
            return ChainProblem(log, cp.last_id,
                                f"record {cp.last_id}, sealed by checkpoint line {cp.line}, is missing")
        n, head = reached
        if n != cp.count:
            return ChainProblem(log, cp.last_id, f"{cp.count} records were sealed up to id {cp.last_id} "
                                f"(checkpoint line {cp.line}); {n} are there now (inserted or deleted)")
        if not hmac.compare_digest(head, cp.head):
            return ChainProblem(log, cp.last_id, f"the records up to id {cp.last_id} do not match their signed "
                                f"checkpoint (line {cp.line}): one was altered, re-chained or inserted")
    return None
