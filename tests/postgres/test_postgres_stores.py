"""Every store round-trips through PostgreSQL with the semantics it has on SQLite."""

from __future__ import annotations

import multiprocessing
import threading

import psycopg
import pytest
from pg_helpers import audit_worker, worker_settings

from payops.graph.approval import resume
from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.memory.approvals import APPLIED, APPROVED, PENDING, REJECTED, ApprovalBook, ApprovalError
from payops.memory.audit import AuditLog, default_keys
from payops.memory.lessons import Lesson, LessonStore, Signature
from payops.storage import migrations
from payops.storage.db import DatabaseError
from payops.storage.postgres import agent_database, postgres_store

pytestmark = pytest.mark.postgres

SPAWN = multiprocessing.get_context("spawn")


def test_migrations_are_versioned_idempotent_and_guarded(empty_pg_dsn):
    with pytest.raises(DatabaseError, match="payops db upgrade"):
        agent_database(empty_pg_dsn)  # an unmigrated database is refused with the fix in the message
    reports: list = []
    threads = [threading.Thread(target=lambda: reports.append(migrations.upgrade(empty_pg_dsn))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = sorted(m.version for r in reports for m in r.applied)
    assert applied == [m.version for m in migrations.available()]  # three upgraders at once: each file applied once
    assert migrations.status(empty_pg_dsn).up_to_date
    assert migrations.upgrade(empty_pg_dsn).applied == []
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE payops.schema_migrations SET checksum = 'edited' WHERE version = 1")
    assert migrations.status(empty_pg_dsn).edited == (1,)
    with pytest.raises(DatabaseError, match="0001 changed after"):
        migrations.upgrade(empty_pg_dsn)


def test_audit_chain_is_the_same_chain_as_on_sqlite(pg_dsn, tmp_path):
    keys = default_keys(tmp_path / "shared")  # one audit key, one checkpoint file: the same chain on both engines
    pg = AuditLog(database=agent_database(pg_dsn), keys=keys)
    lite = AuditLog(tmp_path / "audit.db", keys=keys)
    records = [("d-1", "decision", 1764000060.0,
                {"n": 1, "palm_template_ref": "tmpl-SECRET-1", "note": "call 0821234567"}),
               ("d-1", "approval", 1764000061.5, {"status": "approved", "approver": "ops"}),
               ("d-2", "decision", 1764000120.0, {"nested": {"x": [1, 2.5, None]}})]
    for args in records:
        assert pg.append(*args).hash == lite.append(*args).hash  # same hashes, byte for byte
    assert [e.hash for e in pg.entries()] == [e.hash for e in lite.entries()]
    stored = pg.get("d-1")[0].record
    assert "SECRET" not in str(stored) and "0821234567" not in str(stored)  # redacted before hashing
    assert [e.kind for e in pg.tail(2)] == ["approval", "decision"] and pg.count() == 3
    assert [e.decision_id for e in pg.entries("decision")] == ["d-1", "d-2"] and pg.at_seq(2)[0].kind == "approval"
    ok = pg.verify()
    assert ok.ok and ok.count == 3 and ok.head_hash == lite.verify().head_hash
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE payops.audit_log SET record = %s WHERE seq = 2", (b'{"status":"rejected"}',))
    broken = pg.verify()
    assert not broken.ok and broken.first_bad_seq == 2 and broken.first_bad_decision == "d-1"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM payops.audit_log WHERE seq >= 2")
    cut = pg.verify()
    assert not cut.ok and cut.first_bad_seq == 2 and "head says 3" in cut.reason


def test_a_truncated_postgres_trail_with_its_head_fixed_fails_against_the_signed_checkpoint(pg_dsn, tmp_path):
    keys = default_keys(tmp_path / "k")
    log = AuditLog(database=agent_database(pg_dsn), keys=keys, checkpoint_every=2)
    for i in range(4):
        log.append(f"d-{i}", "decision", float(i), {"i": i})
    assert log.verify().ok and log.verify().checkpoints == 2
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM payops.audit_log WHERE seq > 2")
        conn.execute("UPDATE payops.audit_head SET count = 2, "
                     "hash = (SELECT hash FROM payops.audit_log WHERE seq = 2), mac = NULL")
    cut = log.verify()
    assert not cut.ok


def test_the_0003_migration_numbers_old_duplicate_records_as_revisions(empty_pg_dsn):
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        for m in migrations.available():
            if m.version < 3:
                conn.execute(m.sql)
        for seq, did in ((1, "d-a"), (2, "d-a"), (3, "d-b"), (4, "d-a")):
            conn.execute("INSERT INTO payops.audit_log (seq, decision_id, at, kind, record, prev_hash, hash) "
                         "VALUES (%s, %s, 0, 'decision', '\\x7b7d', 'p', 'h')", (seq, did))
        conn.execute(next(m.sql for m in migrations.available() if m.version == 3))
        rows = conn.execute("SELECT seq, revision, supersedes FROM payops.audit_log ORDER BY seq").fetchall()
    assert rows == [(1, 0, None), (2, 1, 1), (3, 0, None), (4, 2, 2)]


def test_concurrent_appenders_from_threads_and_processes_keep_one_chain(pg_dsn):
    start = SPAWN.Event()
    procs = [SPAWN.Process(target=audit_worker, args=(pg_dsn, 30, f"p{i}", start)) for i in range(3)]
    for p in procs:
        p.start()
    log = AuditLog(database=agent_database(pg_dsn, max_size=4))
    threads = [threading.Thread(target=lambda i=i: [log.append(f"t{i}-{k}", "decision", 0.0, {"k": k})
                                                    for k in range(30)])
               for i in range(3)]
    start.set()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 181))  # no sequence number taken twice, none skipped
    assert len({e.decision_id for e in entries}) == 180
    result = log.verify()
    assert result.ok and result.count == 180


def test_approvals_round_trip_once_per_decision_and_scoped_per_deployment(pg_dsn):
    database = agent_database(pg_dsn)
    east = ApprovalBook(database=database, deployment="east")
    west = ApprovalBook(database=database, deployment="west")
    first = east.open("d-aaa111", "approval:d-aaa111", 10.0, 910.0, {"proposal": {"tool": "suppress_path"}})
    again = east.open("d-aaa111", "approval:d-aaa111", 99.0, 999.0, {"proposal": {"tool": "other"}})
    assert first == again and again.request == {"proposal": {"tool": "suppress_path"}}  # a re-run tick changes nothing
    west.open("d-bbb222", "approval:d-bbb222", 11.0, 911.0, {"proposal": {}})
    assert [a.decision_id for a in east.by_status(PENDING)] == ["d-aaa111"]
    assert [a.decision_id for a in west.by_status(PENDING)] == ["d-bbb222"]
    assert west.get("d-aaa111") is not None and west.find("d-aaa") is not None  # ids are global
    with pytest.raises(ApprovalError):
        east.find("d-")
    assert east.decide("d-aaa111", APPROVED, "ops", "fine", 20.0) is True
    assert east.decide("d-aaa111", REJECTED, "late", None, 21.0) is False
    assert east.mark_applied("d-aaa111", 30.0, "executed") is True
    assert east.mark_applied("d-aaa111", 31.0, "executed") is False  # applied once, whoever asks second
    done = east.get("d-aaa111")
    assert (done.status, done.approver, done.applied_at) == (APPLIED, "ops", 30.0)


def _lesson(decision_id: str, **changes) -> Lesson:
    base = dict(decision_id=decision_id, category="network", target_key="route=psp_a", target_dims="route",
                dominant_error="NETWORK_ERROR", error_codes="NETWORK_ERROR,GATEWAY_TIMEOUT", magnitude="major",
                method_mix="card", tool="reroute_traffic", target={"route": "psp_a"}, verdict="helped",
                created_at=1764000000.0)
    return Lesson(**{**base, **changes})


def test_lessons_on_postgres_store_filter_by_strings_and_rank_numbers_in_python(pg_dsn):
    lessons = LessonStore(postgres_store(pg_dsn))
    lessons.put(_lesson("d-1", created_at=1764000000.0))
    lessons.put(_lesson("d-2", verdict="harmed", created_at=1764003600.0))
    lessons.put(_lesson("d-10", target_key="route=psp_z", dominant_error="ISSUER_DOWN", created_at=1764007200.0))
    lessons.put(_lesson("d-3", category="issuer", target_key="bank=FNB", target_dims="bank"))
    assert lessons.find("d-2").verdict == "harmed"
    assert {lesson.decision_id for lesson in lessons.list("network", verdict="harmed")} == {"d-2"}
    sig = Signature(category="network", target_key="route=psp_a", target_dims="route", dominant_error="NETWORK_ERROR",
                    error_codes="NETWORK_ERROR,GATEWAY_TIMEOUT", magnitude="major", method_mix="card")
    similar = lessons.similar(sig, 1764010000.0, limit=5)
    ids = [s.lesson.decision_id for s in similar]
    assert set(ids) == {"d-1", "d-2", "d-10"}  # never the other category
    assert ids[-1] == "d-10" and [s.score for s in similar] == sorted((s.score for s in similar), reverse=True)
    exported = lessons.export()
    again = LessonStore(postgres_store(pg_dsn))
    assert again.import_(exported) == len(exported) == 4


def test_checkpoints_and_approval_threads_survive_a_restart_on_postgres(pg_dsn, tmp_path):
    # Every proposal needs a human (threshold 1.0): the demo's outage opens an approval thread.
    settings = worker_settings(pg_dsn, str(tmp_path), "east", confidence_threshold=1.0)
    services = build_services(settings, source=None)
    agent = Agent.durable(services)
    from payops.signals.sources import SimulatorSource
    from payops.wiring import simulator_for

    services.source = SimulatorSource(simulator_for("demo", 7, services.control_plane))
    for _ in range(4):
        state = agent.tick().state
    assert state["execution"]["status"] == "escalated"
    decision_id = state["decision_id"]
    agent.checkpointer.conn.close()

    # Another process (an operator's `payops approve`): same database, new objects.
    other = build_services(settings)
    Agent.durable(other)
    pending = other.approvals.by_status(PENDING)
    assert [a.decision_id for a in pending] == [decision_id]
    assert resume(other, decision_id, {"approved": True, "approver": "operator:0000000000e1", "note": "go"}) == APPROVED

    third = build_services(settings)
    third.source = SimulatorSource(simulator_for("demo", 7, third.control_plane))
    restarted = Agent.durable(third)
    restarted.resume_source()
    assert restarted.next_window_end() == state["window_end"] + settings.tick_seconds  # resumes after the last tick
    after = restarted.tick().state
    applied = [n for n in after["housekeeping"] if n.get("op") == "approved_action_applied"]
    assert [n["decision_id"] for n in applied] == [decision_id] and applied[0]["status"] == "executed"
    assert third.approvals.get(decision_id).status == APPLIED
    kinds = [e.kind for e in third.audit.get(decision_id)]
    assert kinds == ["decision", "approval", "approved_action"]
    assert third.audit.verify().ok
