"""Where an allowed (or approved) action goes: palm-pay operations to the palm-pay
backend (tools.palm_ops), everything else to the traffic control plane."""

from __future__ import annotations

from payops.models import ExecutionResult, ProposedAction

from .actions import PALM_ACTIONS
from .control_plane import SHADOW, ControlPlane
from .palm_ops import PalmOps


def execute(proposal: ProposedAction, idempotency_key: str, now: float, *, control_plane: ControlPlane,
            palm: PalmOps | None, approver: str | None = None) -> ExecutionResult:
    """Run one validated proposal once per idempotency key (the decision id). Never raises for an outcome.

    On the shadow plane nothing runs anywhere, palm-pay operations included: the plane records them.
    """
    plane = control_plane.plane
    if proposal.tool == "rollback_action":
        result = control_plane.rollback(str(proposal.args["action_id"]), now, str(proposal.args["reason"]))
    elif proposal.tool in PALM_ACTIONS and plane != SHADOW:
        if palm is None:
            return ExecutionResult(status="failed", detail="palm-pay backend not attached to this agent",
                                   action_id=idempotency_key)
        return palm.execute(proposal, idempotency_key, approver=approver)
    else:
        result = control_plane.apply(proposal, idempotency_key, now)
    return result.model_copy(update={"plane": plane}) if plane and result.plane is None else result
