"""Prometheus metrics, read from the records every process writes.

Agent figures come from the audit trail (one "decision" record per tick, with
its diagnosis, execution and LLM calls), palm-pay figures from the backend's
payment events, pending approvals from the approval book. So they count what
the agent and the backend did whichever process did it, and they survive
restarts (a counter that starts from the records is still a counter).
Records are read incrementally: each scrape reads only what is new.

API figures (requests, rate-limit refusals) are this server process's own.

Palm-pay refusals are the failure events whose code is a palm-pay code
(PALM_PAY_*); other failure codes are the rail's.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger("payops.api")

# LLM call latency buckets, seconds: a local model answers in well under a second,
# a hosted one in 1-10 s, anything past 30 s is a timeout in all but name.
LLM_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Beyond this many new audit records, stream them instead of fetching them as one batch.
AUDIT_BATCH = 1000
PALM_BATCH = 1000
PALM_REFUSAL_PREFIX = "PALM_PAY_"


def _int(call: dict[str, Any], *names: str) -> int:
    for name in names:
        value = call.get(name)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


@dataclass
class LLMCall:
    model: str
    input_tokens: int
    output_tokens: int
    latency_s: float


def _part(record: dict[str, Any], key: str) -> dict[str, Any]:
    """record[key] when it is an object, else {} (a record is read leniently: one bad field costs that field)."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def llm_call(raw: Any) -> LLMCall | None:
    """A reasoner's per-call record, read leniently (OpenAI and LangChain name token fields differently)."""
    if not isinstance(raw, dict):
        return None
    usage = raw.get("usage")
    merged = {**(usage if isinstance(usage, dict) else {}), **raw}
    latency_ms = merged.get("latency_ms")
    if latency_ms is None and merged.get("latency_s") is not None:
        latency_ms = float(merged["latency_s"]) * 1000.0
    try:
        latency_s = float(latency_ms or 0.0) / 1000.0
    except (TypeError, ValueError):
        latency_s = 0.0
    return LLMCall(
        model=str(merged.get("model") or merged.get("model_name") or "unknown")[:64],
        input_tokens=_int(merged, "input_tokens", "prompt_tokens"),
        output_tokens=_int(merged, "output_tokens", "completion_tokens"),
        latency_s=latency_s,
    )


@dataclass
class Tallies:
    """Running totals; `add_*` are pure bookkeeping on one record."""

    audit_seq: int = 0  # last audit record read
    palm_event_id: int = 0  # last palm-pay payment event read
    ticks: int = 0
    decisions: Counter[str] = field(default_factory=Counter)  # by category
    actions: Counter[str] = field(default_factory=Counter)  # by execution status (no_action excluded)
    llm_calls: Counter[str] = field(default_factory=Counter)  # by model
    llm_tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, input|output)
    llm_latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LLM_LATENCY_BUCKETS_S))
    llm_latency_sum: float = 0.0
    llm_latency_count: int = 0
    palm_attempts: Counter[str] = field(default_factory=Counter)  # success | failure | pending
    palm_refusals: Counter[str] = field(default_factory=Counter)  # by PALM_PAY_* code
    palm_rail_failures: Counter[str] = field(default_factory=Counter)  # by rail code
    source_lag: dict[str, int] = field(default_factory=dict)  # partition -> unread messages at its latest tick
    # partition -> redelivered messages its worker dropped as already counted, since that worker started
    source_duplicates: dict[str, int] = field(default_factory=dict)

    def add_decision(self, record: dict[str, Any]) -> None:
        self.ticks += 1
        diagnosis, proposal, execution, source = (
            _part(record, key) for key in ("diagnosis", "proposal", "execution", "source")
        )
        self.decisions[str(diagnosis.get("category") or "unknown")] += 1
        if isinstance(source.get("lag"), int) and source.get("partition"):
            self.source_lag[str(source["partition"])] = source["lag"]
            self.source_duplicates[str(source["partition"])] = int(source.get("duplicates") or 0)
        if (proposal.get("tool") or "no_action") != "no_action":
            self.actions[str(execution.get("status") or "unknown")] += 1
        for raw in record.get("llm_calls") or ():
            call = llm_call(raw)
            if call is None:
                continue
            self.llm_calls[call.model] += 1
            self.llm_tokens[(call.model, "input")] += call.input_tokens
            self.llm_tokens[(call.model, "output")] += call.output_tokens
            self.llm_latency_sum += call.latency_s
            self.llm_latency_count += 1
            for i, bound in enumerate(LLM_LATENCY_BUCKETS_S):
                if call.latency_s <= bound:
                    self.llm_latency_buckets[i] += 1

    def add_payment_event(self, event: dict[str, Any]) -> None:
        if event.get("status") == "success":
            self.palm_attempts["success"] += 1
            return
        self.palm_attempts["pending" if event.get("pending") else "failure"] += 1
        code = str(event.get("error_code") or "UNKNOWN")[:64]
        if code.startswith(PALM_REFUSAL_PREFIX):
            self.palm_refusals[code] += 1
        else:
            self.palm_rail_failures[code] += 1


class RecordsCollector:
    """A prometheus_client collector that catches up with the records on every scrape."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self.tallies = Tallies()

    def describe(self) -> list[Metric]:
        return []  # families are only known at collect time; this stops the registry from collecting at register

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            pending = self._catch_up()
            yield from self._families(self.tallies, pending)

    def _catch_up(self) -> int | None:
        svc = self._backend.services
        audit = svc.audit
        count = audit.count()
        if count < self.tallies.audit_seq:  # the trail was replaced: start again from it
            self.tallies = Tallies(palm_event_id=self.tallies.palm_event_id, palm_attempts=self.tallies.palm_attempts,
                                   palm_refusals=self.tallies.palm_refusals,
                                   palm_rail_failures=self.tallies.palm_rail_failures)
        new = count - self.tallies.audit_seq
        if new > 0:
            entries: Iterable[Any] = audit.tail(new) if new <= AUDIT_BATCH else audit.entries()
            for e in entries:
                if e.seq <= self.tallies.audit_seq:
                    continue
                if e.kind == "decision":
                    self.tallies.add_decision(e.record)
                self.tallies.audit_seq = e.seq
        try:
            palm = self._backend.palm
            while True:
                batch = palm.payment_events_after(self.tallies.palm_event_id, PALM_BATCH)
                for rec in batch:
                    self.tallies.add_payment_event(rec.event)
                    self.tallies.palm_event_id = rec.id
                if len(batch) < PALM_BATCH:
                    break
        except Exception as exc:  # palm-pay metrics are optional; the agent's must still come out
            log.warning("palm-pay metrics unavailable: %s", type(exc).__name__)
        return None if svc.approvals is None else len(svc.approvals.by_status("pending"))

    @staticmethod
    def _families(t: Tallies, pending: int | None) -> Iterator[Metric]:
        yield CounterMetricFamily("payops_ticks", "Agent ticks recorded in the audit trail.", value=t.ticks)
        decisions = CounterMetricFamily("payops_decisions", "Decisions by diagnosis category.", labels=["category"])
        for category, n in sorted(t.decisions.items()):
            decisions.add_metric([category], n)
        yield decisions
        actions = CounterMetricFamily(
            "payops_actions", "Proposed actions (no_action excluded) by what happened: executed, escalated, denied, "
            "skipped, failed, unknown.", labels=["outcome"])
        for outcome in ("executed", "escalated", "denied"):  # always present, so rate() works from the start
            actions.add_metric([outcome], t.actions.get(outcome, 0))
        for outcome, n in sorted(t.actions.items()):
            if outcome not in ("executed", "escalated", "denied"):
                actions.add_metric([outcome], n)
        yield actions
        if pending is not None:
            yield GaugeMetricFamily("payops_approvals_pending", "Approval requests waiting for a human.", value=pending)
        lag = GaugeMetricFamily("payops_source_consumer_lag", "Events on a partition's log (NATS messages, palm-pay "
                                "rows) its worker had not read at its latest tick.", labels=["partition"])
        for partition, n in sorted(t.source_lag.items()):
            lag.add_metric([partition], n)
        yield lag
        dropped = GaugeMetricFamily("payops_source_redeliveries_dropped", "Redelivered log messages a partition's "
                                    "worker dropped as already counted before a restart (by stream sequence), "
                                    "since that worker started.", labels=["partition"])
        for partition, n in sorted(t.source_duplicates.items()):
            dropped.add_metric([partition], n)
        yield dropped
        calls = CounterMetricFamily("payops_llm_calls", "LLM calls made by the reasoner.", labels=["model"])
        for model, n in sorted(t.llm_calls.items()):
            calls.add_metric([model], n)
        yield calls
        tokens = CounterMetricFamily("payops_llm_tokens", "LLM tokens by direction.", labels=["model", "direction"])
        for (model, direction), n in sorted(t.llm_tokens.items()):
            tokens.add_metric([model, direction], n)
        yield tokens
        # Prometheus buckets are cumulative; add_decision counts a call in every bucket it fits.
        buckets = [(repr(bound), n) for bound, n in zip(LLM_LATENCY_BUCKETS_S, t.llm_latency_buckets, strict=True)]
        buckets.append(("+Inf", t.llm_latency_count))
        yield HistogramMetricFamily("payops_llm_latency_seconds", "LLM call latency.", buckets=buckets,
                                    sum_value=t.llm_latency_sum)
        attempts = CounterMetricFamily("payops_palm_payment_attempts", "Palm-pay payment attempts by result.",
                                       labels=["result"])
        for result in ("success", "failure", "pending"):
            attempts.add_metric([result], t.palm_attempts.get(result, 0))
        yield attempts
        refusals = CounterMetricFamily("payops_palm_refusals", "Palm-pay refusals by the spec's error code.",
                                       labels=["code"])
        for code, n in sorted(t.palm_refusals.items()):
            refusals.add_metric([code], n)
        yield refusals
        rail = CounterMetricFamily("payops_palm_rail_failures", "Palm-pay rail failures by code.", labels=["code"])
        for code, n in sorted(t.palm_rail_failures.items()):
            rail.add_metric([code], n)
        yield rail


class ApiMetrics:
    """The metrics registry of one app: records-derived figures plus this process's API counters."""

    def __init__(self, backend: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.records = RecordsCollector(backend)
        self.registry.register(self.records)
        self.requests = PromCounter("payops_api_requests", "HTTP requests by route template and status.",
                                    ["method", "route", "status"], registry=self.registry)
        self.rate_limited = PromCounter("payops_api_rate_limited", "Requests refused by a rate limit.", ["group"],
                                        registry=self.registry)
