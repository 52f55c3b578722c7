"""The ops chat with an LLM: whatever the model says, no invented decision id or figure reaches the
operator. The model's answer is checked against the records it was built from (payops.chat.grounding);
on a violation the operator gets the answer from the records, saying so.

The recorded answers are SmolLM2-135M-Instruct's, served by llama.cpp (cassettes in ./cassettes,
replayed with record_mode "none": no server, no network). To re-record them after a change to the
chat's prompt, tools or these questions (the cassettes match on the request body):

    /work/llm-venv/bin/python -m payops.cli llm serve --port 8012 &
    # (or: payops llm serve --port 8012 --python /work/llm-venv/bin/python)
    rm tests/memory/cassettes/chat_*.yaml
    PAYOPS_RECORD_CASSETTES=1 .venv/bin/python -m pytest tests/memory/test_memory_chat_llm.py -q
    kill %1
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from memory_helpers import IDS, write_synthetic_trail
from test_memory_chat import ID, ScriptedModel, assert_grounded, fingerprint

from payops.chat import ChatTools, answer_from_records, ask, chat_model_from_settings, check_grounding
from payops.settings import Settings

CASSETTES = Path(__file__).parent / "cassettes"
RECORDING = os.environ.get("PAYOPS_RECORD_CASSETTES") == "1"  # read at import: the test fixtures clear PAYOPS_*
LOCAL_LLM = Settings(llm_model="smollm2", llm_base_url="http://127.0.0.1:8012/v1", llm_max_retries=0,
                     llm_timeout_seconds=300)

# Questions an LLM answers (the state questions never reach it), each with the decisions the answer must cite.
RECORDED = [
    ("chat_why_reroute", "why did you reroute psp_a at 10:05?", [IDS["reroute"]]),
    ("chat_fnb_today", "what did you do about FNB today?", [IDS["alert_fnb"], IDS["suppress_fnb"]]),
    ("chat_terminal_helped", "has suppressing a terminal ever helped?",
     [IDS["suppress_t5_yesterday"], IDS["suppress_t3"]]),
    ("chat_explain_id", f"explain {IDS['suppress_fnb']}", [IDS["suppress_fnb"]]),
    ("chat_why_suppress_fnb", "why did you suppress FNB?", [IDS["suppress_fnb"]]),
    ("chat_rerouting_helped", "has rerouting ever helped?", [IDS["reroute"]]),
    ("chat_t3", "what did you do about T3?", [IDS["suppress_t3"]]),
    ("chat_yesterday", "what did you do yesterday?", [IDS["suppress_t5_yesterday"]]),
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("synthetic")
    write_synthetic_trail(state)
    return state


def llm_cassette(name: str):
    vcr = pytest.importorskip("vcr")
    recorder = vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="once" if RECORDING else "none",
                       filter_headers=["authorization"], match_on=["method", "scheme", "host", "port", "path", "body"])
    return recorder.use_cassette(f"{name}.yaml")


def scripted(answer: str) -> ScriptedModel:
    """A hand-made model: it answers at once, from the first lookup the chat handed it."""
    return ScriptedModel([AIMessage(content=answer)])


# -- the check itself ------------------------------------------------------------------------------

def test_an_invented_decision_id_never_reaches_the_operator(synthetic):
    tools = ChatTools.open(synthetic)
    question = "why did you reroute psp_a at 10:05?"
    a = ask(question, tools, scripted(f"I rerouted psp_a in {IDS['reroute']}, and again in d-0123456789abcdef."))
    assert not a.used_llm and a.unknown_ids == ["d-0123456789abcdef"]
    assert "d-0123456789abcdef" not in a.text and a.text == answer_from_records(question, tools).text
    assert a.note.startswith("the model's answer was not grounded (decision id(s) not in the records it was given: "
                             "d-0123456789abcdef)") and a.note.endswith("answered from the records directly")


def test_an_invented_figure_never_reaches_the_operator(synthetic):
    tools = ChatTools.open(synthetic)
    question = "why did you reroute psp_a at 10:05?"
    a = ask(question, tools, scripted(f"I rerouted psp_a in {IDS['reroute']} because 87.5% of its payments failed."))
    assert not a.used_llm and a.unverified_figures == ["87.5%"] and "87.5" not in a.text
    assert a.text == answer_from_records(question, tools).text and "figure(s) not in those records: 87.5%" in a.note


def test_an_id_in_the_trail_but_not_among_the_answers_records_is_refused_too(synthetic):
    """The check compares with the records the answer was built from, not with the whole trail."""
    tools = ChatTools.open(synthetic)
    a = ask("why did you reroute psp_a at 10:05?", tools,
            scripted(f"I rerouted psp_a in {IDS['reroute']} after {IDS['suppress_t3']}."))
    assert not a.used_llm and a.unknown_ids == [IDS["suppress_t3"]]


def test_a_grounded_answer_is_shown_with_its_sources(synthetic):
    tools = ChatTools.open(synthetic)
    prefix = IDS["reroute"][:12]
    a = ask("why did you reroute psp_a at 10:05?", tools,
            scripted(f"At 10:05 I rerouted psp_a ({prefix}…): 21.0% were failing."))
    assert a.used_llm and a.unknown_ids == [] and a.unverified_figures == []
    assert a.note == "the model's words; every decision id and figure in them was checked against the sources listed"
    assert a.text.startswith(f"At 10:05 I rerouted psp_a ({prefix}…): 21.0% were failing.\nSources (audit trail):")
    assert a.cited[0] == IDS["reroute"]


@pytest.mark.parametrize("answer, unknown, unverified", [
    ("d-1a2b3c4d was first", ("d-1a2b3c4d",), ()),  # a prefix of no source
    ("see 9f3a1c7e", ("d-9f3a1c7e",), ()),  # a bare hex prefix is an id too
    ("d-00000000000a0002 at 21.0%", (), ()),
    ("0.21 of payments, 21% of them, 210 of 1000", (), ("210",)),
    ("terminal T3 and psp_2 are names, not figures", (), ()),
    ("2 decisions", (), ()),  # a small count that the records also hold passes: the limit of a textual check
])
def test_the_grounding_check_reads_ids_prefixes_and_figures(answer, unknown, unverified):
    g = check_grounding(answer, ["d-00000000000a0002"], '{"failure_rate": 0.2100, "attempts": 1000, "failures": 2}')
    assert (g.unknown_ids, g.unverified_figures) == (unknown, unverified)


@pytest.mark.parametrize("answer, unverified", [
    ("at 11:30 it was suppressed", ()),
    ("at 11:30 am it was suppressed", ()),
    ("at 1:30 AM it was suppressed", ("1:30 AM",)),  # the digits 1 and 30 are in the records; that time is not
    ("at 13:30 it was suppressed", ("13:30",)),
    ("60% of payments failed", ("60%",)),  # 60 is the window's seconds, not a share
    ("13.3% of payments failed, 80 of 600", ()),
    ("100% of payments failed", ("100%",)),  # the records' 1 (a count) is not a share
    ("all failed: 100 of them", ("100",)),
])
def test_times_and_percentages_must_be_ones_the_records_show(answer, unverified):
    known = "2025-11-24 11:30:00 UTC d-00000000000a0003: 80/600 failed, 13.3%, window 60 s, 1 reroute, 0 alerts"
    assert check_grounding(answer, ["d-00000000000a0003"], known).unverified_figures == unverified


# -- recorded from a real model ------------------------------------------------------------------

def test_recorded_smollm2_answers_are_grounded_or_replaced(synthetic, capsys):
    """The bar: grounding holds on every answer, whatever the model's quality (the tally is printed)."""
    missing = [name for name, _, _ in RECORDED if not (CASSETTES / f"{name}.yaml").exists()]
    if missing and not RECORDING:
        pytest.skip(f"cassettes not recorded: {', '.join(missing)}")
    before = fingerprint(synthetic)
    tools = ChatTools.open(synthetic)
    shown = replaced = 0
    for name, question, expected in RECORDED:
        with llm_cassette(name) as cassette:
            a = ask(question, tools, chat_model_from_settings(LOCAL_LLM))
        assert cassette.all_played or RECORDING, name
        assert a.lookups[0]["name"] in ChatTools.NAMES and not a.refused_calls, name
        assert set(expected) <= set(a.cited), (name, a.text)
        assert set(ID.findall(a.text)) <= tools.decision_ids(), name
        assert_grounded(a, tools)
        if a.used_llm:
            shown += 1
            body = a.text.split("\nSources (audit trail):")[0]
            assert check_grounding(body, a.cited, "").unknown_ids == (), name
            assert "Sources (audit trail):" in a.text
        else:
            replaced += 1
            assert "not grounded" in a.note and a.text == answer_from_records(question, tools).text, name
        for request in cassette.requests:
            assert "authorization" not in {k.lower() for k in request.headers}
            body = json.loads(request.body)
            assert {t["function"]["name"] for t in body.get("tools", [])} <= set(ChatTools.NAMES)
            assert body.get("max_tokens", 0) <= 160
    assert fingerprint(synthetic) == before
    with capsys.disabled():
        print(f"\nchat with SmolLM2 (cassettes): {len(RECORDED)} questions, {shown} model answers grounded and shown, "
              f"{replaced} not grounded and replaced by the answer from the records, 0 ungrounded shown")
