"""What did earlier actions do? The outcome-watching job of a tick.

`assess` runs between observe and reason: it measures the actions under evaluation on this window,
concludes the ones whose verdict is in (rolling back what harmed and keeping the lesson: the judging
and recording live in memory.outcomes), and starts watching the actions a human approved. `learn`
starts watching an action the agent executed itself (`watch_for`). `signature` is an incident's
signature for lessons, shared with `reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from langgraph.runtime import Runtime

from payops.memory.lessons import Signature, magnitude_bucket
from payops.memory.outcomes import EVALUATED_TOOLS, Figures, InForce, Watch, conclude, expected_of, scopes_of, step
from payops.models import Category, Diagnosis, ProposedAction, target_key
from payops.signals.window import WindowSnapshot
from payops.tools.control_plane import SHADOW

from .reasoners.rules import segment_methods
from .services import AgentServices, Context, services_of
from .state import AgentState, Housekeeping, RecentDecision, WatchJson, in_force_json

LESSON_ERROR_CODES = 3  # top error codes in a lesson's signature


def moves_are_real(svc: AgentServices) -> bool:
    """False on the shadow plane: its actions moved nothing, so the feed shows no effect of them
    and judging one (or learning from the verdict) would teach the agent something untrue."""
    return svc.control_plane.plane != SHADOW


def signature(diagnosis: Diagnosis, snapshot: WindowSnapshot) -> Signature:
    """The incident's signature for lessons: where, what kind of errors, how big, which methods."""
    seg = snapshot.segment(**diagnosis.target) if diagnosis.target else snapshot.total
    seg = seg or snapshot.total
    ranked = sorted(seg.errors.items(), key=lambda kv: (-kv[1], kv[0]))
    return Signature(
        category=diagnosis.category.value,
        target_key=target_key(diagnosis.target),
        target_dims=",".join(sorted(diagnosis.target)) or "*",
        dominant_error=ranked[0][0] if ranked else "NONE",
        error_codes=",".join(code for code, _ in ranked[:LESSON_ERROR_CODES]),
        magnitude=magnitude_bucket(seg.failure_rate),
        method_mix=",".join(sorted(segment_methods(snapshot, diagnosis.target))),
    )


def assess(state: AgentState, runtime: Runtime[Context]) -> AgentState:
    """Measure the actions under evaluation on this window; conclude, roll back what harmed, keep the lesson.

    Runs before reasoning, so a harmful action is gone (and its lesson stored) before
    the agent decides again. The judging and recording live in memory.outcomes.
    """
    svc = services_of(runtime.context)
    snapshot = state["window"]
    now = float(state["window_end"])
    watching = [Watch.model_validate(w) for w in state.get("watching") or []]
    notes = list(state.get("housekeeping") or [])
    started = (_approved_watches(svc, state, snapshot, notes, {w.decision_id for w in watching}, now)
               if moves_are_real(svc) else [])
    if not watching and not started:
        return {}
    in_force = [InForce(a.action_id, a.applied_at, a.confirmed) for a in svc.control_plane.in_force()]
    keep: list[WatchJson] = []
    concluded = False
    for watch in watching:
        scopes = scopes_of(snapshot, watch.tool, watch.target, watch.args)
        result = step(watch, snapshot.window_start, now, scopes, in_force)
        if result.verdict is None:
            keep.append(cast(WatchJson, result.watch.model_dump(mode="json")))
            continue
        notes += cast(list[Housekeeping], conclude(result.watch, result.verdict, result.still_in_force, now,
                                                   audit=svc.audit, lessons=svc.lessons,
                                                   control_plane=svc.control_plane, notifier=svc.notifier))
        concluded = True
    updates: AgentState = {"watching": keep + started, "housekeeping": notes}
    if concluded:
        updates["in_force"] = in_force_json(svc.control_plane)
    return updates


def _approved_watches(svc: AgentServices, state: AgentState, snapshot: WindowSnapshot, notes: list[Housekeeping],
                      known: set[str], now: float) -> list[WatchJson]:
    """Actions a human approved, applied by observe this tick: measured from the next window on."""
    out = []
    for note in notes:
        if (note.get("op") != "approved_action_applied" or note.get("tool") not in EVALUATED_TOOLS
                or note["decision_id"] in known):
            continue
        found = svc.approvals.get(note["decision_id"]) if svc.approvals is not None else None
        if found is None or not found.request.get("diagnosis"):
            continue
        proposal = ProposedAction.model_validate(found.request["proposal"])
        watch = watch_for(svc, state, snapshot, note["decision_id"], found.request["diagnosis"], proposal, "approved",
                          note.get("approver"), float(found.request.get("window_end") or now), now)
        if watch is not None:
            out.append(watch)
    return out


def target_figures(diagnosis: Mapping[str, Any], snapshot: WindowSnapshot) -> dict[str, Any] | None:
    """The diagnosed segment's figures, kept in `recent` as the next decision's "window before"."""
    if diagnosis.get("category") == Category.HEALTHY.value:
        return None
    target = diagnosis.get("target") or {}
    segment = snapshot.segment(**target) if target else snapshot.total
    return {"target_key": target_key(target), **Figures.of(segment).to_json()}


def watch_for(svc: AgentServices, state: AgentState, snapshot: WindowSnapshot, decision_id: str,
              diagnosis: Mapping[str, Any], proposal: ProposedAction, status: str, approver: str | None,
              decided_at: float, now: float) -> WatchJson | None:
    """Start measuring an action just applied; the current window is its "before"."""
    current = svc.control_plane.in_force()
    mine = next((a for a in current if a.action_id == decision_id), None)
    if mine is None:
        return None  # nothing in force to measure
    recent = state.get("recent") or []
    last: RecentDecision | None = recent[-1] if recent else None
    figures = last.get("figures") if last else None
    prior = None
    if last and figures and now - float(last["window_end"]) <= 1.5 * svc.settings.tick_seconds \
            and figures.get("target_key") == target_key(proposal.target):
        prior = figures
    watch = Watch(
        decision_id=decision_id, action_id=mine.action_id, tool=proposal.tool, target=dict(proposal.target),
        args=dict(proposal.args),
        status=status, approver=approver, decided_at=decided_at, applied_at=mine.applied_at, expires_at=mine.expires_at,
        signature=signature(Diagnosis.model_validate(diagnosis), snapshot).model_dump(),
        diagnosis={k: diagnosis.get(k) for k in ("category", "target", "confidence", "summary")},
        before=scopes_of(snapshot, proposal.tool, proposal.target, proposal.args).to_json(),
        expected=expected_of(snapshot, proposal.tool, proposal.target, proposal.args).to_json(),
        prior_target=prior, others_in_force=[a.action_id for a in current if a.action_id != decision_id],
    )
    return cast(WatchJson, watch.model_dump(mode="json"))
