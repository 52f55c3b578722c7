"""Ops chat, the LLM path: the model answers through the three read-only lookups of `ChatTools`
(a deterministic first lookup is handed to it, so small local models start from the right records),
and `ground` checks what it said against the records before an operator reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payops.chat import grounding
from payops.chat.answers import answer_from_records
from payops.chat.grounding import Grounding
from payops.chat.plan import REFUSAL, plan_question
from payops.chat.records import ChatAnswer, ChatError, ChatTools, DecisionDetail, LessonList, fmt_time

SOURCES_SHOWN = 8
TOOL_RESULT_CHARS = 2500  # what one tool result may cost in the model's context (a 4k-token local model fits 3)
MAX_TOOL_ROUNDS = 2  # model-chosen lookups before it must answer
ANSWER_MAX_TOKENS = 160  # an answer is a few sentences; the sources are added from the records


# -- the LLM path ---------------------------------------------------------------------------

class SearchDecisionsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(None, description="start time: HH:MM, 'today', 'yesterday', ISO time or epoch seconds")
    until: str | None = Field(None, description="end time, same forms as since")
    segment: str | None = Field(None, description="a bank, route, terminal or method name (e.g. FNB, psp_a, T3), "
                                                  "or dim=value")
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
# What the check guarantees, and what it does not: a model's wording is its own.
GROUNDED_NOTE = "the model's words; every decision id and figure in them was checked against the sources listed"
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
        lines, ids = [lesson.line() for lesson in result.lessons], [lesson.decision_id for lesson in result.lessons]
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

        tool = StructuredTool.from_function(func=lookup, name=name, description=DESCRIPTIONS[name],
                                            args_schema=ARG_MODELS[name])
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


def with_sources(text: str, tools: ChatTools, sources: list[str]) -> tuple[str, list[str]]:
    """A grounded answer, followed by the decisions it was built from, each line rendered from its records."""
    refs = sources[:SOURCES_SHOWN]
    lines = [text.strip()]
    if refs:
        lines.append("Sources (audit trail):")
        for i in refs:
            detail = tools.get_decision(i)
            if detail is not None:
                lines.append(f"- {detail.summary.line()}")
    return "\n".join(lines), refs


def ground(text: str, tools: ChatTools, sources: list[str], given: list[str]) -> Grounding:
    """The model's answer against the decisions its lookups returned and everything it was shown."""
    known = "\n".join([*given, *(tools.records_text(i) for i in sources)])
    return grounding.check(text, sources, known)


def answer_with_llm(question: str, tools: ChatTools, llm: Any) -> ChatAnswer:
    """The model answers through the read-only tools; anything else it asks for is refused."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    reference = tools.clock()
    plan = plan_question(question, tools.known_values(), reference, tools.tz)
    if plan.intent == "refuse":
        return ChatAnswer(text=REFUSAL)
    tz_name = datetime.fromtimestamp(reference, tz=tools.tz).tzname() or "UTC"
    messages: list[Any] = [SystemMessage(SYSTEM_PROMPT.format(tz=tz_name, now=fmt_time(reference, tools.tz))),
                           HumanMessage(question)]
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
        messages.append(AIMessage(content=LOOKING_UP,
                                  tool_calls=[{"name": name, "args": args, "id": "lookup-0", "type": "tool_call"}]))
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
    text = str(reply.content or "").strip()
    given = [str(m.content) for m in messages if isinstance(m, (SystemMessage, HumanMessage, ToolMessage))]
    verdict = ground(text, tools, sources, given) if text else Grounding(unverified_figures=("(no text)",))
    if not verdict.holds:
        # Whatever the model said, no invented id or figure reaches the operator: the rule answer instead.
        fallback = answer_from_records(question, tools)
        reason = verdict.reason() if text else "it gave no text"
        return fallback.model_copy(update={
            "lookups": lookups + fallback.lookups, "refused_calls": refused, "unknown_ids": list(verdict.unknown_ids),
            "unverified_figures": list(verdict.unverified_figures), "prompt_version": CHAT_PROMPT_VERSION,
            "note": f"the model's answer was not grounded ({reason}); answered from the records directly"})
    shown, refs = with_sources(text, tools, sources)
    return ChatAnswer(text=shown, cited=refs, used_llm=True, lookups=lookups, refused_calls=refused,
                      prompt_version=CHAT_PROMPT_VERSION, note=GROUNDED_NOTE)
