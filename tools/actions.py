"""The agent's actions as typed tools: argument schemas, permission, reversibility, rollback.

The rule reasoner builds `ProposedAction`s with these names and arguments; the LLM
reasoner gets the same schemas through `bind_tools`. Either way a proposal is
validated here before anything guards or runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from payops.errors import BadInput
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
    target: dict[str, str] = Field(default_factory=dict,
                                   description="Segment: event dimension -> value; {} for all traffic.")

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


class RollbackArgs(ToolArgs):
    action_id: str = Field(..., min_length=1, max_length=64, description="The action in force (its decision id).")
    reason: str = Field(..., min_length=1, max_length=500)


# A link id as the backend issues it (e.g. "pp_3f9a..."): it starts with a letter, so a
# phone number, an account number or other sensitive value can never pass as one.
PALM_LINK_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]{2,63}$"
# The backend keeps at most 256 characters of reason; the decision id is prefixed to it.
MAX_PALM_REASON = 200


class PalmLinkArgs(ToolArgs):
    """Palm-pay operations name a link by its id only, never by a proxy or template reference."""

    palm_pay_id: str = Field(..., pattern=PALM_LINK_ID_PATTERN,
                             description="The palm-pay link id (not a proxy, not a template ref).")
    reason: str = Field("agent decision", min_length=1, max_length=MAX_PALM_REASON,
                        description="Why, for the link's audit log.")


BlastScope = Literal["segment", "link", "none"]


@dataclass(frozen=True)
class ActionSpec:
    """What a tool is and what it risks; guardrails read these declarations, not tool names."""

    name: str
    description: str
    args_model: type[ToolArgs]
    permission: Permission
    reversible: bool
    rollback: str  # how it is undone; "" when it cannot be
    changes_traffic: bool  # re-routes, retries or blocks payments in the control plane
    palm_outcome: str | None = None  # the spec outcome whose permission governs it
    palm_transition_to: str | None = None  # link state it moves to (terminal states need a human)
    modifies_sensitive: bool = False
    # How its blast radius (share of current traffic it touches) is estimated, see
    # guardrails.metrics.action_blast_radius: the target segment's share (times
    # `percent` when given), one palm link's share, or none (informs only).
    blast_scope: BlastScope = "segment"
    undo_tool: str | None = None  # the tool that reverses it (anti-flapping watches for it)

    @property
    def palm(self) -> bool:
        return self.palm_transition_to is not None

    def declaration(self) -> dict[str, Any]:
        """The static declaration, e.g. for tool metadata and docs (palm levels come from the spec)."""
        return {"permission": self.permission.value, "reversible": self.reversible, "rollback": self.rollback,
                "blast_scope": self.blast_scope, "changes_traffic": self.changes_traffic}


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
                   Permission.AUTONOMOUS, True, "", False, blast_scope="none"),
        ActionSpec("no_action", "Deliberately do nothing (say why).", NoActionArgs,
                   Permission.AUTONOMOUS, True, "", False, blast_scope="none"),
    )
}

# Palm-pay operations (executed by tools.palm_ops through PalmPayService). The
# permission and reversible fields here are only fallbacks: the live values come
# from the spec (tools.permissions): its action_permissions for the outcome, its
# autonomy level otherwise, and its state machine (a terminal state cannot be left).
PALM_ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("suspend_palm_link", "Suspend one palm-pay link for review (fraud alert).", PalmLinkArgs,
                   Permission.SUPERVISED, True, "reactivate_palm_link", False, None, "suspended",
                   blast_scope="link", undo_tool="reactivate_palm_link"),
        ActionSpec("reactivate_palm_link", "Lift a palm-pay link's suspension after review.", PalmLinkArgs,
                   Permission.SUPERVISED, True, "suspend_palm_link", False, None, "active",
                   blast_scope="link", undo_tool="suspend_palm_link"),
        ActionSpec("revoke_palm_link", "Permanently revoke a palm-pay link.", PalmLinkArgs,
                   Permission.HUMAN_REQUIRED, False, "", False, "palm_link_revoked", "revoked",
                   blast_scope="link"),
    )
}

# Housekeeping on the agent's own actions. Rolling back returns traffic to where it
# ran before the incident, once the cause has been seen to clear on the probe left
# on the old path; it is not an incident response, so it is not offered to the LLM.
MAINTENANCE_ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("rollback_action", "Undo an action in force whose cause has cleared.", RollbackArgs,
                   Permission.AUTONOMOUS, True, "re-apply the action", False, blast_scope="none"),
    )
}

ACTIONS: dict[str, ActionSpec] = {**ROUTING_ACTIONS, **PALM_ACTIONS, **MAINTENANCE_ACTIONS}
LINK_DIMENSION = "palm_pay_id"  # the event dimension that names a palm-pay link (CONTRACT §1)


class ProposalError(BadInput, ValueError):
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
    if isinstance(parsed, PalmLinkArgs):
        target = {LINK_DIMENSION: parsed.palm_pay_id}  # CONTRACT §3: the action names its target
    else:
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
    elif issubclass(spec.args_model, PalmLinkArgs):
        # The link may arrive as the target, as an argument, or both (then they must agree).
        named = dict(proposal.target)
        if set(named) - {LINK_DIMENSION}:
            raise ProposalError(f"{proposal.tool} targets one palm-pay link: {{'{LINK_DIMENSION}': ID}}")
        if LINK_DIMENSION in named and args.setdefault("palm_pay_id", named[LINK_DIMENSION]) != named[LINK_DIMENSION]:
            raise ProposalError(f"{proposal.tool}: target and palm_pay_id name different links")
    elif proposal.target:
        raise ProposalError(f"{proposal.tool} takes no target")
    return validate_proposal(proposal.tool, args, proposal.rationale)


def as_langchain_tools(execute: Callable[[ProposedAction], str] | None = None,
                       levels: Mapping[str, Permission] | None = None) -> list[StructuredTool]:
    """The actions as langchain-core tools (for `bind_tools`); `execute` runs them when given.

    `levels` (tools.permissions.action_levels) puts the spec's live permission levels
    into each tool's metadata; without it the static fallbacks are shown.
    """

    def make(spec: ActionSpec) -> StructuredTool:
        def run(**kwargs: Any) -> str:
            if execute is None:
                raise RuntimeError("tools are bound for proposals only; the graph executes them after guardrails")
            return execute(validate_proposal(spec.name, kwargs))

        tool = StructuredTool.from_function(func=run, name=spec.name, description=spec.description,
                                            args_schema=spec.args_model)
        tool.metadata = spec.declaration()
        if levels is not None and spec.name in levels:
            tool.metadata["permission"] = levels[spec.name].value
        return tool

    return [make(spec) for name, spec in ACTIONS.items() if name not in MAINTENANCE_ACTIONS]
