"""End-to-end `payops replay` throughput on a generated 1,000,000-event file.

    python scripts/bench_replay.py [--events 1000000] [--per-minute 100000] [--keep DIR]

Generates the file with the simulator into a temporary directory (never
committed), then times `payops replay FILE --out DECISIONS` as a subprocess
(interpreter start, imports, parsing, windows and every tick included) and,
for a breakdown, the same replay in this process with parsing on worker
processes (the default for big files) and in this process alone. Prints
figures; asserts nothing. Reports wall time and CPU time (this process and its
children): on a busy machine wall time says more about the neighbours.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = 1_764_000_000.0


def generate(path: Path, events: int, per_minute: float) -> tuple[int, float]:
    from payops.signals.simulator import Simulator, build_scenario, default_network, write_stream

    net = default_network(per_minute)
    minutes = events / (per_minute * 1.06)  # ~1.08 attempts per payment with the incident's retries
    sc = build_scenario("issuer_outage", net, lead_in=minutes * 20.0, duration=minutes * 30.0)
    sim = Simulator(sc, net, seed=1, start_ts=START)
    with path.open("wb") as out:
        n = write_stream(sim, START + minutes * 60.0, out)
    return n, minutes


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cli_replay(events: Path, out: Path) -> tuple[float, float, int]:
    payops = Path(sys.executable).with_name("payops")
    cmd = [str(payops)] if payops.exists() else [sys.executable, "-c", "from payops.cli import main; main()"]
    before = children_cpu()
    t = time.perf_counter()
    done = subprocess.run([*cmd, "replay", str(events), "--out", str(out)], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr.strip()}")
    return wall, children_cpu() - before, sum(1 for _ in out.open("rb"))


def in_process(events: Path, out: Path, parallel: bool) -> tuple[float, float, float]:
    from payops import wiring
    from payops.signals import sources

    saved = sources.PARALLEL_MIN_BYTES
    if not parallel:
        sources.PARALLEL_MIN_BYTES = 1 << 62
    try:
        c0, k0, t = time.process_time(), children_cpu(), time.perf_counter()
        for _ in wiring.replay(events, out, 60.0, 60.0):
            pass
        return time.perf_counter() - t, time.process_time() - c0, children_cpu() - k0
    finally:
        sources.PARALLEL_MIN_BYTES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-minute", type=float, default=100_000.0)
    parser.add_argument("--keep", type=Path, help="write the files here instead of a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        events, out = folder / "events.jsonl", folder / "decisions.jsonl"
        t = time.perf_counter()
        n, minutes = generate(events, args.events, args.per_minute)
        print(f"generated {n:,} events ({events.stat().st_size / 2**20:.0f} MB, {minutes:.1f} min at "
              f"{args.per_minute:,.0f} payments/min) in {time.perf_counter() - t:.1f} s")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        wall, cpu, ticks = cli_replay(events, out)
        reference = out.read_bytes()
        print(f"payops replay (subprocess, end to end): {ticks} decisions; wall {wall:.2f} s -> {n / wall / 1e3:,.0f} k events/s; "
              f"CPU {cpu:.2f} s (process + parse workers)")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import payops.cli, payops.wiring"], check=True)
        print(f"  of which starting python and importing payops + langgraph: {time.perf_counter() - t:.2f} s wall")
        for parallel in (True, False):
            wall, cpu, kids = in_process(events, out, parallel)
            label = "parse on worker processes" if parallel else "parse in this process"
            same = "identical output" if out.read_bytes() == reference else "OUTPUT DIFFERS"
            print(f"  in process, {label}: wall {wall:.2f} s -> {n / wall / 1e3:,.0f} k events/s; CPU {cpu:.2f} s here"
                  + (f" + {kids:.2f} s in workers" if parallel else f" -> {n / cpu / 1e3:,.0f} k events/s per core")
                  + f"; {same}")


if __name__ == "__main__":
    main()
