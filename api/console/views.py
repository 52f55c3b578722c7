"""What the console's pages show, built from the agent's records (pure functions plus one cache).

The agent runs in `payops run` / `tick`, not in the server: every page reads the same audit trail,
approval book and lesson store the CLI reads. Decisions are decoded once and kept until the trail
grows (a tick a minute), so a page over 10,000 decisions filters in memory instead of re-reading them.
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from payops.chat.state import incident_runs
from payops.memory.audit import LOG_NAME, AuditEntry
from payops.storage.chain import Checkpoint

from ..models import Decision
from ..records import DecisionFilter, decision_from

STALE_TICKS = 3  # no decision for three ticks: the agent is down or stuck, and the page says so
CHART_NEIGHBOURS = 15  # decisions either side of the one charted
CLEARING_TOOLS = frozenset({"no_action"})
MITIGATIONS = frozenset({"reroute_traffic", "suppress_path", "adjust_retry_policy", "suspend_palm_link",
                         "revoke_palm_link"})


# -- time, one rule for every time a person reads -----------------------------------------

@dataclass(frozen=True)
class Clock:
    zone: ZoneInfo

    def show(self, ts: float | None, with_date: bool = True) -> str:
        if ts is None:
            return "—"
        moment = datetime.fromtimestamp(float(ts), tz=UTC).astimezone(self.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S") + f" {self.zone.key}"


def age_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- decisions ----------------------------------------------------------------------------

@dataclass
class DecisionRow:
    """A decision as the console lists it, plus the window's platform figures (from its record)."""

    decision: Decision
    attempts: int
    failures: int
    failure_rate: float
    target_key: str
    figures: dict[str, Any]

    @property
    def id(self) -> str:
        return self.decision.decision_id


def target_key(target: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(target.items())) or "all traffic"


def row_from(entry: AuditEntry) -> DecisionRow:
    decision = decision_from(entry)
    snapshot = entry.record.get("snapshot")
    snapshot = snapshot if isinstance(snapshot, dict) else {}
    figures = entry.record.get("figures")
    figures = figures if isinstance(figures, dict) else {}
    return DecisionRow(decision, int(snapshot.get("attempts") or 0), int(snapshot.get("failures") or 0),
                       float(snapshot.get("failure_rate") or 0.0), target_key(decision.diagnosis_target), figures)


@contextmanager
def _no_gc_pauses(bulk: bool) -> Iterator[None]:
    """Decoding a whole trail allocates ~10^6 objects that all live on: the cyclic collector would walk them
    again and again (measured: 1.1 s with it, 0.46 s without, at 10,000 decisions). Off for that first read."""
    if not bulk or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def warm_up(index: DecisionIndex, audit: Callable[[], Any]) -> None:
    """Decode the trail in the background when the console is first touched (the sign-in page), so the
    first page after `payops serve` starts does not wait for it. A shutdown meanwhile is safe: closing
    the trail's database waits for reads in flight (storage.db.SqliteDatabase.close)."""
    def run() -> None:
        with suppress(Exception):  # a page will read (and report) the trail itself; closed: nothing to warm
            index.rows(audit())

    threading.Thread(target=run, name="console-index-warm-up", daemon=True).start()


@dataclass
class DecisionIndex:
    """Decoded decisions, read incrementally: each call decodes only the records appended since the last.

    It also keeps the latest decision's raw entry (what is in force as the agent last recorded it), so
    pages never look for it among the last few records, which console sign-ins and outcomes push out.
    """

    _seq: int = 0
    _by_id: dict[str, DecisionRow] = field(default_factory=dict)
    _rows: list[DecisionRow] = field(default_factory=list)
    latest_entry: AuditEntry | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rows(self, audit: Any) -> list[DecisionRow]:
        with self._lock, _no_gc_pauses(bulk=self._seq == 0):
            fresh = list(audit.entries("decision", after=self._seq))
            if fresh:
                for entry in fresh:
                    self._by_id[entry.decision_id] = row_from(entry)  # a superseding record replaces the earlier one
                    self._seq = max(self._seq, entry.seq)
                self.latest_entry = fresh[-1]
                self._rows = sorted(self._by_id.values(), key=lambda r: r.decision.seq)
            return self._rows


def filtered(rows: Sequence[DecisionRow], keep: DecisionFilter, tool: str | None, limit: int) -> list[DecisionRow]:
    out = [r for r in reversed(rows) if keep(r.decision) and (tool is None or r.decision.action.tool == tool)]
    return out[:limit]


def find(rows: Sequence[DecisionRow], decision_id: str) -> DecisionRow | None:
    """By id or an unambiguous prefix (as `payops approve` takes it)."""
    exact = next((r for r in rows if r.id == decision_id), None)
    if exact is not None:
        return exact
    matches = [r for r in rows if r.id.startswith(decision_id)]
    return matches[0] if len(matches) == 1 else None


# -- now ----------------------------------------------------------------------------------

@dataclass
class Now:
    latest: DecisionRow | None
    age_seconds: float | None
    stale: bool
    success_rate: float | None
    volume: int
    in_force: list[dict[str, Any]]
    recent: list[DecisionRow]


def now_view(rows: Sequence[DecisionRow], in_force: list[dict[str, Any]], now: float, tick_seconds: float) -> Now:
    latest = rows[-1] if rows else None
    age = None if latest is None else now - latest.decision.window_end
    stale = latest is None or (age is not None and age > STALE_TICKS * tick_seconds)
    success = None if latest is None or not latest.attempts else 1.0 - latest.failure_rate
    return Now(latest, age, stale, success, latest.attempts if latest else 0, in_force, list(reversed(rows[-10:])))


def in_force_of(latest: AuditEntry | None) -> list[dict[str, Any]]:
    """Actions in force as the latest decision recorded them (the agent's control plane is not in this process)."""
    if latest is None:
        return []
    return [a for a in latest.record.get("in_force") or [] if isinstance(a, dict)]


# -- charts -------------------------------------------------------------------------------

def chart_series(rows: Sequence[DecisionRow], center: int, key: str | None, zone: str = "UTC") -> dict[str, Any]:
    """Failure rate and volume of the blamed segment (when recorded) and of all traffic around one decision."""
    lo, hi = max(0, center - CHART_NEIGHBOURS), min(len(rows), center + CHART_NEIGHBOURS + 1)
    window = rows[lo:hi]
    xs = [r.decision.window_end for r in window]
    platform_rate = [round(100 * r.failure_rate, 2) for r in window]
    platform_volume = [r.attempts for r in window]
    segment_rate: list[float | None] = []
    segment_ref: list[float | None] = []
    segment_volume: list[int | None] = []
    for r in window:
        seg = (r.figures.get("segments") or {}).get(key) if key else None
        if isinstance(seg, dict) and seg.get("attempts"):
            segment_rate.append(round(100 * seg["failures"] / seg["attempts"], 2))
            segment_ref.append(round(100 * float(seg.get("expected_rate") or 0.0), 2))
            segment_volume.append(int(seg["attempts"]))
        else:
            segment_rate.append(None)
            segment_ref.append(None)
            segment_volume.append(None)
    return {"x": xs, "marker": rows[center].decision.window_end if rows else None, "segment": key, "zone": zone,
            "platform_rate": platform_rate, "platform_volume": platform_volume,
            "segment_rate": segment_rate, "segment_reference": segment_ref, "segment_volume": segment_volume}


# -- incidents ----------------------------------------------------------------------------

@dataclass
class Incident:
    id: str
    segment: str
    category: str
    decisions: list[DecisionRow]

    @property
    def start(self) -> float:
        return self.decisions[0].decision.window_end

    @property
    def end(self) -> float:
        return self.decisions[-1].decision.window_end

    @property
    def first_response(self) -> DecisionRow | None:
        return next((d for d in self.decisions if d.decision.action.tool not in CLEARING_TOOLS), None)

    @property
    def mitigation(self) -> DecisionRow | None:
        return next((d for d in self.decisions if d.decision.executed and d.decision.action.tool in MITIGATIONS), None)

    @property
    def failed_payments(self) -> int:
        key = self.segment
        total = 0
        for d in self.decisions:
            seg = (d.figures.get("segments") or {}).get(key)
            total += int(seg["failures"]) if isinstance(seg, dict) and "failures" in seg else d.failures
        return total


def incidents(rows: Iterable[DecisionRow]) -> list[Incident]:
    """Incidents by the chat's rule (payops.chat.state.incident_runs), newest first."""
    runs = incident_runs(rows, lambda r: r.decision.category, lambda r: r.target_key)
    return [Incident(run[0].id, run[0].target_key, run[0].decision.category, run) for run in reversed(runs)]


# -- audit --------------------------------------------------------------------------------

def last_checkpoint(audit: Any) -> Checkpoint | None:
    """The newest signed checkpoint of the agent's trail (read from the end of the checkpoint file), if it keeps any."""
    checkpoints = getattr(getattr(audit, "keys", None), "checkpoints", None)
    return checkpoints.last(LOG_NAME) if checkpoints is not None else None


# -- chat ---------------------------------------------------------------------------------

def linked_answer(text: str, cited: Sequence[str]) -> Markup:
    """A chat answer as HTML: the text escaped, every decision id it cites made a link to that decision."""
    html = str(escape(text))
    for decision_id in sorted(set(cited), key=len, reverse=True):
        safe = str(escape(decision_id))
        html = re.sub(rf"(?<![\w-]){re.escape(safe)}(?![\w-])", f'<a href="/console/decisions/{safe}">{safe}</a>', html)
    return Markup(html)
