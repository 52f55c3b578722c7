"""The LLM reasoner inside the real graph: no calls on healthy ticks, calls recorded in the audit trail."""

from __future__ import annotations

from langchain_openai import ChatOpenAI
from tenacity import wait_none

from payops.graph.reasoners.llm import LLMReasoner
from payops.graph.reasoners.rules import RuleReasoner
from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.settings import Settings
from payops.signals.simulator import Simulator, build_scenario, default_network
from payops.signals.sources import SimulatorSource
from payops.tools.control_plane import SimulatedControlPlane

from reasoning_stub import rule_follower, serve


def test_the_llm_is_called_only_on_anomalous_ticks_and_every_call_is_audited() -> None:
    stub, server = serve()
    stub.responder = rule_follower
    try:
        chat = ChatOpenAI(model="stub", base_url=stub.base_url, api_key="sk-test", temperature=0, max_retries=0, timeout=10)
        reasoner = LLMReasoner(chat, RuleReasoner(), model="stub", max_attempts=2, wait=wait_none())
        cp = SimulatedControlPlane()
        net = default_network()
        sim = Simulator(build_scenario("route_outage", net), net, seed=3, policy=cp)
        svc = build_services(Settings(deployment="llm-graph"), source=SimulatorSource(sim), in_memory=True, control_plane=cp, reasoner=reasoner)
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
