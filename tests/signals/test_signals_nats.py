"""The NATS JetStream source against a real `nats-server -js` (Debian package nats-server; skipped where missing).

Decisions from the log must equal `payops replay`'s over the same file, and a worker killed mid-stream
must hand over to its successor with no event lost and none counted twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import orjson
import pytest

from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.render import decision_json
from payops.settings import Settings
from payops.signals.nats_publish import publish_file
from payops.signals.nats_source import BATCH_HEADER, NatsSource, open_nats, parse_nats_url
from payops.signals.simulator import Simulator, default_network, timed_scenario, write_stream
from payops.signals.sources import SourceError
from payops.tools.control_plane import SimulatedControlPlane
from payops.wiring import replay

NATS = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
pytestmark = pytest.mark.skipif(NATS is None, reason="nats-server is not installed (apt-get install nats-server)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def nats_url(tmp_path: Path):
    port = _free_port()
    proc = subprocess.Popen([NATS, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.skip("nats-server did not start")
    yield f"nats://127.0.0.1:{port}/PAYMENTS?subject=payments.replay&idle=0.5"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def incident_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nats") / "route_outage.jsonl"
    net = default_network(300.0)
    sim = Simulator(timed_scenario("route_outage", net, 8.0), net, seed=7)
    with path.open("wb") as fh:
        write_stream(sim, sim.start_ts + 8 * 60.0, fh)
    with path.open("ab") as fh:  # a bad line travels through the log like a bad line of a file
        fh.write(b"{not json\n")
    return path


def _replayed(path: Path, tmp_path: Path, source=None) -> list[bytes]:
    out = tmp_path / ("log.jsonl" if source is not None else "file.jsonl")
    return [decision_json(state) for state in replay(path, out, 60.0, 60.0, source=source)]


@pytest.mark.parametrize("batch_bytes", [0, 16 << 10])
def test_decisions_from_the_log_equal_replay_of_the_same_file(nats_url: str, incident_file: Path, tmp_path: Path,
                                                               batch_bytes: int) -> None:
    address = parse_nats_url(nats_url, "replay")
    published = publish_file(address, incident_file, address.subject, batch_bytes=batch_bytes)
    assert published.lines == sum(1 for line in incident_file.open("rb") if line.strip())
    expected = _replayed(incident_file, tmp_path)
    source = open_nats(nats_url, "replay")
    got = _replayed(incident_file, tmp_path, source=source)
    assert got == expected
    assert any(b'"reroute_traffic"' in line for line in got)  # the incident was seen, not just healthy ticks
    assert source.report.bad_count == 1


def _durable_agent(state_dir: Path, nats_url: str) -> tuple[Agent, NatsSource]:
    settings = Settings(state_dir=state_dir, deployment="replay", window_seconds=60.0, tick_seconds=60.0,
                        webhook_url=None)
    source = open_nats(nats_url, settings.deployment)
    services = build_services(settings, source=source, control_plane=SimulatedControlPlane())
    agent = Agent.durable(services)
    agent.resume_source()  # as `payops run` does: from the position the last checkpoint recorded
    return agent, source


def test_a_killed_worker_hands_over_with_no_event_lost_and_none_counted_twice(nats_url: str, incident_file: Path,
                                                                              tmp_path: Path) -> None:
    address = parse_nats_url(nats_url, "replay")
    publish_file(address, incident_file, address.subject, batch_bytes=4 << 10)
    expected = [line for line in _replayed(incident_file, tmp_path)]

    first, first_source = _durable_agent(tmp_path / "state", nats_url)
    got = []
    for _ in range(4):
        got.append(decision_json(first.tick().state))
    first_source.read_until(float("inf"))  # fetched ahead but never acknowledged: the worker dies here
    assert first_source.acked_seq < first_source._max_seq

    second, second_source = _durable_agent(tmp_path / "state", nats_url)
    assert second_source.acked_seq == first_source.acked_seq  # the successor starts at the ack floor
    while True:
        result = second.tick()
        got.append(decision_json(result.state))
        if second_source.exhausted:
            break
    second_source.close()
    first_source.close()

    def core(line: bytes) -> tuple:
        import orjson

        d = orjson.loads(line)
        return d["window_end"], d["category"], d["action"]["tool"], d["action"]["target"], d["executed"]

    assert [core(x) for x in got] == [core(x) for x in expected]
    assert second_source.duplicates > 0  # what the first worker had counted came again, and was dropped
    # The figures each window's evidence quotes (failures out of attempts, shares, latency) are replay's:
    # nothing lost, nothing counted twice. (The plane differs: simulated here, shadow in replay.)
    evidence = [orjson.loads(x)["action"]["args"].get("evidence") for x in got]
    assert evidence == [orjson.loads(x)["action"]["args"].get("evidence") for x in expected]


def test_a_bad_address_or_a_missing_stream_is_one_line(nats_url: str) -> None:
    with pytest.raises(SourceError, match="names its stream"):
        parse_nats_url("nats://127.0.0.1:4222/?subject=x")
    with pytest.raises(SourceError, match="no NATS stream NOPE"):
        open_nats(nats_url.replace("/PAYMENTS", "/NOPE"))
    with pytest.raises(SourceError, match="cannot read NATS stream"):
        open_nats("nats://127.0.0.1:1/PAYMENTS")


def test_an_unreachable_server_is_one_line_with_no_client_traceback(capfd) -> None:
    with pytest.raises(SourceError, match="cannot read NATS stream"):
        open_nats("nats://127.0.0.1:1/PAYMENTS")
    assert "Traceback" not in capfd.readouterr().err


def test_a_server_lost_mid_run_is_a_source_error_not_a_traceback(tmp_path: Path, incident_file: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([NATS, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"nats://127.0.0.1:{port}/PAYMENTS?subject=payments.replay&idle=0.5"
        address = parse_nats_url(url, "replay")
        publish_file(address, incident_file, address.subject, batch_bytes=1 << 10)
        source = open_nats(url, "replay")
        first = source.first_ts()
        source.read_until(first + 60.0)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    with pytest.raises(SourceError, match="NATS stream PAYMENTS"):
        source.read_until(float("inf"))
        source.commit(float("inf"))
    source.close()


def _worker(state_dir: Path, nats_url: str) -> subprocess.Popen:
    """`payops run` from the log, as a deployment's worker process: its own interpreter, its own state."""
    env = {**os.environ, "PAYOPS_STATE_DIR": str(state_dir), "PAYOPS_DEPLOYMENT": "replay",
           "PAYOPS_WINDOW_SECONDS": "60", "PAYOPS_TICK_SECONDS": "60"}
    env.pop("PAYOPS_WEBHOOK_URL", None)
    env.pop("PAYOPS_DATABASE_URL", None)
    env.pop("PAYOPS_ORCHESTRATOR_URL", None)
    return subprocess.Popen([sys.executable, "-c", "from payops.cli import main; main()", "run", "--source", nats_url,
                             "--tick-seconds", "0.3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _decided(state_dir: Path) -> list[tuple[str, float, int, dict]]:
    """(decision id, window end, revision, record) of every decision record in the worker's audit trail."""
    path = state_dir / "audit.db"
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            rows = conn.execute("SELECT decision_id, at, revision, record FROM audit_log WHERE kind = 'decision' "
                                "ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
    return [(d, float(at), int(rev), orjson.loads(rec)) for d, at, rev, rec in rows]


def test_a_worker_process_killed_with_sigkill_mid_stream_hands_over_with_no_event_lost_or_decision_twice(
        nats_url: str, incident_file: Path, tmp_path: Path) -> None:
    address = parse_nats_url(nats_url, "replay")
    publish_file(address, incident_file, address.subject, batch_bytes=4 << 10)
    expected = {float(s["window_end"]): s for s in replay(incident_file, tmp_path / "file.jsonl", 60.0, 60.0)}
    state_dir = tmp_path / "state"

    first = _worker(state_dir, nats_url)
    deadline = time.monotonic() + 120
    while len(_decided(state_dir)) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.stdout.read().decode()[-2000:]  # still mid-stream: 3 of 9 windows decided
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    before = {d for d, *_ in _decided(state_dir)}
    assert 3 <= len(before) < len(expected)

    second = _worker(state_dir, nats_url)
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out.decode()[-2000:]
    assert b"the source is exhausted" in out

    records = _decided(state_dir)
    latest = {d: (end, rec) for d, end, _, rec in records}  # the latest revision of each decision
    ends = sorted(end for end, _ in latest.values())
    assert ends == sorted(expected)  # every window decided, none twice (one decision id per window)
    for end, record in latest.values():
        want = expected[end]
        assert record["decision_id"] == want["decision_id"]
        assert record["diagnosis"]["category"] == want["diagnosis"]["category"]
        assert (record["proposal"]["tool"], record["proposal"]["target"]) == (want["proposal"]["tool"],
                                                                              want["proposal"]["target"])
        assert record["execution"]["status"] == want["execution"]["status"]
        # No event lost and none counted twice: the window saw exactly what replay's saw, late ones included.
        # Bad lines are counted when a read parses them, and a log's reads are not a file's chunks: which
        # window reports the bad last line depends on the read, so it is compared over the run below.
        # The top errors are cut at a count: among tied counts, which code is named follows the order a
        # process first met the codes in, and a successor meets them afresh. Their counts must match.
        got, wanted = {**record["snapshot"], "bad_lines": 0}, {**want["snapshot"], "bad_lines": 0}
        assert sorted(got.pop("top_errors").values()) == sorted(wanted.pop("top_errors").values()), end
        assert got == wanted, end
    # The bad line was reported once: a redelivered message the dead worker had read is not parsed for
    # bad lines again (its position is in the checkpoint).
    assert sum(rec["snapshot"]["bad_lines"] for _, rec in latest.values()) == 1
    # The successor was handed again what the dead worker had counted (unacknowledged: a window still held
    # it) and dropped it as duplicates, reported with the decision.
    assert any((rec.get("source") or {}).get("duplicates") for _, rec in latest.values())
    # ... and shown in the worker's cycle output, never dropped in silence.
    assert b"Redeliveries dropped: " in out and b"were counted before the restart" in out


# -- redeliveries after a restart, deduplicated by stream sequence ------------------------------------------

DEDUPE_TIMES = [100.0, 112.0, 108.0, 125.0, 131.0, 160.0, 158.0, 175.0, 190.0, 230.0]


def _publish_times(nats_url: str, tmp_path: Path, batch_bytes: int) -> None:
    lines = [orjson.dumps({"ts": t, "payment_id": f"p{t}", "method": "card", "route": "psp_a", "bank": "FNB",
                           "issuer": "VISA", "status": "success", "error_code": None, "latency_ms": 200.0})
             for t in DEDUPE_TIMES]
    lines.insert(4, b"{not json")  # a bad line among what the dead worker read
    path = tmp_path / "times.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    address = parse_nats_url(nats_url, "replay")
    publish_file(address, path, address.subject, batch_bytes=batch_bytes)


def _dead_worker_position(nats_url: str) -> dict:
    """A worker that decided the window ending at 160 (read on to 170, the allowed lateness), checkpointed
    what it had read, read on for the next window and died: nothing acknowledged past what the windows needed."""
    dead = open_nats(nats_url, "replay")
    assert dead.first_ts() == 100.0
    assert list(dead.read_until(170.0).ts) == [100.0, 112.0, 108.0, 125.0, 131.0, 160.0, 158.0]
    position = dead.position()  # what the tick's checkpoint records
    dead.commit(160.0)
    assert list(dead.read_until(230.0).ts) == [175.0, 190.0]  # the next tick's read: never checkpointed
    assert dead.report.bad_count == 1
    dead.close()
    return position


@pytest.mark.parametrize("batch_bytes", [0, 1 << 20], ids=["one-event-per-message", "one-batch-message"])
def test_a_redelivered_message_already_counted_is_dropped_as_a_duplicate_after_a_restart(
        nats_url: str, tmp_path: Path, batch_bytes: int) -> None:
    _publish_times(nats_url, tmp_path, batch_bytes)
    position = _dead_worker_position(nats_url)
    successor = open_nats(nats_url, "replay")
    successor.skip_to(160.0, 170.0, position=position)
    # 160 sat in the window still open at the kill (read within the allowed lateness): counted once, now.
    # 175 and 190 the dead worker read in a tick it never checkpointed: counted, once. 158, late but in
    # time for the window ending at 160, was counted there, and is not again; nor is anything before it.
    assert list(successor.read_until(230.0).ts) == [160.0, 175.0, 190.0]
    assert list(successor.read_until(1e12).ts) == [230.0]
    assert successor.duplicates >= 1  # per message: eight single-event ones, or the one batch cut at 175
    assert successor.report.bad_count == 0  # the bad line was reported by the dead worker: not again
    successor.close()


def test_a_batch_cut_by_the_window_is_counted_in_part_by_the_dead_worker_and_the_rest_by_its_successor(
        nats_url: str, tmp_path: Path) -> None:
    _publish_times(nats_url, tmp_path, 1 << 20)
    position = _dead_worker_position(nats_url)
    assert position["handed"] == [1, 7]  # the one message, its first 7 events handed out to the window
    successor = open_nats(nats_url, "replay")
    successor.skip_to(160.0, 170.0, position=position)
    got = list(successor.read_until(1e12).ts)
    assert got == [160.0, 175.0, 190.0, 230.0]
    assert successor.duplicates == 1
    successor.close()


def test_batches_holding_blank_lines_resume_at_the_right_cut(nats_url: str, tmp_path: Path) -> None:
    """Another producer's batches may hold blank lines: skipped, not bad, and not events either. A message's
    events are then fewer than its lines, and the position must count events, or the successor's cut
    lands elsewhere and events are lost or counted twice."""
    import asyncio

    import nats

    address = parse_nats_url(nats_url, "replay")
    event = {"payment_id": "p", "method": "card", "route": "psp_a", "bank": "FNB", "issuer": "VISA",
             "status": "success", "error_code": None, "latency_ms": 200.0}
    groups = [DEDUPE_TIMES[:3], DEDUPE_TIMES[3:7], DEDUPE_TIMES[7:]]
    payloads = [b"\n\n".join(orjson.dumps({**event, "ts": t, "payment_id": f"p{t}"}) for t in g) + b"\n\n"
                for g in groups]

    async def publish() -> None:
        nc = await nats.connect(address.servers)
        js = nc.jetstream()
        await js.add_stream(name=address.stream, subjects=[address.subject.split(".")[0] + ".>"])
        for payload, g in zip(payloads, groups, strict=True):
            await js.publish(address.subject, payload, headers={BATCH_HEADER: str(len(g))})
        await nc.close()

    asyncio.run(publish())
    dead = open_nats(nats_url, "replay")
    assert list(dead.read_until(170.0).ts) == [100.0, 112.0, 108.0, 125.0, 131.0, 160.0, 158.0]
    position = dead.position()
    dead.commit(160.0)
    dead.close()
    successor = open_nats(nats_url, "replay")
    successor.skip_to(160.0, 170.0, position=position)
    assert list(successor.read_until(1e12).ts) == [160.0, 175.0, 190.0, 230.0]
    assert successor.report.bad_count == 0
    successor.close()


def test_without_a_recorded_position_the_successor_resumes_by_time_and_reports_the_bad_line_again(
        nats_url: str, tmp_path: Path) -> None:
    """A checkpoint written before positions were recorded: events still come once, by event time."""
    _publish_times(nats_url, tmp_path, 0)
    _dead_worker_position(nats_url)
    successor = open_nats(nats_url, "replay")
    successor.skip_to(160.0, 170.0)
    assert list(successor.read_until(230.0).ts) == [160.0, 175.0, 190.0]
    assert successor.duplicates == 0 and successor.report.bad_count == 1
    successor.close()


def test_a_successor_that_dies_too_records_the_cut_inside_the_batch_its_predecessor_left(
        nats_url: str, tmp_path: Path) -> None:
    _publish_times(nats_url, tmp_path, 1 << 20)
    position = _dead_worker_position(nats_url)
    second = open_nats(nats_url, "replay")
    second.skip_to(160.0, 170.0, position=position)
    assert list(second.read_until(200.0).ts) == [160.0, 175.0, 190.0]
    assert second.position()["handed"] == [1, 9]  # 7 handed out by the first worker, 2 new ones by this one
    second.close()
