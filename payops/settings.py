"""One settings object for the whole agent; every field can be set as PAYOPS_<NAME>.

Thresholds live here with the reason beside them, not as literals in code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOPS_", extra="ignore")

    # --- where state lives -------------------------------------------------
    state_dir: Path = Field(Path(".payops"), description="Checkpoints, lessons, audit, palm-pay tables.")
    deployment: str = Field("default", description="Agent deployment name; one LangGraph thread each.")
    database_url: str | None = Field(None, description="PostgreSQL DSN; SQLite in state_dir when unset.")

    # --- observe -----------------------------------------------------------
    window_seconds: float = Field(60.0, gt=0, description="Sliding window the agent reasons over (brief: 60 s).")
    tick_seconds: float = Field(60.0, gt=0, description="Event-time step between two decisions.")
    min_segment_attempts: int = Field(
        10, ge=1, description="Fewer attempts than this in a segment is too little evidence to blame it."
    )
    min_excess_failures: int = Field(
        8, ge=1, description="A segment must fail this many more attempts than its reference predicts (2 of 5 at a tiny bank is not an incident)."
    )
    significance_z: float = Field(
        4.0, gt=0, description="Binomial z a segment's failures must clear: ~100 segments are tested per window, "
        "so 4 sigma keeps chance alarms rare after that many tests while a real outage clears it at once."
    )
    no_data_seconds: float = Field(
        120.0, gt=0, description="Silence of the whole feed after which it is alerted as 'no data' (two minutes: "
        "longer than any lull of a live payment feed, short enough that a dead collector is noticed before customers are)."
    )
    alert_review_ticks: int = Field(
        5, ge=1, description="An incident answered only by an alert and still present after this many ticks is paged again "
        "as critical with its age (its mitigation options are recomputed every tick). Five one-minute ticks: the alert "
        "cooldown (action_cooldown_seconds, 300 s) lets the repeat through."
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
    approval_ttl_seconds: float = Field(900.0, gt=0, description="An approval request not answered by then is rejected.")
    action_ttl_seconds: float = Field(1800.0, gt=0, description="Default lifetime of an action before it rolls back.")

    # --- reason (LLM, optional) -------------------------------------------
    llm_model: str | None = Field(None, description="Set to switch on the LLM reasoner (any OpenAI-compatible model).")
    llm_base_url: str | None = Field(None, description="Overrides OPENAI_BASE_URL.")
    llm_timeout_seconds: float = Field(30.0, gt=0)
    llm_max_retries: int = Field(2, ge=0)

    # --- act ---------------------------------------------------------------
    orchestrator_url: str | None = Field(None, description="HTTP control plane; the in-process simulator when unset.")
    webhook_url: str | None = Field(None, description="Alerts and approval requests are POSTed here too.")

    # --- palm-pay ----------------------------------------------------------
    palm_spec_path: Path | None = Field(None, description="palm-pay spec JSON; the packaged copy when unset.")
    data_key: SecretStr | None = Field(None, description="Base64 AES-256 key for sensitive fields; key file if unset.")
    timezone: str = Field("Africa/Johannesburg", description="Local time zone for the palm-pay daily reset.")
    palm_match_threshold: float = Field(0.95, ge=0, le=1, description="Spec: palm match must exceed 95% by default.")

    def ensure_state_dir(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self.state_dir

    @property
    def sqlite_path(self) -> Path:
        return self.state_dir / "payops.db"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
