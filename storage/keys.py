"""Where secrets come from: one small interface for every key the project holds.

Named secrets (`KEY_NAMES`): the audit HMAC key, the checkpoint signing key
(Ed25519 seed), and the palm-pay secrets: its data keys (`palmpay-data`; the ring
also keeps its own file format in palmpay/crypto.py but follows the same rules
below), the blind-index root (`palmpay-index-root`), the OTP MAC key
(`palmpay-otp-mac`), and each terminal's Ed25519 public key (`terminal-<id>`: not
secret, but the key that decides which scans are genuine must not be one a write
to the database can replace).

Providers, asked in order, first answer wins:
- `EnvKeyProvider`: `PAYOPS_KEY_<NAME>` (base64), e.g. `PAYOPS_KEY_AUDIT_HMAC`.
- `CommandKeyProvider`: an external command (`PAYOPS_KEY_COMMAND`, run as
  `COMMAND NAME`, base64 on stdout) — the hook for a KMS or an HSM.
- `FileKeyProvider`: one file per key in a folder (`PAYOPS_KEY_DIR`, default
  `<state_dir>/keys`; put it outside the state folder so a backup of the state does not
  carry its keys). Folder 0700, files 0600. Every version of a key is kept (rotation
  adds a version, never deletes one), so old records still verify.

The rules that matter more than the mechanism:
- A key is generated only when no data depends on it (`obtain(..., data_exists=False)`).
  When data exists and its key does not, `KeyMissing` says so in one line and the
  program refuses to start: a silently regenerated key makes old data unreadable
  (or, for the audit chain, unverifiable).
- No key material ever appears in a message, a log line or a record.

Imports nothing of the agent: palm-pay, memory and storage all use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from payops.errors import PayopsError

# Re-exported for modules outside storage/ that still import them from here (the kernel owns them now).
from payops.files import PRIVATE_DIR as PRIVATE_DIR
from payops.files import PRIVATE_FILE, private_dir
from payops.files import private_file as private_file

AUDIT_HMAC = "audit-hmac"
CHECKPOINT_SIGNING = "checkpoint-signing"
PALMPAY_DATA = "palmpay-data"
PALMPAY_INDEX_ROOT = "palmpay-index-root"
PALMPAY_OTP_MAC = "palmpay-otp-mac"
TERMINAL_KEY_PREFIX = "terminal-"
KEY_NAMES = (AUDIT_HMAC, CHECKPOINT_SIGNING, PALMPAY_DATA, PALMPAY_INDEX_ROOT, PALMPAY_OTP_MAC)
KEY_BYTES = 32  # HMAC-SHA256 key and Ed25519 seed alike
COMMAND_TIMEOUT_SECONDS = 10.0  # a KMS hook that hangs must not hang start-up


class KeyProblem(PayopsError, RuntimeError):
    """Base of the key errors; messages never include key material."""


class KeyMissing(KeyProblem):
    """Data exists whose key is not available: refuse to start rather than make a new key."""


class KeyUnusable(KeyProblem):
    """A provider answered with something that is not a key (bad base64, wrong size, command failed)."""


@dataclass(frozen=True)
class KeySet:
    """All versions of one named key: `active` signs/MACs new data, every id still verifies old data."""

    name: str
    active: str
    versions: Mapping[str, bytes] = field(repr=False)
    source: str = ""  # where it came from (for messages): "env", "command", a file path

    def key(self, key_id: str | None = None) -> bytes | None:
        return self.versions.get(key_id or self.active)

    @property
    def active_key(self) -> bytes:
        return self.versions[self.active]


def terminal_key_name(terminal_id: str) -> str:
    """The key name of a terminal's Ed25519 public key (32 raw bytes, like every other key here)."""
    return TERMINAL_KEY_PREFIX + terminal_id


def key_id_for(name: str, material: bytes) -> str:
    """A stable id for a key that reveals nothing about it."""
    return "k" + hashlib.sha256(b"payops.key-id|" + name.encode() + b"|" + material).hexdigest()[:12]


def _decode(text: str, name: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnusable(f"key '{name}' from {where} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyUnusable(f"key '{name}' from {where} must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


class KeyProvider(Protocol):
    description: str

    def load(self, name: str) -> KeySet | None:
        """The key's versions, or None when this provider does not hold it."""


def env_var(name: str) -> str:
    return "PAYOPS_KEY_" + name.upper().replace("-", "_")


class EnvKeyProvider:
    """`PAYOPS_KEY_<NAME>` holds the base64 key (one version)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = environ if environ is not None else os.environ
        self.description = "the environment (PAYOPS_KEY_<NAME>)"

    def load(self, name: str) -> KeySet | None:
        value = self._env.get(env_var(name))
        if not value:
            return None
        raw = _decode(value, name, env_var(name))
        kid = key_id_for(name, raw)
        return KeySet(name, kid, {kid: raw}, "env")


class CommandKeyProvider:
    """Runs `COMMAND NAME`; stdout is the base64 key, or a JSON {"active": id, "keys": {id: b64}};
    exit 3 = no such key."""

    NOT_HELD = 3

    def __init__(self, command: str | Sequence[str]) -> None:
        self._argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self._argv:
            raise KeyUnusable("the key command is empty")
        self.description = f"the key command {self._argv[0]}"

    def load(self, name: str) -> KeySet | None:
        try:
            done = subprocess.run([*self._argv, name], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KeyUnusable(f"{self.description} failed for '{name}': {type(exc).__name__}") from None
        if done.returncode == self.NOT_HELD:
            return None
        if done.returncode != 0:
            raise KeyUnusable(f"{self.description} exited {done.returncode} for '{name}'")
        return _parse_keyset(done.stdout, name, self.description, "command")


def _parse_keyset(text: str, name: str, where: str, source: str) -> KeySet:
    text = text.strip()
    if text.startswith("{"):
        try:
            body = json.loads(text)
            versions = {str(k): _decode(v, name, where) for k, v in body["keys"].items()}
            active = str(body["active"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeyUnusable(f"key '{name}' from {where} is not a key file") from None
        if active not in versions:
            raise KeyUnusable(f"key '{name}' from {where} names an active version it does not hold")
        return KeySet(name, active, versions, source)
    raw = _decode(text, name, where)
    kid = key_id_for(name, raw)
    return KeySet(name, kid, {kid: raw}, source)


class FileKeyProvider:
    """`<folder>/<name>.key`: JSON {"active": id, "keys": {id: base64}}, 0600 in a 0700 folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.description = f"the key folder {self.folder}"

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    def load(self, name: str) -> KeySet | None:
        path = self.path(name)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyUnusable(f"cannot read key file {path}: {type(exc).__name__}") from None
        return _parse_keyset(text, name, str(path), str(path))

    def create(self, name: str) -> KeySet:
        """First run only: a new random key, written exclusively (a concurrent first run keeps one)."""
        raw = secrets.token_bytes(KEY_BYTES)
        kid = key_id_for(name, raw)
        ks = KeySet(name, kid, {kid: raw}, str(self.path(name)))
        try:
            write_private(self.path(name), _serialise(ks), exclusive=True)
        except FileExistsError:
            found = self.load(name)
            assert found is not None
            return found
        return ks

    def add_version(self, name: str, material: bytes | None = None) -> KeySet:
        """Rotation: a new active version (`material`, or a new random key); every old one is kept."""
        current = self.load(name)
        raw = secrets.token_bytes(KEY_BYTES) if material is None else material
        if len(raw) != KEY_BYTES:
            raise KeyUnusable(f"key '{name}' must be {KEY_BYTES} bytes, got {len(raw)}")
        kid = key_id_for(name, raw)
        versions = {**(current.versions if current else {}), kid: raw}
        ks = KeySet(name, kid, versions, str(self.path(name)))
        write_private(self.path(name), _serialise(ks))
        return ks


def _serialise(ks: KeySet) -> bytes:
    body = {"name": ks.name, "active": ks.active,
            "keys": {k: base64.b64encode(v).decode("ascii") for k, v in ks.versions.items()}}
    return json.dumps(body, indent=1, sort_keys=True).encode("ascii")


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a 0600 file atomically (temp file + rename, or link when it must not exist yet)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class KeyChain:
    """Providers asked in order; the file provider (if any) is where first-run keys are created."""

    def __init__(self, providers: Sequence[KeyProvider], *, store: FileKeyProvider | None = None) -> None:
        self.providers = list(providers)
        self.store = store

    @property
    def description(self) -> str:
        return ", ".join(p.description for p in self.providers) or "no key provider"

    def load(self, name: str) -> KeySet | None:
        for provider in self.providers:
            found = provider.load(name)
            if found is not None:
                return found
        return None

    def obtain(self, name: str, *, data_exists: bool, what: str = "") -> KeySet:
        """The key; created only on a first run. Data without its key -> `KeyMissing` (never a new key)."""
        found = self.load(name)
        if found is not None:
            return found
        if data_exists:
            raise KeyMissing(f"refusing to start: key '{name}' is needed by {what or 'existing data'} but is not in "
                             f"{self.description}; restore it (or set {env_var(name)}) — a new key would not match")
        if self.store is None:
            raise KeyMissing(f"key '{name}' is not in {self.description} and there is no key folder to create it in")
        return self.store.create(name)


def settings_key_chain(settings: Any) -> KeyChain:
    """The chain as Settings name it: its key folder and command, and its audit keys, which beat the
    environment (a Settings argument beats PAYOPS_* everywhere). Duck-typed: palmpay uses it too."""
    environ = dict(os.environ)
    for name, attr in ((AUDIT_HMAC, "key_audit_hmac"), (CHECKPOINT_SIGNING, "key_checkpoint_signing")):
        secret = getattr(settings, attr, None)
        if secret is not None:
            environ[env_var(name)] = secret.get_secret_value()
    return key_chain(settings.state_dir, key_dir=getattr(settings, "key_dir", None),
                     command=getattr(settings, "key_command", None), environ=environ)


def key_chain(state_dir: str | Path, *, key_dir: str | Path | None = None, command: str | None = None,
              environ: Mapping[str, str] | None = None) -> KeyChain:
    """The default chain: environment, then the command (if set), then the key folder."""
    env = environ if environ is not None else os.environ
    command = command or env.get("PAYOPS_KEY_COMMAND") or None
    folder = Path(key_dir or env.get("PAYOPS_KEY_DIR") or Path(state_dir) / "keys")
    store = FileKeyProvider(folder)
    providers: list[KeyProvider] = [EnvKeyProvider(env)]
    if command:
        providers.append(CommandKeyProvider(command))
    providers.append(store)
    return KeyChain(providers, store=store)
