"""Knobs of the HTTP API, each with its reason; every one can be set as PAYOPS_API_<NAME>.

The agent's own settings (state directory, thresholds) stay in payops.settings;
these only shape the HTTP surface.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = "127.0.0.1"


class Bucket(BaseModel):
    """A token bucket: `burst` requests at once, refilled at `per_second`."""

    model_config = ConfigDict(frozen=True)

    burst: float = Field(..., gt=0)
    per_second: float = Field(..., gt=0)


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOPS_API_", env_nested_delimiter="__", extra="ignore")

    host: str = Field(LOOPBACK, description="Loopback by default: expose it on purpose, behind TLS.")
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(
        16 * 1024, ge=1024, description="Every request body here is a few hundred bytes; 16 KiB leaves room and "
        "stops memory abuse long before it matters."
    )
    # Per API key. A checkout terminal takes a payment every few seconds at most; a burst of 10
    # covers a queue of retries after a network blip, 1/s sustained is far above real use.
    payments: Bucket = Bucket(burst=10, per_second=1.0)
    # OTP checks and resends: the backend voids a code after 5 wrong tries; this stops one key
    # from walking across many links (5 at once, then one every 10 s).
    verification: Bucket = Bucket(burst=5, per_second=0.1)
    # Enrolment sends an SMS: cap it so a stolen key cannot pump messages (5 at once, one a minute).
    enrolment: Bucket = Bucket(burst=5, per_second=1 / 60)
    decisions_max_page: int = Field(500, ge=1, description="Largest page of decisions one request returns.")
    chat_max_question_chars: int = Field(2000, ge=10, description="A question, not a document.")
