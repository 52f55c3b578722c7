"""What the guardrails see of a tick: the `GuardContext` built from the state and the services.

`guard` (graph/nodes.py) evaluates the policies against it, and observe rebuilds it to re-check an
approved action's deny rules at apply time. It reads the history of executed actions (`history_of`),
which `act` and `escalate` also carry forward in the state.
"""

from __future__ import annotations

from typing import cast

from payops.guardrails.metrics import action_blast_radius, palm_metrics
from payops.guardrails.policies import GuardContext, PastAction, Rejection, RouteHealth
from payops.memory.approvals import REJECTED
from payops.models import ProposedAction, target_key
from payops.signals.window import WindowSnapshot
from payops.tools.actions import ACTIONS
from payops.tools.permissions import refreshed

from .approval import SYSTEM
from .reasoners.rules import route_health, segment_methods
from .reasoners.selection import FORMER_ROUTE_WINDOWS
from .services import AgentServices
from .state import AgentState, HistoryEntry

HISTORY_LIMIT = 200
# How long an operator's "no" to a move keeps the agent from making it alone (guardrails.human_said_no):
# an hour outlasts the incident it was about, while a later incident may still be asked about.
REJECTION_HOLD_SECONDS = 3600.0


def history_of(state: AgentState) -> list[HistoryEntry]:
    """Executed actions, newest last, including the approved ones applied by this tick's housekeeping."""
    history = list(state.get("history", []))
    seen = {h.get("decision_id") for h in history}
    for note in state.get("housekeeping") or []:
        if note.get("op") == "approved_action_applied" and note.get("status") in ("executed", "unknown") \
                and note["decision_id"] not in seen:
            history.append({"tool": cast(str, note["tool"]), "target": note["target"], "args": note.get("args", {}),
                            "at": note["at"], "autonomous": False, "decision_id": note["decision_id"],
                            "approver": note.get("approver")})
    return history[-HISTORY_LIMIT:]


def guard_context(state: AgentState, svc: AgentServices, proposal: ProposedAction) -> GuardContext:
    snapshot = state["window"]
    s = svc.settings
    svc.permissions = refreshed(svc.permissions)  # an edited palm-pay spec takes effect on the next decision
    spec = ACTIONS.get(proposal.tool)
    link = str(proposal.args.get("palm_pay_id", "")) if spec is not None and spec.palm else ""
    palm = svc.palm if link else None
    health = {r: RouteHealth(h, m, rate) for r, (h, m, rate) in route_health(snapshot, s.significance_z).items()}
    if proposal.tool == "reroute_traffic":
        health.update(_quiet_destinations(proposal, snapshot, svc.recent_windows, health))
    history = tuple(PastAction(h["tool"], h["target"], h.get("args", {}), h["at"], h.get("autonomous", True))
                    for h in history_of(state))
    in_force = tuple(PastAction(a["tool"], a["target"], a["args"], a["applied_at"], True)
                     for a in state.get("in_force", []))
    link_attempts = palm.attempts_between(link, snapshot.window_start, snapshot.window_end) if palm else None
    return GuardContext(
        now=float(state["window_end"]),
        permissions=svc.permissions,
        confidence_threshold=s.confidence_threshold,
        max_autonomous_volume=s.max_autonomous_volume,
        cooldown_seconds=s.action_cooldown_seconds,
        max_autonomous_actions_per_hour=s.max_autonomous_actions_per_hour,
        blast_radius=action_blast_radius(spec, proposal, snapshot, link_attempts),
        in_force=in_force,
        history=history,
        routes=health,
        target_methods=(frozenset(segment_methods(snapshot, proposal.target)) if proposal.tool == "reroute_traffic"
                        else frozenset()),
        target_failure_rate=_moved_failure_rate(snapshot, proposal),
        palm_metrics=palm_metrics(snapshot, palm.consecutive_failures(link) if palm else 0),
        harmed_before=_harmed_before(state),
        rejected=_rejected_recently(svc),
    )


def _quiet_destinations(proposal: ProposedAction, snapshot: WindowSnapshot, recent: list[WindowSnapshot],
                        health: dict[str, RouteHealth]) -> dict[str, RouteHealth]:
    """Destinations that carried nothing in this window, as they were in the latest recent window that saw them
    (FORMER_ROUTE_WINDOWS back): a method misrouted away leaves its own route empty, and "carried no traffic" would
    deny sending it back outright. Their health then is what the guardrail judges; a human confirms."""
    out: dict[str, RouteHealth] = {}
    earlier = [w for w in recent if w.window_end < snapshot.window_end][-FORMER_ROUTE_WINDOWS:]
    for route in proposal.args.get("to_routes") or {}:
        if route in health:
            continue
        for w in reversed(earlier):
            then = route_health(w, 0.0).get(route)
            if then is not None:
                out[str(route)] = RouteHealth(*then, quiet_for=snapshot.window_end - w.window_end)
                break
    return out


def _rejected_recently(svc: AgentServices) -> dict[tuple[str, str], Rejection]:
    """Moves an operator (not the system: an expiry, a supersession) rejected within REJECTION_HOLD_SECONDS."""
    if svc.approvals is None:
        return {}
    out: dict[tuple[str, str], Rejection] = {}
    for a in svc.approvals.by_status(REJECTED, decided_since=svc.clock() - REJECTION_HOLD_SECONDS):
        proposal = a.request.get("proposal") or {}
        if a.approver and a.approver != SYSTEM and proposal.get("tool"):
            confidence = float((a.request.get("diagnosis") or {}).get("confidence") or 0.0)
            out[(str(proposal["tool"]), target_key(proposal.get("target") or {}))] = Rejection(
                a.decision_id, confidence, float(a.decided_at or 0.0) + REJECTION_HOLD_SECONDS)
    return out


def _harmed_before(state: AgentState) -> tuple[str, ...]:
    track = state.get("track_record")
    return tuple((track.get("harmed_ids") or ()) if track else ())


def _moved_failure_rate(snapshot: WindowSnapshot, proposal: ProposedAction) -> float | None:
    if proposal.tool != "reroute_traffic":
        return None
    seg = snapshot.segment(**proposal.target) if proposal.target else snapshot.total
    return seg.failure_rate if seg is not None and seg.attempts else None
