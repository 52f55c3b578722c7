"""Concurrent payments on one link (threads and processes) never exceed either limit."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from payops.palmpay import (
    DevOtpSender,
    ManualClock,
    PalmPayError,
    PalmPayOptions,
    PalmPayService,
    SimulatedPayShapRail,
    SimulatedRailConfig,
)

SAST = ZoneInfo("Africa/Johannesburg")
PACKAGED_SPEC_PATH = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"
DAILY_LIMIT = 1000
TRANSACTION_LIMIT = 100
AMOUNT = 30
NOON = datetime(2025, 6, 2, 12, 0, tzinfo=SAST)
REF = "tmpl-concurrent-0001"


def _service(state_dir: Path, rail=None) -> PalmPayService:
    options = PalmPayOptions(state_dir=state_dir, spec_path=PACKAGED_SPEC_PATH)
    return PalmPayService(options, clock=ManualClock(NOON), rail=rail, verification=DevOtpSender())


def _enrol(state_dir: Path) -> str:
    otp = DevOtpSender()
    options = PalmPayOptions(state_dir=state_dir, spec_path=PACKAGED_SPEC_PATH)
    with PalmPayService(options, clock=ManualClock(NOON), verification=otp) as service:
        view, delivery = service.create_link("u1", REF, None, "0821234321", "phone", DAILY_LIMIT, TRANSACTION_LIMIT)
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        return view.palm_pay_id


def _pay_many(service: PalmPayService, count: int, amounts: list[int]) -> list[str]:
    outcomes = []
    for i in range(count):
        try:
            outcomes.append(service.pay(REF, amounts[i % len(amounts)], "T1", True, 0.99).status)
        except PalmPayError as exc:
            outcomes.append(exc.code)
    return outcomes


def _process_worker(state_dir: str, count: int) -> list[str]:
    with _service(Path(state_dir)) as service:
        return _pay_many(service, count, [AMOUNT])


def _check_ledger(service: PalmPayService, link_id: str) -> int:
    with service.store.read() as tx:
        rows = tx.completed_by_link_and_day()
        counters = tx.link(link_id)
    ((_, _, total, biggest),) = rows
    assert total <= DAILY_LIMIT * 100 and biggest <= TRANSACTION_LIMIT * 100
    assert counters.daily_spent == total and counters.reserved == 0
    return total


def test_threads_cannot_overspend_one_link(tmp_path):
    link_id = _enrol(tmp_path)
    service = _service(tmp_path)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        outcome = _pay_many(service, 20, [AMOUNT])
        with lock:
            results.extend(outcome)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(results) == 160
        assert results.count("completed") == DAILY_LIMIT // AMOUNT  # exactly as many as fit: no lost update
        assert set(results) == {"completed", "PALM_PAY_DAILY_LIMIT"}
        assert _check_ledger(service, link_id) == (DAILY_LIMIT // AMOUNT) * AMOUNT * 100
    finally:
        service.close()


def test_threads_with_a_slow_noisy_rail_hold_both_limits(tmp_path):
    link_id = _enrol(tmp_path)
    rail = SimulatedPayShapRail(SimulatedRailConfig(latency_ms=1, transient_rate=0.2, decline_rate=0.1, seed=11))
    service = _service(tmp_path, rail=rail)
    results: list[str] = []
    lock = threading.Lock()

    def run(offset: int) -> None:
        outcome = _pay_many(service, 15, [70 + offset, 100, 101, 45])
        with lock:
            results.extend(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert "PALM_PAY_TRANSACTION_LIMIT" in results and "completed" in results
        total = _check_ledger(service, link_id)
        assert DAILY_LIMIT * 100 - total < 45 * 100 or "PALM_PAY_DAILY_LIMIT" not in results
        assert all(n == 1 for n in rail.charges.values())
    finally:
        service.close()


def test_processes_cannot_overspend_one_link(tmp_path):
    link_id = _enrol(tmp_path)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no SQLite handles cross a fork
    with ctx.Pool(4) as pool:
        per_process = pool.starmap(_process_worker, [(str(tmp_path), 15)] * 4)
    results = [r for chunk in per_process for r in chunk]
    assert len(results) == 60
    assert results.count("completed") == DAILY_LIMIT // AMOUNT
    assert set(results) == {"completed", "PALM_PAY_DAILY_LIMIT"}
    with _service(tmp_path) as service:
        assert _check_ledger(service, link_id) == (DAILY_LIMIT // AMOUNT) * AMOUNT * 100
        assert service.show(link_id).daily_spent == Decimal((DAILY_LIMIT // AMOUNT) * AMOUNT)
