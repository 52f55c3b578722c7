"""One contract every event source passes: the file, stdin (a pipe), the palm-pay table, NATS JetStream
(and, for resuming, several of them merged: `--source palm --source nats://...`).

- ordering: events come in arrival order, each call up to (not including) the first event at or after
  the requested end, the rest on later calls (exactly what a line-by-line reader of the file would do);
- bad records are counted like bad lines, never dropped in silence;
- sources that acknowledge (a log, a table cursor) resume after a kill with nothing the next window
  needs lost: at least once;
- `skip_to(ts, read_to)`: a restarted worker reads again what the dead one had read and keeps only the
  events of the windows still to decide, so none reaches a window twice.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from payops.signals.merged_source import MergedSource
from payops.signals.nats_publish import publish_file
from payops.signals.nats_source import NatsSource, open_nats, parse_nats_url
from payops.signals.palm_source import PalmSource
from payops.signals.simulator import Simulator, default_network, timed_scenario
from payops.signals.sources import LineSource, SimulatorSource, Source, open_jsonl

NATS = next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)

TIMES = [100.0, 112.0, 108.0, 125.0, 131.0, 160.0, 158.0, 175.0, 190.0, 230.0]
BAD = 2  # records that break CONTRACT §1


def _event(ts: float) -> dict[str, Any]:
    return {"ts": ts, "payment_id": f"p{ts}", "method": "card", "route": "psp a", "bank": "Société Générale",
            "issuer": "VISA", "status": "success", "error_code": None, "latency_ms": 200.0}


def _records() -> list[bytes]:
    lines = [orjson.dumps(_event(t)) for t in TIMES]
    lines.insert(3, orjson.dumps({"ts": 120.0, "route": "psp a"}))  # fields missing
    lines.insert(7, orjson.dumps({**_event(150.0), "status": "maybe"}))  # not a status
    return lines


class _Table:
    def __init__(self, lines: list[bytes]) -> None:
        self.rows = [(i + 1, orjson.loads(line)) for i, line in enumerate(lines)]

    def after(self, after_id: int, limit: int) -> list[tuple[int, dict]]:
        return [r for r in self.rows if r[0] > after_id][:3]  # three rows a read: several pages


@pytest.fixture()
def nats_server(tmp_path: Path):
    if NATS is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([NATS, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}/CONTRACT?subject=payments.contract&idle=0.5"
    proc.terminate()
    proc.wait(timeout=10)


Factory = Callable[[Path, Any], Any]


def _file(tmp_path: Path, _: Any) -> Any:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(_records()) + b"\n")
    return open_jsonl(path, workers=0)


def _pipe(tmp_path: Path, _: Any) -> Any:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"\n".join(_records()) + b"\n")
    os.close(write_fd)
    return LineSource(os.fdopen(read_fd, "rb"), "<pipe>")


def _palm(tmp_path: Path, _: Any) -> Any:
    return PalmSource(_Table(_records()).after, follow=False)


def _nats(tmp_path: Path, url: Any) -> Any:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(_records()) + b"\n")
    address = parse_nats_url(url, "contract")
    publish_file(address, path, address.subject, batch_bytes=300)
    return open_nats(url, "contract")


def _merged(tmp_path: Path, url: Any) -> Any:
    """The palm-pay table and a second log, merged by event time: the same records on each side."""
    second = _nats(tmp_path, url) if url is not None else _file(tmp_path, None)
    return MergedSource([_palm(tmp_path, None), second])


SOURCES = {"file": _file, "stdin": _pipe, "palm": _palm, "nats": _nats}
RESUMABLE = {**SOURCES, "merged": _merged, "merged-nats": _merged}


def _source_fixture(request: pytest.FixtureRequest, tmp_path: Path, table: dict[str, Factory]) -> Callable[[], Any]:
    wants_nats = request.param in ("nats", "merged-nats")
    url = request.getfixturevalue("nats_server") if wants_nats else None
    return lambda: table[request.param](tmp_path, url)


@pytest.fixture(params=sorted(SOURCES))
def make_source(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    return _source_fixture(request, tmp_path, SOURCES)


@pytest.fixture(params=sorted(RESUMABLE))
def make_resumable(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    return _source_fixture(request, tmp_path, RESUMABLE)


PROTOCOL = sorted({n for n in vars(Source) if not n.startswith("_")} | set(Source.__annotations__))


def test_every_source_implements_every_member_of_the_protocol(make_resumable) -> None:
    """The runner calls skip_to, position, commit, lag and close directly, never probing with getattr."""
    source = make_resumable()
    missing = [name for name in PROTOCOL if not hasattr(source, name)]
    assert not missing, f"{type(source).__name__} lacks {missing}"
    assert {"skip_to", "position", "commit", "lag", "close"} <= set(PROTOCOL)
    source.close()


def test_the_simulator_implements_the_protocol_with_no_ops_where_it_has_no_log() -> None:
    net = default_network(300.0)
    source = SimulatorSource(Simulator(timed_scenario("route_outage", net, 8.0), net, seed=7))
    assert not [name for name in PROTOCOL if not hasattr(source, name)]
    source.read_until(source.first_ts() + 60.0)
    assert source.position() is None and source.lag() is None
    source.commit(0.0)
    source.close()


def test_a_file_has_no_lag_and_records_no_position(tmp_path: Path) -> None:
    source = _file(tmp_path, None)
    source.read_until(130.0)
    assert source.lag() is None and source.position() is None
    source.commit(1e12)  # nothing to acknowledge: a no-op
    assert list(source.read_until(160.0).ts) == [131.0]
    source.close()


def test_events_come_in_arrival_order_up_to_the_first_one_at_or_after_the_end(make_source) -> None:
    source = make_source()
    assert source.first_ts() == 100.0
    assert list(source.read_until(130.0).ts) == [100.0, 112.0, 108.0, 125.0]
    assert list(source.read_until(160.0).ts) == [131.0]
    assert list(source.read_until(200.0).ts) == [160.0, 158.0, 175.0, 190.0]
    assert list(source.read_until(1e12).ts) == [230.0]
    assert source.exhausted
    source.close()


def test_an_event_stamped_far_ahead_is_counted_and_discarded_and_never_sets_or_stalls_the_clock(
        make_source, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _records()
    outlier = orjson.dumps(_event(1e12))
    monkeypatch.setattr(sys.modules[__name__], "_records", lambda: [outlier, *records[:6], outlier, *records[6:]])
    source = make_source()
    assert source.first_ts() == 100.0  # not 1e12, the first record's time
    assert list(source.read_until(130.0).ts) == [100.0, 112.0, 108.0, 125.0]
    assert source.report.ahead_of_clock == 1
    assert list(source.read_until(160.0).ts) == [131.0]
    assert list(source.read_until(200.0).ts) == [160.0, 158.0, 175.0, 190.0]  # the second one, met on the way
    assert source.report.ahead_of_clock == 2 and source.report.take_new_ahead() == 2
    assert list(source.read_until(300.0).ts) == [230.0] and source.exhausted
    source.close()


def test_bad_records_are_counted_like_bad_lines(make_source) -> None:
    source = make_source()
    source.read_until(1e12)
    assert source.report.bad_count == BAD
    assert source.report.accepted == len(TIMES)
    source.close()


def test_a_successor_resumes_with_nothing_the_next_window_needs_lost(make_source, tmp_path: Path) -> None:
    first = make_source()
    if not isinstance(first, (PalmSource, NatsSource)):
        pytest.skip("a file or pipe is re-read from its start: nothing to acknowledge")
    first.read_until(170.0)
    first.commit(140.0)  # the checkpointed tick's next window starts at 140
    if isinstance(first, PalmSource):
        successor = PalmSource(_Table(_records()).after, follow=False)
        successor.resume(first.saved_cursor, None)
    else:
        successor = open_nats(first.address.label.replace("?subject=", "?idle=0.5&subject="), "contract")
    got = list(successor.read_until(1e12).ts)
    assert {t for t in TIMES if t >= 140.0} <= set(got)  # at least once: nothing needed is lost
    assert len(got) == len(set(got))  # and nothing twice within the successor
    successor.close()
    first.close()


def test_skip_to_keeps_only_what_the_windows_still_to_decide_need_of_what_was_read_before(make_resumable) -> None:
    source = make_resumable()
    copies = len(getattr(source, "sources", [source]))  # a merged source: the same records on each side
    # The dead worker had decided up to 160 and read on to 170 (the allowed lateness); the next window
    # starts at 140. Of what it had read, 160 and 158 belong to windows still to decide: kept. The rest
    # of the log comes as it would have: 175 and 190 before 200, then 230.
    source.skip_to(140.0, 170.0)
    expected = [160.0, 158.0, 175.0, 190.0] if copies == 1 else sorted([160.0, 158.0, 175.0, 190.0] * copies)
    assert list(source.read_until(200.0).ts) == expected
    assert list(source.read_until(1e12).ts) == [230.0] * copies
    assert source.exhausted
    source.close()


def test_a_merged_source_passes_each_acknowledging_source_its_commit_and_sums_their_reports(tmp_path: Path) -> None:
    palm = _palm(tmp_path, None)
    source = MergedSource([palm, _file(tmp_path, None)])
    assert source.first_ts() == 100.0
    source.read_until(170.0)
    source.commit(140.0)
    assert 0 < palm.saved_cursor < len(_records())  # up to the rows no window from 140 on needs
    source.read_until(1e12)
    assert source.report.bad_count == 2 * BAD and source.report.accepted == 2 * len(TIMES)
    source.close()


def test_a_successor_after_skip_to_acknowledges_nothing_a_window_still_needs(tmp_path: Path) -> None:
    table = _Table(_records())
    source = PalmSource(table.after, follow=False)
    source.skip_to(140.0, 170.0)  # the kept events go back as a group of no position of its own
    source.read_until(200.0)
    assert source.commit(170.0) < [i for i, row in table.rows if row.get("ts") == 175.0][0]
    source.read_until(1e12)
    assert source.commit(1e12) == table.rows[-1][0]
    source.close()
