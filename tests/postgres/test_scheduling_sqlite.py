"""`payops tick` scheduling on the default SQLite state: per-partition file locks, nothing due yet,
and a tick that raised part-way decided again (no PostgreSQL needed)."""

from __future__ import annotations

import pytest

from payops.graph.nodes import decision_id_for
from payops.memory.audit import AuditLog
from payops.scheduling import TickLocked, TickUsageError, lock_path, run_tick, tick_lock
from payops.settings import Settings

SIM_START = 1_764_000_000.0


def _settings(tmp_path, partition: str = "default") -> Settings:
    return Settings(state_dir=tmp_path, deployment=partition, webhook_url=None)


def test_file_lock_per_partition(tmp_path):
    with tick_lock(lock_path(tmp_path, "default")):
        with pytest.raises(TickLocked):
            run_tick(_settings(tmp_path))
        other = run_tick(_settings(tmp_path, "shop-2"))  # another partition is not held up
    assert other.status == "done" and other.state["decision_id"] == decision_id_for("payops:shop-2", SIM_START + 60)
    assert run_tick(_settings(tmp_path)).window_end == SIM_START + 60
    assert lock_path(tmp_path, "default").name == "tick.lock"  # the historical name stays
    with pytest.raises(TickUsageError):
        run_tick(_settings(tmp_path, "../escape"))


def test_a_window_still_in_the_future_is_not_decided(tmp_path):
    early = run_tick(_settings(tmp_path), wall_clock=lambda: SIM_START + 30)
    assert early.status == "not_due" and early.window_end == SIM_START + 60
    later = run_tick(_settings(tmp_path), wall_clock=lambda: SIM_START + 61)
    assert later.status == "done" and later.window_end == SIM_START + 60  # the same window, once it has ended


def test_a_tick_that_raised_part_way_is_decided_again(tmp_path, monkeypatch):
    assert run_tick(_settings(tmp_path)).status == "done"
    original = AuditLog.append

    def broken(self, decision_id, kind, at, record):
        raise OSError("disk full")

    monkeypatch.setattr(AuditLog, "append", broken)
    with pytest.raises(OSError):
        run_tick(_settings(tmp_path))  # learn could not write the decision record
    monkeypatch.setattr(AuditLog, "append", original)
    redo = run_tick(_settings(tmp_path))
    assert redo.window_end == SIM_START + 120  # not skipped
    assert redo.state["decision_id"] == decision_id_for("payops:default", SIM_START + 120)
    log = AuditLog(tmp_path / "audit.db")
    assert [e.record["window_end"] for e in log.entries("decision")] == [SIM_START + 60, SIM_START + 120]
    assert run_tick(_settings(tmp_path)).window_end == SIM_START + 180
