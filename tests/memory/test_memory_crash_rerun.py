"""A tick killed after its audit write and before its checkpoint runs again under the same decision id:
the trail then holds one record per (decision id, kind), or an explicit supersede — never two unrelated ones."""

from __future__ import annotations

import shutil
from pathlib import Path

from payops.memory.audit import AuditLog
from payops.scheduling import close_agent
from payops.settings import Settings
from payops.wiring import agent_services, durable_agent


def _ticks(state: Path, n: int, scenario: str = "demo") -> list[dict]:
    settings = Settings(state_dir=state)
    services = agent_services(settings, "simulator", scenario, 7)
    agent = durable_agent(services)
    try:
        return [agent.tick().state for _ in range(n)]
    finally:
        close_agent(agent, services)


def _lose_the_last_checkpoint(state: Path, saved: Path) -> None:
    """What kill -9 between the audit write and the checkpoint leaves: the audit row, the old checkpoint."""
    for suffix in ("-wal", "-shm"):
        (state / f"checkpoints.db{suffix}").unlink(missing_ok=True)
    shutil.copy(saved, state / "checkpoints.db")


def test_a_tick_rerun_after_a_kill_before_its_checkpoint_leaves_one_decision_record(tmp_path):
    state = tmp_path / "state"
    _ticks(state, 3)
    saved = tmp_path / "checkpoints.before"
    shutil.copy(state / "checkpoints.db", saved)
    first = _ticks(state, 1)[0]
    _lose_the_last_checkpoint(state, saved)
    again = _ticks(state, 1)[0]
    assert again["decision_id"] == first["decision_id"]  # the same window, decided again

    audit = AuditLog(state / "audit.db")
    decisions = [e for e in audit.get(first["decision_id"]) if e.kind == "decision"]
    assert len(decisions) == 1  # the re-run found its record: nothing appended
    assert audit.verify().ok


def test_a_rerun_that_decides_differently_supersedes_the_first_record_and_verifies(tmp_path):
    state = tmp_path / "state"
    _ticks(state, 3)
    saved = tmp_path / "checkpoints.before"
    shutil.copy(state / "checkpoints.db", saved)
    first = _ticks(state, 1)[0]
    _lose_the_last_checkpoint(state, saved)
    audit = AuditLog(state / "audit.db")
    # The re-run sees something else (here: a record of the first run edited through the API, as a
    # changed world would): its record must supersede explicitly, not sit beside the first.
    audit.append(first["decision_id"], "decision", first["window_end"],
                 {"decision_id": first["decision_id"], "seen": "other"})
    audit.close()
    _ticks(state, 1)
    audit = AuditLog(state / "audit.db")
    decisions = [e for e in audit.get(first["decision_id"]) if e.kind == "decision"]
    assert [e.revision for e in decisions] == [0, 1, 2]
    assert [e.supersedes for e in decisions[1:]] == [decisions[0].seq, decisions[1].seq]
    assert len([e for e in audit.current(first["decision_id"]) if e.kind == "decision"]) == 1
    result = audit.verify()
    assert result.ok and result.superseded == 2
