"""One settings object for the whole agent; every field can be set as PAYOPS_<NAME>.

Thresholds live here with the reason beside them, not as literals in code.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from payops.files import StateDirError, prepare_folder, private_dir

__all__ = ["Settings", "StateDirError", "existing_state_dir", "load_settings", "prepare_folder", "prepare_state_dir"]


def prepare_state_dir(path: Path) -> Path:
    """Before anything opens a database in the state folder (every command that writes state)."""
    return prepare_folder(path)


def existing_state_dir(path: Path) -> Path:
    """For commands that only read: the folder must already hold an agent's state."""
    if not path.exists():
        raise StateDirError(f"no agent state in {path} (run `payops run` or `payops tick` first)", 2)
    if not path.is_dir():
        raise StateDirError(f"the state folder {path} is a file, not a folder (choose another --state-dir)", 2)
    return path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOPS_", extra="ignore")

    # --- where state lives -------------------------------------------------
    state_dir: Path = Field(Path(".payops"), description="Checkpoints, lessons, audit, palm-pay tables.")
    deployment: str = Field("default", description="Agent deployment name; one LangGraph thread each.")
    database_url: str | None = Field(None, description="PostgreSQL DSN; SQLite in state_dir when unset.")

    # --- observe -----------------------------------------------------------
    source: str = Field(
        "simulator", description="Event source(s) of scheduled ticks that take no --source (LangGraph Server cron): "
        "simulator, a file, nats://..., palm; several separated by spaces are merged by event time."
    )
    window_seconds: float = Field(60.0, gt=0, allow_inf_nan=False,
                                  description="Sliding window the agent reasons over (brief: 60 s).")
    tick_seconds: float = Field(60.0, gt=0, allow_inf_nan=False, description="Event-time step between two decisions.")
    allowed_lateness_seconds: float = Field(
        10.0, ge=0, le=3600, description="A window is decided once the stream has passed its end by this much (or "
        "ended): collectors deliver events a few seconds out of order, and ±5 s of jitter must cost nothing. Later "
        "events are counted as late on the decision of the tick they arrive in. Costs this much delay before each "
        "decision."
    )
    max_clock_skew_seconds: float = Field(
        600.0, gt=0, description="An event this far ahead of the clock is a broken clock (ms for s, a wrong year), "
        "not a delay: counted and discarded, so that one such line never stalls a run. Ten minutes is far beyond any "
        "collector's delay and bounds what is held ahead of the clock; a feed gap longer than this reads as skew."
    )
    min_segment_attempts: int = Field(
        10, ge=1, description="Fewer attempts than this in a segment is too little evidence to blame it."
    )
    min_excess_failures: int = Field(
        8, ge=1, description="A segment must fail this many more attempts than its reference predicts (2 of 5 at a "
        "tiny bank is not an incident)."
    )
    significance_z: float = Field(
        4.0, gt=0, description="Binomial z a segment's failures must clear: ~100 segments are tested per window, "
        "so 4 sigma keeps chance alarms rare after that many tests while a real outage clears it at once."
    )
    no_data_seconds: float = Field(
        120.0, gt=0, description="Silence of the whole feed after which it is alerted as 'no data' (two minutes: "
        "longer than any lull of a live payment feed, short enough that a dead collector is noticed before customers "
        "are)."
    )
    alert_review_ticks: int = Field(
        5, ge=1, description="An incident answered only by an alert and still present after this many ticks is paged "
        "again as critical with its age (its mitigation options are recomputed every tick). Five one-minute ticks: "
        "the alert cooldown (action_cooldown_seconds, 300 s) lets the repeat through."
    )

    # --- guard -------------------------------------------------------------
    confidence_threshold: float = Field(0.8, ge=0, le=1, description="Below this a human approves (brief: 0.8).")
    max_autonomous_volume: float = Field(
        0.5, ge=0, le=1, description="Largest share of current traffic an autonomous action may touch."
    )
    action_cooldown_seconds: float = Field(
        300.0, ge=0, description="No reversal of an action on the same target within this period (anti-flapping)."
    )
    max_autonomous_actions_per_hour: int = Field(
        6, ge=0, description="Cap on autonomous actions per hour so a confused agent cannot thrash routing."
    )
    approval_ttl_seconds: float = Field(900.0, gt=0,
                                        description="An approval request not answered by then is rejected.")
    action_ttl_seconds: float = Field(1800.0, gt=0, description="Default lifetime of an action before it rolls back.")

    # --- reason (LLM, optional) -------------------------------------------
    llm_model: str | None = Field(None, description="Set to switch on the LLM reasoner (any OpenAI-compatible model).")
    llm_base_url: str | None = Field(None, description="Overrides OPENAI_BASE_URL.")
    llm_timeout_seconds: float = Field(30.0, gt=0,
                                       description="Per LLM call, at most (the tick budget bounds it further).")
    llm_max_retries: int = Field(2, ge=0)
    llm_tick_budget_seconds: float = Field(
        20.0, gt=0, le=86400, description="Wall-clock seconds all LLM work of one tick may take, retries included, "
        "before the rules decide: a third of the 60 s tick, so a hanging endpoint cannot stall the agent (it once took "
        "91.6 s = 3 attempts x 30 s). The same wall-clock budget applies to replay's event-time ticks."
    )

    # --- act ---------------------------------------------------------------
    orchestrator_url: str | None = Field(None, description="HTTP control plane; the in-process simulator when unset.")
    webhook_url: str | None = Field(None, description="Alerts and approval requests are POSTed here too.")

    # --- palm-pay ----------------------------------------------------------
    palm_spec_path: Path | None = Field(None, description="palm-pay spec JSON; the packaged copy when unset.")
    data_key: SecretStr | None = Field(None, description="Base64 AES-256 key for sensitive fields; key file if unset.")
    timezone: str = Field("Africa/Johannesburg", description="Local time zone for the palm-pay daily reset.")
    display_timezone: str | None = Field(
        None, description="The zone every time a person reads is shown and parsed in (console, chat, cycle output, "
        "`why`, `lessons list`), always named; PAYOPS_TIMEZONE when unset. Records stay epoch/UTC.")
    palm_match_threshold: float = Field(0.95, ge=0, le=1, description="Spec: palm match must exceed 95% by default.")
    palm_time_source: str = Field(
        "service", pattern="^(service|database)$", description="Clock for payments' time and local date: this "
        "process's, or the database server's (servers with skewed clocks sharing one database agree).")
    palm_pii_retention_days: float = Field(
        90, gt=0, le=3650, description="POPIA: a revoked link's encrypted PII is erased after this many days "
        "(covers the dispute window of its last payments).")
    palm_key_backup_window_days: float = Field(
        35, ge=0, le=3650, description="Days a backup may be restored from: an old palm-pay data key or blind-index "
        "root retires only this long after the rows stopped using it (a monthly backup plus a week).")
    palm_change_request_ttl_hours: float = Field(
        24, gt=0, le=24 * 30, description="A change request no second operator approved within this expires.")
    palm_maintenance_interval_s: float = Field(
        300.0, ge=0, description="Seconds between settlement rounds in `serve` / `run` (0: off, use cron with "
        "`payops palm maintain`). Five minutes keeps a timed-out payment's reservation short and the rail unbothered."
    )
    palm_max_pending_age_s: float = Field(
        3600.0, gt=0, description="A payment the rail cannot confirm after this long is released as failed "
        "(PayShap settles in seconds; an hour is generous)."
    )

    # --- keys and tamper evidence (storage/keys.py, memory/audit.py) -------------
    key_dir: Path | None = Field(
        None, description="Folder of key files (0700); <state_dir>/keys when unset. Put it outside the state folder "
        "so a backup of the state does not carry the keys that protect it.")
    key_command: str | None = Field(
        None, description="External command run as `COMMAND NAME` that prints a base64 key (KMS/HSM hook).")
    audit_checkpoint_path: Path | None = Field(
        None, description="Where signed audit checkpoints are appended; <state_dir>/audit.checkpoints when unset. "
        "Outside the database (ideally another host's mount) so wiping the database cannot wipe them too.")
    audit_checkpoint_every: int = Field(
        50, ge=1, description="Sign a checkpoint every N audit records (and on shutdown): bounds the tail that could "
        "vanish unnoticed between checkpoints to about an hour of one-minute ticks.")
    audit_seal_seconds: float = Field(
        300.0, ge=0, description="Palm-pay logs: a long-lived service seals them this often (0: only at close); "
        "a row forged into the database between two seals is sealed as genuine, so this bounds that window.")
    key_audit_hmac: SecretStr | None = Field(None, description="Base64 audit HMAC key (else the key command or file).")
    key_checkpoint_signing: SecretStr | None = Field(None, description="Base64 Ed25519 seed for audit checkpoints.")


    @field_validator("webhook_url", "orchestrator_url", "llm_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Refused at start-up: a typo would otherwise lose every notification (or control call) at run time.
        # The value is not echoed: webhook URLs often carry a token.
        if value is None:
            return None
        try:
            parts = urlsplit(value.strip())
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value.strip()
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://hooks.example.com/payops")
        return value.strip()

    @field_validator("timezone", "display_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        # A typo would pass until the first palm-pay payment (its daily reset) or the chat reads a time.
        from zoneinfo import ZoneInfo

        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError("must be an IANA time zone such as Africa/Johannesburg or UTC") from None
        return value

    @property
    def display_zone(self) -> str:
        """The display zone's IANA name: `display_timezone`, else `timezone`."""
        return self.display_timezone or self.timezone

    def display_tz(self) -> tzinfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.display_zone)

    def ensure_state_dir(self) -> Path:
        prepare_state_dir(self.state_dir)  # a file, uncreatable or read-only: one line (StateDirError)
        return private_dir(self.state_dir)  # 0700: the state is nobody else's business

    @property
    def sqlite_path(self) -> Path:
        return self.state_dir / "payops.db"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]  # any field by name; pydantic validates each value
