"""Ops chat: operators' questions about what the agent saw and did, answered from its records.

Read-only by construction. `ChatTools` opens the audit trail and the lesson store
read-only (SQLite `mode=ro`) and offers three lookups — search_decisions,
get_decision, list_lessons. Nothing here holds a control plane or a palm-pay
service, so no answer can execute an action; a request to act is refused and
pointed at the approval commands.

With an LLM configured (Settings.llm_model) the model answers through those three
tools (a deterministic first lookup is handed to it, so small local models start
from the right records); without one — or when the LLM fails — `answer_from_records`
answers the common question shapes from the same tools. Either way every
decision id cited is checked against the audit trail and the answer ends with its
sources, rendered from the records.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payops.memory.audit import AuditEntry
from payops.memory.explain import explain_decision, target_text
from payops.memory.lessons import Lesson, LessonStore, summarize

DECISION_ID = re.compile(r"\bd-[0-9a-f]{4,16}\b")
# Figures an answer may quote: percentages, milliseconds, "N/M" counts.
FIGURE = re.compile(r"\b\d+(?:\.\d+)?%|\b\d+(?:\.\d+)? ms\b|\b\d+/\d+\b")
MAX_RESULTS = 20
SOURCES_SHOWN = 8
TOOL_RESULT_CHARS = 2500  # what one tool result may cost in the model's context (a 4k-token local model fits 3)
MAX_TOOL_ROUNDS = 2  # model-chosen lookups before it must answer
ANSWER_MAX_TOKENS = 300  # an answer is a few sentences; the sources are added from the records
WHY_WINDOW_SECONDS = 1800.0  # "why did you ... at 10:05?" looks at decisions within half an hour of 10:05


class ChatError(Exception):
    """Unusable chat input (a bad time zone, an unreadable state directory)."""


# -- the records, read-only --------------------------------------------------------------

class AuditSource(Protocol):
    def entries(self, kind: str | None = None) -> Iterable[AuditEntry]: ...

    def get(self, decision_id: str) -> list[AuditEntry]: ...


class ReadOnlyAudit:
    """The audit trail through a read-only SQLite connection: the chat cannot append or edit."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[AuditEntry]:
        import orjson

        for seq, decision_id, at, kind, body, digest in self._conn.execute(sql, args):
            yield AuditEntry(seq, decision_id, at, kind, orjson.loads(body), digest)

    def entries(self, kind: str | None = None) -> Iterator[AuditEntry]:
        base = "SELECT seq, decision_id, at, kind, record, hash FROM audit_log"
        return self._rows(base + " WHERE kind = ? ORDER BY seq", (kind,)) if kind else self._rows(base + " ORDER BY seq")

    def get(self, decision_id: str) -> list[AuditEntry]:
        return list(self._rows("SELECT seq, decision_id, at, kind, record, hash FROM audit_log WHERE decision_id = ? ORDER BY seq",
                               (decision_id,)))

    def close(self) -> None:
        self._conn.close()


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
        act = "no action" + (f" ({self.no_action_reason})" if self.no_action_reason else "") if self.tool == "no_action" \
            else f"{self.tool} on {target_text(self.target)}: {self.status}"
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
        return timezone.utc
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

    def __init__(self, audit: AuditSource, lessons: LessonStore | None, tz: tzinfo = timezone.utc) -> None:
        self._audit = audit
        self._lessons = lessons
        self.tz = tz

    @classmethod
    def open(cls, state_dir: Path, tz: tzinfo = timezone.utc) -> "ChatTools":
        """The SQLite records of a state directory, through read-only connections."""
        audit_path = state_dir / "audit.db"
        audit: AuditSource = ReadOnlyAudit(audit_path) if audit_path.exists() else _NoAudit()
        return cls(audit, read_only_lessons(state_dir / "lessons.db"), tz)

    @classmethod
    def from_settings(cls, settings: Any, tz: tzinfo = timezone.utc) -> "ChatTools":
        """The deployment's records wherever they live: PostgreSQL when `database_url` is set, else SQLite."""
        if not settings.database_url:
            return cls.open(settings.state_dir, tz)
        from payops.storage.stores import open_audit, open_lesson_store

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

    def _summary(self, e: AuditEntry, outcomes: dict[str, dict[str, Any]], approvals: dict[str, dict[str, Any]]) -> DecisionSummary:
        r = e.record
        d, p, v, x = r.get("diagnosis") or {}, r.get("proposal") or {}, r.get("verdict") or {}, r.get("execution") or {}
        snap = r.get("snapshot") or {}
        o, a = outcomes.get(e.decision_id), approvals.get(e.decision_id)
        reasons = o.get("reasons") if o else None
        return DecisionSummary(
            decision_id=e.decision_id, window_end=float(r.get("window_end", e.at)), at=fmt_time(float(r.get("window_end", e.at)), self.tz),
            category=str(d.get("category")), confidence=float(d.get("confidence", 0.0)), diagnosis_target=d.get("target") or {},
            summary=str(d.get("summary", "")), tool=str(p.get("tool")), target=p.get("target") or {}, args=p.get("args") or {},
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
            for t in ((e.record.get("diagnosis") or {}).get("target") or {}, (e.record.get("proposal") or {}).get("target") or {}):
                for k, v in t.items():
                    out.setdefault(k, set()).add(str(v))
        for l in (self._lessons.list() if self._lessons else []):
            for k, v in l.target.items():
                out.setdefault(k, set()).add(str(v))
        return out

    # -- the tools --------------------------------------------------------------------------
    def search_decisions(self, since: str | float | None = None, until: str | float | None = None, segment: str | None = None,
                         category: str | None = None, tool: str | None = None, actions_only: bool = False,
                         limit: int = MAX_RESULTS) -> list[DecisionSummary]:
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
        return DecisionDetail(summary=self._summary(decision, outcomes, approvals), explanation=explain_decision(entries))

    def list_lessons(self, category: str | None = None, tool: str | None = None, target_dims: str | None = None,
                     segment: str | None = None, verdict: str | None = None, limit: int = MAX_RESULTS) -> LessonList:
        """Concluded outcomes, newest last; `target_dims` matches a lesson whose target uses that dimension."""
        lessons: list[Lesson] = self._lessons.list(category=category, verdict=verdict, tool=tool) if self._lessons else []
        if target_dims:
            wanted = {d.strip() for d in target_dims.split(",") if d.strip()}
            lessons = [l for l in lessons if wanted <= set(l.target_dims.split(","))]
        if segment:
            lessons = [l for l in lessons if _matches_segment(segment, l.target)]
        shown = lessons[-max(1, min(limit, 200)):]
        return LessonList(counts=summarize(lessons), lessons=[LessonSummary(
            decision_id=l.decision_id, at=fmt_time(l.created_at, self.tz), category=l.category, tool=l.tool, target=l.target_key,
            target_dims=l.target_dims, verdict=l.verdict, rolled_back=l.rolled_back, detail=l.reasons[0] if l.reasons else "",
        ) for l in shown])

    def records_text(self, decision_id: str) -> str:
        """Everything recorded about one decision (and its lesson), as text: what figures are checked against."""
        parts = [json.dumps(e.record, sort_keys=True) for e in self._audit.get(decision_id)]
        lesson = self._lessons.find(decision_id) if self._lessons else None
        if lesson is not None:
            parts.append(lesson.model_dump_json())
        return "\n".join(parts)


# -- the question shapes answered without an LLM -------------------------------------------

VERBS: tuple[tuple[str, str], ...] = (
    (r"re-?rout\w*|mov\w* traffic", "reroute_traffic"),
    (r"suppress\w*|block\w*", "suppress_path"),
    (r"retr(?:y|ies|ied)\w*", "adjust_retry_policy"),
    (r"alert\w*|pag(?:e|ed|ing)\b", "alert_ops"),
    (r"suspend\w*", "suspend_palm_link"),
    (r"revok\w*", "revoke_palm_link"),
)
DIMENSION_WORDS: tuple[tuple[str, str], ...] = (
    (r"terminals?|devices?|scanners?", "terminal_id"), (r"routes?|psps?|processors?|acquirers?", "route"),
    (r"banks?|issuers?", "bank"), (r"methods?", "method"), (r"merchants?", "merchant_id"),
)
IMPERATIVE = re.compile(
    r"^\s*(?:please\s+|now\s+)?(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?|go\s+(?:and\s+)?)?"
    r"(re-?route|suppress|roll\s*back|rollback|undo|approve|reject|execute|run|apply|adjust|set|change|block|unblock|"
    r"revoke|suspend|reactivate|alert|page|stop|start|lift|disable|enable)\b", re.I)
REFUSAL = ("I can't act from the chat: it is read-only and can only look at the audit trail and the lessons. "
           "Actions run through the agent's guardrails; a pending one is approved with `payops approve ID` "
           "(see `payops pending`).")


@dataclass
class Plan:
    """What the question asks, as filters for the tools."""

    intent: Literal["refuse", "explain", "why", "what_did", "track_record", "overview"]
    decision_id: str | None = None
    tool: str | None = None
    segment: str | None = None
    dims: str | None = None
    at: float | None = None
    since: float | None = None
    until: float | None = None
    words: list[str] = field(default_factory=list)

    def first_lookup(self) -> tuple[str, dict[str, Any]] | None:
        """The lookup to start from (handed to an LLM as its first tool result)."""
        if self.intent == "explain":
            return "get_decision", {"decision_id": self.decision_id}
        if self.intent == "track_record":
            return "list_lessons", {k: v for k, v in (("tool", self.tool), ("target_dims", self.dims), ("segment", self.segment)) if v}
        if self.intent in ("why", "what_did", "overview"):
            args: dict[str, Any] = {k: v for k, v in (("tool", self.tool), ("segment", self.segment)) if v}
            since, until = (self.at - WHY_WINDOW_SECONDS, self.at + WHY_WINDOW_SECONDS) if self.at is not None else (self.since, self.until)
            if since is not None:
                args["since"] = since
            if until is not None:
                args["until"] = until
            args["actions_only"] = True
            return "search_decisions", args
        return None


def plan_question(question: str, known: dict[str, set[str]], reference: float, tz: tzinfo) -> Plan:
    q = question.strip()
    low = q.lower()
    if IMPERATIVE.match(q):
        return Plan("refuse")
    ids = DECISION_ID.findall(low)
    tool = next((name for pattern, name in VERBS if re.search(rf"\b(?:{pattern})", low)), None)
    dims = next((name for pattern, name in DIMENSION_WORDS if re.search(rf"\b(?:{pattern})\b", low)), None)
    segment = None
    for dim, values in known.items():
        for value in sorted(values, key=len, reverse=True):
            if re.search(rf"(?<![\w-]){re.escape(value.lower())}(?![\w-])", low):
                segment = f"{dim}={value}" if segment is None else segment
    plan = Plan("overview", tool=tool, segment=segment, dims=dims if not segment else None)
    day = datetime.fromtimestamp(reference, tz=tz).replace(hour=0, minute=0, second=0, microsecond=0)
    m = re.search(r"\b(\d{1,2}):(\d{2})\b", low)
    if m and int(m[1]) < 24 and int(m[2]) < 60:
        plan.at = day.replace(hour=int(m[1]), minute=int(m[2])).timestamp()
        if plan.at > reference + 60:  # "at 23:50" asked after midnight means yesterday
            plan.at -= 86_400.0
    if "yesterday" in low:
        plan.since, plan.until = (day - timedelta(days=1)).timestamp(), day.timestamp()
    elif "today" in low:
        plan.since = day.timestamp()
    m = re.search(r"\blast (\d+)?\s*(minute|hour|day)s?\b", low)
    if m:
        plan.since = reference - int(m[1] or 1) * {"minute": 60, "hour": 3600, "day": 86_400}[m[2]]
    if ids:
        plan.intent, plan.decision_id = "explain", ids[0]
    elif re.search(r"\bever\b|\bhelp(?:ed|s)?\b|\bwork(?:ed|s)?\b|track record|how often|lessons?", low) and not low.startswith("why"):
        plan.intent = "track_record"
    elif low.startswith("why") or "reason" in low:
        plan.intent = "why"
    elif tool or segment or re.search(r"what did you do|what happened|actions?|anything", low):
        plan.intent = "what_did"
    return plan


def _verb(tool: str) -> str:
    return {"reroute_traffic": "rerouted", "suppress_path": "suppressed", "adjust_retry_policy": "changed the retry policy of",
            "alert_ops": "alerted ops about", "no_action": "took no action on"}.get(tool, tool)


def _describe_filters(plan: Plan, tz: tzinfo) -> str:
    parts = []
    if plan.tool:
        parts.append(plan.tool)
    if plan.segment:
        parts.append(f"about {plan.segment}")
    elif plan.dims:
        parts.append(f"on a {plan.dims} target")
    if plan.at is not None:
        parts.append(f"near {fmt_time(plan.at, tz)}")
    elif plan.since is not None:
        parts.append(f"since {fmt_time(plan.since, tz)}")
    return " ".join(parts) or "at all"


def answer_from_records(question: str, tools: ChatTools) -> ChatAnswer:
    """Deterministic answers for the common question shapes; every line comes from a record."""
    reference = tools.clock()
    plan = plan_question(question, tools.known_values(), reference, tools.tz)
    lookups: list[dict[str, Any]] = []

    def call(name: str, **args: Any) -> Any:
        lookups.append({"name": name, "args": args})
        return getattr(tools, name)(**args)

    if plan.intent == "refuse":
        return ChatAnswer(text=REFUSAL)
    if plan.intent == "explain":
        detail = call("get_decision", decision_id=plan.decision_id)
        if detail is None:
            return ChatAnswer(text=f"No decision {plan.decision_id} in the audit trail.", lookups=lookups)
        return ChatAnswer(text=detail.explanation, cited=[detail.summary.decision_id], lookups=lookups)
    if plan.intent == "track_record":
        found = call("list_lessons", **{k: v for k, v in (("tool", plan.tool), ("target_dims", plan.dims), ("segment", plan.segment)) if v})
        what = (plan.tool or "any action") + (f" on {plan.segment}" if plan.segment else f" on a {plan.dims} target" if plan.dims else "")
        total = sum(found.counts.values())
        if total == 0:
            return ChatAnswer(text=f"No concluded outcome of {what} in the lessons yet, so I can't say it ever helped.", lookups=lookups)
        c = found.counts
        head = ("Yes" if c["helped"] else "No") + f" — {what}: {total} concluded outcome(s): {c['helped']} helped, " \
            f"{c['no_effect']} no effect, {c['harmed']} harmed, {c['inconclusive']} inconclusive."
        return ChatAnswer(text="\n".join([head, *(f"- {l.line()}" for l in found.lessons)]),
                          cited=[l.decision_id for l in found.lessons], lookups=lookups)
    if plan.intent == "why":
        if plan.at is not None:
            pool = call("search_decisions", since=plan.at - WHY_WINDOW_SECONDS, until=plan.at + WHY_WINDOW_SECONDS,
                        segment=plan.segment, tool=plan.tool,
                        actions_only=plan.tool != "no_action")
            pool.sort(key=lambda s: abs(s.window_end - plan.at))
        else:
            pool = call("search_decisions", since=plan.since, until=plan.until, segment=plan.segment, tool=plan.tool,
                        actions_only=plan.tool != "no_action")[::-1]
        if not pool:
            return ChatAnswer(text=f"I found no decision {_describe_filters(plan, tools.tz)} in the audit trail.", lookups=lookups)
        best = pool[0]
        detail = call("get_decision", decision_id=best.decision_id)
        head = f"At {best.at} I {_verb(best.tool)} {target_text(best.target)} (decision {best.decision_id}) because: {best.summary}"
        others = [s.decision_id for s in pool[1:4]]
        tail = [f"Other matching decisions: {', '.join(others)}"] if others else []
        return ChatAnswer(text="\n".join([head, "", detail.explanation, *tail]), cited=[best.decision_id, *others], lookups=lookups)
    # what_did / overview
    found = call("search_decisions", since=plan.since, until=plan.until, segment=plan.segment, tool=plan.tool, actions_only=True)
    if not found:
        seen = call("search_decisions", since=plan.since, until=plan.until, segment=plan.segment, tool=None, actions_only=False)
        if not seen:
            return ChatAnswer(text=f"No decision {_describe_filters(plan, tools.tz)} in the audit trail.", lookups=lookups)
        reasons = sorted({s.no_action_reason or "" for s in seen} - {""})
        return ChatAnswer(text=f"I took no action {_describe_filters(plan, tools.tz)}: {len(seen)} decision(s), none acted"
                               + (f" ({'; '.join(reasons[:3])})" if reasons else "") + ". Latest:\n- " + seen[-1].line(),
                          cited=[seen[-1].decision_id], lookups=lookups)
    head = f"What I did {_describe_filters(plan, tools.tz)}: {len(found)} action(s)."
    return ChatAnswer(text="\n".join([head, *(f"- {s.line()}" for s in found)]), cited=[s.decision_id for s in found], lookups=lookups)


# -- the LLM path ---------------------------------------------------------------------------

class SearchDecisionsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(None, description="start time: HH:MM, 'today', 'yesterday', ISO time or epoch seconds")
    until: str | None = Field(None, description="end time, same forms as since")
    segment: str | None = Field(None, description="a bank, route, terminal or method name (e.g. FNB, psp_a, T3), or dim=value")
    category: Literal["healthy", "user", "issuer", "network", "config", "security"] | None = None
    tool: Literal["reroute_traffic", "adjust_retry_policy", "suppress_path", "alert_ops", "no_action",
                  "suspend_palm_link", "reactivate_palm_link", "revoke_palm_link"] | None = None
    actions_only: bool = Field(False, description="only decisions that proposed an action")


class GetDecisionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(..., description="a decision id such as d-0123456789abcdef")


class ListLessonsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: Literal["reroute_traffic", "adjust_retry_policy", "suppress_path"] | None = None
    category: Literal["user", "issuer", "network", "config", "security"] | None = None
    target_dims: Literal["route", "bank", "terminal_id", "method", "issuer", "bank,route", "method,route"] | None = None
    segment: str | None = None
    verdict: Literal["helped", "no_effect", "harmed", "inconclusive"] | None = None


ARG_MODELS: dict[str, type[BaseModel]] = {
    "search_decisions": SearchDecisionsArgs, "get_decision": GetDecisionArgs, "list_lessons": ListLessonsArgs,
}
DESCRIPTIONS = {
    "search_decisions": "Find the agent's decisions by time, segment (bank/route/terminal), category and action.",
    "get_decision": "The full, grounded explanation of one decision by id.",
    "list_lessons": "Concluded outcomes of past actions (helped, no_effect, harmed, inconclusive).",
}
CHAT_PROMPT_VERSION = "ops-chat-v1"
LOOKING_UP = "Looking up the records."  # the text of an assistant turn that only calls tools
SYSTEM_PROMPT = (
    "You are the payment-operations agent answering an operator's question about your own past decisions. "
    "Answer only from tool results; never invent figures or decision ids; cite the decision ids you use. "
    "You cannot take or change actions. Times are {tz}; the newest decision is at {now}. Be brief."
)


def run_tool(tools: ChatTools, name: str, raw_args: dict[str, Any]) -> tuple[str, list[str]]:
    """One read-only lookup for the model: (result as text lines, decision ids it returned)."""
    if name not in ARG_MODELS:
        raise PermissionError(name)
    try:
        args = ARG_MODELS[name].model_validate(raw_args or {}).model_dump(exclude_none=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"error: bad argument {'.'.join(str(p) for p in err['loc'])}: {err['msg']}", []
    try:
        result = getattr(tools, name)(**args)
    except ChatError as exc:
        return f"error: {exc}", []
    if result is None:
        return f"error: no decision {args.get('decision_id')}", []
    if isinstance(result, DecisionDetail):
        return result.explanation[:TOOL_RESULT_CHARS], [result.summary.decision_id]
    head = ""
    if isinstance(result, LessonList):
        head = "outcomes: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()) + "\n"
        lines, ids = [l.line() for l in result.lessons], [l.decision_id for l in result.lessons]
    else:
        lines, ids = [s.line() for s in result], [s.decision_id for s in result]
    # Plain lines, not JSON: fewer tokens, and no quotes for a chat template to escape.
    while len(lines) > 1 and len(head) + sum(len(x) + 3 for x in lines) > TOOL_RESULT_CHARS:
        lines, ids = lines[1:], ids[1:]  # keep the newest
    return (head + "\n".join(f"- {x}" for x in lines)) if lines else head + "nothing found", ids


def langchain_tools(tools: ChatTools) -> list[Any]:
    """The three lookups as langchain tools, for `bind_tools` (schemas only: the chat runs them itself)."""
    from langchain_core.tools import StructuredTool

    def make(name: str) -> Any:
        def lookup(**kwargs: Any) -> str:
            return run_tool(tools, name, kwargs)[0]

        tool = StructuredTool.from_function(func=lookup, name=name, description=DESCRIPTIONS[name], args_schema=ARG_MODELS[name])
        tool.metadata = {"read_only": True}
        return tool

    return [make(n) for n in ChatTools.NAMES]


def chat_model_from_settings(settings: Any) -> Any | None:
    """ChatOpenAI on any OpenAI-compatible endpoint, or None when no model is configured."""
    if not settings.llm_model:
        return None
    import os

    from langchain_openai import ChatOpenAI

    base_url = settings.llm_base_url or os.environ.get("OPENAI_BASE_URL")
    # langchain-openai sends the limit as max_completion_tokens; OpenAI-compatible servers such as
    # llama.cpp read only max_tokens, and without it a small model can generate to the end of its context.
    extra = {"extra_body": {"max_tokens": ANSWER_MAX_TOKENS}} if base_url else {}
    return ChatOpenAI(model=settings.llm_model, base_url=base_url,
                      api_key=os.environ.get("OPENAI_API_KEY") or "not-needed-for-a-local-server",
                      timeout=settings.llm_timeout_seconds, max_retries=settings.llm_max_retries, temperature=0,
                      max_tokens=ANSWER_MAX_TOKENS, **extra)


def _figures_known(tools: ChatTools, ids: Iterable[str]) -> str:
    return "\n".join(tools.records_text(i) for i in ids)


def _unverified(text: str, known_text: str) -> list[str]:
    """Figures in the text that appear nowhere in the cited records (numbers compared as printed)."""
    numbers = set(re.findall(r"\d+(?:\.\d+)?", known_text))
    for raw in re.findall(r"\d+\.\d+", known_text):
        value = float(raw)
        numbers.update({f"{value:.0f}", f"{value:.1f}"})  # 9135.1 ms in a record may be printed as 9135 ms
        if value <= 1.0:  # 0.2444 in a record is 24.4% in an answer
            numbers.update({f"{100 * value:.1f}", f"{100 * value:.0f}"})
    out = []
    for fig in FIGURE.findall(text):
        parts = re.findall(r"\d+(?:\.\d+)?", fig)
        if not all(p in numbers for p in parts):
            out.append(fig)
    return out


def ground(text: str, tools: ChatTools, sources: list[str]) -> tuple[str, list[str], list[str], list[str]]:
    """Check a model's answer: ids must exist; figures should be in the cited records; add the sources."""
    known = tools.decision_ids()
    cited_raw = list(dict.fromkeys(DECISION_ID.findall(text)))
    unknown = [i for i in cited_raw if i not in known]
    cited = [i for i in cited_raw if i in known]
    for bad in unknown:
        text = text.replace(bad, "[unknown id]")
    refs = list(dict.fromkeys(cited + sources))[:SOURCES_SHOWN]
    unverified = _unverified(text, _figures_known(tools, refs)) if refs else FIGURE.findall(text)
    lines = [text.strip() or "(the model gave no text)"]
    if unknown:
        lines.append(f"Note: {len(unknown)} decision id(s) in the model's answer are not in the audit trail and were removed.")
    if unverified:
        lines.append("Note: figures not found in the cited records: " + ", ".join(unverified))
    if refs:
        lines.append("Sources (audit trail):")
        for i in refs:
            detail = tools.get_decision(i)
            if detail is not None:
                lines.append(f"- {detail.summary.line()}")
    return "\n".join(lines), refs, unknown, unverified


def answer_with_llm(question: str, tools: ChatTools, llm: Any) -> ChatAnswer:
    """The model answers through the read-only tools; anything else it asks for is refused."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    reference = tools.clock()
    plan = plan_question(question, tools.known_values(), reference, tools.tz)
    if plan.intent == "refuse":
        return ChatAnswer(text=REFUSAL)
    tz_name = datetime.fromtimestamp(reference, tz=tools.tz).tzname() or "UTC"
    messages: list[Any] = [SystemMessage(SYSTEM_PROMPT.format(tz=tz_name, now=fmt_time(reference, tools.tz))), HumanMessage(question)]
    lookups: list[dict[str, Any]] = []
    refused: list[str] = []
    sources: list[str] = []

    def perform(call_id: str, name: str, args: dict[str, Any]) -> ToolMessage:
        lookups.append({"name": name, "args": args})
        try:
            text, ids = run_tool(tools, name, args)
        except PermissionError:
            refused.append(name)
            text, ids = f"error: '{name}' is not available: this chat is read-only", []
        sources.extend(i for i in ids if i not in sources)
        return ToolMessage(content=text, tool_call_id=call_id, name=name)

    first = plan.first_lookup()
    if first is not None:
        name, args = first
        args = {k: (str(v) if k in ("since", "until") else v) for k, v in args.items()}
        messages.append(AIMessage(content=LOOKING_UP, tool_calls=[{"name": name, "args": args, "id": "lookup-0", "type": "tool_call"}]))
        messages.append(perform("lookup-0", name, args))
    bound = llm.bind_tools(langchain_tools(tools), tool_choice="auto")
    reply = None
    for _ in range(MAX_TOOL_ROUNDS):
        reply = bound.invoke(messages)
        if not reply.tool_calls:
            break
        # Some OpenAI-compatible servers (llama.cpp) reject an assistant turn whose content is null.
        messages.append(reply if reply.content else reply.model_copy(update={"content": LOOKING_UP}))
        for i, call in enumerate(reply.tool_calls):
            messages.append(perform(call.get("id") or f"call-{len(lookups)}-{i}", call["name"], call.get("args") or {}))
        reply = None
    if reply is None or not str(reply.content or "").strip():
        # Still looking things up, or an empty turn (small models do that in tool "auto" mode):
        # answer now with no tools bound, the results written out in the question itself —
        # some servers' chat templates (llama.cpp's chatml-function-calling) drop tool messages.
        results = "\n\n".join(f"[{m.name}] {m.content}" for m in messages if isinstance(m, ToolMessage))
        reply = llm.invoke([messages[0], HumanMessage(
            f"{question}\n\nRecords from the audit trail:\n{results or '(none found)'}\n\n"
            "Answer the question in plain text from these records only; cite decision ids.")])
    text, refs, unknown, unverified = ground(str(reply.content or ""), tools, sources)
    return ChatAnswer(text=text, cited=refs, used_llm=True, lookups=lookups, refused_calls=refused,
                      unknown_ids=unknown, unverified_figures=unverified, prompt_version=CHAT_PROMPT_VERSION)


def ask(question: str, tools: ChatTools, llm: Any | None = None) -> ChatAnswer:
    """Answer one question: through the LLM when there is one (falling back to the records on error)."""
    question = question.strip()
    if not question:
        return ChatAnswer(text="Ask about a decision, a segment or an action, e.g. \"what did you do about FNB today?\"")
    if llm is not None:
        try:
            return answer_with_llm(question, tools, llm)
        except Exception as exc:  # noqa: BLE001 - any model/API failure falls back to the records
            answer = answer_from_records(question, tools)
            return answer.model_copy(update={"note": f"LLM unavailable ({type(exc).__name__}); answered from the records directly"})
    return answer_from_records(question, tools)

