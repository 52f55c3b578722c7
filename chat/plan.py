"""Ops chat, the questions: what an operator's question asks, as filters for the lookups
(`plan_question`), and the refusal of anything that asks the chat to act."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from payops.chat.records import DECISION_ID, WHY_WINDOW_SECONDS, fmt_time

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


Intent = Literal["refuse", "explain", "why", "what_did", "track_record", "overview", "pending", "in_force",
                 "rolled_back", "harmed", "failing", "now", "happened", "help", "unknown_segment"]


@dataclass
class Plan:
    """What the question asks, as filters for the tools."""

    intent: Intent
    decision_id: str | None = None
    tool: str | None = None
    segment: str | None = None
    dims: str | None = None
    at: float | None = None
    since: float | None = None
    until: float | None = None
    words: list[str] = field(default_factory=list)  # an unknown name the question asked about

    def first_lookup(self) -> tuple[str, dict[str, Any]] | None:
        """The lookup to start from (handed to an LLM as its first tool result)."""
        if self.intent == "explain":
            return "get_decision", {"decision_id": self.decision_id}
        if self.intent == "track_record":
            return "list_lessons", {k: v for k, v in (("tool", self.tool), ("target_dims", self.dims),
                                                      ("segment", self.segment)) if v}
        if self.intent in ("why", "what_did", "overview"):
            args: dict[str, Any] = {k: v for k, v in (("tool", self.tool), ("segment", self.segment)) if v}
            since, until = ((self.at - WHY_WINDOW_SECONDS, self.at + WHY_WINDOW_SECONDS) if self.at is not None
                            else (self.since, self.until))
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
    m = PERIOD.search(low)
    if m:
        count = NUMBER_WORDS.get(m[1] or "") if not (m[1] or "").isdigit() else int(m[1])
        unit = {"m": 60, "h": 3600, "d": 86_400}[m[2][0]]
        plan.since = reference - (count or 1) * unit * (0.5 if m[0].endswith("half hour") else 1)
    if plan.at is not None and re.search(r"\bsince\s+\d{1,2}:\d{2}", low):  # "since 16:00": from then to now
        plan.since, plan.at = plan.at, None
    plan.intent = _intent(low, ids, tool, segment, plan)
    if plan.intent in ("what_did", "now", "failing", "overview") and segment is None:
        asked = re.search(r"\b(?:about|on|with|for|at|of)\s+(?:bank\s+|route\s+|terminal\s+|merchant\s+)?"
                          r"([A-Za-z][\w.-]{1,40})\??\s*(?:today|now|yesterday)?\s*[?.!]?\s*$", q)
        if asked and asked[1].lower() not in NOT_NAMES:
            plan.intent, plan.words = "unknown_segment", [asked[1]]
    return plan


# "last 30 minutes", "past hour", "last two hours", "in the last half hour"
PERIOD = re.compile(r"\b(?:last|past|previous)\s+(\d+|an?|one|two|three|four|five|six|ten|fifteen|twenty|thirty|half)?"
                    r"\s*(min(?:ute)?s?|m|hours?|hrs?|h|days?|d)\b|\bhalf hour\b")
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10,
                "fifteen": 15, "twenty": 20, "thirty": 30, "": 1}
# Words after "about/on/for" that are not a segment's name ("what did you do about it?").
NOT_NAMES = {"it", "that", "this", "them", "now", "today", "yesterday", "all", "anything", "everything", "traffic",
             "the", "payments", "us", "me", "you", "time", "approval", "hold", "fire", "the platform", "platform",
             "record", "average", "track", "call", "duty", "force", "hand", "earth", "last", "minutes", "hours", "bank",
             "route", "terminal", "merchant", "issue", "incident", "outage", "alert", "alerts", "rollback", "rollbacks"}

PENDING = re.compile(r"\bpending\b|await\w*\s+(?:\w+\s+)?approv|wait\w*\s+(?:for\s+)?(?:an?\s+)?approv|"
                     r"need\w*\s+(?:an?\s+|my\s+|human\s+)?approv|to approve|approval queue|sign[- ]?off|my approval")
IN_FORCE = re.compile(r"in force|in effect|in place|still (?:active|on|applied|running)|"
                      r"active (?:actions?|mitigations?|changes?)|until when|when does .* (?:end|expire)|expir|"
                      r"currently applied|mitigations? (?:running|active)")
ROLLED_BACK = re.compile(r"roll(?:ed)?[\s-]?backs?|\brevert\w*|\bundo\w*|\bundone\b|\bundid\b")
HARMED = re.compile(r"\bharm\w*|made (?:it|things) worse|backfire\w*|went wrong|\bworse\b|\bhurt\b")
FAILING = re.compile(r"\bfail(?:ing|s)?\b|\bbroken\b|\bdown\b|\bdegraded\b|\bproblems?\b|\bissues?\b|"
                     r"\bunhealthy\b|\boutage")
NOW = re.compile(r"\bnow\b|\bcurrent\w*|\bstatus\b|\bhappening\b|failure rate|success rate|error rate|decline rate|"
                 r"how (?:are|is) (?:we|things|it|traffic|the platform)|\bhealth\w*|\bdoing\b|\bok(?:ay)?\b|all good")
HAPPENED = re.compile(r"\bhappen(?:ed|s)?\b|\bsummar\w*|\brecap\b|\bincidents?\b|\bbrief me\b|\bsince\b|\bgoing on\b")


def _intent(low: str, ids: list[str], tool: str | None, segment: str | None, plan: Plan) -> Intent:
    """The shape of the question; earlier shapes win (an id names the decision, whatever else is asked)."""
    if ids:
        plan.decision_id = ids[0]
        return "explain"
    if PENDING.search(low):
        return "pending"
    if IN_FORCE.search(low):
        return "in_force"
    if re.search(r"\bever\b|\bhelp(?:ed|s)?\b|\bwork(?:ed|s)?\b|track record|how often|lessons?", low) \
            and not low.startswith("why") and not ROLLED_BACK.search(low):
        return "track_record"
    if ROLLED_BACK.search(low):
        return "rolled_back"
    if HARMED.search(low):
        return "harmed"
    if low.startswith("why") or "reason" in low:
        return "why"
    period = plan.since is not None or plan.at is not None
    if FAILING.search(low) and not tool and not re.search(r"what did you do", low):
        return "now" if segment else "failing"
    if HAPPENED.search(low) and (period or not (tool or segment)) and not re.search(r"what did you do", low):
        return "happened" if period or not NOW.search(low) else "now"
    if NOW.search(low) and not tool and not re.search(r"what did you do|\bdid you\b", low) and not period:
        return "now"
    if tool or segment or re.search(r"what did you do|\bactions?\b|\banything\b|\bdid you\b", low):
        return "what_did"
    if period:
        return "happened"
    return "help"


def _verb(tool: str) -> str:
    return {"reroute_traffic": "rerouted", "suppress_path": "suppressed",
            "adjust_retry_policy": "changed the retry policy of", "alert_ops": "alerted ops about",
            "no_action": "took no action on"}.get(tool, tool)


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


