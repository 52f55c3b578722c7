"""LLMReasoner: an OpenAI-compatible chat model with the agent's typed tools bound.

Per anomalous window, two calls on one conversation:
1. `report_diagnosis` (forced by name): category, the blamed hypothesis, a
   summary, evidence lines and a confidence. The model picks among the rule
   engine's hypotheses by id, so every target is a segment of this window.
2. the action tools of `payops.tools.actions.as_langchain_tools()` (tool choice
   "auto"; "required" breaks llama.cpp servers): exactly one tool call.

Every answer is validated (pydantic schemas, the tool vocabulary, targets and
destinations that exist in the window, consistency with the diagnosis). A
malformed or out-of-vocabulary answer, a timeout or an API error is retried with
tenacity (bounded; a rejected answer is told why) and then the rule engine
decides instead, with the reason in `Decision.notes` and `Decision.fallback`.
All LLM work of one tick shares one wall-clock deadline (`budget_seconds`): each
call's time-out is what is left of it, no retry starts after it, and a call still
running at the deadline is abandoned, so a hanging endpoint costs one budget, not
attempts x time-out. The model's arguments go through the rules' argument policy
(arguments.py): TTL and reroute share capped, the fallback method kept, and a
target other than the blamed segment refused, never rewritten. Healthy windows never reach
the model: no tokens are spent when the signals show nothing. Every call is
recorded with its tokens and latency.

The model cannot buy autonomy: its confidence is capped by the rule engine's
when they agree and held below the approval threshold when they do not.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Literal

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolCall
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from payops import prompts
from payops.errors import BadInput, Unavailable
from payops.models import Category, Diagnosis, ProposedAction, target_key
from payops.signals.window import WindowSnapshot
from payops.tools.actions import ACTIONS, ROUTING_ACTIONS, ProposalError, as_langchain_tools, validate_proposal

from .arguments import ArgumentRefused, apply_policy
from .base import Decision, ReasoningContext
from .briefing import Briefing, action_data, brief, quoted_text
from .evidence import describe
from .rules import RuleReasoner
from .selection import alternative_routes

PROMPT_VERSION = "v1"
# Window-level incidents are handled with routing actions; the palm-link tools act on one
# palm_pay_id, which the model never sees (no raw events), so they are out of vocabulary here.
WINDOW_TOOLS = frozenset(ROUTING_ACTIONS)
TRAFFIC_TOOLS = frozenset({"reroute_traffic", "suppress_path", "adjust_retry_policy"})
# When the model and the rules disagree on category or target, a human decides.
DISAGREEMENT_CONFIDENCE_CAP = 0.7
# Output budget per call: a diagnosis and one tool call fit easily; a model that rambles
# (small ones fill string fields until the context ends) is cut off and retried.
MAX_OUTPUT_TOKENS = 400
MAX_EVIDENCE_LINES = 4
MAX_LINE_CHARS = 200
DIAGNOSIS_TOOL = "report_diagnosis"
# Wall-clock seconds all LLM work of one tick may take before the rules decide. A third of
# the 60 s tick: the rest of the tick (guardrails, audit, a late batch) must still fit.
DEFAULT_TICK_BUDGET_SECONDS = 20.0
# How a fallback is shown to the operator (Decision.fallback, the cycle output).
TIMED_OUT, UNREACHABLE, INVALID, REFUSED, FAILED = (
    "timed out", "was unreachable", "gave an invalid answer", "refused the call", "failed")


class AnswerError(BadInput, ValueError):
    """The model answered, but not with a usable tool call (the message names fields, never values)."""


class BudgetExhausted(Unavailable, TimeoutError):
    """The tick's LLM budget is spent: no further call starts, a running one is abandoned."""


# Worth another try: a rejected answer (told why), rate limits, timeouts and connection trouble, 5xx.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (AnswerError, openai.RateLimitError,
                                                     openai.APIConnectionError, openai.InternalServerError)


class DiagnosisFields(BaseModel):
    """report_diagnosis arguments; `hypothesis` is narrowed to the window's ids per call.

    The hypothesis comes first: naming the segment before the category keeps a small
    model's category tied to the figures it just read.
    """

    model_config = ConfigDict(extra="forbid")
    hypothesis: str = Field(..., description='Id of the blamed hypothesis, e.g. "H1".')
    category: Literal["healthy", "user", "issuer", "network", "config", "security"]
    summary: str = Field(..., min_length=1, max_length=400)
    evidence: list[str] = Field(default_factory=list, max_length=8)
    confidence: float = Field(..., ge=0.0, le=1.0)


def diagnosis_model(ids: list[str]) -> type[DiagnosisFields]:
    """DiagnosisFields whose hypothesis must be one of `ids` (servers that turn schemas into grammars
    then cannot even emit another). The model is only asked about anomalous windows; if it judges
    one healthy after all, the category says so and the hypothesis is ignored."""
    allowed = Literal[tuple(ids)]  # type: ignore[valid-type]
    return create_model(
        "DiagnosisFields", __base__=DiagnosisFields,
        # a Literal built at run time from the ids: no static type can name it
        hypothesis=(allowed, Field(..., description="Id of the blamed hypothesis.")),  # type: ignore[arg-type]
    )


def chat_model(model: str, *, base_url: str | None = None,
               api_key: str | None = None, timeout: float = 30.0) -> BaseChatModel:
    """ChatOpenAI for any OpenAI-compatible endpoint; retries are ours (tenacity), so the client makes none."""
    from langchain_openai import ChatOpenAI

    # The output budget goes out as max_completion_tokens; servers that predate it (llama.cpp's)
    # read max_tokens only, so a custom endpoint gets both.
    extra = {"max_tokens": MAX_OUTPUT_TOKENS} if base_url else None
    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key or "no-key-needed", temperature=0,
                      timeout=timeout, max_retries=0, extra_body=extra)


def _usage(ai: AIMessage) -> dict[str, int]:
    u: Mapping[str, Any] = ai.usage_metadata or {}
    return {"input_tokens": int(u.get("input_tokens", 0)), "output_tokens": int(u.get("output_tokens", 0)),
            "total_tokens": int(u.get("total_tokens", 0))}


def _why(exc: BaseException) -> str:
    if isinstance(exc, AnswerError):
        return f"malformed answer: {exc}"
    if isinstance(exc, BudgetExhausted):
        return f"timeout: {exc}"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return f"API error HTTP {exc.status_code}"
    if isinstance(exc, openai.APIConnectionError):
        return "connection error"
    return f"{type(exc).__name__}"


def fallback_kind(exc: BaseException) -> str:
    """What the operator is told happened: timed out, was unreachable, gave an invalid answer, refused the call,
    failed."""
    if isinstance(exc, (BudgetExhausted, openai.APITimeoutError)):
        return TIMED_OUT
    if isinstance(exc, openai.APIConnectionError):
        return UNREACHABLE
    if isinstance(exc, AnswerError):
        return INVALID
    if isinstance(exc, openai.APIStatusError):
        return UNREACHABLE if exc.status_code >= 500 else REFUSED
    return FAILED


def call_within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn() on a daemon thread, waited for at most `seconds` of wall-clock time.

    The HTTP client's time-out is per operation (connect, each read), so a server that
    trickles bytes could outlast it; this bound cannot be outlasted. An abandoned call ends
    on its own time-out, which is never longer than the budget left when it started.
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    ctx = contextvars.copy_context()

    def run() -> None:
        try:
            box["value"] = ctx.run(fn)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="payops-llm-call", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise BudgetExhausted("the tick's LLM budget ran out during a call")
    if "error" in box:
        raise box["error"]
    return box["value"]


class LLMReasoner:
    name = "llm"

    def __init__(self, chat: BaseChatModel, fallback: RuleReasoner | None = None, *, model: str = "unknown",
                 max_attempts: int = 3, wait: Any = None, prompt_version: str = PROMPT_VERSION,
                 clock: Callable[[], float] = time.perf_counter, budget_seconds: float = DEFAULT_TICK_BUDGET_SECONDS,
                 call_timeout: float | None = None) -> None:
        if not budget_seconds > 0:
            raise ValueError("the LLM tick budget must be a positive number of seconds")
        self.chat = chat
        self.budget_seconds = float(budget_seconds)
        # Per call, at most: the client's own time-out, and never beyond the budget left.
        self.call_timeout = call_timeout if call_timeout is not None else getattr(chat, "request_timeout", None)
        self.fallback = fallback or RuleReasoner()
        self.model = model
        self.max_attempts = max(1, max_attempts)
        self.wait = wait if wait is not None else wait_exponential(multiplier=0.5, max=8.0)
        self.prompt_version = prompt_version
        self.clock = clock
        for name in ("reasoner_system", "reasoner_diagnose", "reasoner_act", "reasoner_retry"):
            prompts.load(name, prompt_version)  # fail at start-up, not on the first incident

    @classmethod
    def from_settings(cls, settings: Any, fallback: RuleReasoner | None = None, **kwargs: Any) -> LLMReasoner:
        """ChatOpenAI on any OpenAI-compatible endpoint: PAYOPS_LLM_MODEL, OPENAI_BASE_URL (or
        PAYOPS_LLM_BASE_URL), OPENAI_API_KEY (a local server needs none)."""
        model = settings.llm_model
        if not model:
            raise ValueError("PAYOPS_LLM_MODEL is not set")
        base_url = settings.llm_base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key and not base_url:
            raise ValueError("PAYOPS_LLM_MODEL is set but there is neither OPENAI_API_KEY nor OPENAI_BASE_URL / "
                             "PAYOPS_LLM_BASE_URL")
        chat = chat_model(model, base_url=base_url, api_key=api_key, timeout=settings.llm_timeout_seconds)
        kwargs.setdefault("budget_seconds", settings.llm_tick_budget_seconds)
        return cls(chat, fallback, model=model, max_attempts=1 + settings.llm_max_retries,
                   call_timeout=settings.llm_timeout_seconds, **kwargs)

    # -- Reasoner -------------------------------------------------------------------
    def decide(self, snapshot: WindowSnapshot, context: ReasoningContext) -> Decision:
        rules = self.fallback.decide(snapshot, context)
        if rules.diagnosis.category is Category.HEALTHY:
            return replace(rules, notes=(*rules.notes, "llm not called: nothing anomalous in the window"))
        briefing = brief(snapshot, context, self.fallback, rules)
        calls: list[dict[str, Any]] = []
        deadline = self.clock() + self.budget_seconds  # one wall-clock budget for all of this tick's calls
        try:
            diagnosis, proposal, notes = self._ask(briefing, snapshot, context, calls, deadline)
        except Exception as exc:  # retries exhausted, or an error no retry can fix: the rules decide
            why = _why(exc)
            kind = fallback_kind(exc)
            shown = f"the LLM {kind}" + (f" ({why})" if kind != TIMED_OUT else
                                         f" (budget {self.budget_seconds:g} s, {len(calls)} call(s))")
            fallback = rules.diagnosis.model_copy(update={"reasoner": f"{self.fallback.name} (llm fallback)"})
            return Decision(fallback, rules.proposal, llm_calls=tuple(calls),
                            notes=(*rules.notes, f"llm fallback: {why}"),
                            fallback=shown)
        return Decision(diagnosis, proposal, llm_calls=tuple(calls), notes=notes)

    # -- the conversation -------------------------------------------------------------
    def _ask(self, briefing: Briefing, snapshot: WindowSnapshot, context: ReasoningContext,
             calls: list[dict[str, Any]], deadline: float) -> tuple[Diagnosis, ProposedAction, tuple[str, ...]]:
        v = self.prompt_version
        ids = [h.id for h in briefing.hypotheses]
        schema = diagnosis_model(ids)
        diagnosis_tool = StructuredTool.from_function(
            func=lambda **_: "recorded", name=DIAGNOSIS_TOOL, args_schema=schema,
            description="Record the diagnosis of this window: category, blamed hypothesis, summary, evidence, "
                        "confidence.")
        opening: list[BaseMessage] = [
            SystemMessage(prompts.load("reasoner_system", v).text),
            HumanMessage(prompts.load("reasoner_diagnose", v).render(
                data=briefing.json(), rule_category=briefing.rules.category.value,
                rule_hypothesis=briefing.id_of(briefing.rules.target) or "none",
                rule_confidence=f"{briefing.rules.confidence:.2f}")),
        ]
        forced = {"type": "function", "function": {"name": DIAGNOSIS_TOOL}}
        (fields, target), _ = self._with_retries(
            "diagnosis",
            self.chat.bind_tools([diagnosis_tool],
                                 tool_choice=forced)  # type: ignore[arg-type]  # ChatOpenAI takes a dict; the base declares str
            .bind(max_tokens=MAX_OUTPUT_TOKENS), opening,
            lambda ai: self._parse_diagnosis(ai, schema, briefing), calls, deadline)

        # A fresh, shorter conversation for the action: the system rules plus the recorded diagnosis
        # and what a tool call needs. (Replaying the assistant's tool call instead breaks servers
        # that reject a null assistant content, and costs the whole evidence block again.)
        recorded = {"category": fields.category, "hypothesis": fields.hypothesis, "summary": fields.summary[:200]}
        destinations = alternative_routes(snapshot, target, context.thresholds.significance_z) if target else {}
        follow_up: list[BaseMessage] = [
            opening[0],
            HumanMessage(prompts.load("reasoner_act", v).render(data=action_data(briefing,
                                                                                 recorded, target, destinations),
                                                                rule_tool=briefing.rules_proposal.tool)),
        ]
        (proposal, policy_notes), _ = self._with_retries(
            "action", self.chat.bind_tools(as_langchain_tools(), tool_choice="auto").bind(max_tokens=MAX_OUTPUT_TOKENS),
            follow_up,
            lambda ai: self._parse_action(ai, fields, target, snapshot, context, briefing), calls, deadline)
        diagnosis, proposal, notes = self._conclude(fields, target, proposal, briefing, snapshot, context)
        return diagnosis, proposal, (*notes, *policy_notes)

    def _with_retries(self, phase: str, runnable: Any, messages: list[BaseMessage], parse: Callable[[AIMessage], Any],
                      calls: list[dict[str, Any]], deadline: float) -> tuple[Any, AIMessage]:
        extra: list[BaseMessage] = []
        attempt = 0

        def out_of_time(retry_state: Any) -> bool:  # no retry that would start after the deadline
            return self.clock() + (retry_state.upcoming_sleep or 0.0) >= deadline

        for state in Retrying(stop=stop_after_attempt(self.max_attempts) | out_of_time,  # type: ignore[operator]  # any callable stops at run time
                              wait=self.wait,
                              retry=retry_if_exception_type(RETRYABLE_ERRORS), reraise=True):
            with state:
                attempt += 1
                record: dict[str, Any] = {"phase": phase, "attempt": attempt, "model": self.model,
                                          "prompt": f"reasoner.{self.prompt_version}"}
                started = self.clock()
                left = deadline - started
                try:
                    if left <= 0:
                        raise BudgetExhausted(f"the tick's LLM budget of {self.budget_seconds:g} s was spent before "
                                              "this call")
                    timeout = left if self.call_timeout is None else min(left, float(self.call_timeout))
                    ai = call_within(left, partial(runnable.invoke, [*messages, *extra], timeout=timeout))
                except Exception as exc:
                    record.update(latency_ms=round(1000 * (self.clock() - started), 1), ok=False, error=_why(exc))
                    calls.append(record)
                    raise
                record.update(latency_ms=round(1000 * (self.clock() - started), 1), **_usage(ai))
                try:
                    result = parse(ai)
                except AnswerError as exc:
                    record.update(ok=False, error=_why(exc))
                    calls.append(record)
                    retry = prompts.load("reasoner_retry", self.prompt_version)
                    extra = [HumanMessage(retry.render(reason=quoted_text(str(exc))))]
                    raise
                record["ok"] = True
                calls.append(record)
                return result, ai
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # -- validation -------------------------------------------------------------------
    @staticmethod
    def _one_call(ai: AIMessage) -> ToolCall:
        if ai.invalid_tool_calls:
            raise AnswerError("the tool call's arguments are not valid JSON")
        if not ai.tool_calls:
            raise AnswerError("no tool call in the answer")
        if len(ai.tool_calls) > 1:
            raise AnswerError("more than one tool call; exactly one is allowed")
        return ai.tool_calls[0]

    def _parse_diagnosis(self, ai: AIMessage,
                         schema: type[DiagnosisFields], briefing: Briefing) -> tuple[DiagnosisFields, dict[str, str]]:
        call = self._one_call(ai)
        if call["name"] != DIAGNOSIS_TOOL:
            raise AnswerError(f"expected a {DIAGNOSIS_TOOL} call")
        try:
            fields = schema.model_validate(call["args"])
        except ValidationError as exc:
            names = sorted({".".join(str(p) for p in e["loc"]) or "arguments" for e in exc.errors()})
            raise AnswerError(f"invalid diagnosis fields: {', '.join(names)}") from None
        if fields.category == Category.HEALTHY.value:
            return fields, {}  # the model overrules the signals: nothing to blame
        target = briefing.target_of(fields.hypothesis)
        if target is None:
            raise AnswerError("hypothesis is not one of the listed ids")
        return fields, target

    def _parse_action(self, ai: AIMessage, fields: DiagnosisFields, target: dict[str, str], snapshot: WindowSnapshot,
                      context: ReasoningContext, briefing: Briefing) -> tuple[ProposedAction, tuple[str, ...]]:
        call = self._one_call(ai)
        tool, args = call["name"], dict(call["args"] or {})
        if tool not in ACTIONS:
            raise AnswerError("the tool is not in the agent's vocabulary")
        if tool not in WINDOW_TOOLS:
            raise AnswerError("palm-link tools act on one link, which this window does not name; use a routing action")
        try:
            # The rules' argument policy: caps and fallbacks as the rules would set them; a target
            # other than the blamed segment is refused (told to the model), never rewritten.
            args, notes = apply_policy(tool, args, target, snapshot, context, briefing.rules_proposal)
        except ArgumentRefused as exc:
            raise AnswerError(str(exc)) from None
        try:
            proposal = validate_proposal(tool, args, rationale="chosen by the LLM reasoner")
        except ProposalError as exc:
            raise AnswerError(str(exc)) from None
        if fields.category in (Category.HEALTHY.value, Category.USER.value) and tool != "no_action":
            raise AnswerError(f"a {fields.category} diagnosis calls for no_action")
        if tool == "reroute_traffic":
            allowed = alternative_routes(snapshot, proposal.target, context.thresholds.significance_z)
            if not set(proposal.args.get("to_routes", {})) <= set(allowed):
                raise AnswerError("destination routes must be among reroute_destinations (healthy routes that carry "
                                  "the traffic)")
        return proposal, tuple(f"llm arguments: {n}" for n in notes)

    # -- the decision ------------------------------------------------------------------
    def _conclude(self, fields: DiagnosisFields, target: dict[str, str], proposal: ProposedAction, briefing: Briefing,
                  snapshot: WindowSnapshot, context: ReasoningContext) -> tuple[Diagnosis,
                                                                                ProposedAction, tuple[str, ...]]:
        rules = briefing.rules
        agree = fields.category == rules.category.value and target_key(target) == target_key(rules.target)
        confidence = min(fields.confidence, rules.confidence) if agree else min(fields.confidence,
                                                                                DISAGREEMENT_CONFIDENCE_CAP)
        notes = [f"llm prompt reasoner.{self.prompt_version}",
                 "llm agrees with the rule engine" if agree else
                 f"llm disagrees with the rule engine ({rules.category.value} on {target_key(rules.target)}): "
                 "confidence capped"]
        if proposal.tool in TRAFFIC_TOOLS:
            key = target_key(proposal.target)
            existing = next((a for a in context.in_force if a.tool == proposal.tool
                             and target_key(a.target) == key), None)
            if existing is not None:
                proposal = validate_proposal("no_action", {"reason": f"already in force: {proposal.tool} on {key}"})
                notes.append("llm proposal already in force; replaced by no_action")
        seg = snapshot.segment(**target) if target else snapshot.total
        evidence = [describe(seg)] if seg is not None and fields.category != Category.HEALTHY.value else []
        evidence += [line.strip()[:MAX_LINE_CHARS] for line in fields.evidence[:MAX_EVIDENCE_LINES] if line.strip()]
        alternatives = [f"{target_key(h.target)} ({h.id}): not blamed" for h in briefing.hypotheses
                        if h.target != target]
        if not agree:
            alternatives.append(f"rule engine: {rules.category.value} on {target_key(rules.target)} at "
                                f"{rules.confidence:.2f}")
        diagnosis = Diagnosis(
            category=Category(fields.category), target=target if fields.category != Category.HEALTHY.value else {},
            summary=fields.summary.strip()[:400], evidence=tuple(evidence), alternatives=tuple(alternatives[:6]),
            confidence=round(confidence, 3), reasoner=f"llm:{self.model}",
        )
        return diagnosis, proposal, tuple(notes)
