"""Watching an action over the ticks after it, and concluding: the outcome record, the lesson, a rollback.

An executed action that changes traffic (reroute, retry policy, suppression) is
watched for up to EVAL_WINDOWS windows that start after it took effect. Each
window adds the figures of its three scopes (target, destinations, platform);
`memory.verdicts` defines them and judges them (`judge`, a pure function).

In the graph: `learn` starts a `Watch` for an action executed this tick (and
`assess` for one a human approved, applied by observe); `assess` runs every
tick before reasoning, adds the window with `step`, and on a verdict calls
`conclude`: an audit record of kind "outcome", one lesson, and — if it harmed —
a rollback through the control plane and a critical alert.

The figures and the verdict are re-exported here (`__all__`): callers name this module for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from .lessons import Lesson
from .verdicts import (
    Expected,
    Figures,
    OutcomeEvidence,
    OutcomeVerdict,
    Scopes,
    SegmentLike,
    Verdict,
    carries,
    judge,
    two_proportion_z,
)

__all__ = [
    "EVALUATED_TOOLS", "EVAL_WINDOWS", "HARM_AFTER_WINDOWS", "Expected", "Figures", "InForce", "OutcomeEvidence",
    "OutcomeVerdict", "Scopes", "SegmentLike", "SnapshotLike", "Step", "Verdict", "Watch", "carries", "conclude",
    "destination_targets", "expected_of", "judge", "scopes_of", "step", "two_proportion_z",
]

# Windows pooled before "helped" or "no effect" is concluded: three minutes at the
# brief's 60 s tick is enough traffic to see a half-closed gap on a busy segment,
# and short enough that the lesson exists before the next similar incident.
EVAL_WINDOWS = 3
# Harm is concluded as soon as one window shows it: the rollback is cheap and
# every further minute of a harmful action costs payments.
HARM_AFTER_WINDOWS = 1

# Tools whose effect on traffic can be measured; alerts and palm-link operations
# change no traffic, so they get no verdict (their records are in the audit trail).
EVALUATED_TOOLS = frozenset({"reroute_traffic", "adjust_retry_policy", "suppress_path"})


class SnapshotLike(Protocol):
    """What the scope helpers read: a `signals.window.WindowSnapshot` fits (its `total` is read-only)."""

    @property
    def total(self) -> Any: ...

    def segment(self, **target: str) -> Any: ...


def destination_targets(tool: str, target: dict[str, str], args: dict[str, Any]) -> list[dict[str, str]]:
    """Where the target's traffic goes: a reroute's routes (same segment, other route),
    a suppression's fallback method; nothing for a retry policy or a suppression without fallback."""
    if tool == "reroute_traffic":
        rest = {k: v for k, v in target.items() if k != "route"}
        return [{**rest, "route": r} for r in sorted(args.get("to_routes") or {})]
    if tool == "suppress_path" and args.get("fallback"):
        return [{"method": str(args["fallback"])}]
    return []


def _segment(snapshot: SnapshotLike, target: dict[str, str]) -> Any:
    return snapshot.segment(**target) if target else snapshot.total


def _destination_segments(snapshot: SnapshotLike, tool: str, target: dict[str, str],
                          args: dict[str, Any]) -> list[Any] | None:
    wanted = destination_targets(tool, target, args)
    if not wanted:
        return None
    found = []
    for dest in wanted:
        seg = snapshot.segment(**dest)
        if seg is None and len(dest) > 1 and "route" in dest:
            seg = snapshot.segment(route=dest["route"])  # the pair is not segmented: the route as a whole
        found.append(seg)
    return found


def scopes_of(snapshot: SnapshotLike, tool: str, target: dict[str, str], args: dict[str, Any]) -> Scopes:
    dests = _destination_segments(snapshot, tool, target, args)
    return Scopes(
        target=Figures.of(_segment(snapshot, target)),
        platform=Figures.of(snapshot.total),
        destinations=Figures.union(Figures.of(s) for s in dests) if dests is not None else None,
    )


def expected_of(snapshot: SnapshotLike, tool: str, target: dict[str, str], args: dict[str, Any]) -> Expected:
    seg = _segment(snapshot, target)
    platform = float(snapshot.total.expected_failure_rate)
    dests = [s for s in (_destination_segments(snapshot, tool, target, args) or []) if s is not None]
    dest_rate = None
    if dests:
        n = sum(s.attempts for s in dests)
        dest_rate = sum(s.expected_failure_rate * s.attempts for s in dests) / n if n else platform
    return Expected(float(seg.expected_failure_rate) if seg is not None else platform, platform, dest_rate)


class Watch(BaseModel):
    """An action under evaluation, as plain JSON in the agent state (survives restarts)."""

    model_config = ConfigDict(extra="ignore")

    decision_id: str
    action_id: str
    tool: str
    target: dict[str, str] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    status: str = "executed"  # executed (autonomously) | approved (applied after a human said yes)
    approver: str | None = None
    decided_at: float  # the decision's window end
    applied_at: float
    expires_at: float
    signature: dict[str, str]
    diagnosis: dict[str, Any] = Field(default_factory=dict)  # category, target, confidence, summary
    before: dict[str, Any]
    expected: dict[str, Any]
    prior_target: dict[str, Any] | None = None
    others_in_force: list[str] = Field(default_factory=list)  # actions in force when it started
    after: dict[str, Any] | None = None
    windows: int = 0

    def evidence(self) -> OutcomeEvidence:
        return OutcomeEvidence(
            tool=self.tool,
            before=Scopes.from_json(self.before),
            after=Scopes.from_json(self.after),
            expected=Expected.from_json(self.expected),
            prior_target=Figures.from_json(self.prior_target) if self.prior_target else None,
            gives_up_target=self.tool == "suppress_path" and not self.args.get("fallback"),
        )


@dataclass(frozen=True)
class InForce:
    """An action in the control plane, as `step` needs it."""

    action_id: str
    applied_at: float
    confirmed: bool = True


@dataclass(frozen=True)
class Step:
    watch: Watch
    verdict: OutcomeVerdict | None  # None: keep watching
    still_in_force: bool


def step(watch: Watch, window_start: float, window_end: float, scopes: Scopes, in_force: Iterable[InForce]) -> Step:
    """Add this window to the watch if it measures the action alone; conclude when the evidence is in.

    A window counts when it starts at or after the action took effect, the action
    was in force all through it, and no other action started (or ended) meanwhile;
    otherwise the evaluation closes with the windows it already has.
    """
    current = {a.action_id: a for a in in_force}
    mine = current.get(watch.action_id)
    active = mine is not None  # expired, rolled back or replaced: the evaluation closes
    if mine is not None and not mine.confirmed:
        return Step(watch, None, True)  # the control plane has not confirmed it yet: nothing to measure
    started = [a.action_id for a in current.values()
               if a.action_id != watch.action_id and a.action_id not in watch.others_in_force
               and watch.applied_at < a.applied_at < window_end]
    ended = [i for i in watch.others_in_force if i not in current]
    if not active or started or ended:
        why = ("it was no longer in force" if not active else
               f"another action changed traffic ({', '.join(started or ended)})")
        if watch.windows == 0:
            return Step(watch, OutcomeVerdict("inconclusive", (f"no window measured it alone: {why}",)),
                        mine is not None)
        verdict = judge(watch.evidence())
        reasons = (*verdict.reasons, f"judged on {watch.windows} window(s): {why}")
        return Step(watch, OutcomeVerdict(verdict.verdict, reasons), mine is not None)
    if window_start < watch.applied_at - 1e-6:
        return Step(watch, None, True)  # the window overlaps the change
    after = Scopes.from_json(watch.after).plus(scopes) if watch.after else scopes
    watch = watch.model_copy(update={"after": after.to_json(), "windows": watch.windows + 1})
    verdict = judge(watch.evidence())
    if verdict.verdict == "harmed" and watch.windows >= HARM_AFTER_WINDOWS:
        return Step(watch, verdict, True)
    if watch.windows >= EVAL_WINDOWS:
        return Step(watch, verdict, True)
    return Step(watch, None, True)


# -- concluding: the outcome record, the lesson, and a rollback when it harmed -----------

def conclude(watch: Watch, verdict: OutcomeVerdict, in_force: bool, now: float, *, audit: Any, lessons: Any,
             control_plane: Any, notifier: Any) -> list[dict[str, Any]]:
    """Record the verdict (audit record of kind "outcome", one lesson); roll back and alert when it harmed.

    Returns the housekeeping notes for this tick's decision record.
    """
    notes: list[dict[str, Any]] = []
    rollback = None
    target = ",".join(f"{k}={watch.target[k]}" for k in sorted(watch.target)) or "*"
    if verdict.verdict == "harmed" and in_force:
        result = control_plane.rollback(watch.action_id, now, f"harmed: {verdict.reasons[0]}")
        rollback = result.model_dump(mode="json")
        notes.append({"op": "rollback", "action_id": watch.action_id, "tool": watch.tool, "target": watch.target,
                      "reason": "the action harmed: " + verdict.reasons[0], "result": result.detail})
        notifier.notify("alert", {
            "decision_id": watch.decision_id, "severity": "critical", "target": watch.target,
            "summary": f"{watch.tool} on {target} made things worse and was rolled back ({result.status}): "
                       f"{verdict.reasons[0]}",
        })
    record = {
        "decision_id": watch.decision_id, "verdict": verdict.verdict, "detail": verdict.detail,
        "reasons": list(verdict.reasons), "tool": watch.tool, "target": watch.target, "args": watch.args,
        "status": watch.status, "approver": watch.approver,
        "decided_at": watch.decided_at, "applied_at": watch.applied_at, "windows": watch.windows,
        "before": watch.before, "after": watch.after or {}, "expected": watch.expected, "signature": watch.signature,
        "rollback": rollback,
    }
    audit.append(watch.decision_id, "outcome", now, record)
    lessons.put(Lesson(
        decision_id=watch.decision_id, **watch.signature, tool=watch.tool, target=watch.target, args=watch.args,
        status=watch.status, approver=watch.approver, verdict=verdict.verdict, reasons=list(verdict.reasons),
        before=watch.before, after=watch.after or {}, windows=watch.windows,
        rolled_back=rollback is not None and rollback["status"] == "executed",
        created_at=watch.decided_at, applied_at=watch.applied_at, concluded_at=now,
    ))
    notes.append({"op": "outcome", "decision_id": watch.decision_id, "tool": watch.tool, "target": watch.target,
                  "verdict": verdict.verdict, "detail": verdict.detail})
    # Every conclusion is news for ops (console and webhook); a harm also raised the critical alert above.
    notifier.notify("outcome", {"decision_id": watch.decision_id, "tool": watch.tool, "target": watch.target,
                                "verdict": verdict.verdict,
                                "summary": f"outcome of {watch.tool} on {target}: {verdict.verdict} — "
                                           f"{verdict.reasons[0]}"})
    return notes
