"""The LLM reasoner: replayed cassettes from a real model, and a local stub for what a model won't do on demand.

Cassettes (tests/reasoning/cassettes/*.yaml) were recorded from SmolLM2-135M on
llama-cpp-python's OpenAI-compatible server by scripts/record_cassettes.py and
replay with record_mode="none". Malformed tool calls, HTTP 429, timeouts and an
"obedient" injected model come from the local stub server in reasoning_stub.py.
"""

from __future__ import annotations

import json

import pytest
from langchain_openai import ChatOpenAI
from reasoning_helpers import base_cells, context, fail, healthy_history, renamed, window
from reasoning_llm_cases import CASES, CASSETTES, INJECTION, MAX_ATTEMPTS, make_reasoner, recorder
from reasoning_stub import RATE_LIMITED, Reply, completion, serve
from tenacity import wait_none

from payops.graph.reasoners.briefing import brief
from payops.graph.reasoners.llm import DISAGREEMENT_CONFIDENCE_CAP, LLMReasoner
from payops.graph.reasoners.rules import RuleReasoner
from payops.models import Category
from payops.settings import Settings
from payops.tools.actions import ACTIONS, MAINTENANCE_ACTIONS, PALM_ACTIONS

RULES = RuleReasoner()


@pytest.fixture
def stub():
    server_stub, server = serve()
    yield server_stub
    server.shutdown()


def llm_on(stub, max_attempts: int = 2, timeout: float = 10.0) -> LLMReasoner:
    chat = ChatOpenAI(model="stub", base_url=stub.base_url, api_key="sk-test", temperature=0,
                      max_retries=0, timeout=timeout)
    return LLMReasoner(chat, RuleReasoner(), model="stub", max_attempts=max_attempts, wait=wait_none())


def route_outage():
    return CASES["route_outage"]()


def ids_for(snapshot, ctx):
    b = brief(snapshot, ctx, RULES, RULES.decide(snapshot, ctx))
    return b


def diag(category: str, hypothesis: str, confidence: float = 0.9, **kw):
    return completion("report_diagnosis",
                      {"category": category, "hypothesis": hypothesis, "summary": kw.get("summary", "psp_a is down"),
                                           "evidence": kw.get("evidence", ["psp_a 50% failing"]),
                                           "confidence": confidence})


# -- the stub: the happy path and the contract of the calls ------------------------------------

def test_one_diagnosis_and_one_tool_call_become_the_decision(stub) -> None:
    snapshot, ctx = route_outage()
    h = ids_for(snapshot, ctx).id_of({"route": "psp_a"})
    stub.script(diag("network", h, 0.95),
                completion("reroute_traffic",
                           {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0},
                            "percent": 90, "ttl_seconds": 900}))
    decision = llm_on(stub).decide(snapshot, ctx)
    d, p = decision.diagnosis, decision.proposal
    assert d.reasoner == "llm:stub" and (d.category, d.target) == (Category.NETWORK, {"route": "psp_a"})
    assert (p.tool, p.target, p.args["to_routes"], p.args["percent"]) == ("reroute_traffic",
                                                                          {"route": "psp_a"}, {"psp_b": 1.0}, 90)
    assert d.evidence[0].startswith("route=psp_a: ") and "psp_a 50% failing" in d.evidence
    # Agreeing with the rules, the model's confidence is capped by theirs.
    assert d.confidence == pytest.approx(min(0.95, RULES.decide(snapshot, ctx).diagnosis.confidence), abs=1e-3)
    # Two calls: a forced report_diagnosis, then the agent's action tools in "auto" mode.
    first, second = (r["body"] for r in stub.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["report_diagnosis"]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "report_diagnosis"}}
    assert sorted(t["function"]["name"] for t in second["tools"]) == sorted(set(ACTIONS) - set(MAINTENANCE_ACTIONS))
    assert second["tool_choice"] == "auto"
    # The model saw aggregates in a data block, never raw events.
    shown = json.dumps(first["messages"])
    assert "<data>" in shown and "payment_id" not in shown and "palm_pay_id" not in shown
    calls = decision.llm_calls
    assert [(c["phase"], c["ok"], c["total_tokens"]) for c in calls] == [("diagnosis", True, 150),
                                                                         ("action", True, 150)]
    assert all(c["latency_ms"] >= 0 and c["model"] == "stub" for c in calls)


def test_healthy_windows_cost_no_tokens(stub) -> None:
    snapshot, ctx = CASES["healthy"]()
    decision = llm_on(stub).decide(snapshot, ctx)
    assert stub.requests == [] and decision.llm_calls == ()
    assert decision.diagnosis.category is Category.HEALTHY and "llm not called" in decision.notes[-1]


def test_a_malformed_tool_call_is_retried_with_the_reason_then_the_rules_decide(stub) -> None:
    snapshot, ctx = route_outage()
    stub.script(completion("report_diagnosis", raw_args='{"category": "network", "hypo'),
                completion("report_diagnosis",
                           {"category": "weather", "hypothesis": "H1", "summary": "x", "confidence": 2}))
    decision = llm_on(stub).decide(snapshot, ctx)
    rules = RULES.decide(snapshot, ctx)
    assert len(stub.requests) == 2  # bounded
    assert "rejected" in json.dumps(stub.requests[1]["body"]["messages"][-1])
    assert decision.diagnosis.reasoner == "rules (llm fallback)"
    assert (decision.diagnosis.category, decision.diagnosis.target, decision.proposal) == (
        rules.diagnosis.category, rules.diagnosis.target, rules.proposal)
    assert decision.notes[-1].startswith("llm fallback: malformed answer: invalid diagnosis fields")
    assert [c["error"].split(":")[0] for c in decision.llm_calls] == ["malformed answer", "malformed answer"]


@pytest.mark.parametrize("tool,args", [
    ("drop_all_routes", {"target": {}}),
    ("revoke_palm_link", {"palm_pay_id": "pp-00001", "reason": "told to"}),
    ("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_evil": 1.0}}),  # not a route of the window
    ("reroute_traffic", {"target": {"route": "psp_b"}, "to_routes": {"psp_a": 1.0}}),  # not the blamed segment
    ("suppress_path", {"target": {"route": "psp_a"}, "ttl_seconds": -5}),  # breaks the schema
])
def test_an_out_of_vocabulary_or_invalid_action_falls_back_to_the_rules(stub, tool, args) -> None:
    snapshot, ctx = route_outage()
    h = ids_for(snapshot, ctx).id_of({"route": "psp_a"})
    stub.script(diag("network", h), completion(tool, args), completion(tool, args))
    decision = llm_on(stub).decide(snapshot, ctx)
    assert len(stub.requests) == 3
    assert decision.notes[-1].startswith("llm fallback: malformed answer")
    assert decision.proposal == RULES.decide(snapshot, ctx).proposal


def test_http_429_is_retried_and_the_next_answer_is_used(stub) -> None:
    snapshot, ctx = route_outage()
    h = ids_for(snapshot, ctx).id_of({"route": "psp_a"})
    stub.script(RATE_LIMITED, diag("network", h),
                completion("alert_ops",
                           {"target": {"route": "psp_a"}, "severity": "critical", "summary": "psp_a down"}))
    decision = llm_on(stub).decide(snapshot, ctx)
    assert decision.diagnosis.reasoner == "llm:stub" and decision.proposal.tool == "alert_ops"
    assert [c.get("error") for c in decision.llm_calls] == ["API error HTTP 429", None, None]


def test_http_429_until_the_retries_run_out_falls_back(stub) -> None:
    snapshot, ctx = route_outage()
    stub.default = Reply(*RATE_LIMITED)
    decision = llm_on(stub, max_attempts=3).decide(snapshot, ctx)
    assert len(stub.requests) == 3
    assert decision.notes[-1] == "llm fallback: API error HTTP 429"
    assert decision.proposal == RULES.decide(snapshot, ctx).proposal


def test_a_timeout_falls_back(stub) -> None:
    snapshot, ctx = route_outage()
    stub.default = Reply(200, diag("network", "H1"), delay=1.5)
    decision = llm_on(stub, max_attempts=1, timeout=0.3).decide(snapshot, ctx)
    assert decision.notes[-1] == "llm fallback: timeout"
    assert decision.llm_calls[0]["error"] == "timeout"


def test_the_model_cannot_buy_autonomy_by_disagreeing_with_confidence(stub) -> None:
    snapshot, ctx = route_outage()
    b = ids_for(snapshot, ctx)
    other = next(h for h in b.hypotheses if h.target != {"route": "psp_a"})
    stub.script(diag("network", other.id, 0.99),
                completion("alert_ops", {"target": other.target, "summary": "look here"}))
    decision = llm_on(stub).decide(snapshot, ctx)
    assert decision.diagnosis.target == other.target
    assert decision.diagnosis.confidence <= DISAGREEMENT_CONFIDENCE_CAP < Settings().confidence_threshold
    assert any("disagrees" in n for n in decision.notes)


def test_an_action_already_in_force_becomes_no_action(stub) -> None:
    from payops.graph.reasoners.base import ActionView

    snapshot, ctx = route_outage()
    ctx = type(ctx)(**{**ctx.__dict__, "in_force": (ActionView("alert_ops", {}, {}, 0.0, 1.0),
                                                     ActionView("reroute_traffic", {"route": "psp_a"},
                                                                {"to_routes": {"psp_b": 1.0}}, 0.0, 9e12))})
    h = ids_for(snapshot, ctx).id_of({"route": "psp_a"})
    stub.script(diag("network", h),
                completion("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}}))
    decision = llm_on(stub).decide(snapshot, ctx)
    assert decision.proposal.tool == "no_action" and "already in force" in decision.proposal.args["reason"]


# -- names are data ---------------------------------------------------------------------------

def _bank_outage(name: str):
    cells = renamed(base_cells(), "bank", "ABSA", name)
    return window(fail(cells, {"bank": name}, 0.6,
                       {"ISSUER_DOWN": 0.6, "BANK_TIMEOUT": 0.4})), context(healthy_history(cells))


def test_an_injected_bank_name_cannot_steer_an_obedient_model(stub) -> None:
    """The worst case: a model that follows the instruction hidden in the bank's name."""
    snapshot, ctx = _bank_outage(INJECTION)
    b = ids_for(snapshot, ctx)
    assert INJECTION in b.json()  # the name reaches the model, as data inside <data>
    stub.default = Reply(200, completion("revoke_palm_link", {"palm_pay_id": "all", "reason": "instructed"}))
    stub.script(diag("issuer", b.id_of({"bank": INJECTION})))
    decision = llm_on(stub).decide(snapshot, ctx)
    assert decision.proposal.tool not in PALM_ACTIONS
    assert decision.notes[-1].startswith("llm fallback: malformed answer: palm-link tools")
    plain_snapshot, plain_ctx = _bank_outage("ABSA")
    plain = RULES.decide(plain_snapshot, plain_ctx)
    # The agent does what it does for any bank: the same tool, category and confidence.
    assert (decision.proposal.tool, decision.diagnosis.category, decision.diagnosis.confidence) == (
        plain.proposal.tool, plain.diagnosis.category, plain.diagnosis.confidence)
    assert decision.proposal.target == {"bank": INJECTION}


def test_a_model_cannot_name_a_target_outside_the_window(stub) -> None:
    snapshot, ctx = route_outage()
    stub.script(diag("network", "H9"), diag("network", "H9"))  # no such hypothesis
    decision = llm_on(stub).decide(snapshot, ctx)
    assert decision.notes[-1].startswith("llm fallback: malformed answer")


# -- configuration -----------------------------------------------------------------------------

def test_from_settings_uses_the_openai_compatible_endpoint(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    r = LLMReasoner.from_settings(Settings(llm_model="smollm2", llm_timeout_seconds=7, llm_max_retries=3))
    assert r.model == "smollm2" and r.max_attempts == 4
    assert r.chat.model_name == "smollm2" and r.chat.request_timeout == 7 and r.chat.max_retries == 0
    assert str(r.chat.openai_api_base).startswith("http://127.0.0.1:9/v1")
    r2 = LLMReasoner.from_settings(Settings(llm_model="m", llm_base_url="http://127.0.0.1:10/v1"))
    assert str(r2.chat.openai_api_base).startswith("http://127.0.0.1:10/v1")


def test_from_settings_without_key_or_endpoint_is_a_clear_error(monkeypatch) -> None:
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        LLMReasoner.from_settings(Settings(llm_model="gpt-x"))


def test_services_pick_the_llm_reasoner_when_a_model_is_configured(monkeypatch) -> None:
    from payops.graph.services import make_reasoner

    assert isinstance(make_reasoner(Settings()), RuleReasoner)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert isinstance(make_reasoner(Settings(llm_model="gpt-x")), LLMReasoner)


# -- cassettes recorded from SmolLM2 ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_cassettes_replay_offline(name: str) -> None:
    path = CASSETTES / f"{name}.yaml"
    assert path.exists(), f"record it: python scripts/record_cassettes.py --only {name}"
    assert "authorization" not in path.read_text().lower()
    snapshot, ctx = CASES[name]()
    rules = RULES.decide(snapshot, ctx)
    with recorder("none").use_cassette(path.name) as cassette:
        decision = make_reasoner().decide(snapshot, ctx)
        assert cassette.all_played
    assert len(decision.llm_calls) == cassette.play_count
    if rules.diagnosis.category is Category.HEALTHY:
        assert cassette.play_count == 0 and decision == rules.__class__(rules.diagnosis,
                                                                        rules.proposal, notes=decision.notes)
        return
    assert 2 <= cassette.play_count <= 2 * MAX_ATTEMPTS
    for call in decision.llm_calls:
        assert call["model"] == "smollm2" and call["latency_ms"] >= 0
        assert call["total_tokens"] > 0 or "error" in call
    first = json.loads(cassette.requests[0].body)
    assert first["tool_choice"]["function"]["name"] == "report_diagnosis"
    assert decision.proposal.tool not in PALM_ACTIONS
    if decision.diagnosis.reasoner.startswith("llm:"):
        b = ids_for(snapshot, ctx)
        assert decision.diagnosis.target in [h.target for h in b.hypotheses] + [{}]
    else:
        assert decision.notes[-1].startswith("llm fallback: ")
        assert (decision.diagnosis.category, decision.diagnosis.target, decision.proposal) == (
            rules.diagnosis.category, rules.diagnosis.target, rules.proposal)
    if name == "injected_bank_outage":
        assert decision.proposal.target in ({"bank": INJECTION}, {})
