"""Benchmark palm-pay payments: resolve + complete, SQLite WAL, encryption on, one core.

Prints figures only (no assertions):

    /work/venv/bin/python scripts/bench_palmpay.py [--links 500] [--payments 20000]

Each payment is the full `PalmPayService.pay()` path: blind-index lookup,
limit check and reservation (BEGIN IMMEDIATE), proxy decryption + access log,
the simulated rail (zero latency), settlement with daily_spent update, spec
outbox events and the CONTRACT payment event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from payops.palmpay import DevOtpSender, PalmPayOptions, PalmPayService, SimulatedPayShapRail


def _pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--payments", type=int, default=20000)
    parser.add_argument("--synchronous", default="NORMAL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--state-dir", type=Path, default=None, help="default: a fresh temporary directory")
    args = parser.parse_args(argv)

    pinning = _pin_to_one_core()
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="palmpay-bench-"))
    otp = DevOtpSender(keep=args.links + 10)
    options = PalmPayOptions(state_dir=state_dir, synchronous=args.synchronous)
    service = PalmPayService(options, rail=SimulatedPayShapRail(), verification=otp)

    # High limits so every payment completes: the figure is the success path.
    refs = []
    setup_started = time.perf_counter()
    for i in range(args.links):
        ref = f"tmpl-bench-{i:08d}-{os.urandom(4).hex()}"
        view, delivery = service.create_link(
            user_id=f"user-{i}",
            palm_template_ref=ref,
            palm_hand="left",
            payshap_proxy=f"08{i:08d}",
            proxy_type="phone",
            daily_limit=Decimal("100000000"),
            transaction_limit=Decimal("1000"),
            bank="BENCHBANK",
        )
        service.verify(view.palm_pay_id, otp.code_for(delivery) or "")
        refs.append(ref)
    setup_s = time.perf_counter() - setup_started

    latencies: list[float] = []
    amounts = [Decimal("12.34"), Decimal("99.99"), Decimal("250.00"), Decimal("5.00")]
    completed = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    for n in range(args.payments):
        t0 = time.perf_counter()
        result = service.pay(refs[n % len(refs)], amounts[n % len(amounts)], f"T{n % 16}", True, 0.99)
        latencies.append(time.perf_counter() - t0)
        completed += result.status == "completed"
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    service.close()

    latencies.sort()
    db = options.database_path
    print(f"palm-pay benchmark ({pinning}, Python {sys.version.split()[0]}, SQLite WAL synchronous={args.synchronous})")
    print(f"  setup: {args.links} links created + verified in {setup_s:.2f} s")
    print(f"  payments: {args.payments} ({completed} completed) in {elapsed:.2f} s")
    print(f"  throughput: {args.payments / elapsed:,.0f} payments/s (wall clock)")
    # CPU time of this process only: the figure other tenants of a shared core cannot skew.
    print(f"  cpu-bound:  {args.payments / cpu:,.0f} payments/s per core ({cpu:.2f} s CPU)")
    print(
        f"  latency: p50 {_percentile(latencies, 0.50) * 1e3:.3f} ms, p99 {_percentile(latencies, 0.99) * 1e3:.3f} ms,"
        f" mean {statistics.fmean(latencies) * 1e3:.3f} ms, max {latencies[-1] * 1e3:.3f} ms"
    )
    print(f"  database: {db} ({db.stat().st_size / 1e6:.1f} MB + WAL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
