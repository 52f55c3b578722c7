"""End-to-end `payops replay` throughput on a generated 1,000,000-event file, and its memory.

    python scripts/bench_replay.py [--events 1000000] [--per-minute 100000] [--keep DIR]
    python scripts/bench_replay.py --memory 1000000,4000000 [--memory-per-minute 600]

`--memory` replays files of those many lines at a low rate (many ticks: 600 payments/min
is ~1,570 ticks per million lines) and prints each replay's peak RSS, which must not
grow with run length (issue 16: it grew ~47 KB per tick); nothing else is run.

Generates the file with the simulator into a temporary directory (never
committed), then times `payops replay FILE --out DECISIONS` as a subprocess
(interpreter start, imports, parsing, windows and every tick included) and,
for a breakdown, the same replay in this process with parsing on worker
processes (the default for big files) and in this process alone. Prints
figures; asserts nothing. Reports wall time, and CPU time as the whole
machine's busy time during the run (from /proc/stat; the parse workers are
children of multiprocessing's fork server, which resource usage of children
does not see): it includes any other load, so the script waits for an idle
machine first (up to --wait seconds) and says when it did not get one.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = 1_764_000_000.0
TARGET_EVENTS_PER_S = 500_000  # issue #3 §6


def generate(path: Path, events: int, per_minute: float) -> tuple[int, float]:
    from payops.signals.simulator import Simulator, build_scenario, default_network, write_stream

    net = default_network(per_minute)
    minutes = events / (per_minute * 1.06)  # ~1.08 attempts per payment with the incident's retries
    sc = build_scenario("issuer_outage", net, lead_in=minutes * 20.0, duration=minutes * 30.0)
    sim = Simulator(sc, net, seed=1, start_ts=START)
    with path.open("wb") as out:
        n = write_stream(sim, START + minutes * 60.0, out)
    return n, minutes


def machine_cpu() -> float:
    """Seconds of CPU the whole machine has been busy (all cores), or NaN where /proc/stat is missing."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def wait_for_idle(limit: float) -> bool:
    """Wait (up to `limit` s) for a second in which the machine is almost idle; False if none came."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_cpu()
        if math.isnan(before):
            return True  # cannot tell
        time.sleep(1.0)
        idle = machine_cpu() - before < 0.05  # less than 5% of one core busy
        if idle or time.monotonic() > deadline:
            return idle


def cli_replay(events: Path, out: Path) -> tuple[float, float, int]:
    payops = Path(sys.executable).with_name("payops")
    cmd = [str(payops)] if payops.exists() else [sys.executable, "-c", "from payops.cli import main; main()"]
    cpu, t = machine_cpu(), time.perf_counter()
    done = subprocess.run([*cmd, "replay", str(events), "--out", str(out)], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr.strip()}")
    return wall, machine_cpu() - cpu, sum(1 for _ in out.open("rb"))


def peak_rss_replay(events: Path, out: Path) -> tuple[float, float, int]:
    """(peak RSS in MB of the `payops replay` process, wall seconds, decisions)."""
    payops = Path(sys.executable).with_name("payops")
    cmd = [str(payops)] if payops.exists() else [sys.executable, "-c", "from payops.cli import main; main()"]
    t = time.perf_counter()
    proc = subprocess.Popen([*cmd, "replay", str(events), "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"replay failed: {proc.stderr.read().decode().strip() if proc.stderr else ''}")
    return usage.ru_maxrss / 1024, wall, sum(1 for _ in out.open("rb"))


def memory(sizes: list[int], per_minute: float, folder: Path) -> None:
    peaks = []
    for lines in sizes:
        events, out = folder / f"events-{lines}.jsonl", folder / f"decisions-{lines}.jsonl"
        t = time.perf_counter()
        n, minutes = generate(events, lines, per_minute)
        print(f"generated {n:,} events ({events.stat().st_size / 2**20:.0f} MB, {minutes:,.0f} min at "
              f"{per_minute:,.0f}/min) in {time.perf_counter() - t:.1f} s")
        peak, wall, ticks = peak_rss_replay(events, out)
        peaks.append(peak)
        print(f"  payops replay: {ticks:,} decisions in {wall:.1f} s; peak RSS {peak:.0f} MB "
              f"({peak * 1024 / ticks:.1f} KB per decision)")
        events.unlink()
    if len(peaks) > 1:
        print(f"peak RSS {' / '.join(f'{p:.0f}' for p in peaks)} MB: the largest is {max(peaks) / min(peaks) - 1:+.1%} "
              f"over the smallest (goal: within 10%)")


def in_process(events: Path, out: Path, parallel: bool) -> tuple[float, float, float]:
    from payops import wiring
    from payops.signals import sources

    saved = sources.PARALLEL_MIN_BYTES
    if not parallel:
        sources.PARALLEL_MIN_BYTES = 1 << 62
    try:
        c0, m0, t = time.process_time(), machine_cpu(), time.perf_counter()
        for _ in wiring.replay(events, out, 60.0, 60.0):
            pass
        return time.perf_counter() - t, time.process_time() - c0, machine_cpu() - m0
    finally:
        sources.PARALLEL_MIN_BYTES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-minute", type=float, default=100_000.0)
    parser.add_argument("--keep", type=Path, help="write the files here instead of a temporary directory")
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs (the median is reported)")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for an idle machine before each run")
    parser.add_argument("--memory",
                        help="comma-separated line counts: peak RSS of a replay of each (e.g. 1000000,4000000)")
    parser.add_argument("--memory-per-minute", type=float, default=600.0, help="payments/min of the --memory files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.memory:
            memory([int(v) for v in args.memory.split(",")], args.memory_per_minute, folder)
            return
        events, out = folder / "events.jsonl", folder / "decisions.jsonl"
        t = time.perf_counter()
        n, minutes = generate(events, args.events, args.per_minute)
        print(f"generated {n:,} events ({events.stat().st_size / 2**20:.0f} MB, {minutes:.1f} min at "
              f"{args.per_minute:,.0f} payments/min) in {time.perf_counter() - t:.1f} s")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        runs = []
        for run in range(args.runs):
            idle = wait_for_idle(args.wait)
            wall, cpu, ticks = cli_replay(events, out)
            runs.append((wall, cpu))
            print(f"payops replay (subprocess, end to end) run {run + 1}: {ticks} decisions; wall {wall:.2f} s -> "
                  f"{n / wall / 1e3:,.0f} k events/s; machine CPU {cpu:.2f} s"
                  + ("" if idle else " (machine was busy before the run)"))
        reference = out.read_bytes()
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        print(f"  median of {len(runs)}: wall {wall:.2f} s -> {n / wall / 1e3:,.0f} k events/s = "
              f"{n / wall / TARGET_EVENTS_PER_S:.2f} x the {TARGET_EVENTS_PER_S / 1e3:,.0f} k target; "
              f"machine CPU {cpu:.2f} s -> {n / cpu / 1e3:,.0f} k events per CPU-second")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import payops.cli, payops.wiring"], check=True)
        print(f"  of which starting python and importing payops + langgraph: {time.perf_counter() - t:.2f} s wall")
        for parallel in (True, False):
            wait_for_idle(args.wait)
            wall, cpu, machine = in_process(events, out, parallel)
            label = "parse on worker processes" if parallel else "parse in this process"
            same = "identical output" if out.read_bytes() == reference else "OUTPUT DIFFERS"
            print(f"  in process, {label}: wall {wall:.2f} s -> {n / wall / 1e3:,.0f} k events/s; CPU {cpu:.2f} s here"
                  + (f", {machine:.2f} s machine-wide (workers included)" if parallel
                     else f" -> {n / cpu / 1e3:,.0f} k events/s per core")
                  + f"; {same}")


if __name__ == "__main__":
    main()
