"""What traffic obeys: the seam between the control plane and whatever carries payments.

The simulator (and a real orchestrator) asks these questions per payment; the
in-process control plane in `payops.tools` answers them. Defined here so the
signals package does not depend on tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 2
    backoff_ms: float = 300.0
    retry_all_errors: bool = False  # a misconfiguration: retrying declines and limits too


@dataclass(frozen=True)
class Diversion:
    """Where a suppressed payment goes instead (the customer is offered the fallback)."""

    fallback_method: str | None  # None: not attempted at all


class TrafficPolicy(Protocol):
    def reroute(self, dims: Mapping[str, str], candidates: Mapping[str, float], draw: float) -> str | None:
        """A route that overrides the default choice for this payment, or None."""

    def suppression(self, dims: Mapping[str, str]) -> Diversion | None:
        """A diversion when the payment's path is suppressed, else None."""

    def retry_policy(self, dims: Mapping[str, str]) -> RetryPolicy | None:
        """The retry policy in force for this payment, or None for the platform default."""


class NoPolicy:
    """Traffic with nothing in force."""

    def reroute(self, dims: Mapping[str, str], candidates: Mapping[str, float], draw: float) -> str | None:
        return None

    def suppression(self, dims: Mapping[str, str]) -> Diversion | None:
        return None

    def retry_policy(self, dims: Mapping[str, str]) -> RetryPolicy | None:
        return None


def matches(target: Mapping[str, str], dims: Mapping[str, str]) -> bool:
    """True when every dimension of the target has the payment's value ({} matches all)."""
    return all(dims.get(k) == v for k, v in target.items())
