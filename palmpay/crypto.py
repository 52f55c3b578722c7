"""Encryption at rest, blind indexes and OTP hashing for palm-pay.

* Field encryption: AES-256-GCM. Every ciphertext starts with the id of the
  key that sealed it, so keys rotate without a flag day: old keys stay in the
  keyring until no row uses them.
* Blind index: HMAC-SHA256 under a separate key, so uniqueness checks and
  lookups never touch plaintext and the index reveals nothing without the key.
* OTPs are stored only as HMACs under the OTP MAC key (`palmpay-otp-mac` from the
  key provider, see keys.py); a stolen database does not let anyone brute-force
  six digits offline.

Keys come from Settings.data_key (base64, 32 bytes), from the key provider of
storage/keys.py (`palmpay-data` / `palmpay-index-root`: `PAYOPS_KEY_PALMPAY_DATA`, the
key command — the KMS/HSM hook — or the key folder), or from the keyring file
`palmpay.key` in `PAYOPS_KEY_DIR` (default: the state folder), created with mode 0600
on first run — and only then: when the
database already holds data sealed under a key id (`expect_key_id`) and no provider
has that key, loading refuses in one line instead of making a new key (which left
every link answering NOT_REGISTERED). Rotation keeps every old key until the rows are
re-encrypted and a backup window has passed (administration.py), so a backup from before it can
still be restored and read within the window; then the old key is destroyed (listed as retired).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from payops.errors import PayopsError

try:  # POSIX advisory locks keep two processes from rotating the ring at once.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

from payops.storage.keys import PALMPAY_DATA, PALMPAY_INDEX_ROOT, CommandKeyProvider, KeyProblem, KeySet

log = logging.getLogger("payops.palmpay.crypto")

KEYRING_FILE = "palmpay.key"
KEY_BYTES = 32
NONCE_BYTES = 12
_FORMAT = 1
_BLOB_VERSION = 1


class KeyRingError(PayopsError, RuntimeError):
    """Keys are missing, malformed or cannot decrypt a value (never includes key material)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"{what} is not valid base64") from None


def parse_data_key(secret: str | bytes) -> bytes:
    raw = secret if isinstance(secret, bytes) else _unb64(secret.strip(), "data key")
    if len(raw) != KEY_BYTES:
        raise KeyRingError(f"data key must be {KEY_BYTES} bytes (base64-encoded), got {len(raw)}")
    return raw


def fingerprint_key_id(key: bytes, prefix: str = "env") -> str:
    """Stable id for a key supplied from outside, without revealing the key."""
    return f"{prefix}-{hashlib.sha256(b'payops.palmpay.kid' + key).hexdigest()[:12]}"


class KeySource(Protocol):
    """What KeyRing.load asks for `palmpay-data` / `palmpay-index-root` (storage.keys.KeyChain is one)."""

    def load(self, name: str) -> KeySet | None: ...


def _derive(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label).derive(key)


class KeyRing:
    """Data keys by id, the active id, and the blind-index root key."""

    def __init__(self, keys: dict[str, bytes], active_id: str, index_root: bytes, path: Path | None,
                 retired: set[str] | None = None) -> None:
        if active_id not in keys:
            raise KeyRingError("active key id is not in the keyring")
        self._keys = dict(keys)
        self.retired = set(retired or ())  # destroyed a backup window after no ciphertext used them
        self.active_id = active_id
        self.index_root = index_root
        self.path = path
        self._external: dict[str, bytes] = {}
        self._lock = threading.RLock()

    # --- loading ---------------------------------------------------------

    @classmethod
    def load(cls, state_dir: Path, data_key: str | bytes | None = None, *, expect_key_id: str | None = None,
             key_dir: Path | None = None, command: str | None = None, provider: KeySource | None = None) -> KeyRing:
        """Load the keyring; create it (0600) on a first run only (no data, no supplied key).

        `expect_key_id`: the key the database says its data is sealed under (None: no data yet).
        `provider`: the key provider asked for `palmpay-data` and `palmpay-index-root` (default: the
        key command alone, `command` or PAYOPS_KEY_COMMAND).
        """
        folder = Path(key_dir or os.environ.get("PAYOPS_KEY_DIR") or state_dir)
        path = folder / KEYRING_FILE
        external: dict[str, bytes] = {}
        active_external: str | None = None
        index_external: bytes | None = None
        found: KeySet | None = None
        if provider is not None or command or os.environ.get("PAYOPS_KEY_COMMAND"):
            try:
                source = provider or CommandKeyProvider(command or os.environ["PAYOPS_KEY_COMMAND"])
                found = source.load(PALMPAY_DATA) if data_key is None else None
                root = source.load(PALMPAY_INDEX_ROOT)
            except KeyProblem as exc:
                raise KeyRingError(str(exc)) from None
            index_external = root.active_key if root is not None else None
        if data_key is not None:
            raw = parse_data_key(data_key)
            active_external = fingerprint_key_id(raw)
            external[active_external] = raw
        elif found is not None:
            external.update(found.versions)
            active_external = found.active
        if path.exists():
            ring = cls._read(path)
        elif external:
            assert active_external is not None
            raw = external[active_external]
            # No file needed: the index key comes from the provider or is derived from the data key.
            index_root = index_external or _derive(raw, b"payops.palmpay.index-root.v1")
            ring = cls(dict(external), active_external, index_root, path)
        elif expect_key_id is not None:
            raise KeyRingError(
                f"refusing to start: palm-pay data is sealed under key {expect_key_id} but there is no keyring at "
                f"{path} and no PAYOPS_DATA_KEY / key command; restore the key (a new one would make every link "
                "unreadable)")
        else:
            ring = cls._create(path, index_external)
        if expect_key_id is not None and expect_key_id not in ring._keys and expect_key_id not in external:
            if expect_key_id in ring.retired:
                raise KeyRingError(
                    f"refusing to start: palm-pay data is sealed under key {expect_key_id}, retired after its backup "
                    "window; this database is older than the window (restore a newer backup)")
            raise KeyRingError(f"refusing to start: palm-pay data is sealed under key {expect_key_id}, which none of "
                               "the configured keys is; restore the key that sealed it")
        ring._external = external
        for kid, raw in external.items():
            ring._keys.setdefault(kid, raw)  # an env key can still decrypt after rotation
        return ring

    @classmethod
    def _read(cls, path: Path) -> KeyRing:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("palm-pay keyring %s is readable by others (mode %o); expected 0600", path, mode)
        try:
            body = json.loads(path.read_text(encoding="ascii"))
            keys = {kid: _unb64(v, "keyring key") for kid, v in body["keys"].items()}
            index_root = _unb64(body["index_key"], "keyring index key")
            active = body["active"]
            retired = set(body.get("retired", []))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"cannot read palm-pay keyring {path}: {type(exc).__name__}") from None
        if any(len(k) != KEY_BYTES for k in keys.values()) or len(index_root) != KEY_BYTES:
            raise KeyRingError(f"palm-pay keyring {path} holds a key of the wrong size")
        return cls(keys, active, index_root, path, retired)

    @classmethod
    def _create(cls, path: Path, index_root: bytes | None = None) -> KeyRing:
        kid = new_key_id()
        ring = cls({kid: AESGCM.generate_key(bit_length=256)}, kid, index_root or secrets.token_bytes(KEY_BYTES), path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        _write_private(tmp, ring._serialise())
        try:
            os.link(tmp, path)  # atomic and exclusive: a concurrent first run keeps one ring
        except FileExistsError:
            return cls._read(path)
        finally:
            tmp.unlink(missing_ok=True)
        return ring

    def reload(self) -> bool:
        """Re-read the file (another process may have rotated). True if anything changed."""
        if self.path is None or not self.path.exists():
            return False
        fresh = self._read(self.path)
        with self._lock:
            changed = fresh._keys.keys() - self._keys.keys() or fresh.active_id != self.active_id
            self._keys = {**self._external, **fresh._keys}
            self.retired = fresh.retired
            self.active_id = fresh.active_id
            self.index_root = fresh.index_root
        return bool(changed)

    # --- rotation --------------------------------------------------------

    def add_active_key(self) -> str:
        """Create a new key, make it active and persist the ring (old keys kept)."""
        with self._file_lock():
            self.reload()
            kid = new_key_id()
            with self._lock:
                self._keys[kid] = AESGCM.generate_key(bit_length=256)
                self.active_id = kid
            self._persist()
        return kid

    def retire(self, key_ids: set[str]) -> set[str]:
        """Destroy keys no ciphertext uses any more, a backup window after the re-encryption that freed
        them (administration.py decides when); never the active one. Their ids stay listed as retired, so
        a backup older than the window is refused by name. A key the environment or the key command
        supplies is not ours to destroy: it is only listed."""
        with self._file_lock():
            self.reload()
            with self._lock:
                gone = {k for k in key_ids if k in self._keys and k != self.active_id}
                if not gone:
                    return gone
                self.retired |= gone
                for kid in gone - self._external.keys():
                    del self._keys[kid]
            self._persist()
        return gone

    def key(self, key_id: str) -> bytes | None:
        with self._lock:
            return self._keys.get(key_id)

    def key_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._keys)

    def _serialise(self) -> bytes:
        with self._lock:
            persisted = {k: v for k, v in self._keys.items() if k not in self._external}
            keys = {k: _b64(v) for k, v in persisted.items()}
            if self.active_id not in persisted:
                # The active key came from the environment; the file must still name it.
                keys[self.active_id] = _b64(self._keys[self.active_id])
            body = {
                "format": _FORMAT,
                "active": self.active_id,
                "keys": keys,
                "index_key": _b64(self.index_root),
                "retired": sorted(self.retired),
            }
        return json.dumps(body, indent=1, sort_keys=True).encode("ascii")

    def _persist(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        _write_private(tmp, self._serialise())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self.path is None or fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def new_key_id() -> str:
    return f"k-{secrets.token_hex(6)}"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class FieldCipher:
    """AES-GCM sealing of one field value, bound to its row and field name by the AAD."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._aead: dict[str, AESGCM] = {}  # cached: building AESGCM per call is measurable

    @property
    def active_key_id(self) -> str:
        return self._ring.active_id

    def _aead_for(self, key_id: str) -> AESGCM:
        aead = self._aead.get(key_id)
        if aead is None:
            key = self._ring.key(key_id)
            if key is None and self._ring.reload():
                key = self._ring.key(key_id)
            if key is None:
                raise KeyRingError(f"no key with id {key_id} in the palm-pay keyring")
            aead = self._aead[key_id] = AESGCM(key)
        return aead

    def seal(self, plaintext: str, aad: bytes, key_id: str | None = None) -> bytes:
        """Encrypt under `key_id` (default: the ring's active key); the blob names the key."""
        key_id = key_id or self._ring.active_id
        kid = key_id.encode("ascii")
        nonce = os.urandom(NONCE_BYTES)
        body = self._aead_for(key_id).encrypt(nonce, plaintext.encode("utf-8"), aad)
        return bytes((_BLOB_VERSION, len(kid))) + kid + nonce + body

    def open(self, blob: bytes, aad: bytes) -> str:
        kid, nonce, body = split_blob(blob)
        try:
            return self._aead_for(kid).decrypt(nonce, body, aad).decode("utf-8")
        except InvalidTag:
            raise KeyRingError(f"ciphertext sealed by {kid} failed authentication") from None

    def forget_cached(self) -> None:
        self._aead.clear()


def split_blob(blob: bytes) -> tuple[str, bytes, bytes]:
    if len(blob) < 2 or blob[0] != _BLOB_VERSION:
        raise KeyRingError("unknown ciphertext format")
    n = blob[1]
    kid = blob[2 : 2 + n].decode("ascii")
    nonce = blob[2 + n : 2 + n + NONCE_BYTES]
    return kid, nonce, blob[2 + n + NONCE_BYTES :]


def key_id_of(blob: bytes) -> str:
    return split_blob(blob)[0]


class BlindIndex:
    """Keyed HMAC-SHA256 of a normalised value; equal inputs give equal digests."""

    def __init__(self, index_root: bytes) -> None:
        self._base = hmac.new(_derive(index_root, b"payops.palmpay.blind-index.v1"), digestmod=hashlib.sha256)

    def digest(self, field_name: str, value: str) -> bytes:
        mac = self._base.copy()  # copying the keyed state skips re-keying on the hot path
        mac.update(field_name.encode("ascii") + b"\x00" + value.encode("utf-8"))
        return mac.digest()


def legacy_otp_key(index_root: bytes) -> bytes:
    """The OTP MAC key derived from the blind-index root, as codes were MACed before the key provider held one."""
    return _derive(index_root, b"payops.palmpay.otp.v1")


class OtpHasher:
    """HMAC of (link, code) under the OTP MAC key; codes MACed under an older version still match."""

    def __init__(self, key: bytes, older: Sequence[bytes] = ()) -> None:
        self._key = key
        self._older = tuple(k for k in older if k != key)

    def mac(self, palm_pay_id: str, code: str) -> bytes:
        return self._mac(self._key, palm_pay_id, code)

    @staticmethod
    def _mac(key: bytes, palm_pay_id: str, code: str) -> bytes:
        return hmac.new(key, f"{palm_pay_id}\x00{code}".encode(), hashlib.sha256).digest()

    def matches(self, palm_pay_id: str, code: str, stored: bytes) -> bool:
        return any(hmac.compare_digest(self._mac(key, palm_pay_id, code), stored) for key in (self._key, *self._older))
