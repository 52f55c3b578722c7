"""Ops chat, the state of things as the records show it: what is pending approval, what is in force,
what was rolled back or harmed, which incidents there were. Pure functions over a read-only audit
source; every figure they return is copied from a record, never computed into a new claim.

"Now" is the agent's clock: the newest decision's window end (event time), so a recorded run is
read as of its last tick, not as of the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from payops.memory.audit import AuditEntry


class AuditSource(Protocol):
    def entries(self, kind: str | None = None) -> Iterable[AuditEntry]: ...

    def get(self, decision_id: str) -> list[AuditEntry]: ...


def window_end(e: AuditEntry) -> float:
    return float(e.record.get("window_end", e.at))


def latest_decision(audit: AuditSource) -> AuditEntry | None:
    last = None
    for e in audit.entries("decision"):
        last = e
    return last


@dataclass(frozen=True)
class Pending:
    decision_id: str
    at: float
    tool: str
    target: dict[str, str]
    category: str
    confidence: float
    expires_at: float
    why: tuple[str, ...]  # the guardrails that asked for a human


def pending_approvals(audit: AuditSource, now: float) -> list[Pending]:
    """Escalated decisions with no answer recorded and not yet expired at `now`, oldest first."""
    answered = {e.decision_id for e in audit.entries("approval")}
    out = []
    for e in audit.entries("decision"):
        r = e.record
        approval = r.get("approval") or {}
        if (r.get("execution") or {}).get("status") != "escalated" or e.decision_id in answered:
            continue
        expires = float(approval.get("expires_at") or 0.0)
        if approval.get("status", "pending") != "pending" or (expires and expires <= now):
            continue
        p, d = r.get("proposal") or {}, r.get("diagnosis") or {}
        why = tuple(str(x.get("reason")) for x in (r.get("verdict") or {}).get("results") or []
                    if x.get("verdict") == "needs_approval")
        out.append(Pending(e.decision_id, window_end(e), str(p.get("tool")), p.get("target") or {},
                           str(d.get("category")), float(d.get("confidence", 0.0)), expires, why))
    return out


@dataclass(frozen=True)
class InForce:
    action_id: str
    tool: str
    target: dict[str, str]
    args: dict[str, Any]
    applied_at: float | None
    expires_at: float | None


def actions_in_force(audit: AuditSource) -> tuple[AuditEntry | None, list[InForce]]:
    """What the newest decision recorded as in force (CONTRACT §4), with that decision."""
    last = latest_decision(audit)
    if last is None:
        return None, []
    return last, [InForce(str(a.get("action_id")), str(a.get("tool")), a.get("target") or {}, a.get("args") or {},
                          a.get("applied_at"), a.get("expires_at")) for a in last.record.get("in_force") or []]


@dataclass(frozen=True)
class Rollback:
    action_id: str  # the decision whose action was undone
    at: float
    tool: str
    target: dict[str, str]
    reason: str
    by: str  # the decision or record that undid it
    status: str


def rollbacks(audit: AuditSource) -> list[Rollback]:
    """Every undone action: a harmed outcome's rollback, a rollback decision (cause cleared), a TTL expiry."""
    out: list[Rollback] = []
    for e in audit.entries("outcome"):
        rb = e.record.get("rollback")
        if rb:
            out.append(Rollback(e.decision_id, e.at, str(e.record.get("tool")), e.record.get("target") or {},
                                f"its outcome was {e.record.get('verdict')}: "
                                + "; ".join(e.record.get("reasons") or []),
                                e.decision_id, str(rb.get("status", ""))))
    for e in audit.entries("decision"):
        p = e.record.get("proposal") or {}
        if p.get("tool") == "rollback_action":
            status = str((e.record.get("execution") or {}).get("status"))
            args = p.get("args") or {}
            undone = str(args.get("action_id", ""))
            original = next((x for x in audit.get(undone) if x.kind == "decision"), None) if undone else None
            op = (original.record.get("proposal") or {}) if original else {}
            out.append(Rollback(undone, window_end(e), str(op.get("tool", "an action")), op.get("target") or {},
                                str(args.get("reason", "")), e.decision_id, status))
    for e in audit.entries("rollback"):
        out.append(Rollback(e.decision_id, e.at, str(e.record.get("tool")), e.record.get("target") or {},
                            str(e.record.get("reason") or e.record.get("detail") or e.record.get("outcome")
                                or "its time ran out"),
                            e.decision_id, str((e.record.get("execution") or {}).get("status", "executed"))))
    return sorted(out, key=lambda r: r.at)


def harmful_outcomes(audit: AuditSource) -> list[AuditEntry]:
    return [e for e in audit.entries("outcome") if e.record.get("verdict") == "harmed"]


@dataclass
class Incident:
    """Consecutive decisions that blamed the same segment (or all traffic): see `incident_runs`."""

    category: str
    target: dict[str, str]
    first: AuditEntry
    last: AuditEntry
    decisions: list[str] = field(default_factory=list)
    worst_rate: float | None = None  # the highest platform failure rate among its windows
    worst_evidence: str = ""  # the blamed segment's figures in the window where the platform was worst
    worst_id: str = ""  # that window's decision (cited with the figures)
    actions: list[str] = field(default_factory=list)  # decision ids that proposed an action


T = TypeVar("T")


def incident_runs(decisions: Iterable[T], category: Callable[[T], str],
                  segment: Callable[[T], Hashable]) -> list[list[T]]:
    """The one rule for an incident, for the chat and the console alike: consecutive non-healthy
    decisions that blame one segment (or all traffic), oldest first. A healthy decision ends it; a
    decision blaming another segment starts the next; a change of category about the same segment
    does not (an issuer finding that becomes a network one is still one outage of that segment)."""
    runs: list[list[T]] = []
    current: list[T] | None = None
    current_segment: Hashable = None
    for d in decisions:
        if category(d) == "healthy":
            current = None
            continue
        if current is None or segment(d) != current_segment:
            current, current_segment = [], segment(d)
            runs.append(current)
        current.append(d)
    return runs


def _blamed(e: AuditEntry) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(((e.record.get("diagnosis") or {}).get("target") or {}).items()))


def _category(e: AuditEntry) -> str:
    return str((e.record.get("diagnosis") or {}).get("category"))


def incidents(audit: AuditSource, since: float | None = None, until: float | None = None) -> list[Incident]:
    """The incidents among the decisions whose window ends in [since, until), oldest first."""
    chosen = [e for e in audit.entries("decision")
              if (since is None or window_end(e) >= since) and (until is None or window_end(e) < until)]
    out: list[Incident] = []
    for run in incident_runs(chosen, _category, _blamed):
        first = run[0]
        current = Incident(_category(first), (first.record.get("diagnosis") or {}).get("target") or {}, first, run[-1])
        for e in run:
            d, p = e.record.get("diagnosis") or {}, e.record.get("proposal") or {}
            current.decisions.append(e.decision_id)
            rate = (e.record.get("snapshot") or {}).get("failure_rate")
            if rate is not None and (current.worst_rate is None or rate > current.worst_rate):
                current.worst_rate = float(rate)
                current.worst_evidence = str((d.get("evidence") or [""])[0])
                current.worst_id = e.decision_id
            if p.get("tool") not in (None, "no_action"):
                current.actions.append(e.decision_id)
        out.append(current)
    return out


def latest_about(audit: AuditSource, segment_match: Any) -> AuditEntry | None:
    """The newest decision whose diagnosis blamed a segment `segment_match(target)` accepts."""
    found = None
    for e in audit.entries("decision"):
        if segment_match((e.record.get("diagnosis") or {}).get("target") or {}):
            found = e
    return found
