"""Parse workers of a big replay: started before the agent's imports, bounded, same results as parsing in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import orjson
import pytest

from payops import wiring
from payops.signals import parse_pool, sources
from payops.signals.handoff import ColumnFile, hand_over, take_over
from payops.signals.parse_pool import ParallelChunks
from payops.signals.simulator import Simulator, build_scenario, default_network, write_stream
from payops.signals.sources import open_jsonl

START = 1_764_000_000.0
HEAVY = ("langgraph", "langchain_core", "langsmith")


def _events_file(path: Path, bad_lines: dict[int, bytes]) -> Path:
    """A simulated issuer outage (~6 minutes at 600 payments/min) with some lines replaced by bad ones."""
    net = default_network(600)
    sim = Simulator(build_scenario("issuer_outage", net, lead_in=120.0, duration=240.0), net, seed=4, start_ts=START)
    with path.open("wb") as out:
        write_stream(sim, START + 360.0, out)
    lines = path.read_bytes().split(b"\n")
    for line_no, text in bad_lines.items():
        lines[line_no - 1] = text
    path.write_bytes(b"\n".join(lines))
    return path


BAD = {7: b"not json", 1500: b'{"ts": 1764000100.0, "status": "maybe"}', 2222: b"{"}

# Runs `payops replay` in a fresh interpreter with every file parsed by workers in
# 64 KB chunks, noting which heavy packages are loaded when the workers start.
CLI_WITH_SPY = """
import json, sys
from payops.signals import parse_pool, sources
sources.PARALLEL_MIN_BYTES = 0
parse_pool.PARALLEL_CHUNK_BYTES = 64 << 10
seen = []
start = parse_pool.ParallelChunks.__init__
def spy(self, *args, **kwargs):
    seen.append(sorted(name for name in {heavy!r} if name in sys.modules))
    start(self, *args, **kwargs)
parse_pool.ParallelChunks.__init__ = spy
from payops.cli import main
sys.argv = ["payops", "replay", sys.argv[1], "--out", sys.argv[2]]
try:
    main()
except SystemExit as exc:
    code = exc.code
import gc
print(json.dumps({{"seen": seen, "code": code, "heavy_at_end": sorted(n for n in {heavy!r} if n in sys.modules),
                  "frozen": gc.get_freeze_count()}}))
"""


def test_replay_command_starts_parse_workers_before_importing_the_agent_and_decides_the_same(tmp_path: Path) -> None:
    from payops import wiring

    events = _events_file(tmp_path / "events.jsonl", BAD)
    out = tmp_path / "cli.jsonl"
    proc = subprocess.run([sys.executable, "-c", CLI_WITH_SPY.format(heavy=HEAVY), str(events), str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["code"] in (0, None), proc.stderr
    assert facts["seen"] == [[]]  # one pool, started while none of the agent's stack was loaded
    assert set(facts["heavy_at_end"]) >= {"langgraph"}  # ...which the replay then did load
    assert facts["frozen"] > 10_000  # a one-shot process freezes its heap for a quick exit

    # The same decisions as a replay parsing in this process, and the same bad lines reported.
    stats: dict = {}
    reference = tmp_path / "serial.jsonl"
    decisions = list(wiring.replay(events, reference, 60.0, 60.0, stats, source=open_jsonl(events, workers=0)))
    assert len(decisions) >= 5
    assert out.read_bytes() == reference.read_bytes()
    report = stats["report"]
    assert [b.line_no for b in report.bad] == sorted(BAD)
    assert f"skipped {len(BAD)} malformed event line(s); first at line 7: not valid JSON" in proc.stderr


def _read_all(source: sources.LineSource) -> sources.EventBatch:
    batch = source.read_until(float("inf"))
    assert source.exhausted
    return batch


def test_workers_run_a_bounded_number_of_chunks_ahead_and_clean_up(tmp_path: Path) -> None:
    events = _events_file(tmp_path / "events.jsonl", BAD)
    size = events.stat().st_size
    chunks = ParallelChunks(str(events), size, workers=1, chunk_bytes=16 << 10, ahead_bytes=48 << 10)
    chunks._started()
    assert len(chunks._inflight) == 3 < size // (16 << 10)  # 48 KB ahead of the reader, not the whole file
    handoff = Path(chunks._handoff_dir)
    assert handoff.is_dir()

    parallel = sources.LineSource(events.open("rb"), str(events), workers=chunks)
    serial = open_jsonl(events, workers=0)
    a, b = _read_all(serial), _read_all(parallel)
    assert a.ts.tolist() == b.ts.tolist() and a.latency_ms.tolist() == b.latency_ms.tolist()
    assert a.attempt.tolist() == b.attempt.tolist()
    assert [a.combos[i] for i in a.combo.tolist()] == [b.combos[i] for i in b.combo.tolist()]
    assert [(x.line_no, x.reason) for x in serial.report.bad] == [(x.line_no, x.reason) for x in parallel.report.bad]
    assert (serial.report.lines, serial.report.accepted) == (parallel.report.lines, parallel.report.accepted)
    assert not handoff.exists()  # closed at the end of the file, with its directory


def test_closing_early_stops_the_workers_and_removes_unread_columns(tmp_path: Path) -> None:
    events = _events_file(tmp_path / "events.jsonl", {})
    chunks = ParallelChunks(str(events), events.stat().st_size, workers=2, chunk_bytes=16 << 10)
    source = sources.LineSource(events.open("rb"), str(events), workers=chunks)
    assert len(source.read_until(START + 30.0)) > 0
    workers = source._workers
    assert workers is not None
    handoff = Path(workers._handoff_dir)
    wait([future for *_, future in workers._inflight], 60)  # let the workers leave their columns, unread
    assert any(handoff.iterdir())
    source.close()
    assert not handoff.exists()


def test_many_merchants_come_back_from_workers_coded_per_row(tmp_path: Path) -> None:
    rows = [{"ts": START + i * 0.01, "payment_id": f"p{i}", "method": "card", "route": "psp_a", "bank": "FNB",
             "issuer": "VISA", "status": "failure" if i % 7 == 0 else "success",
             "error_code": "TIMEOUT" if i % 7 == 0 else None, "latency_ms": float(100 + i % 50),
             "merchant_id": f"m{i}", "terminal_id": f"t{i % 5}"} for i in range(6000)]
    events = tmp_path / "wide.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    serial = _read_all(open_jsonl(events, workers=0))
    chunks = ParallelChunks(str(events), events.stat().st_size, 2, chunk_bytes=256 << 10)
    parallel = _read_all(sources.LineSource(events.open("rb"), str(events), workers=chunks))
    assert parallel.wide is not None
    assert parallel.wide_names() == serial.wide_names()
    assert parallel.wide_names()[1][:3] == ["m0", "m1", "m2"]


def test_columns_handed_over_through_a_file_or_inline(tmp_path: Path) -> None:
    columns = (np.array([1.5, 2.5]), np.array([3, 4], np.int64), np.array([], np.intp),
               np.arange(5, dtype=np.int32)[::2])
    handed = hand_over(columns, str(tmp_path), "c1")
    assert isinstance(handed, ColumnFile) and Path(handed.path).exists()
    back = take_over(handed)
    assert not Path(handed.path).exists()  # read once, then removed
    assert [(a.dtype, a.tolist()) for a in back] == [(c.dtype, c.tolist()) for c in columns]
    assert all(a.flags.writeable for a in back)
    # No folder, or one that cannot be written: the columns travel inline, nothing is lost.
    for folder in (None, str(tmp_path / "missing")):
        inline = hand_over(columns, folder, "c2")
        assert not isinstance(inline, ColumnFile)
        assert [a.tolist() for a in take_over(inline)] == [c.tolist() for c in columns]


def _serial(events: Path) -> tuple[list, list]:
    batch = _read_all(open_jsonl(events, workers=0))
    return batch.ts.tolist(), [batch.combos[i] for i in batch.combo.tolist()]


def test_a_pool_that_cannot_start_falls_back_to_parsing_in_process_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    events = _events_file(tmp_path / "events.jsonl", BAD)
    monkeypatch.setattr(parse_pool, "PARSE_START_METHOD", "no-such-start-method")
    chunks = ParallelChunks(str(events), events.stat().st_size, workers=1, chunk_bytes=16 << 10)
    source = sources.LineSource(events.open("rb"), str(events), workers=chunks)
    with caplog.at_level("WARNING"):
        batch = _read_all(source)
    assert (batch.ts.tolist(), [batch.combos[i] for i in batch.combo.tolist()]) == _serial(events)
    assert [b.line_no for b in source.report.bad] == sorted(BAD)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "parse workers failed" in warnings[0] and "no-such-start-method" in warnings[0]
    assert not os.path.exists(chunks._handoff_dir)


def test_a_killed_worker_makes_the_source_parse_the_rest_itself_losing_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events = _events_file(tmp_path / "events.jsonl", BAD)
    chunks = ParallelChunks(str(events), events.stat().st_size, workers=2, chunk_bytes=16 << 10, ahead_bytes=32 << 10)
    source = sources.LineSource(events.open("rb"), str(events), workers=chunks)
    first = source.read_until(START + 20.0)  # the pool runs and has handed back its first chunk
    for process in list(chunks._pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        rest = _read_all(source)
    assert time.monotonic() - started < 30  # multiprocessing.Pool waited here for ever
    ts, combos = _serial(events)
    assert first.ts.tolist() + rest.ts.tolist() == ts
    assert [first.combos[i] for i in first.combo.tolist()] + [rest.combos[i] for i in rest.combo.tolist()] == combos
    assert [b.line_no for b in source.report.bad] == sorted(BAD)
    assert any("parse workers failed" in r.getMessage() for r in caplog.records)


# Runs `payops replay` with workers on every file from a folder that holds a `payops/`
# directory which is not the package (the repository root, say): this script lives elsewhere,
# so only the workers' fork server would see the folder on its path.
REPLAY_FROM_ELSEWHERE = """
import sys
from payops.signals import parse_pool, sources
sources.PARALLEL_MIN_BYTES = 0
parse_pool.PARALLEL_CHUNK_BYTES = 64 << 10
from payops.cli import main
if __name__ == "__main__":
    sys.argv = ["payops", "replay", sys.argv[1], "--out", sys.argv[2]]
    main()
"""


def _installed_copy(site: Path) -> Path:
    """The package laid out as `pip install .` (not editable) installs it, as links into this checkout."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    (site / "payops").mkdir(parents=True)
    for item in (root / mapping["payops"]).iterdir():
        if not item.is_symlink():  # payops/graph -> ../graph and the like: linked from the mapping below
            (site / "payops" / item.name).symlink_to(item)
    for package, folder in mapping.items():
        parts = package.split(".")[1:]
        if len(parts) == 1:  # payops.graph.reasoners lives inside graph/ already
            (site / "payops" / parts[0]).symlink_to(root / folder)
    return site


def test_replay_works_from_a_folder_holding_a_payops_directory(tmp_path: Path) -> None:
    """The repository root with a non-editable install: its `payops/` (the CLI folder) is not the package."""
    import sysconfig

    events = _events_file(tmp_path / "events.jsonl", {})
    folder = tmp_path / "checkout"
    (folder / "payops").mkdir(parents=True)
    (folder / "payops" / "__init__.py").write_text("")  # shadows the installed package if on the path
    script = tmp_path / "tools" / "replay_here.py"
    script.parent.mkdir()
    script.write_text(REPLAY_FROM_ELSEWHERE)
    site = _installed_copy(tmp_path / "site")
    # -S: no site .pth files, so not this checkout's editable finder (it would find the package
    # whatever the path says); the installed copy and the dependencies come from PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])}
    out = tmp_path / "d.jsonl"
    proc = subprocess.run([sys.executable, "-S", str(script), str(events), str(out)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "parse workers failed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    reference = tmp_path / "serial.jsonl"
    list(wiring.replay(events, reference, 60.0, 60.0, source=open_jsonl(events, workers=0)))
    assert out.read_bytes() == reference.read_bytes()


def test_replay_invoked_in_a_long_lived_process_leaves_its_garbage_collector_alone(tmp_path: Path) -> None:
    import gc

    from typer.testing import CliRunner

    from payops.cli import app

    events = _events_file(tmp_path / "events.jsonl", {})
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["replay", str(events), "--out", str(tmp_path / "d.jsonl")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.jsonl").read_bytes().count(b"\n") >= 5
    assert gc.get_freeze_count() == frozen  # only the `payops` executable, which exits next, freezes
