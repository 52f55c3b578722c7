"""Console sessions: an API key exchanged once for a session cookie (the key never travels again).

A session is a random token (only its SHA-256 is kept, in memory: a restart signs everyone out,
which is the safe direction) bound to the key's id, with an idle time-out and an absolute expiry,
and its own CSRF token that every state-changing request must echo. Each request re-checks that the
key is still active, so revoking a key ends its sessions at once. Sign-in attempts are limited per
client address (a key guessed at the sign-in form is still a key guessed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_SECONDS = 30 * 60  # an unattended screen signs out after half an hour
ABSOLUTE_SECONDS = 12 * 3600  # one shift; then sign in again
SIGN_IN_ATTEMPTS = 5  # per client address ...
SIGN_IN_PERIOD = 60.0  # ... per minute: enough for typos, too few to guess a key


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    key_id: str
    name: str
    role: str
    csrf: str
    created: float
    seen: float


@dataclass
class SessionStore:
    idle_seconds: float = IDLE_SECONDS
    absolute_seconds: float = ABSOLUTE_SECONDS
    clock: Callable[[], float] = time.time
    _sessions: dict[str, Session] = field(default_factory=dict)
    _attempts: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, key_id: str, name: str, role: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(key_id, name, role, secrets.token_urlsafe(24), now, now)
        with self._lock:
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie, touched; None if unknown, idle too long or past its expiry."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            key = _digest(token)
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.created > self.absolute_seconds:
                del self._sessions[key]
                return None
            session.seen = now
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def end_key(self, key_id: str) -> int:
        """End every session of a key (revoked); how many ended."""
        with self._lock:
            doomed = [k for k, s in self._sessions.items() if s.key_id == key_id]
            for k in doomed:
                del self._sessions[k]
            return len(doomed)

    def allow_sign_in(self, client: str) -> bool:
        """Count one attempt from this address; False once it made too many in the period."""
        now = self.clock()
        with self._lock:
            seen = self._attempts.setdefault(client, deque())
            while seen and now - seen[0] > SIGN_IN_PERIOD:
                seen.popleft()
            if len(seen) >= SIGN_IN_ATTEMPTS:
                return False
            seen.append(now)
            return True


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")
