"""Bad input to run / replay / tick: one line and exit 2, never a traceback, never a silent success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payops.cli import app

runner = CliRunner()


def _payops(*args: str, cwd: Path, stdin: int | None = None, close_stdin: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from payops.cli import main; main()", *args]
    env = {**os.environ, "PAYOPS_STATE_DIR": str(cwd / "state")}
    if close_stdin:  # `payops ... <&-`: the process starts with no file descriptor 0
        command = ["sh", "-c", 'exec "$@" <&-', "sh", *command]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)


def _one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("payops: error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


@pytest.fixture()
def events(tmp_path: Path) -> Path:
    path = tmp_path / "e.jsonl"
    simulated = runner.invoke(app, ["simulate", "--scenario", "healthy", "--minutes", "3", "--out", str(path)])
    assert simulated.exit_code == 0
    return path


@pytest.mark.parametrize("kind", ["empty", "binary"])
@pytest.mark.parametrize("command", ["replay", "run", "tick"])
def test_a_file_with_no_valid_event_exits_2_saying_how_many_lines_were_skipped(
        tmp_path: Path, kind: str, command: str) -> None:
    path = tmp_path / f"{kind}.jsonl"
    path.write_bytes(b"" if kind == "empty" else bytes(b for b in range(256) if b != 10) * 40 + b"\n\x00\xff\n")
    args = {"replay": ["replay", str(path), "--out", str(tmp_path / "d.jsonl")],
            "run": ["run", "--source", str(path), "--ticks", "1", "--tick-seconds", "0"],
            "tick": ["tick", "--source", str(path)]}[command]
    proc = _payops(*args, cwd=tmp_path)
    skipped = 0 if kind == "empty" else 2
    _one_line_error(proc, f"no valid events: {skipped} lines skipped")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "0", "-5"])
@pytest.mark.parametrize("option", ["--window", "--tick"])
def test_non_finite_or_non_positive_window_and_tick_are_refused(
        tmp_path: Path, events: Path, option: str, value: str) -> None:
    result = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "d.jsonl"), option, value])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "d.jsonl").exists()


def test_a_window_setting_of_infinity_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "from payops.cli import main; main()", "run", "--ticks", "1"],
                          cwd=tmp_path,
                          env={**os.environ, "PAYOPS_WINDOW_SECONDS": "inf", "PAYOPS_STATE_DIR": str(tmp_path / "s")},
                          capture_output=True, text=True, timeout=120)
    _one_line_error(proc, "bad setting PAYOPS_WINDOW_SECONDS")  # named as the operator set it


def test_replay_with_stdin_closed_works(tmp_path: Path, events: Path) -> None:
    proc = _payops("replay", str(events), "--out", str(tmp_path / "d.jsonl"), cwd=tmp_path, close_stdin=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "d.jsonl").read_text().count("\n") == 3


@pytest.mark.parametrize("command", [["run", "--source", "-", "--ticks", "1"], ["tick", "--source", "-"]])
def test_reading_events_from_a_closed_stdin_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    _one_line_error(_payops(*command, cwd=tmp_path, close_stdin=True), "stdin is closed")


def test_replay_keeps_every_bad_line_number_in_a_rejects_report_next_to_the_output(
        tmp_path: Path, events: Path) -> None:
    lines = events.read_bytes().splitlines()
    bad_at = list(range(2, 1400, 3))  # 466 bad lines, more than any console line could list
    for line_no in bad_at:
        lines[line_no - 1] = lines[line_no - 1][:-1] + b', "note": "\xff"}' if line_no % 2 else b"{broken"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "d.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rejects = out.with_name("d.jsonl.rejects.json")
    assert f"every line number in {rejects}" in result.output
    report = json.loads(rejects.read_text())
    assert report["bad_count"] == len(bad_at) and [b["line"] for b in report["bad"]] == bad_at
    assert {b["reason"] for b in report["bad"]} == {"not valid UTF-8", "not valid JSON"}
    # A clean replay to the same output removes the stale report: it always describes the last run.
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join(line for i, line in enumerate(lines, 1) if i not in set(bad_at)) + b"\n")
    assert runner.invoke(app, ["replay", str(clean), "--out", str(out)]).exit_code == 0
    assert not rejects.exists()


def test_replay_summary_counts_late_and_discarded_events(tmp_path: Path, events: Path) -> None:
    lines = events.read_bytes().splitlines()
    late = json.loads(lines[5]) | {"ts": json.loads(lines[5])["ts"] - 30.0}  # delivered two minutes after its window
    ahead = json.loads(lines[5]) | {"ts": 1e12}
    lines = lines[:-3] + [json.dumps(late).encode(), json.dumps(ahead).encode()] + lines[-3:]
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "d.jsonl")])
    assert result.exit_code == 0, result.output
    assert "late events: 1 (1 counted in no window), 1 discarded as ahead of the clock" in result.output
    decisions = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert sum(d.get("late_events", 0) for d in decisions) == 2
