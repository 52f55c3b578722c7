"""The agent's actions as typed tools: argument schemas, permission, reversibility, rollback.

The rule reasoner builds `ProposedAction`s with these names and arguments; the LLM
reasoner gets the same schemas through `bind_tools`. Either way a proposal is
validated here before anything guards or runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Literal

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from payops.models import ProposedAction

MAX_TTL_SECONDS = 24 * 3600.0


class Permission(str, Enum):
    AUTONOMOUS = "autonomous"
    SUPERVISED = "supervised"  # may run alone when every other guardrail allows; ops are told
    HUMAN_REQUIRED = "human_required"


def _check_target(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if not isinstance(key, str) or not isinstance(val, str) or not key or not val:
            raise ValueError("target must map dimension names to non-empty values")
    return value


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetedArgs(ToolArgs):
    target: dict[str, str] = Field(default_factory=dict, description="Segment: event dimension -> value; {} for all traffic.")

    _target = field_validator("target")(classmethod(lambda cls, v: _check_target(v)))


class RerouteArgs(TargetedArgs):
    to_routes: dict[str, float] = Field(..., min_length=1, description="Destination route -> relative weight.")
    percent: float = Field(100.0, gt=0, le=100, description="Share of the target's traffic to move.")
    ttl_seconds: float = Field(1800.0, gt=0, le=MAX_TTL_SECONDS)

    @field_validator("to_routes")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w <= 0 for w in v.values()) or any(not r for r in v):
            raise ValueError("destination weights must be positive")
        return v


class RetryArgs(TargetedArgs):
    max_attempts: int = Field(..., ge=1, le=5, description="Attempts per payment including the first.")
    backoff_ms: float = Field(500.0, ge=0, le=60_000)
    ttl_seconds: float = Field(1800.0, gt=0, le=MAX_TTL_SECONDS)


class SuppressArgs(TargetedArgs):
    fallback: str | None = Field("card", description="Method the customer is offered instead; null: none.")
    ttl_seconds: float = Field(900.0, gt=0, le=MAX_TTL_SECONDS)


class AlertArgs(TargetedArgs):
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = Field(..., min_length=1, max_length=500)
    evidence: list[str] = Field(default_factory=list, max_length=20)


class NoActionArgs(ToolArgs):
    reason: str = Field("nothing to do", max_length=500)


class PalmLinkArgs(ToolArgs):
    palm_pay_id: str = Field(..., min_length=1, max_length=64)
    reason: str = Field("", max_length=500)


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str
    args_model: type[ToolArgs]
    permission: Permission
    reversible: bool
    rollback: str  # how it is undone; "" when it cannot be
    changes_traffic: bool  # counts against blast radius and the autonomous-action cap
    palm_outcome: str | None = None  # the spec outcome whose permission governs it
    palm_transition_to: str | None = None  # link state it moves to (terminal states need a human)
    modifies_sensitive: bool = False


ROUTING_ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("reroute_traffic", "Move a share of a segment's traffic to other routes.", RerouteArgs,
                   Permission.AUTONOMOUS, True, "restore the previous route weights", True),
        ActionSpec("adjust_retry_policy", "Change max attempts and backoff for a segment.", RetryArgs,
                   Permission.AUTONOMOUS, True, "restore the previous retry policy", True),
        ActionSpec("suppress_path", "Stop sending a segment's payments down a failing path; offer a fallback.",
                   SuppressArgs, Permission.AUTONOMOUS, True, "lift the suppression", True),
        ActionSpec("alert_ops", "Page or notify human operators with the evidence.", AlertArgs,
                   Permission.AUTONOMOUS, True, "", False),
        ActionSpec("no_action", "Deliberately do nothing (say why).", NoActionArgs,
                   Permission.AUTONOMOUS, True, "", False),
    )
}

# Palm-pay operations: the permission field here is only the fallback; the live
# level comes from the spec's autonomy table (see tools.permissions).
PALM_ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("suspend_palm_link", "Suspend one palm-pay link for review (fraud alert).", PalmLinkArgs,
                   Permission.SUPERVISED, True, "reactivate_palm_link", False, None, "suspended"),
        ActionSpec("reactivate_palm_link", "Lift a palm-pay link's suspension after review.", PalmLinkArgs,
                   Permission.SUPERVISED, True, "suspend_palm_link", False, None, "active"),
        ActionSpec("revoke_palm_link", "Permanently revoke a palm-pay link.", PalmLinkArgs,
                   Permission.HUMAN_REQUIRED, False, "", False, "palm_link_revoked", "revoked"),
    )
}

ACTIONS: dict[str, ActionSpec] = {**ROUTING_ACTIONS, **PALM_ACTIONS}


class ProposalError(ValueError):
    """A proposal that names no known tool or whose arguments break the schema."""


def validate_proposal(tool: str, args: dict[str, Any], rationale: str = "") -> ProposedAction:
    """Check a tool call against its schema; returns the normalised proposal."""
    spec = ACTIONS.get(tool)
    if spec is None:
        raise ProposalError(f"unknown tool '{tool}'")
    try:
        parsed = spec.args_model.model_validate(args)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "args" for err in exc.errors()})
        raise ProposalError(f"invalid arguments for {tool}: {', '.join(fields)}") from None
    data = parsed.model_dump()
    target = data.pop("target", {}) if isinstance(parsed, TargetedArgs) else {}
    return ProposedAction(tool=tool, target=target, args=data, rationale=rationale)


def revalidate(proposal: ProposedAction) -> ProposedAction:
    """Re-check a proposal that arrived as data (a checkpoint, an LLM, an approval)."""
    spec = ACTIONS.get(proposal.tool)
    if spec is None:
        raise ProposalError(f"unknown tool '{proposal.tool}'")
    args = dict(proposal.args)
    if issubclass(spec.args_model, TargetedArgs):
        args["target"] = dict(proposal.target)
    elif proposal.target:
        raise ProposalError(f"{proposal.tool} takes no target")
    return validate_proposal(proposal.tool, args, proposal.rationale)


def as_langchain_tools(execute: Callable[[ProposedAction], str] | None = None) -> list[StructuredTool]:
    """The actions as langchain-core tools (for `bind_tools`); `execute` runs them when given."""

    def make(spec: ActionSpec) -> StructuredTool:
        def run(**kwargs: Any) -> str:
            if execute is None:
                raise RuntimeError("tools are bound for proposals only; the graph executes them after guardrails")
            return execute(validate_proposal(spec.name, kwargs))

        tool = StructuredTool.from_function(func=run, name=spec.name, description=spec.description, args_schema=spec.args_model)
        tool.metadata = {"permission": spec.permission.value, "reversible": spec.reversible, "rollback": spec.rollback}
        return tool

    return [make(spec) for spec in ACTIONS.values()]
