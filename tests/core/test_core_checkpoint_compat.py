"""A checkpoint written before the state was typed (issue 19) still resumes, and the format did not move.

`data/legacy_checkpoint_state.json` is the checkpointed state after 6 ticks of the corpus case
route_outage-105 (a reroute in force), written by the code at dca13ab, when every field of
`AgentState` was `dict[str, Any]` and the window travelled in `services.scratch`.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.render import decision_json
from payops.settings import Settings
from payops.signals.sources import open_jsonl
from payops.tools.control_plane import ShadowControlPlane

ROOT = Path(__file__).resolve().parents[2]
LEGACY = json.loads((Path(__file__).parent / "data" / "legacy_checkpoint_state.json").read_text())
TICKS_BEFORE = 6
RULES_ADDED_SINCE = ("human_said_no",)  # guardrails/policies.py, issue 14 (session 5)


class LegacyAgentState(TypedDict, total=False):
    """AgentState as it was at dca13ab: the same channels, all untyped, and no live window."""

    tick: int
    window_end: float
    decision_id: str
    snapshot: dict[str, Any]
    diagnosis: dict[str, Any]
    proposal: dict[str, Any]
    llm_calls: list[dict[str, Any]]
    llm_fallback: str | None
    lessons_consulted: list[dict[str, Any]]
    track_record: dict[str, Any] | None
    verdict: dict[str, Any]
    execution: dict[str, Any]
    approval: dict[str, Any] | None
    in_force: list[dict[str, Any]]
    history: list[dict[str, Any]]
    recent: list[dict[str, Any]]
    baselines: dict[str, Any]
    awaiting: list[dict[str, Any]]
    housekeeping: list[dict[str, Any]]
    watching: list[dict[str, Any]]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("legacy") / "events.jsonl"
    with gzip.open(ROOT / "evals" / "incidents" / "route_outage-105" / "events.jsonl.gz", "rb") as src, \
            path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def _agent(events: Path, db: Path) -> Agent:
    """A new process's agent on the checkpoint database: fresh services, the thread resumed."""
    settings = Settings(window_seconds=60.0, tick_seconds=60.0, deployment="legacy", webhook_url=None)
    services = build_services(settings, source=open_jsonl(events, workers=0), in_memory=True,
                              control_plane=ShadowControlPlane())
    agent = Agent(services, SqliteSaver(sqlite3.connect(str(db), check_same_thread=False)))
    agent.resume_source()
    return agent


def _acted(decision: bytes) -> tuple[Any, ...]:
    d = json.loads(decision)
    return d["category"], d["action"]["tool"], d["action"]["target"], d["escalated"], d["executed"]


def _run_to_end(agent: Agent) -> list[bytes]:
    out = []
    while True:
        result = agent.tick()
        assert result is not None
        out.append(decision_json(result.state))
        if agent.drained(float(result.state["window_end"])):
            return out


def test_the_typed_state_checkpoints_exactly_what_the_untyped_one_did(events: Path, tmp_path: Path) -> None:
    agent = _agent(events, tmp_path / "new.db")
    for _ in range(TICKS_BEFORE):
        agent.tick()
    state = agent.last_state()
    assert "window" not in state  # the live window is never checkpointed
    now = json.loads(json.dumps(state))
    # Guardrail rules added since dca13ab append their result to the verdict (additive); the rest is unchanged.
    added = [r for r in now["verdict"]["results"] if r["rule"] in RULES_ADDED_SINCE]
    assert [r["verdict"] for r in added] == ["allow"] * len(RULES_ADDED_SINCE)
    now["verdict"]["results"] = [r for r in now["verdict"]["results"] if r["rule"] not in RULES_ADDED_SINCE]
    # An executed action's history entry carries its diagnosis's category since session 9 (additive: an alert
    # about another cause at the same place is not a repeat); entries without it still load.
    assert now["history"] and all(h.pop("category") == "network" for h in now["history"])
    # The window pairs banks with methods since session 11 (additive): their baselines are new keys.
    paired = [k for k in now["baselines"] if "bank=" in k and "method=" in k]
    assert paired and not [k for k in LEGACY["baselines"] if "bank=" in k and "method=" in k]
    now["baselines"] = {k: v for k, v in now["baselines"].items() if k not in paired}
    # Since session 14 a baseline counts its windows of volume apart (additive), and a segment out of line with
    # its peers from its first window keeps a baseline of volume only (windows 0: new keys).
    assert all("volume_windows" in v for v in now["baselines"].values())
    now["baselines"] = {k: {f: x for f, x in v.items() if f != "volume_windows"}
                        for k, v in now["baselines"].items() if v["windows"] > 0}
    assert skeleton(now) == skeleton(LEGACY)
    assert decided(now) == decided(LEGACY)


def skeleton(value: Any) -> Any:
    """The format of a checkpointed value: every key, record list's length and type (texts, such as a
    diagnosis's evidence lines, by type: they quote the figures). The figures follow the reference
    arithmetic, which improves (since session 8 a young baseline weighs its first windows alike);
    the format a checkpoint reader depends on must not move."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list[str]" if value and all(isinstance(v, str) for v in value) else [skeleton(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    return type(value).__name__


def decided(state: dict[str, Any]) -> tuple[Any, ...]:
    """What the tick concluded and did, exactly."""
    d, p = state["diagnosis"], state["proposal"]
    return (d["category"], d["target"], p["tool"], p["target"], state["verdict"]["verdict"],
            state["execution"]["status"], [(a["tool"], a["target"]) for a in state["in_force"]])


def test_a_checkpoint_written_before_the_state_was_typed_resumes_as_a_new_one_does(
        events: Path, tmp_path: Path) -> None:
    # Reference: this code's own checkpoint after 6 ticks, resumed by a new process.
    first = _agent(events, tmp_path / "new.db")
    for _ in range(TICKS_BEFORE):
        first.tick()
    expected = _run_to_end(_agent(events, tmp_path / "new.db"))

    # The legacy checkpoint, written through a graph with the old, untyped channels, on the same thread.
    legacy = StateGraph(LegacyAgentState)
    legacy.add_node("learn", lambda state: LEGACY)
    legacy.add_edge(START, "learn")
    legacy.add_edge("learn", END)
    saver = SqliteSaver(sqlite3.connect(str(tmp_path / "legacy.db"), check_same_thread=False))
    legacy.compile(checkpointer=saver).invoke({}, {"configurable": {"thread_id": "payops:legacy"}})

    resumed = _agent(events, tmp_path / "legacy.db")
    assert resumed.next_window_end() == LEGACY["window_end"] + 60.0
    got = _run_to_end(resumed)
    # The legacy state carries baselines the old arithmetic learned: the same decisions, in the same format.
    assert [skeleton(json.loads(g)) for g in got] == [skeleton(json.loads(e)) for e in expected]
    assert [_acted(g) for g in got] == [_acted(e) for e in expected]
    assert len(got) == 3 and b'"reroute_traffic"' not in got[0]  # the reroute stays in force: not proposed again
