"""A replay's memory does not grow with run length: checkpoints, the in-memory audit trail, alerts."""

from __future__ import annotations

from pathlib import Path

from payops import wiring
from payops.graph.runner import Agent, LatestCheckpointSaver
from payops.graph.services import build_services
from payops.memory.audit import AuditLog
from payops.settings import Settings
from payops.signals.simulator import Simulator, build_scenario, default_network, write_stream
from payops.signals.sources import open_jsonl

START = 1_764_000_000.0


def _events(path: Path, minutes: float) -> Path:
    net = default_network(300)
    scenario = build_scenario("issuer_outage", net, lead_in=minutes * 20.0, duration=minutes * 20.0)
    sim = Simulator(scenario, net, seed=2, start_ts=START)
    with path.open("wb") as out:
        write_stream(sim, START + minutes * 60.0, out)
    return path


def test_the_replay_checkpointer_keeps_one_checkpoint_and_one_version_per_channel(tmp_path: Path) -> None:
    settings = Settings(window_seconds=10.0, tick_seconds=10.0, deployment="replay", webhook_url=None)
    source = open_jsonl(_events(tmp_path / "e.jsonl", 8.0), workers=0)
    services = build_services(settings, source=source, in_memory=True)
    agent = Agent(services)
    assert isinstance(agent.checkpointer, LatestCheckpointSaver)
    end = agent.next_window_end()
    sizes = []
    for tick in range(45):
        assert end is not None
        agent.tick(end)
        end += 10.0
        if tick in (9, 44):
            saver = agent.checkpointer
            sizes.append((sum(len(ns) for thread in saver.storage.values() for ns in thread.values()), len(saver.blobs),
                          len(saver.writes)))
    assert sizes[0][0] == sizes[1][0] == 1  # InMemorySaver kept all 45
    assert sizes[1][1] <= sizes[0][1] + 2  # one version per channel, not one per tick
    assert sizes[1][2] <= 1
    state = agent.last_state()
    assert state["tick"] == 45 and state["window_end"] == end - 10.0  # and the thread still resumes from it


def test_a_replay_keeps_only_the_latest_audit_records_and_drains_its_alerts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(wiring, "REPLAY_AUDIT_RECORDS", 5)
    audits = []
    real = wiring.build_services

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        services = real(*args, **kwargs)
        audits.append(services)
        return services

    monkeypatch.setattr(wiring, "build_services", spy)
    decisions = list(wiring.replay(_events(tmp_path / "e.jsonl", 8.0), tmp_path / "d.jsonl", 20.0, 20.0))
    assert len(decisions) >= 24
    services = audits[0]
    assert 5 <= services.audit.count() < 10 and services.audit.tail(1)[0].seq >= len(decisions)
    assert services.notifier.messages == []  # drained every tick


def test_forgetting_old_audit_records_keeps_the_chain_going_from_its_head() -> None:
    audit = AuditLog(":memory:")
    for i in range(10):
        audit.append(f"d{i}", "decision", float(i), {"i": i})
    head = audit.tail(1)[0]
    assert audit.forget_all_but(3) == 7 and audit.count() == 3
    assert audit.forget_all_but(3) == 0
    added = audit.append("d10", "decision", 10.0, {"i": 10})
    assert added.seq == 11 and audit.tail(2)[0].hash == head.hash
    assert [e.decision_id for e in audit.entries()] == ["d7", "d8", "d9", "d10"]
