"""NATS JetStream source throughput: events/s read from the log (batched and one event per message), and tick latency.

Starts its own `nats-server -js` on a free port, publishes a simulated stream with `payops publish`'s code, and
reads it back through the agent's source; prints figures, asserts nothing (issue bar: >= 200 k events/s batched
on 2 cores).

    python scripts/bench_nats.py [--events 1000000] [--single 100000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from payops.signals.nats_publish import publish_file
from payops.signals.nats_source import open_nats, parse_nats_url
from payops.signals.simulator import Simulator, default_network, timed_scenario, write_stream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_events(path: Path, events: int) -> None:
    per_minute = 20_000.0
    minutes = max(2.0, events / per_minute / 1.0)
    net = default_network(per_minute)
    sim = Simulator(timed_scenario("route_outage", net, minutes), net, seed=11)
    with path.open("wb") as fh:
        write_stream(sim, sim.start_ts + minutes * 60.0, fh)


def read_all(url: str, partition: str) -> tuple[int, float, list[float]]:
    source = open_nats(url, partition)
    started = time.perf_counter()
    first = source.first_ts()
    count, end, tick_ms = 0, (first or 0.0) + 60.0, []
    while not source.exhausted:
        t0 = time.perf_counter()
        count += len(source.read_until(end))
        source.commit(end - 60.0)
        tick_ms.append((time.perf_counter() - t0) * 1000)
        end += 60.0
    seconds = time.perf_counter() - started - source.address.idle_seconds  # the final idle wait is not work
    source.close()
    return count, seconds, tick_ms


def agent_ticks(url: str, partition: str) -> list[float]:
    """Wall ms per full agent tick from the log: read, decide, checkpoint (in memory), acknowledge."""
    from payops.graph.runner import Agent
    from payops.graph.services import build_services
    from payops.settings import Settings

    source = open_nats(url, partition)
    services = build_services(Settings(deployment=partition, webhook_url=None), source=source, in_memory=True)
    agent = Agent(services)
    ms = []
    while True:
        t0 = time.perf_counter()
        agent.tick()
        ms.append((time.perf_counter() - t0) * 1000)
        if source.exhausted:
            break
    source.close()
    return sorted(ms[:-1]) or [0.0]  # the last tick waits out the idle time of a drained log


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--single", type=int, default=100_000, help="events for the one-event-per-message run")
    args = ap.parse_args()
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen([server, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", f"{tmp}/js"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            big = Path(tmp) / "big.jsonl"
            make_events(big, args.events)
            small = Path(tmp) / "small.jsonl"
            with big.open("rb") as src, small.open("wb") as dst:
                for i, line in enumerate(src):
                    if i >= args.single:
                        break
                    dst.write(line)
            for label, path, batch, subject in (("batched 64 KiB", big, 64 << 10, "payments.batched"),
                                                ("one event/message", small, 0, "payments.single")):
                url = f"nats://127.0.0.1:{port}/BENCH?subject={subject}&idle=0.5"
                address = parse_nats_url(url)
                pub = publish_file(address, path, subject, batch_bytes=batch)
                count, seconds, ticks = read_all(url, subject.split(".")[1])
                ticks.sort()
                print(f"{label:>18}: published {pub.lines:,} events in {pub.messages:,} messages at "
                      f"{pub.lines / pub.seconds:,.0f} events/s; read {count:,} at {count / seconds:,.0f} events/s; "
                      f"read per 60 s window p50 {ticks[len(ticks) // 2]:.1f} ms, max {ticks[-1]:.1f} ms")
            url = f"nats://127.0.0.1:{port}/BENCH?subject=payments.ticks&idle=0.5"
            address = parse_nats_url(url)
            publish_file(address, small, "payments.ticks", batch_bytes=64 << 10)
            ms = agent_ticks(url, "ticks")
            print(f"end-to-end agent tick from the log ({len(ms)} ticks of a {args.single:,}-event stream): "
                  f"p50 {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
