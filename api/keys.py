"""API keys: one per client, with a role, stored hashed in `<state_dir>/api_keys.db`.

A key reads `payops_<key id>_<secret>`: the key id is public (it names the key in
`payops keys list`, logs and audit records); the secret is 256 random bits and
is shown once, at creation. The table keeps only SHA-256 of the whole key. A
slow password hash (bcrypt, scrypt) is for low-entropy secrets people choose;
against 256 random bits SHA-256 is already out of brute-force reach and costs
microseconds per request. Comparison is constant-time.

Roles: `terminal` (customer-present palm-pay endpoints only), `viewer` (reads the
agent's records), `operator` (reads, approves and rejects, administers palm links).
Names are unique; records name a key by its principal, `<role>:<key id>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from payops.errors import BadInput

KEYS_FILE = "api_keys.db"
PREFIX = "payops"
_KEY_ID_BYTES = 6  # 12 hex characters: unique enough to name a key, nothing secret about it
_SECRET_BYTES = 32  # 256 bits
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_PATTERN = re.compile(r"^payops_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""
# Names are unique (revoked keys keep theirs): a name must identify one principal in every record.
UNIQUE_NAMES = "CREATE UNIQUE INDEX IF NOT EXISTS api_keys_unique_name ON api_keys(name)"



class Role(str, Enum):
    TERMINAL = "terminal"
    OPERATOR = "operator"
    VIEWER = "viewer"


class ApiKey(BaseModel):
    """A key as everyone may see it: never the secret, never its hash."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def principal(self) -> str:
        """Who this key is in audit records and approvals: role and key id (unique, never the name alone)."""
        return f"{self.role.value}:{self.key_id}"


class ApiKeyError(BadInput, ValueError):
    """Bad input to the key store (unknown role, bad name, unknown key)."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        if fresh:
            os.chmod(path, 0o600)  # hashes only, but nobody else needs to read them
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        # A table from before names were unique may hold duplicates: create() still refuses new ones.
        with contextlib.suppress(sqlite3.IntegrityError):
            self._conn.execute(UNIQUE_NAMES)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> ApiKeyStore:
        return cls(Path(state_dir) / KEYS_FILE)

    def close(self) -> None:
        self._conn.close()

    def create(self, name: str, role: str | Role) -> tuple[ApiKey, str]:
        """A new key. Returns (its record, the key itself): the only time the key is available."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ApiKeyError("the name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        try:
            role = Role(role)
        except ValueError:
            raise ApiKeyError(f"the role must be one of: {', '.join(r.value for r in Role)}") from None
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        record = ApiKey(key_id=key_id, name=name, role=role, created_at=time.time())
        with self._lock:
            if self._conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise ApiKeyError(f"an API key named {name!r} already exists (names are unique; pick another)")
            self._conn.execute(
                "INSERT INTO api_keys (key_id, name, role, key_sha256, created_at) VALUES (?,?,?,?,?)",
                (key_id, name, role.value, digest(key), record.created_at),
            )
        return record, key

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        sql = "SELECT key_id, name, role, created_at, revoked_at FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        rows = self._conn.execute(sql + " ORDER BY created_at, key_id").fetchall()
        return [ApiKey(key_id=r[0], name=r[1], role=r[2], created_at=r[3], revoked_at=r[4]) for r in rows]

    def get(self, key_id: str) -> ApiKey | None:
        """One key by id, revoked or not (the console re-checks its session's key on every request)."""
        row = self._conn.execute("SELECT key_id, name, role, created_at, revoked_at FROM api_keys WHERE key_id = ?",
                                 (key_id,)).fetchone()
        return None if row is None else ApiKey(key_id=row[0], name=row[1], role=row[2], created_at=row[3],
                                               revoked_at=row[4])

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke by key id; takes effect on the next request (keys are checked on every request)."""
        with self._lock:
            self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (time.time(), key_id)
            )
        found = self.get(key_id)
        if found is None:
            raise ApiKeyError(f"no API key {key_id}")
        return found

    def authenticate_operator(self, presented: str | None) -> ApiKey:
        """The active operator key `presented` is; ApiKeyError (one line, no detail on why) otherwise."""
        key = self.authenticate(presented)
        if key is None:
            raise ApiKeyError("the API key is missing, unknown or revoked")
        if key.role is not Role.OPERATOR:
            raise ApiKeyError(f"an operator API key is needed (this one is a {key.role.value} key)")
        return key

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The active key `presented` is, or None. Never says why not."""
        if not presented:
            return None
        match = _KEY_PATTERN.match(presented)
        if match is None:
            return None
        row = self._conn.execute(
            "SELECT key_id, name, role, created_at, revoked_at, key_sha256 FROM api_keys WHERE key_id = ?",
            (match.group(1),),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[5], digest(presented)) or row[4] is not None:
            return None
        return ApiKey(key_id=row[0], name=row[1], role=row[2], created_at=row[3], revoked_at=row[4])
