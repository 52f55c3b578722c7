"""Palm-pay limits hold through PostgreSQL under concurrent payments (threads and processes):
row locks on the link replace SQLite's database-wide write lock."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from pg_helpers import PALM_REF, palm_pay_worker, palm_service, pay_many

from payops.palmpay import DevOtpSender, PalmPayError, SimulatedPayShapRail, SimulatedRailConfig

pytestmark = pytest.mark.postgres

DAILY_LIMIT = 1000
TRANSACTION_LIMIT = 100
AMOUNT = 30
FITS = DAILY_LIMIT // AMOUNT  # 33 payments of 30 fit under 1000; the 34th would overspend


def _enrol(dsn: str, state_dir: str, ref: str = PALM_REF, user: str = "u1") -> str:
    otp = DevOtpSender()
    with palm_service(dsn, state_dir, verification=otp) as service:
        view, delivery = service.create_link(user, ref, None, "0821234321", "phone", DAILY_LIMIT, TRANSACTION_LIMIT)
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        return view.palm_pay_id


def _check_ledger(service, link_id: str) -> int:
    """The stored counters agree with the completed payments, and neither limit was passed."""
    with service.store.read() as tx:
        rows = tx.completed_by_link_and_day()
        link = tx.link(link_id)
    ((_, _, total, biggest),) = rows
    assert total <= DAILY_LIMIT * 100 and biggest <= TRANSACTION_LIMIT * 100
    assert link.daily_spent == total and link.reserved == 0
    return total


def test_threads_cannot_overspend_one_link(pg_dsn, tmp_path):
    link_id = _enrol(pg_dsn, str(tmp_path))
    service = palm_service(pg_dsn, str(tmp_path))
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        outcome = pay_many(service, 8, [AMOUNT, AMOUNT, 150])
        with lock:
            results.extend(outcome)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(results) == 64
        assert results.count("completed") == FITS  # exactly as many as fit: no lost update between workers
        assert set(results) == {"completed", "PALM_PAY_DAILY_LIMIT", "PALM_PAY_TRANSACTION_LIMIT"}
        assert _check_ledger(service, link_id) == FITS * AMOUNT * 100
        events = service.payment_events_after(0, 1000)
        ids = [e.id for e in events]
        assert len(events) == 64 and ids == sorted(ids) and len(set(ids)) == 64  # one event per attempt, in order
    finally:
        service.close()


def test_processes_cannot_overspend_one_link(pg_dsn, tmp_path):
    link_id = _enrol(pg_dsn, str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Barrier(4), ctx.Queue()  # all four start paying at once
    procs = [ctx.Process(target=palm_pay_worker, args=(pg_dsn, str(tmp_path), 12, [AMOUNT], start, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in queue.get(timeout=60)]
    for p in procs:
        p.join(30)
    assert len(results) == 48
    assert results.count("completed") == FITS
    assert set(results) == {"completed", "PALM_PAY_DAILY_LIMIT"}
    with palm_service(pg_dsn, str(tmp_path)) as service:
        assert _check_ledger(service, link_id) == FITS * AMOUNT * 100
        assert service.show(link_id).daily_spent == FITS * AMOUNT


def test_pending_payments_hold_the_limit_until_reconciled(pg_dsn, tmp_path):
    link_id = _enrol(pg_dsn, str(tmp_path))
    rail = SimulatedPayShapRail(SimulatedRailConfig(timeout_rate=0.5, timeout_processed_rate=0.5, transient_rate=0.2,
                                                    seed=5))
    service = palm_service(pg_dsn, str(tmp_path), rail=rail)
    results: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        outcome = pay_many(service, 10, [AMOUNT, 95])
        with lock:
            results.extend(outcome)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert "pending" in results and "PALM_PAY_DAILY_LIMIT" in results
        with service.store.read() as tx:
            link = tx.link(link_id)
        assert link.daily_spent + link.reserved <= DAILY_LIMIT * 100 and link.reserved > 0  # holds count while unknown
        service.clock.advance(120)  # past the reconcile grace period
        report = service.reconcile()
        assert report.still_pending == 0 and report.completed + report.failed == results.count("pending")
        _check_ledger(service, link_id)
        assert all(n == 1 for n in rail.charges.values())  # the rail moved each payment's money at most once
    finally:
        service.close()


def test_one_live_link_per_palm_under_concurrent_enrolment(pg_dsn, tmp_path):
    service = palm_service(pg_dsn, str(tmp_path))
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def enrol(i: int) -> None:
        barrier.wait()
        try:
            service.create_link(f"user-{i}", "tmpl-same-palm-777", None, f"08212343{i:02d}", "phone")
            outcomes.append("created")
        except PalmPayError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=enrol, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(outcomes) == ["PALM_PAY_DUPLICATE_PALM"] * 5 + ["created"]
        with service.store.read() as tx:
            assert len(tx.all_links()) == 1
    finally:
        service.close()


def test_palm_pay_logs_written_by_concurrent_payers_are_sealed_and_tampering_is_named(pg_dsn, tmp_path):
    import time

    import psycopg

    from payops.palmpay.sealing import seal_keys, seal_logs, verify_logs

    links = [_enrol(pg_dsn, str(tmp_path), ref=f"tmpl-seal-{i:04d}-7f3a9c2e", user=f"u{i}") for i in range(4)]
    service = palm_service(pg_dsn, str(tmp_path))
    threads = [threading.Thread(target=pay_many, args=(service, 25, [5], f"tmpl-seal-{i:04d}-7f3a9c2e"))
               for i in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    paid = time.perf_counter() - started
    keys = seal_keys(tmp_path)
    try:
        began = time.perf_counter()
        sealed = seal_logs(service.store, keys)
        took = time.perf_counter() - began
        print(f"PostgreSQL: 100 payments on 4 links in {paid:.2f} s ({100 / paid:.0f}/s, 4 threads); "
              f"sealed {sealed} in {took * 1000:.0f} ms")
        assert sealed["palmpay.access"] >= 100 and all(c.ok for c in verify_logs(service.store, keys))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE palmpay.access_log SET actor = 'mallory' "
                         "WHERE id = (SELECT MIN(id) FROM palmpay.access_log)")
        checks = {c.log: c for c in verify_logs(service.store, keys)}
        assert not checks["palmpay.access"].ok and checks["palmpay.audit"].ok
        assert len(links) == 4
    finally:
        service.close()


def test_attestation_tables_come_from_the_migrations_and_survive_a_first_use_copy(empty_pg_dsn):
    import psycopg

    from payops.storage import migrations

    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        for m in migrations.available():
            if m.version < 6:
                conn.execute(m.sql)
        # a database whose tables attestation.py made on first use (before migration 0006)
        conn.execute("CREATE TABLE palmpay.palm_scan_nonces (terminal_id TEXT NOT NULL, nonce TEXT NOT NULL,"
                     " payment_id TEXT, seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (terminal_id, nonce))")
        conn.execute(next(m.sql for m in migrations.available() if m.version == 6))
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'palmpay'")}
        key_state = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'palmpay'"
            " AND table_name = 'key_state'")}
        version = conn.execute("SELECT MAX(version) FROM palmpay.schema_version").fetchone()[0]
    assert {"palm_terminal_keys", "palm_scan_nonces"} <= tables
    assert {"index_key_id", "otp_key_id"} <= key_state
    assert version == 4
