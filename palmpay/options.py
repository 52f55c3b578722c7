"""Palm-pay knobs, with their reasons; the shared ones come from payops Settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from payops.storage.keys import KeyChain, key_chain, settings_key_chain

from .events import PaymentEventDefaults
from .rail import RailRetryPolicy

DB_FILE = "palmpay.db"


@dataclass(frozen=True)
class PalmPayOptions:
    state_dir: Path = Path(".payops")
    db_path: Path | None = None  # <state_dir>/palmpay.db when unset
    spec_path: Path | None = None  # packaged spec when unset
    timezone: str = "Africa/Johannesburg"  # the daily limit resets at local midnight here
    match_threshold: float = 0.95  # spec: a match must exceed 95 % by default
    data_key: str | None = field(default=None, repr=False)  # base64 AES-256; keyring file when unset
    # PostgreSQL DSN (payops Settings.database_url): the tables live there instead of the SQLite
    # file. Every process must then share the data key (PAYOPS_DATA_KEY or one keyring file).
    database_url: str | None = field(default=None, repr=False)
    # Where the keys come from, as Settings say (storage/keys.py): the key folder and command for the data
    # ring, and the chain plus checkpoint file that seal the audit and access logs (None: the environment's).
    key_dir: Path | None = None
    key_command: str | None = field(default=None, repr=False)
    seal_chain: Any = field(default=None, repr=False)
    audit_checkpoint_path: Path | None = None
    pool_size: int = 8  # PostgreSQL connections per service: concurrent payments beyond it queue for one

    # Which clock decides a payment's time and local date: "service" (the clock the service was
    # given: one configured time source) or "database" (the database server's clock, so servers
    # with skewed clocks sharing one database agree). Either way a link's days never run backwards.
    time_source: str = "service"

    # A change request a second operator has not approved within a working day expires: an approval
    # weeks later would act on a situation nobody re-checked.
    change_request_ttl_s: float = 24 * 3600

    # POPIA: personal data is kept no longer than needed. A revoked link's encrypted PII goes after
    # 90 days, which covers the dispute and chargeback window of its last payments.
    pii_retention_s: float = 90 * 24 * 3600

    # Old data keys and blind-index roots are kept this long after the rows stopped using them, so a
    # backup taken before a rotation can still be restored and read: 35 days covers a monthly backup
    # plus a week to notice that it is needed. Only then are they retired.
    key_backup_window_s: float = 35 * 24 * 3600

    verification_ttl_s: float = 24 * 3600  # spec: unverified links expire after 24 hours
    otp_ttl_s: float = 10 * 60  # a code is short-lived; a new one can be requested
    otp_digits: int = 6
    otp_max_attempts: int = 5  # per code: wrong guesses before the code is void
    otp_max_resends: int = 3  # caps guesses per link at (1 + resends) * attempts

    fraud_window_s: float = 5 * 60  # spec: 3 failed matches in 5 minutes ...
    fraud_max_failures: int = 3  # ... trigger a suspension for review
    max_palms_per_user: int = 2  # spec: left and right

    rail_retry: RailRetryPolicy = RailRetryPolicy()
    # A pending payment younger than this may still be in flight; reconcile() leaves it alone.
    reconcile_grace_s: float = 60.0
    # PayShap settles in seconds: a payment the rail still cannot confirm after an hour is treated
    # as not made and its reservation released (settlement.py), so a lost answer never holds the
    # customer's limit for days. The audit names each one for the operators to chase.
    max_pending_age_s: float = 3600.0
    # Terminal attestation (attestation.py). Off by default for the Python API and the CLI (the HTTP
    # API turns it on: PAYOPS_API_REQUIRE_ATTESTATION); a signed scan is always checked.
    require_attestation: bool = False
    # A signed scan is accepted this many seconds either side of the backend's clock: a till signs
    # just before sending, so 2 minutes covers clock drift and a slow network, while a captured
    # scan is useless soon after (its nonce is also single-use).
    attestation_window_s: float = 120.0
    event_defaults: PaymentEventDefaults = PaymentEventDefaults()
    busy_timeout_s: float = 30.0  # writers queue on BEGIN IMMEDIATE rather than fail
    # WAL + NORMAL: a commit is durable against process crashes; a power cut may lose the
    # last commits but never corrupts the file. FULL trades ~2x write cost for that too.
    synchronous: str = "NORMAL"
    # Checkpoint the WAL every ~16 MB instead of SQLite's 4 MB: hot pages (a busy link's row,
    # index roots) are copied back once per checkpoint, so fewer checkpoints do less total work.
    wal_autocheckpoint_pages: int = 4000

    def keys(self) -> KeyChain:
        """Where palm-pay's secrets come from (storage/keys.py): the chain Settings name, else the one the
        key folder and command (and the environment) give."""
        if self.seal_chain is not None:
            return self.seal_chain  # type: ignore[no-any-return]  # a KeyChain; Any only to keep the dataclass hashable
        return key_chain(self.state_dir, key_dir=self.key_dir, command=self.key_command)

    @property
    def database_path(self) -> Path:
        return self.db_path if self.db_path is not None else self.state_dir / DB_FILE

    def with_(self, **changes: Any) -> PalmPayOptions:
        return replace(self, **changes)

    @classmethod
    def from_settings(cls, settings: Any | None = None, **overrides: Any) -> PalmPayOptions:
        if settings is None:
            from payops.settings import Settings

            settings = Settings()
        key = settings.data_key.get_secret_value() if settings.data_key is not None else None
        base = cls(
            state_dir=Path(settings.state_dir),
            spec_path=settings.palm_spec_path,
            timezone=settings.timezone,
            match_threshold=settings.palm_match_threshold,
            data_key=key,
            database_url=getattr(settings, "database_url", None),
            time_source=getattr(settings, "palm_time_source", "service"),
            pii_retention_s=getattr(settings, "palm_pii_retention_days", 90) * 86400,
            change_request_ttl_s=getattr(settings, "palm_change_request_ttl_hours", 24) * 3600,
            key_backup_window_s=getattr(settings, "palm_key_backup_window_days", 35) * 86400,
            max_pending_age_s=getattr(settings, "palm_max_pending_age_s", cls.max_pending_age_s),
            key_dir=getattr(settings, "key_dir", None),
            key_command=getattr(settings, "key_command", None),
            seal_chain=settings_key_chain(settings),
            audit_checkpoint_path=getattr(settings, "audit_checkpoint_path", None),
        )
        return replace(base, **overrides)
