"""What every palm-pay use case shares: the service's wiring and its common steps.

`ServiceCore` builds the store, the keys (keying.py), the cipher, blind index and OTP
hasher, the rail, the OTP sender and terminal attestation, and holds the steps the use
cases share: the clock, spec events, the one place a link_status changes (`_transition`,
audited either way), decrypting a field with its access-log row, input checks.

Every operation follows one pattern: decide with the pure rules in `policy`, then
write the state change, its audit entry and its events in one write transaction
(SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the rows decided on are locked, see store.py).
Refusals are committed (audit, events) before they are raised as `PalmPayError`, so a
refusal is never lost. Network calls (rail, OTP delivery) happen outside transactions
so a slow rail never holds the database write lock.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from payops.files import private_dir

from .attestation import TerminalAttestation
from .clock import Clock, clock_epoch, system_clock
from .crypto import FieldCipher, KeyRingError
from .errors import ErrorCatalog, PalmPayError
from .events import SpecEvents
from .keying import load_service_keys
from .models import PalmPayLink
from .money import MoneyError, cents_str, to_cents
from .options import PalmPayOptions
from .rail import PayShapRail, SimulatedPayShapRail
from .sealing import PeriodicSealer, SealKeys, seal_interval, seal_keys, seal_on_close
from .spec import PalmPaySpec, load_spec
from .store import Tx, open_store
from .verification import DevOtpSender, Verification

log = logging.getLogger("payops.palmpay")

MAX_AUDIT_REASON = 512  # a reason plus the approver's principal and the request id
TEMPLATE_FIELD = "palm_template_ref"
PROXY_FIELD = "payshap_proxy"

_PROXY_PATTERNS = {
    # Phone proxies: optional +, 9-15 digits (E.164 or national); accounts: 6-20 digits.
    "phone": re.compile(r"^\+?\d{9,15}$"),
    "account": re.compile(r"^\d{6,20}$"),
}
_PROXY_SEPARATORS = re.compile(r"[\s\-().]")
_MAX_TEXT = 256
_MIN_TEMPLATE_REF = 8  # shorter refs would be guessable and their mask would reveal them


def field_aad(palm_pay_id: str, field: str) -> bytes:
    # Binds a ciphertext to its row and column, so blobs cannot be swapped between rows.
    return f"{palm_pay_id}|{field}".encode()


class ServiceCore:
    """The service's collaborators and shared steps; the use cases are mixins over it (service.py)."""

    def __init__(
        self,
        options: PalmPayOptions | None = None,
        *,
        clock: Clock = system_clock,
        rail: PayShapRail | None = None,
        verification: Verification | None = None,
        spec: PalmPaySpec | None = None,
        timer: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or PalmPayOptions.from_settings()
        self.spec = spec or load_spec(self.options.spec_path)
        try:
            self._tz = ZoneInfo(self.options.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.options.timezone!r}") from None
        self.clock = clock
        self._timer = timer
        self._sleep = sleep
        self._errors = ErrorCatalog(self.spec)
        self._events = SpecEvents(self.spec)
        private_dir(self.options.state_dir)  # 0700: its files are nobody else's business
        self.store = open_store(self.options)
        self._keys = self.options.keys()
        try:
            # Every secret from the key provider; data whose key is missing refuses (never a silent new key).
            keys = load_service_keys(self.store, self.options, self._keys)
        except KeyRingError:
            self.store.close()
            raise
        self._ring = keys.ring
        self._cipher = FieldCipher(self._ring)
        self._roots = keys.roots  # blind-index roots; the database says which is current (keying.py)
        self._otp = keys.otp
        self._seal_keys_cache: SealKeys | None = None
        self._sealer = PeriodicSealer(self.store, self._seal_keys, seal_interval()).start() if seal_interval() else None
        self.rail: PayShapRail = rail if rail is not None else SimulatedPayShapRail()
        self.verification: Verification = verification if verification is not None else DevOtpSender()
        self._hands = self.spec.field_options.get("palm_hand", ("left", "right"))
        # Terminal keys and signed-scan checks (attestation.py); its tables are made on first use.
        self.attestation = TerminalAttestation(
            self.store, self._errors, window_s=self.options.attestation_window_s, now=self._now, keys=self._keys
        )
        self._proxy_types = self.spec.field_options.get("proxy_type", tuple(_PROXY_PATTERNS))

    def _transition(
        self,
        tx: Tx,
        link: PalmPayLink,
        to: str,
        *,
        ts: float,
        actor: str,
        action: str,
        reason: str | None,
        verified_at: float | None = None,
        linked_at: float | None = None,
    ) -> PalmPayError | None:
        """Apply a link_status change if the spec allows it; audit either way."""
        if not self.spec.can_transition(link.link_status, to):
            return self._refuse_transition(tx, link, to, ts=ts, actor=actor, action=action, reason=reason)
        tx.set_status(link.palm_pay_id, to, ts=ts, reason=reason, verified_at=verified_at, linked_at=linked_at)
        tx.audit(
            ts, palm_pay_id=link.palm_pay_id, actor=actor, action=action, from_status=link.link_status,
            to_status=to, outcome="applied", reason=reason,
        )
        return None

    def _refuse_transition(
        self, tx: Tx, link: PalmPayLink, to: str, *, ts: float, actor: str, action: str, reason: str | None = None
    ) -> PalmPayError:
        tx.audit(
            ts, palm_pay_id=link.palm_pay_id, actor=actor, action=action, from_status=link.link_status,
            to_status=to, outcome="refused", reason=reason,
        )
        log.warning("refused %s on %s: %s -> %s", action, link.palm_pay_id, link.link_status, to)
        return self._errors.illegal_transition(link.link_status, to)

    def _sealing_key(self, tx: Tx) -> str:
        """The key new ciphertexts use: the one the database names (another process may have rotated)."""
        wanted = tx.active_key_id() or self._ring.active_id
        if self._ring.key(wanted) is None:
            self._ring.reload()
        if self._ring.key(wanted) is None:
            raise KeyRingError(f"active key {wanted} is not in this process's keyring")
        return wanted

    def _digests(self, tx: Tx, field: str, value: str) -> tuple[str, tuple[bytes, ...]]:
        """(current root id, digests of `value`): under the current blind-index root first, then, while a
        rotation is re-indexing the rows (reindexing.py), under the previous one. Read in `tx`, so every
        process follows a rotation another one started."""
        state = tx.rotation_state()
        current = state.index_key_id
        if current is None:  # keying.py records it at start-up; a database emptied under a running process
            raise KeyRingError("the database records no blind-index root; restart the service")
        roots = (current,) if state.index_prev_key_id is None else (current, state.index_prev_key_id)
        return current, tuple(self._roots.index(root).digest(field, value) for root in roots)

    def _reveal(self, tx: Tx, link: PalmPayLink, field: str, ts: float, *, actor: str, purpose: str) -> str:
        """Decrypt one sensitive field and record who read it, when and why."""
        sealed = link.payshap_proxy if field == PROXY_FIELD else link.palm_template_ref
        tx.log_access(ts, link.palm_pay_id, field, actor, purpose)
        return self._cipher.open(sealed.ciphertext, field_aad(link.palm_pay_id, field))

    def _now(self) -> float:
        return clock_epoch(self.clock)

    def _emit(self, tx: Tx, ts: float, outcome: str, values: dict[str, Any]) -> None:
        event = self._events.for_outcome(outcome, values)
        if event is not None:
            tx.emit(ts, event.name, event.payload)

    @staticmethod
    def _values(
        link: PalmPayLink | None,
        *,
        amount_cents: int | None = None,
        daily_spent_cents: int | None = None,
        terminal_id: str | None = None,
    ) -> dict[str, Any]:
        """Everything an event payload may name, in its safe (masked, exact-decimal) form."""
        values: dict[str, Any] = {"terminal_id": terminal_id}
        if amount_cents is not None:
            values["amount"] = cents_str(amount_cents)
        if link is not None:
            values.update(
                palm_pay_id=link.palm_pay_id,
                user_id=link.user_id,
                proxy_type=link.proxy_type,
                payshap_proxy=link.payshap_proxy.masked,
                palm_template_ref=link.palm_template_ref.masked,
                link_status=link.link_status,
                daily_spent=cents_str(link.daily_spent if daily_spent_cents is None else daily_spent_cents),
                daily_limit=cents_str(link.daily_limit),
                transaction_limit=cents_str(link.transaction_limit),
            )
        return values

    def _require_link(self, tx: Tx, palm_pay_id: str) -> PalmPayLink:
        link = tx.link(str(palm_pay_id))
        if link is None:
            raise self._errors.make("PALM_PAY_LINK_NOT_FOUND")
        return link

    def _invalid(self, message: str) -> PalmPayError:
        return self._errors.make("PALM_PAY_INVALID_INPUT", message=message)

    def _text(self, value: object, name: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self._invalid(f"{name} is required")
        text = value.strip()
        if len(text) > _MAX_TEXT:
            raise self._invalid(f"{name} is too long")
        return text

    def _choice(self, value: object, name: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self._invalid(f"{name} must be one of: {', '.join(options)}")
        return str(value)

    def _template_ref(self, value: object) -> str:
        ref = self._text(value, TEMPLATE_FIELD)
        if len(ref) < _MIN_TEMPLATE_REF:
            raise self._invalid(f"{TEMPLATE_FIELD} must be at least {_MIN_TEMPLATE_REF} characters")
        return ref

    def _proxy(self, value: object, proxy_type: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self._invalid(self.spec.message_for(PROXY_FIELD, "required", "A payment proxy is required"))
        proxy = _PROXY_SEPARATORS.sub("", value)
        pattern = _PROXY_PATTERNS.get(proxy_type)
        if pattern is not None and not pattern.match(proxy):
            raise self._invalid(f"the payment proxy is not a valid {proxy_type} proxy")
        return proxy

    def _limit(self, value: Decimal | int | str | None, name: str) -> int:
        if value is None:
            value = self.spec.default_limit(name)
        try:
            cents = to_cents(value)
        except MoneyError as exc:
            raise self._invalid(f"{name}: {exc}") from None
        if cents < 0:
            raise self._invalid(self.spec.message_for(name, "min", f"{name} cannot be negative"))
        return cents

    def _amount(self, value: Decimal | int | str) -> int:
        try:
            cents = to_cents(value)
        except MoneyError as exc:
            raise self._invalid(f"amount: {exc}") from None
        if cents <= 0:
            raise self._invalid("amount must be greater than zero")
        return cents

    def _seal_keys(self) -> SealKeys:
        """The audit key and checkpoint file, as the options (Settings) name them; obtained once (a KMS
        command is not re-run every seal)."""
        if self._seal_keys_cache is None:
            self._seal_keys_cache = seal_keys(self.options.state_dir, chain=self.options.seal_chain,
                                              checkpoint_path=self.options.audit_checkpoint_path)
        return self._seal_keys_cache

    def close(self) -> None:
        """Seal the audit and access logs written since the last checkpoint (palmpay/sealing.py), then close."""
        try:
            if self._sealer is not None:
                self._sealer.stop()
            seal_on_close(self.store, self._seal_keys)
        finally:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
