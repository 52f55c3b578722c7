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
    model_config = SettingsConfigDict(env_prefix="PAYOPS_API_", extra="ignore")

    host: str = Field(LOOPBACK, description="Loopback by default: expose it on purpose, behind TLS.")
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(
        16 * 1024, ge=1024, description="Every request body here is a few hundred bytes; 16 KiB leaves room and "
        "stops memory abuse long before it matters."
    )
    # Token buckets per API key (see ratelimit.py).
    # A checkout terminal takes a payment every few seconds at most; a burst of 10 covers a queue
    # of retries after a network blip, 1/s sustained is far above real use.
    payments_burst: float = Field(10, gt=0)
    payments_per_second: float = Field(1.0, gt=0)
    # OTP checks and resends: the backend voids a code after 5 wrong tries; this stops one key
    # from walking across many links (5 at once, then one every 10 s).
    verification_burst: float = Field(5, gt=0)
    verification_per_second: float = Field(0.1, gt=0)
    # Enrolment sends an SMS: cap it so a stolen key cannot pump messages (5 at once, one a minute).
    enrolment_burst: float = Field(5, gt=0)
    enrolment_per_second: float = Field(1 / 60, gt=0)
    require_attestation: bool = Field(
        True, description="Payments need a terminal-signed scan (palmpay/attestation.py): without it liveness and "
        "the match score are the caller's word and a known template reference pays."
    )
    decisions_max_page: int = Field(500, ge=1, description="Largest page of decisions one request returns.")
    console_secure_cookies: bool = Field(
        False, description="Mark the console's session cookie Secure: set it when the console is served over TLS "
        "(directly or behind a proxy); off by default because the default bind is plain-HTTP loopback."
    )

    def buckets(self) -> dict[str, Bucket]:
        return {group: Bucket(burst=getattr(self, f"{group}_burst"), per_second=getattr(self, f"{group}_per_second"))
                for group in RATE_LIMITED_GROUPS}


RATE_LIMITED_GROUPS = ("payments", "verification", "enrolment")
