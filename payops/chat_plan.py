"""Ops chat, the questions: what an operator's question asks, as filters for the lookups
(`plan_question`), and the refusal of anything that asks the chat to act."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from payops.chat_records import DECISION_ID, WHY_WINDOW_SECONDS, fmt_time

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


