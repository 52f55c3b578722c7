"""The CLI through its entry point: simulate -> replay round trips, bad input, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from contract import validate_line
from typer.testing import CliRunner

from payops.cli import _register_subcommands, app
from payops.signals.simulator import SCENARIOS

_register_subcommands()
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_simulate_then_replay_round_trips_for_every_scenario(tmp_path: Path, scenario: str) -> None:
    events, decisions = tmp_path / "e.jsonl", tmp_path / "d.jsonl"
    minutes = "30" if scenario == "demo" else "12"
    simulated = invoke("simulate", "--scenario", scenario, "--minutes", minutes, "--seed", "3", "--out", str(events))
    assert simulated.exit_code == 0
    result = invoke("replay", str(events), "--out", str(decisions))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert len(lines) >= 11
    parsed = [validate_line(line) for line in lines]
    ends = [p.window_end for p in parsed]
    assert ends == sorted(ends) and all(b - a == pytest.approx(60.0) for a, b in pairwise(ends))
    if scenario != "healthy":
        assert any(p.category != "healthy" for p in parsed), "an incident must be noticed"
    # healthy lead-in (the first 3 windows of every scenario): nothing is done autonomously
    assert not any(p.executed for p in parsed[:3])


def test_replay_is_byte_identical(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    invoke("simulate", "--scenario", "issuer_outage", "--minutes", "12", "--seed", "5", "--out", str(events))
    invoke("replay", str(events), "--out", str(tmp_path / "a.jsonl"))
    invoke("replay", str(events), "--out", str(tmp_path / "b.jsonl"))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_replay_window_and_tick_options(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    invoke("simulate", "--scenario", "healthy", "--minutes", "5", "--out", str(events))
    replayed = invoke("replay", str(events), "--out", str(tmp_path / "d.jsonl"), "--window", "30", "--tick", "15")
    assert replayed.exit_code == 0
    ends = [json.loads(line)["window_end"] for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert all(b - a == pytest.approx(15.0) for a, b in pairwise(ends))
    assert len(ends) >= 19


def test_malformed_lines_are_skipped_counted_and_reported(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    invoke("simulate", "--scenario", "healthy", "--minutes", "3", "--out", str(events))
    lines = events.read_text().splitlines()
    lines.insert(2, "{not json")
    lines.insert(5, json.dumps({"ts": 1.0, "payment_id": "x"}))  # missing required fields
    lines.insert(7, json.dumps({**json.loads(lines[8]), "status": "maybe"}))
    events.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "d.jsonl")])
    assert result.exit_code == 0
    assert "skipped 3 malformed event line(s); first at line 3: not valid JSON" in result.output
    assert (tmp_path / "d.jsonl").read_text().count("\n") >= 3


def test_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "payops.cli", "replay", str(tmp_path / "nope.jsonl"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_option_exits_2_with_usage() -> None:
    result = runner.invoke(app, ["replay", "--bogus"])
    assert result.exit_code == 2
    assert "Usage" in result.output


def test_unknown_scenario_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "nope", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown scenario 'nope'" in result.output


def test_console_script_help_lists_every_command() -> None:
    script = Path(sys.executable).parent / "payops"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("run", "tick", "simulate", "replay", "pending", "approve", "reject", "audit", "why"):
        assert command in proc.stdout


def test_run_20_ticks_has_an_executed_action_and_an_escalation(tmp_path: Path) -> None:
    result = invoke("run", "--ticks", "20", "--tick-seconds", "0", "--state-dir", str(tmp_path / "s"))
    assert result.exit_code == 0
    out = result.output
    assert out.count("Diagnosis:") == 20 and out.count("Confidence Score:") == 20
    assert "Outcome: EXECUTED" in out
    assert "Outcome: ESCALATED" in out
    assert "Recommendation: Human approval required before acting." in out


def test_tick_resumes_the_thread(tmp_path: Path) -> None:
    state = str(tmp_path / "s")
    first = invoke("tick", "--state-dir", state)
    second = invoke("tick", "--state-dir", state)
    assert "── tick 1 " in first.output and "── tick 2 " in second.output


def test_a_second_run_on_the_same_deployment_is_refused(tmp_path: Path) -> None:
    from payops.scheduling import partition_lock
    from payops.settings import Settings

    state = tmp_path / "s"
    with partition_lock(Settings(state_dir=state)):
        result = runner.invoke(app, ["run", "--ticks", "1", "--state-dir", str(state)])
    assert result.exit_code == 75
    assert "already being run" in result.output
    assert invoke("run", "--ticks", "1", "--tick-seconds", "0", "--state-dir", str(state)).exit_code == 0
