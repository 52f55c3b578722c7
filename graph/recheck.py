"""Approvals re-checked at apply time: has the finding an approval answered cleared meanwhile?

A human may answer after the incident ended; applying the action then moves healthy
traffic. The test is the rules' own (selection.cleared_since, the one behind rolling
back an action whose cause cleared), over the latest windows since the decision.

Those windows must survive a restart (a cron `payops tick` is a new process every
minute), so while a request waits, each tick keeps the finding's segment of its window
in the checkpointed `awaiting` entry (a few numbers per window, at most
CLEARED_MIN_WINDOWS of them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from payops.models import Category, ProposedAction
from payops.signals.window import SegmentStats, WindowSnapshot

from .reasoners.base import ReasoningContext, Thresholds
from .reasoners.selection import CLEARED_MIN_WINDOWS, TRAFFIC_TOOLS, cleared_since


@dataclass(frozen=True)
class SeenWindow:
    """One window of the finding's segment as the checkpoint keeps it; quacks like a snapshot for cleared_since."""

    window_start: float
    window_end: float
    seg: SegmentStats | None

    def segment(self, **_: str) -> SegmentStats | None:
        return self.seg

    @property
    def total(self) -> SegmentStats | None:
        return self.seg


def seen(snapshot: WindowSnapshot, target: dict[str, str]) -> dict[str, Any]:
    """The JSON the awaiting entry keeps of one window."""
    seg = snapshot.segment(**target) if target else snapshot.total
    return {"window_start": snapshot.window_start, "window_end": snapshot.window_end,
            "seg": asdict(seg) if seg is not None else None}


def remember(waiting: dict[str, Any], snapshot: WindowSnapshot) -> dict[str, Any]:
    """The awaiting entry with this window added (bounded: the test reads the latest few)."""
    if "finding" not in waiting:
        return waiting  # recorded before this existed: nothing to watch
    kept = [w for w in waiting.get("seen") or [] if w["window_end"] < snapshot.window_end][-(CLEARED_MIN_WINDOWS - 1):]
    return {**waiting, "seen": [*kept, seen(snapshot, waiting["finding"])]}


def _window(raw: dict[str, Any]) -> SeenWindow:
    seg = raw.get("seg")
    stats = None
    if seg is not None:
        stats = SegmentStats(**{**seg, "dims": tuple(tuple(d) for d in seg["dims"]), "errors": dict(seg["errors"])})
    return SeenWindow(float(raw["window_start"]), float(raw["window_end"]), stats)


def cleared_reason(request: dict[str, Any], proposal: ProposedAction, snapshot: WindowSnapshot,
                   kept: list[dict[str, Any]], thresholds: Thresholds) -> str | None:
    """Why the approved traffic action must be voided (its finding has cleared), or None.

    Alerts and no-ops are left alone; a finding still unknown (too few windows seen since
    the decision) does not void: the human's answer stands.
    """
    diagnosis = request.get("diagnosis") or {}
    if proposal.tool not in TRAFFIC_TOOLS or diagnosis.get("category") in (None, Category.HEALTHY.value):
        return None
    target = dict(diagnosis.get("target") or proposal.target)
    decided_at = float(request.get("window_end") or snapshot.window_end)
    history = tuple(_window(w) for w in kept if float(w["window_end"]) < snapshot.window_end)
    context = ReasoningContext(history=history, thresholds=thresholds)  # type: ignore[arg-type]
    # The latest windows since the decision: the request may have waited through the rest of
    # the incident, which must not keep an ended one "persisting".
    status, why = cleared_since(target, decided_at, snapshot, context, "the decision", latest=CLEARED_MIN_WINDOWS)
    return f"the finding has cleared since the decision ({why})" if status == "cleared" else None
