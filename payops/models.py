"""Plain typed data that crosses module borders (CONTRACT.md §2 and §3).

No I/O, no logic beyond validation: every other package may import this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Category(str, Enum):
    """Diagnosis categories, exactly CONTRACT.md §2."""

    HEALTHY = "healthy"
    USER = "user"
    ISSUER = "issuer"
    NETWORK = "network"
    CONFIG = "config"
    SECURITY = "security"


Target = dict[str, str]
"""A segment: event dimension -> value, e.g. {"bank": "FNB", "route": "psp_a"}; {} means all or none."""


def target_key(target: Mapping[str, str]) -> str:
    """Stable text form of a target, e.g. 'bank=FNB,route=psp_a' ('*' for all)."""
    if not target:
        return "*"
    return ",".join(f"{k}={target[k]}" for k in sorted(target))


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Diagnosis(Frozen):
    category: Category
    target: Target = Field(default_factory=dict)
    summary: str
    evidence: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    confidence: float = Field(ge=0.0, le=1.0)
    reasoner: str = "rules"

    @field_validator("confidence")
    @classmethod
    def _round_down(cls, v: float) -> float:
        # Down, never up: 0.7999 must stay below a 0.8 threshold.
        return math.floor(float(v) * 1000) / 1000


class ProposedAction(Frozen):
    tool: str
    target: Target = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    rationale: str = ""


class VerdictKind(str, Enum):
    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return {"allow": 0, "needs_approval": 1, "deny": 2}[self.value]


class GuardrailResult(Frozen):
    """One guardrail's opinion on one proposal."""

    rule: str
    verdict: VerdictKind
    reason: str


class Verdict(Frozen):
    """The combined, most-restrictive-wins outcome of every guardrail."""

    verdict: VerdictKind
    results: tuple[GuardrailResult, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [r.reason for r in self.results if r.verdict is not VerdictKind.ALLOW]


ExecutionStatus = Literal["executed", "escalated", "denied", "skipped", "failed", "unknown"]


class ExecutionResult(Frozen):
    status: ExecutionStatus
    detail: str = ""
    action_id: str | None = None
    # Where it ran (CONTRACT §4 "plane"): "simulated", "shadow" (recorded as what would have
    # run; nothing moved) or "http"; None for what no control plane ran (palm-pay, denials).
    plane: str | None = None
