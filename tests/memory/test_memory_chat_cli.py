"""The operator commands around the chat (issue 17): `why` and `audit show` take id prefixes, `audit show`
prints one JSON value, and people read times in the deployment's zone (PAYOPS_TIMEZONE) with the zone named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memory_helpers import IDS, write_synthetic_trail
from typer.testing import CliRunner

from payops.cli import _register_subcommands, app

_register_subcommands()
runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("synthetic")
    write_synthetic_trail(state)
    return state


DISTINCT = "d-7f3a9c0e11b2d4f6"  # one decision whose id no other shares the start of


@pytest.fixture(scope="module")
def distinct(synthetic) -> Path:
    """The synthetic trail plus a copy of the FNB suppression under an id with a unique prefix."""
    from payops.memory.audit import AuditLog

    audit = AuditLog(synthetic / "audit.db")
    decision = next(e for e in audit.get(IDS["suppress_fnb"]) if e.kind == "decision")
    audit.append(DISTINCT, "decision", decision.at, {**decision.record, "decision_id": DISTINCT})
    audit.close()
    return synthetic


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_why_accepts_a_decision_id_prefix_as_approve_does(distinct):
    full = cli("why", DISTINCT, "--state-dir", str(distinct))
    short = cli("why", DISTINCT[:7], "--state-dir", str(distinct))
    assert full.exit_code == 0 and short.exit_code == 0 and short.output == full.output
    assert "suppress" in short.output.lower() and "FNB" in short.output


def test_an_ambiguous_prefix_is_a_one_line_error_naming_some_matches(synthetic):
    out = cli("why", "d-00000000000a", "--state-dir", str(synthetic))
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1
    assert "matches 6 decisions" in out.output and DISTINCT not in out.output and "give more of the id" in out.output
    assert cli("why", "d-ffff", "--state-dir", str(synthetic)).exit_code == 2


def test_audit_show_prints_one_json_value_with_every_record_of_the_decision(synthetic):
    out = cli("audit", "show", IDS["suppress_fnb"], "--state-dir", str(synthetic))
    assert out.exit_code == 0
    records = json.loads(out.output)  # one document: json.loads refuses concatenated ones
    assert isinstance(records, list) and {r["decision_id"] for r in records} == {IDS["suppress_fnb"]}
    assert [r["kind"] for r in records][0] == "decision" and "outcome" in [r["kind"] for r in records]


def test_audit_show_jsonl_prints_one_object_per_line(synthetic):
    out = cli("audit", "show", IDS["suppress_fnb"], "--jsonl", "--state-dir", str(synthetic))
    lines = out.output.strip().splitlines()
    assert out.exit_code == 0 and len(lines) >= 2
    assert [json.loads(line)["seq"] for line in lines] == sorted(json.loads(line)["seq"] for line in lines)


def test_chat_times_default_to_payops_timezone_and_name_the_zone(synthetic, monkeypatch):
    monkeypatch.setenv("PAYOPS_TIMEZONE", "Africa/Johannesburg")
    out = cli("chat", "--state-dir", str(synthetic), "--no-llm", "--ask", "why did you reroute psp_a at 12:05?")
    assert out.exit_code == 0 and IDS["reroute"] in out.output and "2025-11-24 12:05:00 SAST" in out.output
    monkeypatch.setenv("PAYOPS_TIMEZONE", "UTC")
    utc = cli("chat", "--state-dir", str(synthetic), "--no-llm", "--ask", "why did you reroute psp_a at 10:05?")
    assert IDS["reroute"] in utc.output and "2025-11-24 10:05:00 UTC" in utc.output
    repl = runner.invoke(app, ["chat", "--state-dir", str(synthetic), "--no-llm"], input="exit\n")
    assert "times in UTC" in repl.output
