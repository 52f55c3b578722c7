"""Signals benchmarks: window aggregation speed (vs a naive per-event-dict recount) and window memory.

    python scripts/bench_signals.py [--per-minute 100000] [--repeat 7]

Prints figures; asserts nothing. Timings are CPU time of this process
(time.process_time) next to wall time: on a shared machine the CPU figure is
the one that says what one core does. numpy's bincount uses no BLAS, so the
OPENBLAS_* variables some machines set (see the environment notes) do not
matter here; they are printed anyway. Pinned to one core where possible.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

from payops.signals.batch import EventBatch
from payops.signals.reference import naive_window
from payops.signals.simulator import Simulator, build_scenario, default_network, random_network, with_volume
from payops.signals.window import EventWindow

START = 1_764_000_000.0


def pin_one_core() -> str:
    try:
        core = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    except (AttributeError, OSError):
        return "not pinned"


def window_of(net, seconds: float, scenario: str = "issuer_outage", seed: int = 1) -> tuple[EventBatch, float]:
    """`seconds` of events with an incident under way, sorted, ending at the returned time."""
    sc = build_scenario(scenario, net, lead_in=0.0, duration=seconds + 60.0)
    sim = Simulator(sc, net, seed=seed, start_ts=START)
    batch = sim.advance_sorted(START + seconds)
    return batch, START + seconds


def timed(fn, repeat: int) -> tuple[float, float]:
    """(median CPU seconds, median wall seconds) over `repeat` runs."""
    cpu, wall = [], []
    for _ in range(repeat):
        gc.collect()
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def bench_aggregation(label: str, net, seconds: float, repeat: int, naive_limit: int) -> None:
    batch, end = window_of(net, seconds)
    n = len(batch)
    w = EventWindow(seconds)
    w.add(batch)
    snap = w.snapshot(end, learn=False)
    cpu, wall = timed(lambda: w.snapshot(end, learn=False), repeat)
    print(f"  {label}: {n:,} events in the window, {len(snap.segments):,} segments "
          f"({len(w.table):,} combinations)")
    print(f"    columnar snapshot (all segments + baselines + SegmentStats objects): "
          f"{cpu * 1e3:.2f} ms CPU -> {n / cpu / 1e6:.1f} M events/s (wall {n / wall / 1e6:.1f} M/s)")
    add_cpu, _ = timed(lambda: EventWindow(seconds).add(batch), repeat)
    print(f"    ingest of the columnar batch into the window: {n / add_cpu / 1e6:.1f} M events/s")
    sample = batch.take(slice(0, min(n, naive_limit)))
    dicts = [ev.to_json() for ev in sample.to_events()]
    naive_cpu, _ = timed(lambda: naive_window(dicts, end - seconds, end), max(1, repeat // 3))
    naive_rate = len(dicts) / naive_cpu
    print(f"    naive per-event dicts (signals/reference.py) over {len(dicts):,} events: "
          f"{naive_rate / 1e3:.0f} k events/s -> columnar is {n / cpu / naive_rate:.0f}x faster")


def bench_memory(per_minute: float, minutes: float, tick: float) -> None:
    net = with_volume(default_network(), per_minute)
    sim = Simulator(build_scenario("route_outage", net, lead_in=60.0, duration=600.0), net, seed=2, start_ts=START)
    steps = int(minutes * 60 / tick)
    batches = [sim.advance_sorted(START + tick * (i + 1)) for i in range(steps)]  # generated before tracing
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    w = EventWindow(60.0)
    for i, batch in enumerate(batches):
        w.add(batch)
        w.snapshot(START + tick * (i + 1))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    live = len(w)
    print(f"  60 s window at {per_minute:,.0f} payments/min, {tick:g} s ticks over {minutes:g} min: "
          f"{live:,} events live in the window")
    print(f"    retained by the window: {(current - base) / 2**20:.1f} MB (ring columns "
          f"{w.ring.nbytes / 2**20:.1f} MB, {len(w.table):,} combinations); peak while ingesting and aggregating: "
          f"{(peak - base) / 2**20:.1f} MB (tracemalloc)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-minute", type=float, default=100_000.0)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--naive-limit", type=int, default=100_000, help="events the naive recount is timed on")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {pin_one_core()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    print("(a) window aggregation over the full segment set")
    pm = args.per_minute
    bench_aggregation(f"default network, 60 s window at {pm:,.0f}/min", with_volume(default_network(), pm), 60.0,
                      args.repeat, args.naive_limit)
    bench_aggregation(f"default network, 600 s window at {pm:,.0f}/min", with_volume(default_network(), pm), 600.0,
                      max(3, args.repeat // 3), args.naive_limit)
    big = random_network(7, banks=30, card_routes=6, terminals=200, merchants=300, regions=9, payments_per_minute=pm)
    bench_aggregation(
        f"large network (30 banks, 8 routes, 200 terminals, 300 merchants, 9 regions), 60 s at {pm:,.0f}/min",
        big,
        60.0,
        args.repeat,
        args.naive_limit,
    )
    print("(c) memory")
    bench_memory(pm, 3.0, 5.0)


if __name__ == "__main__":
    main()
