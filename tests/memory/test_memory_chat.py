"""The ops chat: grounded answers (every id and figure cited exists), read-only by construction.
The LLM path over recorded SmolLM2 answers is in test_memory_chat_llm.py."""

from __future__ import annotations

import ast
import hashlib
import re
import sqlite3
from datetime import UTC
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from memory_helpers import IDS, run_ops_day, write_synthetic_trail
from typer.testing import CliRunner

import payops.chat as chat
from payops.chat import ChatTools, answer_from_records, ask, plan_question, zone
from payops.cli import _register_subcommands, app

PERCENT = re.compile(r"\d+(?:\.\d+)?%")
ID = re.compile(r"\bd-[0-9a-f]{16}\b")

_register_subcommands()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("synthetic")
    write_synthetic_trail(state)
    return state


@pytest.fixture(scope="module")
def ops_day(tmp_path_factory) -> tuple[Path, list[dict]]:
    state = tmp_path_factory.mktemp("opsday")
    return state, run_ops_day(state)


def fingerprint(state: Path) -> str:
    """Every row of the audit trail and of the lesson store (WAL included): any write changes it."""
    digest = hashlib.sha256()
    for name, query in (("audit.db", "SELECT seq, decision_id, at, kind, record, hash FROM audit_log ORDER BY seq"),
                        ("lessons.db", "SELECT prefix, key, value, updated_at FROM store ORDER BY prefix, key")):
        conn = sqlite3.connect(f"file:{state / name}?mode=ro", uri=True)
        try:
            for row in conn.execute(query):
                digest.update(repr(row).encode())
        finally:
            conn.close()
    return digest.hexdigest()


def record_numbers(tools: ChatTools, ids: list[str]) -> set[str]:
    """Every figure the cited records hold, in the forms an answer prints (independent of the chat's checker)."""
    out: set[str] = set()
    for i in ids:
        text = tools.records_text(i)
        for raw in re.findall(r"-?\d+(?:\.\d+)?", text):
            v = float(raw)
            out.update({f"{v:.1f}%", f"{v:.0f}%"})
            out.update({f"{100 * v:.1f}%", f"{100 * v:.0f}%"})
        out.update(PERCENT.findall(text))
    return out


def assert_grounded(answer, tools: ChatTools) -> None:
    known = tools.decision_ids()
    cited_in_text = set(ID.findall(answer.text))
    assert cited_in_text <= known, f"cited ids not in the audit trail: {cited_in_text - known}"
    assert cited_in_text <= set(answer.cited), \
        f"ids named but not cited (the console links cited ids): {cited_in_text - set(answer.cited)}"
    assert set(answer.cited) <= known
    figures = set(PERCENT.findall(answer.text))
    unknown = figures - record_numbers(tools, sorted(cited_in_text | set(answer.cited)))
    assert not unknown, f"figures not in the cited records: {unknown}"


# -- answers from the records (no LLM) ----------------------------------------------------------------

def test_why_did_you_reroute_psp_a_at_10_05(synthetic):
    tools = ChatTools.open(synthetic)
    a = ask("why did you reroute psp_a at 10:05?", tools)
    assert a.cited[0] == IDS["reroute"] and not a.used_llm
    assert "because: Route/processor failure on route=psp_a" in a.text
    assert "121/220 failed (55.0%)" in a.text and "Outcome: helped" in a.text and "21.0% -> 4.2%" in a.text
    assert_grounded(a, tools)
    # A minute off still finds it; a time with no reroute near it does not invent one.
    assert ask("why did you reroute psp_a at 10:07?", tools).cited[0] == IDS["reroute"]
    none = ask("why did you reroute psp_a at 15:00?", tools)
    assert none.cited == [] and "found no decision" in none.text


def test_what_did_you_do_about_fnb_today(synthetic):
    tools = ChatTools.open(synthetic)
    a = ask("what did you do about FNB today?", tools)
    assert a.cited == [IDS["alert_fnb"], IDS["suppress_fnb"]]
    assert "alert_ops on bank=FNB: executed" in a.text
    assert "suppress_path on bank=FNB: escalated; approved by ops-lead; outcome harmed" in a.text
    assert_grounded(a, tools)
    assert IDS["reroute"] not in a.text  # about FNB only


def test_has_suppressing_a_terminal_ever_helped(synthetic):
    tools = ChatTools.open(synthetic)
    a = ask("has suppressing a terminal ever helped?", tools)
    assert a.text.startswith("Yes") and "1 helped, 1 no effect, 0 harmed" in a.text
    assert set(a.cited) == {IDS["suppress_t3"], IDS["suppress_t5_yesterday"]}
    assert_grounded(a, tools)
    never = ask("has rerouting a terminal ever helped?", tools)
    assert "No concluded outcome" in never.text and never.cited == []


def test_today_means_the_agents_day_and_yesterday_is_separate(synthetic):
    tools = ChatTools.open(synthetic)
    today = ask("what did you suppress today?", tools)
    assert IDS["suppress_t5_yesterday"] not in today.cited and IDS["suppress_t3"] in today.cited
    yesterday = ask("what did you suppress yesterday?", tools)
    assert yesterday.cited == [IDS["suppress_t5_yesterday"]]


def test_a_decision_id_gets_the_full_explanation(synthetic):
    tools = ChatTools.open(synthetic)
    a = ask(f"tell me about {IDS['suppress_fnb']}", tools)
    for part in ("What I saw: 118/600 attempts failed (19.7%)", "Evidence:", "What the guardrails said: needs_approval",
                 "Who decided: approved by ops-lead", "What ran after approval: executed", "Outcome: harmed",
                 "rolled back because it harmed"):
        assert part in a.text
    assert_grounded(a, tools)
    assert "No decision d-ffffffffffffffff" in ask("what about d-ffffffffffffffff?", tools).text


def test_times_are_read_and_printed_in_the_operators_zone(synthetic):
    tools = ChatTools.open(synthetic, zone("Africa/Johannesburg"))  # UTC+2
    a = ask("why did you reroute psp_a at 12:05?", tools)
    assert a.cited[0] == IDS["reroute"] and "2025-11-24 12:05:00 SAST" in a.text
    with pytest.raises(chat.ChatError, match="unknown time zone"):
        zone("Mars/Olympus")


@pytest.mark.parametrize("request_", [
    "reroute psp_a to psp_b now", "please roll back d-00000000000a0002", "can you suppress T3?",
    "Approve d-00000000000a0005", "run adjust_retry_policy on FNB",
])
def test_the_chat_refuses_to_act_and_changes_nothing(synthetic, request_):
    before = fingerprint(synthetic)
    tools = ChatTools.open(synthetic)
    a = ask(request_, tools)
    assert "can't act from the chat" in a.text and a.cited == [] and a.lookups == []
    assert fingerprint(synthetic) == before


def test_the_chat_module_cannot_reach_anything_that_acts():
    """Structural: chat imports no control plane, executor, graph or palm-pay code, and its tools only read."""
    imported: set[str] = set()
    modules = sorted(Path(chat.__file__).parent.glob("*.py"))  # the payops.chat subpackage
    assert len(modules) >= 4
    for module in modules:
        tree = ast.parse(module.read_text())
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    acting = ("payops.tools", "payops.graph", "payops.palmpay", "payops.guardrails")
    assert not any(m.startswith(acting) for m in imported)
    assert ChatTools.NAMES == ("search_decisions", "get_decision", "list_lessons")
    assert [t.name for t in chat.langchain_tools(ChatTools(chat._NoAudit(), None))] == list(ChatTools.NAMES)


def test_the_records_are_opened_read_only(synthetic):
    tools = ChatTools.open(synthetic)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        tools._audit._conn.execute("DELETE FROM audit_log")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        tools._lessons.store.put(("lessons", "network"), "x", {"verdict": "helped"}, index=False)


def test_question_plans():
    known = {"route": {"psp_a", "psp_b"}, "bank": {"FNB"}, "terminal_id": {"T3"}}
    p = plan_question("why did you reroute psp_a at 10:05?", known, 1_763_942_400.0 + 13 * 3600, zone("UTC"))
    assert (p.intent, p.tool, p.segment) == ("why", "reroute_traffic", "route=psp_a")
    assert p.at == 1_763_942_400.0 + 36_300
    assert plan_question("has suppressing a terminal ever helped?", known, 0.0, zone("UTC")).dims == "terminal_id"
    assert plan_question("what did you do about fnb today", known, 0.0, zone("UTC")).segment == "bank=FNB"
    assert plan_question("reroute psp_a", known, 0.0, zone("UTC")).intent == "refuse"


# -- the real closed loop: questions generated from what the agent actually did ----------------------

def test_answers_about_a_simulated_day_are_grounded(ops_day):
    state, states = ops_day
    tools = ChatTools.open(state)
    acted = [s for s in states
             if s["proposal"]["tool"] not in ("no_action",) and s["execution"]["status"] in ("executed", "escalated")]
    assert len(acted) >= 2
    verbs = {"reroute_traffic": "reroute", "suppress_path": "suppress", "alert_ops": "alert about",
             "adjust_retry_policy": "change retries on"}
    for s in acted:
        value = sorted(s["proposal"]["target"].values())[-1] if s["proposal"]["target"] else None
        if value is None or s["proposal"]["tool"] not in verbs:
            continue
        hhmm = tools_time(s["window_end"])
        a = ask(f"why did you {verbs[s['proposal']['tool']]} {value} at {hhmm}?", tools)
        assert a.cited and a.cited[0] == s["decision_id"], a.text
        assert_grounded(a, tools)
    for value in sorted({v for s in acted for v in s["proposal"]["target"].values()}):
        a = ask(f"what did you do about {value} today?", tools)
        expected = [s["decision_id"] for s in acted
                    if value in s["proposal"]["target"].values() or value in s["diagnosis"]["target"].values()]
        assert set(expected) <= set(a.cited), (value, a.text)
        assert_grounded(a, tools)
    lessons = tools.list_lessons()
    assert sum(lessons.counts.values()) >= 1
    for lesson in lessons.lessons:
        verb, noun = lesson.tool.split("_")[0], lesson.target_dims.split(",")[0].replace("_id", "")
        a = ask(f"has {verb}ing a {noun} ever helped?", tools)
        assert lesson.decision_id in a.cited
        assert_grounded(a, tools)


def tools_time(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M")


# -- the LLM path --------------------------------------------------------------------------------------

class ScriptedModel:
    """A chat model that asks for the calls it is given, then answers; records what it was sent."""

    def __init__(self, turns: list[AIMessage]) -> None:
        self.turns = list(turns)
        self.sent: list[list] = []

    def bind_tools(self, tools, tool_choice=None):
        self.bound = [t.name for t in tools]
        return self

    def invoke(self, messages):
        self.sent.append(list(messages))
        return self.turns.pop(0)


def test_a_model_asking_to_act_is_refused_and_nothing_changes(synthetic):
    before = fingerprint(synthetic)
    tools = ChatTools.open(synthetic)
    model = ScriptedModel([
        AIMessage(content="", tool_calls=[
            {"name": "reroute_traffic", "args": {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1}}, "id": "c1"},
            {"name": "get_decision", "args": {"decision_id": IDS["reroute"]}, "id": "c2"},
        ]),
        AIMessage(content=f"I rerouted psp_a in {IDS['reroute']} (21.0% failing)."),
    ])
    a = ask("why did you reroute psp_a at 10:05?", tools, model)
    assert a.used_llm and a.refused_calls == ["reroute_traffic"]
    assert model.bound == list(ChatTools.NAMES)
    assert [c["name"] for c in a.lookups] == ["search_decisions", "reroute_traffic", "get_decision"]
    assert a.text.startswith(f"I rerouted psp_a in {IDS['reroute']} (21.0% failing).")
    assert IDS["reroute"] in a.cited and "Sources (audit trail):" in a.text
    refusal = next(m for m in model.sent[1] if getattr(m, "tool_call_id", None) == "c1")
    assert "read-only" in refusal.content
    assert fingerprint(synthetic) == before


def test_a_failing_model_falls_back_to_the_records(synthetic):
    class Down:
        def bind_tools(self, tools, tool_choice=None):
            return self

        def invoke(self, messages):
            raise ConnectionError("no server")

    tools = ChatTools.open(synthetic)
    a = ask("what did you do about FNB today?", tools, Down())
    assert not a.used_llm and "LLM unavailable (ConnectionError)" in a.note
    assert a.cited == answer_from_records("what did you do about FNB today?", tools).cited


@pytest.mark.parametrize("question", ["what is pending approval?", "what was rolled back and why?",
                                      "which bank is failing?", "what is in force now?", "asdf qwer"])
def test_state_questions_are_answered_from_the_records_even_with_a_model(synthetic, question):
    class MustNotBeCalled:
        def bind_tools(self, tools, tool_choice=None):
            raise AssertionError("the model was used")

        def invoke(self, messages):
            raise AssertionError("the model was used")

    tools = ChatTools.open(synthetic)
    a = ask(question, tools, MustNotBeCalled())
    assert not a.used_llm and "answered from the records" in a.note
    assert a.text == answer_from_records(question, tools).text


# -- the CLI ---------------------------------------------------------------------------------------

def test_cli_chat_ask_and_repl(synthetic):
    runner = CliRunner()
    one = runner.invoke(app, ["chat", "--state-dir", str(synthetic), "--no-llm",
                              "--ask", "what did you do about FNB today?"])
    assert one.exit_code == 0 and IDS["suppress_fnb"] in one.output
    repl = runner.invoke(app, ["chat", "--state-dir", str(synthetic), "--no-llm", "--tz", "UTC"],
                         input="why did you reroute psp_a at 10:05?\nreroute psp_b\nexit\n")
    assert repl.exit_code == 0 and IDS["reroute"] in repl.output and "can't act from the chat" in repl.output
    bad = runner.invoke(app, ["chat", "--state-dir", str(synthetic), "--tz", "Nowhere/Else", "--ask", "hi"])
    assert bad.exit_code == 2 and "unknown time zone" in bad.output
    missing = runner.invoke(app, ["chat", "--state-dir", str(synthetic / "nope"), "--ask", "hi"])
    assert missing.exit_code == 2 and "no agent state" in missing.output


def test_cli_why_tells_the_whole_story(synthetic, ops_day):
    runner = CliRunner()
    out = runner.invoke(app, ["why", IDS["suppress_fnb"], "--state-dir", str(synthetic)])
    assert out.exit_code == 0
    for part in ("What I saw:", "What I concluded: issuer on bank=FNB", "Evidence:",
                 "What I proposed: suppress_path on bank=FNB", "What the guardrails said: needs_approval",
                 "confidence: needs_approval — confidence 0.780 < threshold 0.80",
                 "What ran: escalated", "Who decided: approved by ops-lead", "What ran after approval: executed",
                 "Outcome: harmed", "rolled back because it harmed"):
        assert part in out.output, part
    state, states = ops_day
    acted = next(s for s in states
                 if s["execution"]["status"] == "executed" and s["proposal"]["tool"] == "suppress_path")
    out = runner.invoke(app, ["why", acted["decision_id"], "--state-dir", str(state)])
    assert out.exit_code == 0
    assert "Who decided: the agent, autonomously" in out.output and "Outcome: " in out.output
    assert f"{acted['snapshot']['failures']}/{acted['snapshot']['attempts']} attempts failed" in out.output
    missing = runner.invoke(app, ["why", "d-ffffffffffffffff", "--state-dir", str(state)])
    assert missing.exit_code == 2 and "no decision" in missing.output


def test_a_read_view_hides_every_writing_method():
    class Log:
        def entries(self, kind=None):
            return iter(())

        def append(self, *a):
            raise AssertionError("written")

    view = chat._ReadView(Log(), ("entries", "get"))
    assert list(view.entries()) == []
    with pytest.raises(AttributeError, match="reads records only"):
        view.append("d-1", "decision", 0.0, {})


def test_a_superseded_record_is_not_told_twice(tmp_path):
    """A tick re-run after a crash supersedes its decision record (memory/audit.py): one decision, told once,
    from its current revision — through the read-only SQLite view and through an AuditLog alike."""
    from payops.memory.audit import AuditLog

    state = tmp_path / "state"
    write_synthetic_trail(state)
    audit = AuditLog(state / "audit.db")
    first = next(e for e in audit.get(IDS["reroute"]) if e.kind == "decision")
    revised = {**first.record, "diagnosis": {**first.record["diagnosis"], "summary": "Route psp_a down (re-run)."}}
    assert audit.append(IDS["reroute"], "decision", first.at, revised).supersedes == first.seq
    for tools in (ChatTools.open(state), ChatTools(audit, None)):
        did = ask("what did you do about psp_a?", tools)
        assert did.cited.count(IDS["reroute"]) == 1 and did.text.count(IDS["reroute"]) == 1, did.text
        assert "because: Route psp_a down (re-run)." in ask("why did you reroute psp_a at 10:05?", tools).text
    audit.close()
