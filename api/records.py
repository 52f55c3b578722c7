"""From audit records to API bodies, and the decision filters (pure functions).

Audit records are redacted before they are stored, so what is read here is
already safe to return. Older or partial records are read leniently: a missing
field becomes empty rather than a server error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from payops.memory.approvals import Approval as StoredApproval
from payops.memory.audit import AuditEntry
from payops.memory.redact import mask_text, redact

from .models import Action, Approval, AuditRecord, Decision


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def decision_from(entry: AuditEntry) -> Decision:
    """A "decision" audit record as CONTRACT §4 reads it (executed = ran autonomously, not no_action)."""
    r = entry.record
    d, p, x, v = _dict(r.get("diagnosis")), _dict(r.get("proposal")), _dict(r.get("execution")), _dict(r.get("verdict"))
    tool = str(p.get("tool") or "no_action")
    status = str(x.get("status") or "unknown")
    return Decision(
        decision_id=str(r.get("decision_id") or entry.decision_id),
        seq=entry.seq,
        window_end=_float(r.get("window_end"), entry.at),
        category=str(d.get("category") or "unknown"),
        confidence=_float(d.get("confidence")),
        summary=d.get("summary") if isinstance(d.get("summary"), str) else None,
        diagnosis_target=_str_map(d.get("target")),
        action=Action(tool=tool, target=_str_map(p.get("target")), args=_dict(p.get("args"))),
        verdict=v.get("verdict") if isinstance(v.get("verdict"), str) else None,
        status=status,
        executed=status == "executed" and tool != "no_action",
        plane=(x.get("plane") if status == "executed" and tool != "no_action" and isinstance(x.get("plane"), str)
               else None),
        escalated=status == "escalated",
        evidence=[str(e) for e in d.get("evidence") or () if e is not None],
    )


def audit_record(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(seq=entry.seq, kind=entry.kind, at=entry.at, hash=entry.hash, record=entry.record)


@dataclass(frozen=True)
class DecisionFilter:
    since: float | None = None  # window_end >= since
    until: float | None = None  # window_end <= until
    category: str | None = None
    segments: tuple[tuple[str, str], ...] = ()  # every key=value must be in the blamed segment or the action's target
    executed: bool | None = None
    escalated: bool | None = None
    before_seq: int | None = None

    def __call__(self, d: Decision) -> bool:
        if self.before_seq is not None and d.seq >= self.before_seq:
            return False
        if self.since is not None and d.window_end < self.since:
            return False
        if self.until is not None and d.window_end > self.until:
            return False
        if self.category is not None and d.category != self.category:
            return False
        if self.executed is not None and d.executed != self.executed:
            return False
        if self.escalated is not None and d.escalated != self.escalated:
            return False
        return all(d.diagnosis_target.get(k) == v or d.action.target.get(k) == v for k, v in self.segments)


def parse_segment(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def newest_first(entries: Iterable[AuditEntry], keep: DecisionFilter, limit: int) -> tuple[list[Decision], int | None]:
    """The newest `limit` matching decisions, and the cursor for the next page (None when none is left)."""
    matching = [d for d in (decision_from(e) for e in entries) if keep(d)]
    matching.sort(key=lambda d: d.seq, reverse=True)
    page = matching[:limit]
    return page, (page[-1].seq if len(matching) > limit else None)


def approval_from(a: StoredApproval) -> Approval:
    # The approval book keeps the request as the agent wrote it: mask it like the audit trail does.
    request = _dict(redact(_dict(a.request)))
    proposal, diagnosis = _dict(request.get("proposal")), _dict(request.get("diagnosis"))
    why = request.get("why_approval")
    return Approval(
        decision_id=a.decision_id, status=a.status,
        tool=proposal.get("tool") if isinstance(proposal.get("tool"), str) else None,
        target=_str_map(proposal.get("target")),
        category=diagnosis.get("category") if isinstance(diagnosis.get("category"), str) else None,
        confidence=_float(diagnosis.get("confidence")) if diagnosis.get("confidence") is not None else None,
        why_approval=[str(w) for w in why] if isinstance(why, list) else [],
        created_at=a.created_at, expires_at=a.expires_at, approver=a.approver,
        note=mask_text(a.note) if a.note else None, decided_at=a.decided_at,
    )


def decision_entry(entries: Sequence[AuditEntry]) -> AuditEntry | None:
    return next((e for e in entries if e.kind == "decision"), None)
