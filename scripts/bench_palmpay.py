"""Benchmark palm-pay payments: resolve + complete, SQLite WAL, encryption on, one core.

Prints figures only (no assertions), p50 / p99 / p99.9 latency included:

    python scripts/bench_palmpay.py [--links 500] [--payments 20000] [--threads N]
    python scripts/bench_palmpay.py --postgres            # a throwaway cluster (tests/postgres harness)
    python scripts/bench_palmpay.py --database-url DSN    # a migrated database (payops db upgrade)

Each payment is the full `PalmPayService.pay()` path: blind-index lookup,
limit check and reservation (BEGIN IMMEDIATE), proxy decryption + access log,
the simulated rail (zero latency), settlement with daily_spent update, spec
outbox events and the CONTRACT payment event.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payops.palmpay import DevOtpSender, PalmPayOptions, PalmPayService, SimulatedPayShapRail
from payops.palmpay.attestation import ScanAttestation, sign_scan


def _pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _throwaway_postgres() -> Iterator[str]:
    """A migrated database on a throwaway cluster (the tests/postgres harness: initdb, fsync off)."""
    sys.path.insert(0, str(ROOT / "tests" / "postgres"))
    import conftest as harness  # tests/postgres/conftest.py: its helpers, not its fixtures

    from payops.storage import migrations

    bindir = harness._bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found (PAYOPS_PG_BINDIR, /usr/local/bin or pg_config --bindir)")
    _, server_user = harness._as_server_user([])
    root = Path(tempfile.mkdtemp(prefix="payops-pg-bench-", dir="/tmp"))
    if server_user is not None:
        shutil.chown(root, user=server_user)
    data, log = root / "data", root / "server.log"
    port = harness._free_port()
    try:
        harness._run([str(bindir / "initdb"), "-D", str(data), "-U", "payops_test", "--auth=trust", "--no-sync",
                      "-E", "UTF8", "--locale=C"])
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=100 -c shared_buffers=64MB")
        harness._run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"], log)
        cluster = harness.Cluster(bindir, root, port)
        cluster.sql("CREATE DATABASE bench")
        migrations.upgrade(cluster.dsn("bench"))
        yield cluster.dsn("bench")
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(harness._as_server_user(stop)[0], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _signed_scans(service: PalmPayService, refs: list[str], amounts: list[Decimal], args: argparse.Namespace
                  ) -> dict[tuple[int, int], ScanAttestation]:
    """Register a key per terminal and sign every scan up front, as the terminals would have."""
    keys = {}
    for t in range(16):
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        service.attestation.register(f"T{t}", base64.b64encode(raw).decode(), actor="bench")
        keys[f"T{t}"] = key
    now = int(time.time())
    scans = {}
    for worker in range(args.threads):
        mine = refs[worker :: args.threads]
        for n in range(worker, args.payments, args.threads):
            terminal = f"T{n % 16}"
            scans[(worker, n)] = sign_scan(keys[terminal], terminal_id=terminal, palm_template_ref=mine[n % len(mine)],
                                           liveness_passed=True, match_score=0.99, amount=amounts[n % len(amounts)],
                                           nonce=secrets.token_urlsafe(16), ts=now)
    return scans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--payments", type=int, default=20000)
    parser.add_argument("--synchronous", default="NORMAL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--state-dir", type=Path, default=None, help="default: a fresh temporary directory")
    parser.add_argument("--threads", type=int, default=1, help="payers in parallel, each on its own links")
    parser.add_argument("--attested", action="store_true",
                        help="every scan signed by its terminal and verified (signing happens before the timer)")
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument("--database-url", default=None, help="a migrated PostgreSQL database (payops db upgrade)")
    engine.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL cluster and use it")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.links < args.threads:
        parser.error("--threads must be >= 1 and <= --links")
    if args.postgres:
        with _throwaway_postgres() as dsn:
            return _bench(args, dsn, "PostgreSQL (throwaway cluster: fsync off, synchronous_commit off)")
    if args.database_url:
        return _bench(args, args.database_url, "PostgreSQL")
    return _bench(args, None, f"SQLite WAL synchronous={args.synchronous}")


def _bench(args: argparse.Namespace, dsn: str | None, engine: str) -> int:
    # One core for SQLite (the figure per core); PostgreSQL's server processes need the others.
    pinning = _pin_to_one_core() if dsn is None else "not pinned (the server runs beside it)"
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="palmpay-bench-"))
    otp = DevOtpSender(keep=args.links + 10)
    options = PalmPayOptions(state_dir=state_dir, synchronous=args.synchronous, database_url=dsn,
                             pool_size=max(8, args.threads + 2))
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

    amounts = [Decimal("12.34"), Decimal("99.99"), Decimal("250.00"), Decimal("5.00")]
    signatures = _signed_scans(service, refs, amounts, args) if args.attested else None
    per_thread: list[list[float]] = [[] for _ in range(args.threads)]
    completed = [0] * args.threads
    barrier = threading.Barrier(args.threads + 1)

    def payer(worker: int) -> None:
        mine = refs[worker :: args.threads]  # own links: payers never queue on one link's row
        latencies = per_thread[worker]
        barrier.wait()
        for n in range(worker, args.payments, args.threads):
            ref, amount, terminal = mine[n % len(mine)], amounts[n % len(amounts)], f"T{n % 16}"
            attestation = signatures[(worker, n)] if signatures is not None else None
            t0 = time.perf_counter()
            result = service.pay(ref, amount, terminal, True, 0.99, attestation=attestation,
                                 require_attestation=attestation is not None)
            latencies.append(time.perf_counter() - t0)
            completed[worker] += result.status == "completed"

    threads = [threading.Thread(target=payer, args=(w,)) for w in range(args.threads)]
    for thread in threads:
        thread.start()
    cpu_started = time.process_time()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    service.close()

    latencies = sorted(x for part in per_thread for x in part)
    attested = ", attested scans" if args.attested else ""
    python = sys.version.split()[0]
    print(f"palm-pay benchmark ({pinning}, Python {python}, {engine}, {args.threads} payer(s){attested})")
    print(f"  setup: {args.links} links created + verified in {setup_s:.2f} s")
    print(f"  payments: {args.payments} ({sum(completed)} completed) in {elapsed:.2f} s")
    print(f"  throughput: {args.payments / elapsed:,.0f} payments/s (wall clock)")
    # CPU time of this process only: the figure other tenants of a shared core cannot skew (on PostgreSQL
    # the server's own CPU is not in it).
    print(f"  cpu-bound:  {args.payments / cpu:,.0f} payments/s per core of this process ({cpu:.2f} s CPU)")
    print(
        f"  latency: p50 {_percentile(latencies, 0.50) * 1e3:.3f} ms, p99 {_percentile(latencies, 0.99) * 1e3:.3f} ms,"
        f" p99.9 {_percentile(latencies, 0.999) * 1e3:.3f} ms, max {latencies[-1] * 1e3:.3f} ms,"
        f" mean {statistics.fmean(latencies) * 1e3:.3f} ms"
    )
    if dsn is None:
        db = options.database_path
        print(f"  database: {db} ({db.stat().st_size / 1e6:.1f} MB + WAL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
