"""CONTRACT.md §4 as a pydantic model: what every decision line must look like."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CATEGORIES = {"healthy", "user", "issuer", "network", "config", "security"}


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str
    target: dict[str, str]
    args: dict[str, Any]


class DecisionLine(BaseModel):
    model_config = ConfigDict(extra="allow")  # the contract may grow additively
    window_end: float
    category: str
    confidence: float = Field(ge=0, le=1)
    action: Action
    executed: bool
    escalated: bool
    evidence: list[str]
    decision_id: str = Field(min_length=1)


def validate_line(raw: dict[str, Any]) -> DecisionLine:
    line = DecisionLine.model_validate(raw)
    assert line.category in CATEGORIES, line.category
    assert not (line.executed and line.escalated), "an action cannot both run and wait for a human"
    return line
