"""Control planes: where executed actions take effect.

`SimulatedControlPlane` is an in-process router (route weights, retry policies,
suppressed paths, alerts) that the simulator obeys, so an action really changes
later windows. `ShadowControlPlane` keeps the same ledger but moves nothing: on a
recorded or live feed with no orchestrator it records what would have run (the
feed cannot respond, so no outcome may be judged from it).
`tools.http_control_plane.HttpControlPlane` sends the same
actions to an orchestrator over HTTP. Every application is keyed by an
idempotency key (the decision id): the same action is never applied twice.
Actions carry a TTL and roll back when it expires; the agent records each
rollback in the audit trail like any action.

An application whose outcome is not known (the request may have reached the
orchestrator, but no answer came back) is kept "in force" unconfirmed and settled
by `reconcile()` on the next tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from payops.models import ExecutionResult, ProposedAction, target_key
from payops.signals.policy import Diversion, RetryPolicy, matches


@dataclass
class ActionInForce:
    action_id: str  # the idempotency key: the decision that ran it
    tool: str
    target: dict[str, str]
    args: dict[str, Any]
    applied_at: float
    expires_at: float
    confirmed: bool = True  # False: sent, outcome unknown; settled by reconcile()

    @property
    def key(self) -> str:
        return f"{self.tool}:{target_key(self.target)}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Alert:
    action_id: str
    severity: str
    summary: str
    target: dict[str, str]
    at: float


@dataclass(frozen=True)
class Reconciliation:
    """What reconcile() found out about an action whose outcome was unknown (or a late rollback)."""

    action_id: str
    tool: str
    target: dict[str, str]
    outcome: str  # confirmed | reapplied | dropped | still_unknown | rollback_failed
    detail: str


# Where an executed action runs (CONTRACT §4 "plane").
SIMULATED, SHADOW, HTTP = "simulated", "shadow", "http"
PLANES = (SIMULATED, SHADOW, HTTP)


@runtime_checkable
class ControlPlane(Protocol):
    """What the agent asks of every control plane (simulated, shadow, http): no capability is optional,
    so a tick calls each directly (tests/guardrails/test_guardrails_control_plane_protocol.py holds all three to it)."""

    plane: str  # SIMULATED | SHADOW | HTTP

    def apply(self, action: ProposedAction, idempotency_key: str, now: float) -> ExecutionResult:
        """Apply once per key; status executed / skipped / failed, or unknown (settled by reconcile)."""
        ...

    def rollback(self, action_id: str, now: float, reason: str) -> ExecutionResult: ...

    def expire(self, now: float) -> list[ActionInForce]:
        """Roll back every action whose TTL has passed; returns those rolled back now."""
        ...

    def in_force(self) -> list[ActionInForce]: ...

    def reconcile(self, now: float) -> list[Reconciliation]:
        """Settle unknown outcomes from earlier ticks (and report rollbacks that failed)."""
        ...

    def restore(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Rebuild after a restart from the checkpointed actions in force (`ActionInForce.to_json()`)."""
        ...

    def close(self) -> None:
        """Release what the plane holds open (an HTTP client); the plane is not used after."""
        ...


# Tools that change how traffic flows and so stay "in force" until rolled back.
STATEFUL_TOOLS = frozenset({"reroute_traffic", "adjust_retry_policy", "suppress_path"})


@dataclass
class SimulatedControlPlane:
    """An in-process router. Implements signals.policy.TrafficPolicy for the simulator."""

    plane = SIMULATED
    actions: dict[str, ActionInForce] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    applied_keys: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)

    # -- ControlPlane ---------------------------------------------------------
    def apply(self, action: ProposedAction, idempotency_key: str, now: float) -> ExecutionResult:
        if idempotency_key in self.applied_keys:
            return ExecutionResult(status="executed", detail="already applied (idempotent replay)",
                                   action_id=idempotency_key)
        self.applied_keys.add(idempotency_key)
        if action.tool == "alert_ops":
            self.alerts.append(Alert(idempotency_key, action.args.get("severity", "warning"),
                                     action.args.get("summary", ""), dict(action.target), now))
            self.history.append({"at": now, "op": "alert", "id": idempotency_key})
            return ExecutionResult(status="executed", detail=f"ops alerted ({action.args.get('severity', 'warning')})",
                                   action_id=idempotency_key)
        if action.tool == "no_action":
            return ExecutionResult(status="skipped", detail="no action taken", action_id=idempotency_key)
        if action.tool not in STATEFUL_TOOLS:
            return ExecutionResult(status="failed", detail=f"{action.tool} is not a control-plane action")
        ttl = float(action.args.get("ttl_seconds", 1800.0))
        record = ActionInForce(idempotency_key, action.tool, dict(action.target), dict(action.args), now, now + ttl)
        # One action per tool and target: a newer one replaces the older.
        for old_id, old in list(self.actions.items()):
            if old.key == record.key:
                del self.actions[old_id]
        self.actions[idempotency_key] = record
        self.history.append({"at": now, "op": "apply", "id": idempotency_key, "key": record.key})
        return ExecutionResult(status="executed", detail=_describe(record), action_id=idempotency_key)

    def rollback(self, action_id: str, now: float, reason: str) -> ExecutionResult:
        record = self.actions.pop(action_id, None)
        if record is None:
            return ExecutionResult(status="skipped", detail="nothing in force under that id", action_id=action_id)
        self.history.append({"at": now, "op": "rollback", "id": action_id, "reason": reason})
        return ExecutionResult(status="executed", detail=f"rolled back {record.key}: {reason}", action_id=action_id)

    def expire(self, now: float) -> list[ActionInForce]:
        expired = [a for a in self.actions.values() if a.expires_at <= now]
        for record in expired:
            self.rollback(record.action_id, now, "ttl expired")
        return expired

    def in_force(self) -> list[ActionInForce]:
        return sorted(self.actions.values(), key=lambda a: a.applied_at)

    def reconcile(self, now: float) -> list[Reconciliation]:
        return []  # in-process: every outcome is known at once

    def restore(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Rebuild after a restart from the checkpointed list of actions in force."""
        for raw in records:
            record = ActionInForce(**raw)
            self.actions[record.action_id] = record
            self.applied_keys.add(record.action_id)

    def close(self) -> None:
        """In-process: nothing is held open."""

    # -- TrafficPolicy --------------------------------------------------------
    def _matching(self, tool: str, dims: Mapping[str, str]) -> list[ActionInForce]:
        found = [a for a in self.actions.values() if a.tool == tool and matches(a.target, dims)]
        # The most specific target wins (more dimensions named).
        return sorted(found, key=lambda a: -len(a.target))

    def reroute(self, dims: Mapping[str, str], candidates: Mapping[str, float], draw: float) -> str | None:
        for action in self._matching("reroute_traffic", dims):
            share = float(action.args.get("percent", 100.0)) / 100.0
            if draw >= share:
                return None
            weights: dict[str, float] = {r: w for r, w in action.args.get("to_routes", {}).items() if w > 0}
            if not weights:
                return None
            # Re-use the draw (scaled into [0, 1)) to pick among destinations deterministically.
            point = (draw / share) * sum(weights.values())
            for route, weight in sorted(weights.items()):
                point -= weight
                if point < 0:
                    return route
            return sorted(weights)[-1]
        return None

    def suppression(self, dims: Mapping[str, str]) -> Diversion | None:
        for action in self._matching("suppress_path", dims):
            return Diversion(action.args.get("fallback"))
        return None

    def retry_policy(self, dims: Mapping[str, str]) -> RetryPolicy | None:
        for action in self._matching("adjust_retry_policy", dims):
            return RetryPolicy(int(action.args["max_attempts"]), float(action.args.get("backoff_ms", 500.0)))
        return None


class ShadowControlPlane(SimulatedControlPlane):
    """Records what would have run; changes no traffic (a trial on live traffic, a recorded feed).

    The ledger is the simulated one, so a shadow action is "in force" for cooldowns, TTLs
    and "already mitigated" exactly like a real one; the traffic-policy side answers as
    if nothing were in force, so even a simulator wired to it is not steered.
    Every tool is accepted, palm-pay operations included: nothing is sent anywhere.
    """

    plane = SHADOW

    def apply(self, action: ProposedAction, idempotency_key: str, now: float) -> ExecutionResult:
        if action.tool in STATEFUL_TOOLS or action.tool in ("alert_ops", "no_action"):
            result = super().apply(action, idempotency_key, now)
            why = "no traffic moved" if action.tool in STATEFUL_TOOLS else "the alert is marked shadow"
        elif idempotency_key in self.applied_keys:  # a re-run tick: recorded once already
            return ExecutionResult(status="executed", detail=f"{action.tool} already recorded (idempotent replay)",
                                   action_id=idempotency_key, plane=SHADOW)
        else:  # palm-pay and other one-off operations: recorded only
            self.applied_keys.add(idempotency_key)
            self.history.append({"at": now, "op": "record", "id": idempotency_key, "tool": action.tool})
            result = ExecutionResult(status="executed", detail=f"{action.tool} on {target_key(action.target)}",
                                     action_id=idempotency_key)
            why = "nothing sent"
        if result.status != "executed":
            return result
        return result.model_copy(update={"detail": f"{result.detail} (shadow: {why})", "plane": SHADOW})

    def rollback(self, action_id: str, now: float, reason: str) -> ExecutionResult:
        result = super().rollback(action_id, now, reason)
        if result.status != "executed":
            return result
        return result.model_copy(update={"detail": f"{result.detail} (shadow: nothing was sent)", "plane": SHADOW})

    # -- TrafficPolicy: nothing moves -------------------------------------------------
    def reroute(self, dims: Mapping[str, str], candidates: Mapping[str, float], draw: float) -> str | None:
        return None

    def suppression(self, dims: Mapping[str, str]) -> Diversion | None:
        return None

    def retry_policy(self, dims: Mapping[str, str]) -> RetryPolicy | None:
        return None


def _describe(record: ActionInForce) -> str:
    target = target_key(record.target)
    if record.tool == "reroute_traffic":
        dest = ", ".join(f"{r}:{w:g}" for r, w in record.args.get("to_routes", {}).items())
        return f"rerouted {record.args.get('percent', 100):g}% of {target} to {dest} until ttl"
    if record.tool == "adjust_retry_policy":
        return (f"retry policy for {target}: max_attempts={record.args['max_attempts']}, "
                f"backoff_ms={record.args.get('backoff_ms')}")
    if record.tool == "suppress_path":
        return f"suppressed {target}; fallback offered: {record.args.get('fallback') or 'none'}"
    return record.tool
