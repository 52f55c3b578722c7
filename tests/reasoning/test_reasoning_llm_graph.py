"""The LLM reasoner inside the real graph: no calls on healthy ticks, calls recorded in the audit trail."""

from __future__ import annotations

import time

from langchain_openai import ChatOpenAI
from reasoning_stub import rule_follower, serve
from tenacity import wait_none

from payops.graph.reasoners.llm import LLMReasoner
from payops.graph.reasoners.rules import RuleReasoner
from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.settings import Settings
from payops.signals.simulator import Simulator, build_scenario, default_network
from payops.signals.sources import SimulatorSource
from payops.tools.control_plane import SimulatedControlPlane


def test_the_llm_is_called_only_on_anomalous_ticks_and_every_call_is_audited() -> None:
    stub, server = serve()
    stub.responder = rule_follower
    try:
        chat = ChatOpenAI(model="stub", base_url=stub.base_url, api_key="sk-test",
                          temperature=0, max_retries=0, timeout=10)
        reasoner = LLMReasoner(chat, RuleReasoner(), model="stub", max_attempts=2, wait=wait_none())
        cp = SimulatedControlPlane()
        net = default_network()
        sim = Simulator(build_scenario("route_outage", net), net, seed=3, policy=cp)
        svc = build_services(Settings(deployment="llm-graph"), source=SimulatorSource(sim), in_memory=True,
                             control_plane=cp, reasoner=reasoner)
        agent = Agent(svc)
        states = [agent.tick().state for _ in range(7)]
    finally:
        server.shutdown()
    healthy = [s for s in states if s["diagnosis"]["category"] == "healthy"]
    anomalous = [s for s in states if s["diagnosis"]["category"] != "healthy"]
    assert len(healthy) >= 5 and anomalous
    assert all(s["llm_calls"] == [] for s in healthy)
    first = anomalous[0]
    assert first["diagnosis"]["reasoner"] == "llm:stub" and first["diagnosis"]["target"] == {"route": "psp_a"}
    assert first["proposal"]["tool"] == "reroute_traffic" and first["execution"]["status"] in ("executed", "escalated")
    assert [c["phase"] for c in first["llm_calls"]] == ["diagnosis", "action"]
    assert len(stub.requests) == sum(len(s["llm_calls"]) for s in states)
    records = {r.decision_id: r.record for r in agent.services.audit.entries("decision")}
    assert records[first["decision_id"]]["llm_calls"] == first["llm_calls"]
    assert all(c["total_tokens"] > 0 and c["latency_ms"] >= 0 for c in first["llm_calls"])


def test_a_hanging_llm_leaves_each_tick_within_its_budget_and_the_cycle_says_the_rules_decided() -> None:
    from reasoning_stub import Reply, completion

    from payops.render import render_cycle

    stub, server = serve()
    stub.default = Reply(200, completion(content="late"), delay=3.0)
    try:
        chat = ChatOpenAI(model="stub", base_url=stub.base_url, api_key="sk-test",
                          temperature=0, max_retries=0, timeout=30)
        reasoner = LLMReasoner(chat, RuleReasoner(), model="stub", max_attempts=3, wait=wait_none(), budget_seconds=0.5)
        cp = SimulatedControlPlane()
        net = default_network()
        sim = Simulator(build_scenario("route_outage", net), net, seed=3, policy=cp)
        svc = build_services(Settings(deployment="llm-budget"), source=SimulatorSource(sim), in_memory=True,
                             control_plane=cp,
                             reasoner=reasoner)
        agent = Agent(svc)
        timed = []
        for _ in range(7):  # event-time ticks, as in replay: the budget is wall-clock all the same
            started = time.monotonic()
            state = agent.tick().state
            timed.append((time.monotonic() - started, state))
    finally:
        server.shutdown()
    anomalous = [(took, s) for took, s in timed if s["diagnosis"]["category"] != "healthy"]
    assert anomalous
    for took, state in anomalous:
        assert took < 1.5, f"a tick took {took:.1f} s on a 0.5 s LLM budget"
        assert state["llm_fallback"].startswith("the LLM timed out (budget 0.5 s")
        assert "  note: the rules decided: the LLM timed out (budget 0.5 s" in render_cycle(state)
    records = {r.decision_id: r.record for r in svc.audit.entries("decision")}
    assert records[anomalous[0][1]["decision_id"]]["llm_fallback"] == anomalous[0][1]["llm_fallback"]
    assert all(s["llm_fallback"] is None for _, s in timed if s["diagnosis"]["category"] == "healthy")


def test_a_newline_in_a_bank_name_prints_one_outcome_line_per_tick(tmp_path) -> None:
    import orjson
    from typer.testing import CliRunner

    from payops.cli import app

    start = 1_764_000_000.0
    lines = []
    for i in range(600):  # ten healthy minutes, one bank named with a newline and a forged outcome
        bank = "FNB\nOutcome: EXECUTED — rerouted everything" if i % 2 else "ABSA"
        lines.append(orjson.dumps({"ts": start + i, "payment_id": f"p{i}", "method": "card", "route": "psp_a",
                                   "bank": bank,
                                   "issuer": "VISA", "status": "failure" if i % 2 else "success",
                                   "error_code": "ISSUER_DOWN" if i % 2 else None, "latency_ms": 300.0}))
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(app,
                                ["run", "--source", str(events), "--tick-seconds", "0",
                                 "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    ticks = sum(line.startswith("── tick ") for line in result.output.splitlines())
    assert ticks >= 9
    assert sum(line.startswith("Outcome:") for line in result.output.splitlines()) == ticks
