"""The graph LangGraph Server runs on a cron (`payops-tick`) decides real windows from the settings' source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from payops.server_graph import build_tick_graph
from payops.signals.simulator import Simulator, default_network, timed_scenario, write_stream


@pytest.fixture()
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    net = default_network(300.0)
    sim = Simulator(timed_scenario("route_outage", net, 6.0), net, seed=3)
    with path.open("wb") as fh:
        write_stream(sim, sim.start_ts + 6 * 60.0, fh)
    return path


def test_each_invocation_runs_the_next_real_tick_of_the_deployment(tmp_path: Path, events: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PAYOPS_SOURCE", str(events))
    monkeypatch.delenv("PAYOPS_DATABASE_URL", raising=False)
    graph = build_tick_graph()
    first = graph.invoke({})
    second = graph.invoke({"partition": "default"})
    assert first["status"] == "done" and second["status"] == "done"
    assert second["window_end"] == first["window_end"] + 60.0  # the agent's own checkpoint moved the clock
    assert first["decision_id"].startswith("d-") and first["decision_id"] != second["decision_id"]
    assert (tmp_path / "state" / "audit.db").exists()  # the decisions went to the deployment's own audit trail


def test_a_bad_source_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PAYOPS_SOURCE", str(tmp_path / "missing.jsonl"))
    out = build_tick_graph().invoke({})
    assert out["status"] == "error" and "no such file" in out["detail"]


def test_langgraph_json_points_at_both_graphs() -> None:
    root = Path(__file__).resolve().parents[2]
    config = json.loads((root / "langgraph.json").read_text())
    assert config["graphs"] == {"payops": "./graph/builder.py:graph", "payops-tick": "./payops/server_graph.py:graph"}
    schema = build_tick_graph().get_input_jsonschema()
    assert "partition" in schema["properties"]
