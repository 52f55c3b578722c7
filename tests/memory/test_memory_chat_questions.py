"""The chat's question set (issue 17's bar): realistic operator questions over a recorded run, each with
the facts its answer must state and what it must not claim, answered without an LLM.

The run is the agent's own (a route outage, a terminal's scanner, FNB down; every proposal needs a
human; the first is approved, the rest stay pending). Expected facts are read from the run's states,
not from the chat, so a wrong answer cannot agree with itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from memory_helpers import APPROVER, IDS, run_escalating_day, write_synthetic_trail
from test_memory_chat import assert_grounded

from payops.chat import ChatTools, ask, zone


@dataclass
class Run:
    state: Path
    states: list[dict]

    def first(self, tool: str) -> dict:
        return next(s for s in self.states if s["proposal"]["tool"] == tool)

    def blaming(self, dim: str, value: str) -> list[dict]:
        return [s for s in self.states if s["diagnosis"]["target"].get(dim) == value]

    @property
    def last(self) -> dict:
        return self.states[-1]

    def acted(self) -> list[dict]:
        return [s for s in self.states if s["proposal"]["tool"] != "no_action"]


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def evidence(s: dict) -> str:
    return s["diagnosis"]["evidence"][0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    state = tmp_path_factory.mktemp("escalating")
    states = run_escalating_day(state)
    return Run(state, states)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("synthetic")
    write_synthetic_trail(state)
    return state


Facts = Callable[[Run], list[str]]
# question -> (facts the answer must state, things it must not claim); each a function of the run
QUESTIONS: list[tuple[str, Facts, Facts]] = [
    # what is happening now / the current failure rate
    ("what is happening now?", lambda r: [r.last["decision_id"], "healthy", evidence(r.last)],
     lambda r: ["Incident now"]),
    ("what is the current failure rate?", lambda r: [evidence(r.last)], lambda r: ["is failing now"]),
    ("how are we doing?", lambda r: [r.last["decision_id"], "pending approval: 2"], lambda r: []),
    ("what's the status?", lambda r: [evidence(r.last), "In force: 1 action(s)"], lambda r: []),
    ("what's the failure rate on FNB?", lambda r: [r.blaming("bank", "FNB")[-1]["decision_id"],
                                                   evidence(r.blaming("bank", "FNB")[-1]),
                                                   "not blamed in the latest window"], lambda r: ["is failing now"]),
    ("is psp_a ok now?", lambda r: [r.blaming("route", "psp_a")[-1]["decision_id"], "not blamed in the latest window"],
     lambda r: ["is failing now"]),
    ("current failure rate at T4?", lambda r: [evidence(r.blaming("terminal_id", "T4")[-1])], lambda r: ["bank=FNB"]),
    ("is FNB failing?", lambda r: ["bank=FNB is not blamed in the latest window"], lambda r: ["is failing now"]),
    # what is pending approval
    ("what is pending approval?", lambda r: [r.first("suppress_path")["decision_id"],
                                             r.first("rollback_action")["decision_id"],
                                             "2 action(s) pending approval", "confidence 0.86"],
     lambda r: [r.first("reroute_traffic")["decision_id"]]),
    ("anything waiting for my approval?", lambda r: [r.first("suppress_path")["decision_id"], "expires"], lambda r: []),
    ("which actions need approval?", lambda r: [r.first("rollback_action")["decision_id"], "payops approve"],
     lambda r: []),
    # which bank / route / terminal / merchant is failing
    ("which bank is failing?", lambda r: ["No bank is failing now", "bank=FNB",
                                          r.blaming("bank", "FNB")[0]["decision_id"]],
     lambda r: ["route=psp_a", "terminal_id=T4"]),
    ("which route is failing?", lambda r: ["No route is failing now", "route=psp_a"],
     lambda r: ["bank=FNB", "terminal_id=T4"]),
    ("which terminal is failing?", lambda r: ["terminal_id=T4", r.first("suppress_path")["decision_id"]],
     lambda r: ["route=psp_a", "bank=FNB"]),
    ("which merchant is failing?", lambda r: ["No merchant is failing now", "has blamed a merchant"],
     lambda r: ["FNB", "psp_a", "T4"]),
    ("which issuer is failing?", lambda r: ["bank=FNB"], lambda r: ["route=psp_a"]),
    ("what is failing?", lambda r: ["No segment is failing now", "route=psp_a", "terminal_id=T4", "bank=FNB"],
     lambda r: []),
    # what did you do about X
    ("what did you do about FNB?", lambda r: [s["decision_id"] for s in r.acted()
                                              if s["proposal"]["target"].get("bank") == "FNB"],
     lambda r: [r.first("reroute_traffic")["decision_id"], r.first("suppress_path")["decision_id"]]),
    ("what did you do about T4?", lambda r: [r.first("suppress_path")["decision_id"], "escalated"],
     lambda r: ["suppress_path on terminal_id=T4: executed", "bank=FNB"]),
    ("what did you do about Capitec?", lambda r: ["No decision about 'Capitec'"],
     lambda r: [s["decision_id"] for s in r.acted()]),
    ("what did you do in the last 10 minutes?", lambda r: [s["decision_id"] for s in r.acted()
                                                          if s["proposal"]["tool"] == "alert_ops"],
     lambda r: [r.first("reroute_traffic")["decision_id"]]),
    # why did you act at TIME / on decision ID (prefixes)
    ("why did you act at 16:06?", lambda r: [r.first("reroute_traffic")["decision_id"], "asked for approval",
                                            f"approved by {APPROVER}", evidence(r.first("reroute_traffic"))],
     lambda r: ["I rerouted"]),
    ("why did you suppress T4?", lambda r: [r.first("suppress_path")["decision_id"], "no answer recorded"],
     lambda r: ["I suppressed"]),
    ("why {suppress7}?", lambda r: [r.first("suppress_path")["decision_id"], "waiting for a human"],
     lambda r: ["Outcome: helped"]),
    ("tell me about {reroute8}", lambda r: [r.first("reroute_traffic")["decision_id"], "Outcome: helped",
                                               f"approved by {APPROVER}"], lambda r: []),
    # what happened in the last N minutes / hours / today
    ("what happened in the last 10 minutes?", lambda r: ["bank=FNB", "1 incident(s)"],
     lambda r: ["route=psp_a", "terminal_id=T4"]),
    ("what happened in the last hour?", lambda r: ["3 incident(s)", "route=psp_a", "terminal_id=T4", "bank=FNB"],
     lambda r: []),
    ("what happened today?", lambda r: [f"{len(r.acted())} action(s)", f"{len(r.states)} decision(s)"], lambda r: []),
    ("what happened since 16:25?", lambda r: ["bank=FNB", "1 incident(s)", "2 action(s)"],
     lambda r: ["route=psp_a", "terminal_id=T4"]),
    ("anything in the last 15m?", lambda r: ["bank=FNB"], lambda r: [r.first("reroute_traffic")["decision_id"]]),
    ("what happened at 16:17?", lambda r: ["terminal_id=T4", r.first("suppress_path")["decision_id"]],
     lambda r: ["bank=FNB"]),
    # what was rolled back or harmful, and why
    ("what was rolled back and why?", lambda r: ["Nothing was rolled back", r.first("rollback_action")["decision_id"],
                                                 "cause cleared", "not applied"], lambda r: ["rolled back by"]),
    ("was anything harmful?", lambda r: ["No action was judged harmful", "1 helped"], lambda r: ["harmed:"]),
    # what is in force now and until when
    ("what is in force now and until when?", lambda r: [r.first("reroute_traffic")["decision_id"],
                                                        f"until {utc(r.last['in_force'][0]['expires_at'])}",
                                                        "95% to psp_b"],
     lambda r: [r.first("suppress_path")["decision_id"]]),
    ("when does the psp_a reroute expire?", lambda r: [r.first("reroute_traffic")["decision_id"], "until"],
     lambda r: []),
    # track record, and a question that fits no shape
    ("has rerouting ever helped?", lambda r: ["Yes", r.first("reroute_traffic")["decision_id"], "1 helped"],
     lambda r: []),
    ("asdf qwer", lambda r: ["fits none of the shapes", "what is pending approval?"],
     lambda r: [s["decision_id"] for s in r.states]),
]
# the same questions over the hand-written trail, which has a harmed, rolled-back action and shared id prefixes
SYNTHETIC: list[tuple[str, list[str], list[str]]] = [
    ("what was rolled back and why?",
     ["1 action(s) rolled back", IDS["suppress_fnb"], "harmed", "successes per window fell 482 -> 350"],
     ["Nothing was rolled back"]),
    ("was anything harmful?", [IDS["suppress_fnb"], "approved by ops-lead", "rolled back"], [IDS["reroute"]]),
    ("what went wrong with FNB?", [IDS["suppress_fnb"], "harmed"], [IDS["suppress_t3"]]),
    ("tell me about d-00000000000a", ["matches 6 decisions", "give more of the id"], ["Outcome:"]),
]


def question_text(question: str, run: Run) -> str:
    return question.format(suppress7=run.first("suppress_path")["decision_id"][:7],
                           reroute8=run.first("reroute_traffic")["decision_id"][:8])


def check(answer_text: str, must: list[str], must_not: list[str]) -> list[str]:
    problems = [f"missing {m!r}" for m in must if m not in answer_text]
    return problems + [f"claims {m!r}" for m in must_not if m in answer_text]


@pytest.mark.parametrize("question, must, must_not", QUESTIONS, ids=[q for q, _, _ in QUESTIONS])
def test_each_question_over_the_recorded_run_states_its_facts_and_no_false_claim(run, question, must, must_not):
    tools = ChatTools.open(run.state, zone("UTC"))
    answer = ask(question_text(question, run), tools)
    assert not check(answer.text, must(run), must_not(run)), answer.text
    assert not answer.used_llm
    assert_grounded(answer, tools)


@pytest.mark.parametrize("question, must, must_not", SYNTHETIC, ids=[q for q, _, _ in SYNTHETIC])
def test_harm_rollbacks_and_ambiguous_ids_over_the_hand_written_trail(synthetic, question, must, must_not):
    tools = ChatTools.open(synthetic, zone("UTC"))
    answer = ask(question, tools)
    assert not check(answer.text, must, must_not), answer.text
    assert_grounded(answer, tools)


def test_times_in_the_deployment_zone_are_read_and_named(run):
    tools = ChatTools.open(run.state, zone("Africa/Johannesburg"))
    reroute = run.first("reroute_traffic")
    answer = ask("why did you act at 18:06?", tools)  # 16:06 UTC
    assert reroute["decision_id"] in answer.text and "18:06:00 SAST" in answer.text
    assert " UTC" not in answer.text  # the explanation inside the answer is in the same zone
    window_end = datetime.fromtimestamp(reroute["window_end"], tz=zone("Africa/Johannesburg"))
    assert f"window ending {window_end:%Y-%m-%d %H:%M:%S} SAST" in answer.text


def test_the_question_set_score(run, synthetic, capsys):
    """The bar: >= 30 questions, all passing; the score is printed for the closing note."""
    tools = ChatTools.open(run.state, zone("UTC"))
    passed = sum(not check(ask(question_text(q, run), tools).text, must(run), must_not(run))
                 for q, must, must_not in QUESTIONS)
    other = ChatTools.open(synthetic, zone("UTC"))
    passed += sum(not check(ask(q, other).text, must, must_not) for q, must, must_not in SYNTHETIC)
    total = len(QUESTIONS) + len(SYNTHETIC)
    with capsys.disabled():
        print(f"\nchat question set without an LLM: {passed}/{total} answers state every fact and no false claim")
    assert total >= 30 and passed == total
