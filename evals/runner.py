"""Replays one case through the real graph: Agent over build_services(in_memory=True) with a JSONL source.

No shortcut: events go through the source, the window, the reasoner, the
guardrails, the (simulated) control plane and the audit log exactly as in
`payops replay`. What comes back is one `TickRecord` per tick, read from the
graph state and checked against the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from payops.errors import PayopsError
from payops.graph.reasoners.base import Reasoner
from payops.graph.reasoners.rules import RuleReasoner
from payops.graph.runner import Agent
from payops.graph.services import AgentServices, build_services
from payops.guardrails.notify import ListNotifier
from payops.settings import Settings
from payops.signals.sources import LineSource
from payops.tools.control_plane import SimulatedControlPlane

from .cases import Case, open_events

# What a decision record must hold to answer "why did you do that?" (memory.audit / graph.nodes.audit_record).
AUDIT_REQUIRED = ("decision_id", "tick", "window_end", "snapshot", "diagnosis", "proposal", "verdict", "execution")
DIAGNOSIS_REQUIRED = ("category", "summary", "evidence", "confidence")


class EvalError(PayopsError, RuntimeError):
    """The evaluation cannot run as asked (no LLM reasoner, no cassette, bad corpus)."""


@dataclass(frozen=True)
class LLMCall:
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    fallback: str | None = None  # why the rules answered instead, when they did


@dataclass(frozen=True)
class TickRecord:
    tick: int
    window_end: float
    category: str
    confidence: float
    diagnosis_target: dict[str, str]
    tool: str
    target: dict[str, str]
    verdict: str  # guardrail outcome: allow / needs_approval / deny
    status: str  # executed / escalated / denied / skipped / failed
    audit_complete: bool
    summary: str = ""
    evidence: tuple[str, ...] = ()
    llm_calls: tuple[LLMCall, ...] = ()

    @property
    def executed(self) -> bool:
        """An action really ran (no_action never counts)."""
        return self.status == "executed" and self.tool != "no_action"

    @property
    def escalated(self) -> bool:
        return self.status == "escalated"

    def to_json(self) -> dict[str, Any]:
        return {
            "tick": self.tick,
            "window_end": self.window_end,
            "category": self.category,
            "confidence": self.confidence,
            "diagnosis_target": self.diagnosis_target,
            "tool": self.tool,
            "target": self.target,
            "verdict": self.verdict,
            "status": self.status,
            "audit_complete": self.audit_complete,
            "llm_calls": [c.__dict__ for c in self.llm_calls],
        }


@dataclass
class CaseRun:
    case_id: str
    ticks: list[TickRecord] = field(default_factory=list)
    audit_chain_ok: bool = True
    audit_records: int = 0
    bad_lines: int = 0
    wall_seconds: float = 0.0
    error: str | None = None


ReasonerFactory = Callable[[Settings], Reasoner]


def eval_settings(case: Case, llm_model: str | None = None, llm_base_url: str | None = None) -> Settings:
    """The shipped defaults plus the case's window and tick: PAYOPS_* variables do not leak into scores."""
    return Settings.model_construct(
        window_seconds=case.window_seconds,
        tick_seconds=case.tick_seconds,
        deployment=f"eval-{case.id}",
        webhook_url=None,
        llm_model=llm_model,
        llm_base_url=llm_base_url,
        database_url=None,
        orchestrator_url=None,
    )


def rules_factory(settings: Settings) -> Reasoner:
    return RuleReasoner()


def llm_factory(settings: Settings) -> Reasoner:
    try:
        from payops.graph.reasoners.llm import LLMReasoner  # built in the reasoning issue
    except ImportError as exc:
        raise EvalError(
            "the LLM reasoner is not available in this checkout (payops.graph.reasoners.llm: "
            f"{exc}); run the eval with --reasoner rules"
        ) from None
    return LLMReasoner.from_settings(settings, fallback=RuleReasoner())


def _int(call: dict[str, Any], *names: str) -> int:
    for n in names:
        if call.get(n) is not None:
            try:
                return int(call[n])
            except (TypeError, ValueError):
                return 0
    return 0


def llm_call(raw: dict[str, Any]) -> LLMCall:
    """Reads a reasoner's per-call record leniently: OpenAI and LangChain spell token fields differently."""
    usage = raw.get("usage")
    merged = {**(usage if isinstance(usage, dict) else {}), **raw}
    latency = merged.get("latency_ms")
    if latency is None and merged.get("latency_s") is not None:
        latency = float(merged["latency_s"]) * 1000.0
    fallback = merged.get("fallback") or merged.get("fallback_reason") or merged.get("error")
    return LLMCall(
        model=str(merged.get("model") or merged.get("model_name") or "?"),
        input_tokens=_int(merged, "input_tokens", "prompt_tokens"),
        output_tokens=_int(merged, "output_tokens", "completion_tokens"),
        latency_ms=float(latency or 0.0),
        fallback=str(fallback) if fallback else None,
    )


def audit_complete(services: AgentServices, decision_id: str) -> bool:
    entries = [e for e in services.audit.get(decision_id) if e.kind == "decision"]
    if len(entries) != 1:
        return False
    record = entries[0].record
    if any(record.get(k) is None for k in AUDIT_REQUIRED):
        return False
    diagnosis = record["diagnosis"]
    if any(diagnosis.get(k) in (None, "") for k in DIAGNOSIS_REQUIRED) or not diagnosis.get("evidence"):
        return False
    return (
        bool(record["proposal"].get("tool"))
        and bool(record["execution"].get("status"))
        and bool(record["verdict"].get("verdict"))
    )


def tick_record(state: dict[str, Any], complete: bool) -> TickRecord:
    d, p = state["diagnosis"], state["proposal"]
    return TickRecord(
        tick=int(state.get("tick", 0)),
        window_end=float(state["window_end"]),
        category=str(d["category"]),
        confidence=float(d["confidence"]),
        diagnosis_target=dict(d.get("target") or {}),
        tool=str(p["tool"]),
        target=dict(p.get("target") or {}),
        verdict=str(state["verdict"]["verdict"]),
        status=str(state["execution"]["status"]),
        audit_complete=complete,
        summary=str(d.get("summary", "")),
        evidence=tuple(d.get("evidence") or ()),
        llm_calls=tuple(llm_call(c) for c in state.get("llm_calls") or ()),
    )


def replay_case(
    case: Case,
    factory: ReasonerFactory = rules_factory,
    *,
    llm_model: str | None = None,
    llm_base_url: str | None = None,
    cassette: AbstractContextManager[Any] | None = None,
) -> CaseRun:
    """Every tick of the case through the graph; errors are caught per case so one bad case never stops a run."""
    run = CaseRun(case.id)
    started = time.perf_counter()
    settings = eval_settings(case, llm_model, llm_base_url)
    try:
        with open_events(case.events_path) as stream, cassette or nullcontext():
            source = LineSource(stream, str(case.events_path))
            services = build_services(
                settings,
                source=source,
                in_memory=True,
                control_plane=SimulatedControlPlane(),
                notifier=ListNotifier(),
                reasoner=factory(settings),
            )
            agent = Agent(services)
            end = agent.next_window_end()
            while end is not None:
                result = agent.tick(end)
                if result is None:
                    break
                run.ticks.append(tick_record(result.state, audit_complete(services, result.decision_id)))
                if agent.drained(end):
                    break
                end += settings.tick_seconds
            verify = services.audit.verify()
            run.audit_chain_ok = verify.ok
            run.audit_records = sum(1 for _ in services.audit.entries("decision"))
            run.bad_lines = source.report.bad_count
            services.audit.close()
    except EvalError:
        raise
    except Exception as exc:  # a crash is a result to report, not a reason to lose the other cases
        run.error = f"{type(exc).__name__}: {exc}"
    run.wall_seconds = time.perf_counter() - started
    return run
