"""Terminal attestation: a palm scan counts only if the terminal that made it signed it.

Without it, liveness and the match score are the terminal's word, and a template
reference works like a password: any caller with a terminal API key and a known
reference could pay. Each terminal therefore holds its own Ed25519 private key;
the backend's key provider (storage/keys.py: `terminal-<id>` in the key folder, the
environment or the key command) serves the public key per `terminal_id`, and the
database holds its registration (who, when, revoked; registered by an operator:
`payops palm terminal register`, `PUT /v1/palm/terminals/{id}/key`). A registration
whose fingerprint is not the provider's key is refused, so a write to the database
cannot plant a key. The terminal
signs the scan result — template reference, liveness, score, amount, a fresh
nonce and the time — and the backend verifies the signature against the key of
the terminal named in the request before anything else of the payment happens.

A signed scan is refused when
* no key is registered (or it was revoked) for the terminal, or the signature
  does not verify over these exact values (`PALM_PAY_ATTESTATION_INVALID`);
* its time is more than `attestation_window_s` from the backend's clock
  (`PALM_PAY_ATTESTATION_STALE`);
* its nonce was already used by this terminal for another payment
  (`PALM_PAY_ATTESTATION_REPLAYED`). The same nonce with the same idempotency key
  is the terminal retrying a payment whose answer it lost: it passes, and the
  payment's idempotency returns the stored result.
An unsigned scan is refused where attestation is required
(`PALM_PAY_ATTESTATION_REQUIRED`: on by default over HTTP, off by default in the
Python API and the CLI). Every refusal is in the palm-pay audit log.

The signed message is `scan_message(...)`: compact JSON with sorted keys, the
amount as a two-decimal string and the score with six decimals, so that any
language produces the same bytes (api/README.md shows the terminal side).
Tables (store.py migration 4 / storage/migrations/postgres/0006): `palm_terminal_keys`,
`palm_scan_nonces` (pruned after twice the window: older nonces are stale anyway).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from payops.errors import BadInput
from payops.storage.keys import KeyChain, KeyProblem, terminal_key_name

from .errors import ErrorCatalog, PalmPayError
from .money import MoneyError, cents_str, to_cents

if TYPE_CHECKING:
    from .store import PalmPayStore, PostgresPalmPayStore, Tx

log = logging.getLogger("payops.palmpay.attestation")

MESSAGE_VERSION = "payops-scan-v1"
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # >= 96 random bits as base64url, bounded
TERMINAL_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_SIGNATURE_BYTES = 64
_PUBLIC_KEY_BYTES = 32

class AttestationKeyError(BadInput, ValueError):
    """A public key that is not an Ed25519 key in a form we read."""


@dataclass(frozen=True, slots=True)
class ScanAttestation:
    """What the terminal sends beside the scan: the nonce and time it signed, and the signature."""

    nonce: str
    ts: int  # epoch seconds on the terminal's clock
    signature: str  # base64 (standard or URL-safe) of the 64-byte Ed25519 signature


@dataclass(frozen=True, slots=True)
class TerminalKey:
    terminal_id: str
    fingerprint: str
    registered_at: float
    registered_by: str
    revoked_at: float | None = None


def scan_message(*, terminal_id: str, palm_template_ref: str, liveness_passed: bool, match_score: float,
                 amount: Decimal | int | str, nonce: str, ts: int) -> bytes:
    """The exact bytes a terminal signs for one scan (see the module docstring)."""
    body = {
        "v": MESSAGE_VERSION,
        "terminal_id": terminal_id,
        "palm_template_ref": palm_template_ref,
        "liveness_passed": bool(liveness_passed),
        "match_score": f"{float(match_score):.6f}",
        "amount": cents_str(to_cents(amount)),
        "nonce": nonce,
        "ts": int(ts),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_scan(private_key: Ed25519PrivateKey, *, terminal_id: str, palm_template_ref: str, liveness_passed: bool,
              match_score: float, amount: Decimal | int | str, nonce: str, ts: int) -> ScanAttestation:
    """The terminal's side (also used by `payops palm pay --sign-with` and the tests)."""
    message = scan_message(terminal_id=terminal_id, palm_template_ref=palm_template_ref,
                           liveness_passed=liveness_passed, match_score=match_score, amount=amount, nonce=nonce, ts=ts)
    return ScanAttestation(nonce, int(ts), base64.urlsafe_b64encode(private_key.sign(message)).decode())


def _b64(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of its 32 raw bytes."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise AttestationKeyError("the PEM key is not an Ed25519 public key")
            return key
        raw = _b64(text)
        if len(raw) != _PUBLIC_KEY_BYTES:
            raise AttestationKeyError(f"an Ed25519 public key is {_PUBLIC_KEY_BYTES} bytes, this one {len(raw)}")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        if isinstance(exc, AttestationKeyError):
            raise
        raise AttestationKeyError("not an Ed25519 public key (PEM or base64 of 32 bytes)") from None


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short, stable name for a key (safe to log and show: it is public)."""
    return "ed25519:" + hashlib.sha256(raw_public_key(key)).hexdigest()[:32]


class TerminalAttestation:
    """The registry of terminal keys and the check of signed scans, over the palm-pay store."""

    def __init__(self, store: PalmPayStore | PostgresPalmPayStore, errors: ErrorCatalog, *, window_s: float,
                 now: Callable[[], float], keys: KeyChain | None = None) -> None:
        self._store = store
        self._now = now  # the backend's clock (epoch seconds)
        self._errors = errors
        self._window_s = window_s
        # The key provider holds each terminal's public key (`terminal-<id>`); the database holds its
        # registration (who, when, revoked). None: the database alone (tests of the check itself).
        self._keys = keys
        self._served: dict[str, tuple[str, Ed25519PublicKey]] = {}  # terminal -> (fingerprint, key) checked
        self._served_lock = threading.Lock()

    # -- registry ---------------------------------------------------------------------

    def register(self, terminal_id: str, public_key: str, *, actor: str, ts: float | None = None) -> TerminalKey:
        """Register (or replace) a terminal's public key: into the key provider, and its registration into
        the database. Raises AttestationKeyError / ValueError."""
        ts = self._now() if ts is None else ts
        terminal_id = _terminal(terminal_id)
        key = load_public_key(public_key)
        raw = raw_public_key(key)
        if self._keys is not None:
            self._store_in_provider(terminal_id, raw)
        encoded = base64.b64encode(raw).decode()
        with self._store.write() as tx:
            tx.c.execute("DELETE FROM palm_terminal_keys WHERE terminal_id = ?", (terminal_id,))
            tx.c.execute(
                "INSERT INTO palm_terminal_keys (terminal_id, public_key, fingerprint, registered_at, registered_by)"
                " VALUES (?, ?, ?, ?, ?)", (terminal_id, encoded, fingerprint(key), ts, actor),
            )
            tx.audit(ts, palm_pay_id=None, actor=actor, action="register_terminal_key", from_status=None,
                     to_status=None, outcome="applied", reason=f"terminal {terminal_id}: {fingerprint(key)}")
        with self._served_lock:
            self._served.pop(terminal_id, None)
        return TerminalKey(terminal_id, fingerprint(key), ts, actor)

    def _store_in_provider(self, terminal_id: str, raw: bytes) -> None:
        assert self._keys is not None
        name = terminal_key_name(terminal_id)
        if self._keys.store is None:
            raise AttestationKeyError("there is no key folder to keep the terminal's public key in")
        try:
            self._keys.store.add_version(name, raw)
            served = self._keys.load(name)
        except KeyProblem as exc:
            raise AttestationKeyError(str(exc)) from None
        if served is None or served.active_key != raw:
            # An earlier provider (the environment, the key command) answers for this terminal with another key.
            raise AttestationKeyError(f"{self._keys.description} serves another key for terminal {terminal_id}; "
                                      "register the new key there")

    def revoke(self, terminal_id: str, *, actor: str, ts: float | None = None) -> bool:
        """Stop accepting a terminal's signatures (a stolen or retired till). False if it had no live key."""
        ts = self._now() if ts is None else ts
        terminal_id = _terminal(terminal_id)
        with self._store.write() as tx:
            done = tx.c.execute(
                "UPDATE palm_terminal_keys SET revoked_at = ?, revoked_by = ? WHERE terminal_id = ?"
                " AND revoked_at IS NULL", (ts, actor, terminal_id),
            ).rowcount
            if done:
                tx.audit(ts, palm_pay_id=None, actor=actor, action="revoke_terminal_key", from_status=None,
                         to_status=None, outcome="applied", reason=f"terminal {terminal_id}")
        return bool(done)

    def terminals(self) -> list[TerminalKey]:
        with self._store.read() as tx:
            rows = tx.c.execute(
                "SELECT terminal_id, fingerprint, registered_at, registered_by, revoked_at FROM palm_terminal_keys"
                " ORDER BY terminal_id"
            ).fetchall()
        return [TerminalKey(*row) for row in rows]

    def _key(self, tx: Tx, terminal_id: str) -> Ed25519PublicKey | str:
        """The terminal's live public key, or why there is none (safe to audit)."""
        row = tx.c.execute(
            "SELECT public_key, fingerprint FROM palm_terminal_keys WHERE terminal_id = ? AND revoked_at IS NULL",
            (terminal_id,),
        ).fetchone()
        if row is None:
            return "no registered key for the terminal"
        if self._keys is None:
            return Ed25519PublicKey.from_public_bytes(base64.b64decode(row[0]))
        registered = str(row[1])
        with self._served_lock:
            cached = self._served.get(terminal_id)
        if cached is not None and cached[0] == registered:
            return cached[1]
        try:
            served = self._keys.load(terminal_key_name(terminal_id))
            key = None if served is None else Ed25519PublicKey.from_public_bytes(served.active_key)
        except (KeyProblem, ValueError):
            return "the key provider's key for the terminal is unusable"
        if key is None:
            return ("the terminal's key is not in this server's key provider "
                    "(register it again, or share the key folder)")
        if fingerprint(key) != registered:
            # The database's registration names another key than the provider holds: a row written
            # around the registry (or a provider changed without registering) is never trusted.
            return "the registered key does not match the key provider's"
        with self._served_lock:
            self._served[terminal_id] = (registered, key)
        return key

    # -- the check ----------------------------------------------------------------------

    def check(self, *, terminal_id: str, palm_template_ref: str, liveness_passed: bool, match_score: float,
              amount: Decimal | int | str, payment_id: str | None, attestation: ScanAttestation | None,
              required: bool, now: float) -> None:
        """Pass, or raise the refusal (committed to the audit log first)."""
        if attestation is None:
            if required:
                self._refuse(terminal_id, now, "PALM_PAY_ATTESTATION_REQUIRED", "unsigned scan")
            return
        reason = self._verify(terminal_id, palm_template_ref, liveness_passed, match_score, amount, attestation)
        if reason is not None:
            self._refuse(terminal_id, now, "PALM_PAY_ATTESTATION_INVALID", reason)
        if abs(now - attestation.ts) > self._window_s:
            self._refuse(terminal_id, now, "PALM_PAY_ATTESTATION_STALE",
                         f"signed {now - attestation.ts:+.0f}s from the backend's clock")
        with self._store.write() as tx:
            tx.c.execute("DELETE FROM palm_scan_nonces WHERE seen_at < ?", (now - 2 * self._window_s,))
            fresh = tx.c.execute(
                "INSERT INTO palm_scan_nonces (terminal_id, nonce, payment_id, seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (terminal_id, nonce) DO NOTHING", (terminal_id, attestation.nonce, payment_id, now),
            ).rowcount
            if not fresh:
                row = tx.c.execute("SELECT payment_id FROM palm_scan_nonces WHERE terminal_id = ? AND nonce = ?",
                                   (terminal_id, attestation.nonce)).fetchone()
                if payment_id is None or row is None or row[0] != payment_id:
                    self._audit_refusal(tx, terminal_id, now, "PALM_PAY_ATTESTATION_REPLAYED", "nonce already used")
                    refusal: PalmPayError | None = self._errors.make("PALM_PAY_ATTESTATION_REPLAYED")
                else:
                    refusal = None  # the same payment retried: its idempotency answers
            else:
                refusal = None
        if refusal is not None:
            log.warning("replayed scan refused at terminal %s", terminal_id)
            raise refusal

    def _verify(self, terminal_id: str, palm_template_ref: str, liveness_passed: bool, match_score: float,
                amount: Decimal | int | str, attestation: ScanAttestation) -> str | None:
        """None if the signature holds; else why not (safe to audit: no scan values)."""
        if not NONCE_PATTERN.match(attestation.nonce):
            return "malformed nonce"
        try:
            signature = _b64(attestation.signature)
        except (ValueError, binascii.Error):
            return "malformed signature"
        if len(signature) != _SIGNATURE_BYTES:
            return "malformed signature"
        with self._store.read() as tx:
            key = self._key(tx, terminal_id)
        if isinstance(key, str):
            return key
        try:
            message = scan_message(terminal_id=terminal_id, palm_template_ref=palm_template_ref,
                                   liveness_passed=liveness_passed, match_score=match_score, amount=amount,
                                   nonce=attestation.nonce, ts=attestation.ts)
        except MoneyError:
            return "unreadable amount"
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return "signature does not verify"
        return None

    def _refuse(self, terminal_id: str, now: float, code: str, reason: str) -> None:
        with self._store.write() as tx:
            self._audit_refusal(tx, terminal_id, now, code, reason)
        log.warning("scan from terminal %s refused: %s (%s)", terminal_id, code, reason)
        raise self._errors.make(code)

    @staticmethod
    def _audit_refusal(tx: Tx, terminal_id: str, now: float, code: str, reason: str) -> None:
        tx.audit(now, palm_pay_id=None, actor=f"terminal:{terminal_id}", action="attest", from_status=None,
                 to_status=None, outcome="refused", reason=f"{code}: {reason}")


def _terminal(terminal_id: str) -> str:
    if not isinstance(terminal_id, str) or not TERMINAL_ID_PATTERN.match(terminal_id):
        raise ValueError("terminal_id must be 1-64 letters, digits or . _ : @ -")
    return terminal_id
