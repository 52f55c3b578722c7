"""Ops chat, the records: read-only views of the audit trail and the lessons, typed results,
the display zone's times, and `ChatTools` — the three lookups every answer is built from.

Read-only by construction: SQLite connections are opened `mode=ro`, and a PostgreSQL trail is
reached through a view that exposes only its reading methods. Nothing here holds a control plane
or a palm-pay service.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from payops.chat.state import AuditSource
from payops.errors import BadInput  # apart from the chat/ move's import edits; sorted after the merge
from payops.memory.audit import AuditEntry
from payops.memory.explain import explain_decision, target_text
from payops.memory.lessons import Lesson, LessonStore, summarize

DECISION_ID = re.compile(r"\bd-[0-9a-f]{4,16}\b")
MAX_RESULTS = 20
WHY_WINDOW_SECONDS = 1800.0  # "why did you ... at 10:05?" looks at decisions within half an hour of 10:05


class ChatError(BadInput):
    """Unusable chat input (a bad time zone, an unreadable state directory)."""


# -- the records, read-only --------------------------------------------------------------

class ReadOnlyAudit:
    """The audit trail through a read-only SQLite connection: the chat cannot append or edit.

    Only the current revision of each record: a tick re-run after a crash supersedes the record it
    had written (memory/audit.py), and the chat must not tell one decision twice.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(audit_log)")}
        self._current = (" AND seq NOT IN (SELECT supersedes FROM audit_log WHERE supersedes IS NOT NULL)"
                         if "supersedes" in columns else "")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[AuditEntry]:
        import orjson

        for seq, decision_id, at, kind, body, digest in self._conn.execute(sql, args):
            yield AuditEntry(seq, decision_id, at, kind, orjson.loads(body), digest)

    def entries(self, kind: str | None = None) -> Iterator[AuditEntry]:
        base = "SELECT seq, decision_id, at, kind, record, hash FROM audit_log WHERE "
        if kind:
            return self._rows(base + "kind = ?" + self._current + " ORDER BY seq", (kind,))
        return self._rows(base + "1 = 1" + self._current + " ORDER BY seq")

    def get(self, decision_id: str) -> list[AuditEntry]:
        return list(self._rows("SELECT seq, decision_id, at, kind, record, hash FROM audit_log WHERE decision_id = ?"
                               + self._current + " ORDER BY seq", (decision_id,)))

    def close(self) -> None:
        self._conn.close()


class CurrentRevisions:
    """Any audit source (an AuditLog on PostgreSQL, the API's) without superseded revisions."""

    def __init__(self, inner: AuditSource) -> None:
        self._inner = inner

    @staticmethod
    def _current(entries: Iterable[AuditEntry]) -> list[AuditEntry]:
        found = list(entries)
        replaced = {getattr(e, "supersedes", None) for e in found} - {None}
        return [e for e in found if e.seq not in replaced]

    def entries(self, kind: str | None = None) -> Iterable[AuditEntry]:
        return self._current(self._inner.entries(kind))

    def get(self, decision_id: str) -> list[AuditEntry]:
        return self._current(self._inner.get(decision_id))


def read_only_lessons(path: Path) -> LessonStore | None:
    if not path.exists():
        return None
    from langgraph.store.sqlite import SqliteStore

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    return LessonStore(SqliteStore(conn))


class _ReadView:
    """Exposes only the named (reading) methods of an object."""

    def __init__(self, inner: Any, allowed: tuple[str, ...]) -> None:
        self._inner, self._allowed = inner, allowed

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            raise AttributeError(f"{name} is not available: the chat reads records only")
        return getattr(self._inner, name)


class _NoAudit:
    def entries(self, kind: str | None = None) -> Iterable[AuditEntry]:
        return iter(())

    def get(self, decision_id: str) -> list[AuditEntry]:
        return []


# -- typed results ------------------------------------------------------------------------

class DecisionSummary(BaseModel):
    """One decision in a line's worth of fields, every one read from its records."""

    decision_id: str
    window_end: float
    at: str
    category: str
    confidence: float
    diagnosis_target: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    tool: str
    target: dict[str, str] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    status: str
    guardrails: str = ""
    attempts: int | None = None
    failures: int | None = None
    failure_rate: float | None = None
    approver: str | None = None
    approval: str | None = None
    outcome: str | None = None
    outcome_detail: str | None = None
    no_action_reason: str | None = None

    def line(self) -> str:
        seen = (f" ({self.failures}/{self.attempts} failed, {100 * self.failure_rate:.1f}%)"
                if self.attempts and self.failure_rate is not None else "")
        act = ("no action" + (f" ({self.no_action_reason})" if self.no_action_reason else "")
               if self.tool == "no_action" else f"{self.tool} on {target_text(self.target)}: {self.status}")
        extra = ""
        if self.approval:
            extra += f"; {self.approval} by {self.approver}"
        if self.outcome:
            extra += f"; outcome {self.outcome}" + (f" ({self.outcome_detail})" if self.outcome_detail else "")
        return (f"{self.at} {self.decision_id}: {self.category} on {target_text(self.diagnosis_target)}{seen}, "
                f"confidence {self.confidence:.2f} -> {act}{extra}")


class DecisionDetail(BaseModel):
    summary: DecisionSummary
    explanation: str


class LessonSummary(BaseModel):
    decision_id: str
    at: str
    category: str
    tool: str
    target: str
    target_dims: str
    verdict: str
    rolled_back: bool = False
    detail: str = ""

    def line(self) -> str:
        return (f"{self.at} {self.decision_id}: {self.tool} on {self.target} ({self.category}) -> {self.verdict}"
                + (" and rolled back" if self.rolled_back else "") + (f": {self.detail}" if self.detail else ""))


class LessonList(BaseModel):
    counts: dict[str, int]
    lessons: list[LessonSummary]


class ChatAnswer(BaseModel):
    text: str
    cited: list[str] = Field(default_factory=list)  # decision ids the answer names, all in the audit trail
    used_llm: bool = False
    lookups: list[dict[str, Any]] = Field(default_factory=list)  # tool calls made: name and arguments
    refused_calls: list[str] = Field(default_factory=list)  # tool calls the model asked for and did not get
    unknown_ids: list[str] = Field(default_factory=list)  # ids a model made up (removed from `cited`)
    unverified_figures: list[str] = Field(default_factory=list)
    prompt_version: str | None = None  # which system prompt the LLM answered under
    note: str | None = None


# -- times ---------------------------------------------------------------------------------

def zone(name: str | None) -> tzinfo:
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - zoneinfo raises several kinds
        raise ChatError(f"unknown time zone '{name}' (use an IANA name such as Africa/Johannesburg, or UTC)") from None


def fmt_time(ts: float, tz: tzinfo) -> str:
    dt = datetime.fromtimestamp(ts, tz=tz)
    return dt.strftime("%Y-%m-%d %H:%M:%S ") + (dt.tzname() or "")


def parse_when(text: str | None, reference: float, tz: tzinfo) -> float | None:
    """'today', 'yesterday', 'now', 'HH:MM' (on the reference day), an ISO time or epoch seconds."""
    if text is None or not str(text).strip():
        return None
    t = str(text).strip().lower()
    ref = datetime.fromtimestamp(reference, tz=tz)
    midnight = ref.replace(hour=0, minute=0, second=0, microsecond=0)
    if t == "now":
        return reference
    if t == "today":
        return midnight.timestamp()
    if t == "yesterday":
        return (midnight - timedelta(days=1)).timestamp()
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", t)
    if m:
        h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
        if h > 23 or mi > 59 or s > 59:
            raise ChatError(f"not a time of day: {text}")
        return midnight.replace(hour=h, minute=mi, second=s).timestamp()
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ChatError(f"not a time: '{text}' (use HH:MM, today, yesterday, an ISO time or epoch seconds)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp()


# -- the read-only tools -------------------------------------------------------------------

def _matches_segment(segment: str | None, *targets: dict[str, str]) -> bool:
    """'FNB' matches any dimension with that value; 'bank=FNB' (comma-joined pairs) must all match."""
    if not segment:
        return True
    wanted = [p.strip() for p in segment.split(",") if p.strip()]
    for target in targets:
        lowered = {k.lower(): str(v).lower() for k, v in (target or {}).items()}
        ok = True
        for part in wanted:
            if "=" in part:
                k, v = (x.strip().lower() for x in part.split("=", 1))
                ok = ok and lowered.get(k) == v
            else:
                ok = ok and part.lower() in lowered.values()
        if ok and lowered:
            return True
    return False


class ChatTools:
    """Three read-only lookups over the audit trail and the lessons; nothing else."""

    NAMES = ("search_decisions", "get_decision", "list_lessons")

    def __init__(self, audit: AuditSource, lessons: LessonStore | None, tz: tzinfo = UTC) -> None:
        self._audit = (audit if isinstance(audit, (ReadOnlyAudit, _NoAudit, CurrentRevisions))
                       else CurrentRevisions(audit))
        self._lessons = lessons
        self.tz = tz

    @classmethod
    def open(cls, state_dir: Path, tz: tzinfo = UTC) -> ChatTools:
        """The SQLite records of a state directory, through read-only connections."""
        audit_path = state_dir / "audit.db"
        audit: AuditSource = ReadOnlyAudit(audit_path) if audit_path.exists() else _NoAudit()
        return cls(audit, read_only_lessons(state_dir / "lessons.db"), tz)

    @classmethod
    def from_settings(cls, settings: Any, tz: tzinfo = UTC) -> ChatTools:
        """The deployment's records wherever they live: PostgreSQL when `database_url` is set, else SQLite."""
        if not settings.database_url:
            return cls.open(settings.state_dir, tz)
        from payops.memory.stores import open_audit, open_lesson_store

        # Only the reading methods are reachable from the chat.
        return cls(_ReadView(open_audit(settings), ("entries", "get")), LessonStore(open_lesson_store(settings)), tz)

    # -- helpers --------------------------------------------------------------------------
    def clock(self) -> float:
        """The agent's clock: the newest decision's window end (event time), else the wall clock."""
        last = None
        for e in self._audit.entries("decision"):
            last = float(e.record.get("window_end", e.at))
        return last if last is not None else time.time()

    def _side_records(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        outcomes = {e.decision_id: e.record for e in self._audit.entries("outcome")}
        approvals = {e.decision_id: e.record for e in self._audit.entries("approval")}
        return outcomes, approvals

    def _summary(self, e: AuditEntry, outcomes: dict[str, dict[str, Any]],
                 approvals: dict[str, dict[str, Any]]) -> DecisionSummary:
        r = e.record
        d, p, v, x = r.get("diagnosis") or {}, r.get("proposal") or {}, r.get("verdict") or {}, r.get("execution") or {}
        snap = r.get("snapshot") or {}
        o, a = outcomes.get(e.decision_id), approvals.get(e.decision_id)
        reasons = o.get("reasons") if o else None
        return DecisionSummary(
            decision_id=e.decision_id, window_end=float(r.get("window_end", e.at)),
            at=fmt_time(float(r.get("window_end", e.at)), self.tz),
            category=str(d.get("category")), confidence=float(d.get("confidence", 0.0)),
            diagnosis_target=d.get("target") or {},
            summary=str(d.get("summary", "")), tool=str(p.get("tool")), target=p.get("target") or {},
            args=p.get("args") or {},
            status=str(x.get("status")), guardrails=str(v.get("verdict", "")),
            attempts=snap.get("attempts"), failures=snap.get("failures"), failure_rate=snap.get("failure_rate"),
            approver=a.get("approver") if a else None, approval=a.get("status") if a else None,
            outcome=o.get("verdict") if o else None, outcome_detail=reasons[0] if reasons else None,
            no_action_reason=(p.get("args") or {}).get("reason") if p.get("tool") == "no_action" else None,
        )

    def decision_ids(self) -> set[str]:
        return {e.decision_id for e in self._audit.entries("decision")}

    def known_values(self) -> dict[str, set[str]]:
        """Dimension -> values that appear in decision targets and lessons (names are data)."""
        out: dict[str, set[str]] = {}
        for e in self._audit.entries("decision"):
            for t in ((e.record.get("diagnosis") or {}).get("target") or {},
                      (e.record.get("proposal") or {}).get("target") or {}):
                for k, v in t.items():
                    out.setdefault(k, set()).add(str(v))
        for lesson in (self._lessons.list() if self._lessons else []):
            for k, v in lesson.target.items():
                out.setdefault(k, set()).add(str(v))
        return out

    # -- the tools --------------------------------------------------------------------------
    def search_decisions(self, since: str | float | None = None, until: str | float | None = None,
                         segment: str | None = None, category: str | None = None, tool: str | None = None,
                         actions_only: bool = False, limit: int = MAX_RESULTS) -> list[DecisionSummary]:
        """Decisions in [since, until) about a segment / category / tool, oldest first (the newest `limit`)."""
        reference = self.clock()
        lo = parse_when(str(since), reference, self.tz) if since is not None else None
        hi = parse_when(str(until), reference, self.tz) if until is not None else None
        outcomes, approvals = self._side_records()
        found = []
        for e in self._audit.entries("decision"):
            r = e.record
            end = float(r.get("window_end", e.at))
            d, p = r.get("diagnosis") or {}, r.get("proposal") or {}
            if (lo is not None and end < lo) or (hi is not None and end >= hi):
                continue
            if category and d.get("category") != category:
                continue
            if tool and p.get("tool") != tool:
                continue
            if actions_only and p.get("tool") == "no_action":
                continue
            if not _matches_segment(segment, d.get("target") or {}, p.get("target") or {}):
                continue
            found.append(self._summary(e, outcomes, approvals))
        return found[-max(1, min(limit, 200)):]

    def get_decision(self, decision_id: str) -> DecisionDetail | None:
        entries = self._audit.get(decision_id)
        if not entries:
            matches = [i for i in self.decision_ids() if i.startswith(decision_id)]
            entries = self._audit.get(matches[0]) if len(matches) == 1 else []
        decision = next((e for e in entries if e.kind == "decision"), None)
        if decision is None:
            return None
        outcomes = {e.decision_id: e.record for e in entries if e.kind == "outcome"}
        approvals = {e.decision_id: e.record for e in entries if e.kind == "approval"}
        return DecisionDetail(summary=self._summary(decision, outcomes, approvals),
                              explanation=explain_decision(entries, self.tz))

    def list_lessons(self, category: str | None = None, tool: str | None = None, target_dims: str | None = None,
                     segment: str | None = None, verdict: str | None = None, limit: int = MAX_RESULTS) -> LessonList:
        """Concluded outcomes, newest last; `target_dims` matches a lesson whose target uses that dimension."""
        lessons: list[Lesson] = (self._lessons.list(category=category, verdict=verdict, tool=tool) if self._lessons
                                 else [])
        if target_dims:
            wanted = {d.strip() for d in target_dims.split(",") if d.strip()}
            lessons = [lesson for lesson in lessons if wanted <= set(lesson.target_dims.split(","))]
        if segment:
            lessons = [lesson for lesson in lessons if _matches_segment(segment, lesson.target)]
        shown = lessons[-max(1, min(limit, 200)):]
        return LessonList(counts=summarize(lessons), lessons=[LessonSummary(
            decision_id=lesson.decision_id, at=fmt_time(lesson.created_at, self.tz), category=lesson.category,
            tool=lesson.tool, target=lesson.target_key, target_dims=lesson.target_dims, verdict=lesson.verdict,
            rolled_back=lesson.rolled_back, detail=lesson.reasons[0] if lesson.reasons else "",
        ) for lesson in shown])

    # -- the state of things (payops.chat.state), for the answers without an LLM ---------------
    def state(self) -> AuditSource:
        """The read-only audit source, for the pure functions of payops.chat.state."""
        return self._audit

    def records_text(self, decision_id: str) -> str:
        """Everything recorded about one decision (and its lesson), as text: what figures are checked against."""
        parts = [json.dumps(e.record, sort_keys=True) for e in self._audit.get(decision_id)]
        lesson = self._lessons.find(decision_id) if self._lessons else None
        if lesson is not None:
            parts.append(lesson.model_dump_json())
        return "\n".join(parts)


