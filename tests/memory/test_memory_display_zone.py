"""One display zone for every time a person reads (issue 17): cycle output, `why`, `lessons list`,
`audit show`, the chat (CLI and API) show — and the chat parses — times in PAYOPS_DISPLAY_TIMEZONE,
else PAYOPS_TIMEZONE, with the zone named; the records themselves stay epoch seconds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from memory_helpers import IDS, write_synthetic_trail
from typer.testing import CliRunner

from payops.cli import _register_subcommands, app
from payops.settings import Settings

_register_subcommands()
runner = CliRunner()
REROUTE_AT = 1_763_942_400.0 + 10 * 3600 + 5 * 60  # 2025-11-24 10:05 UTC, 12:05 SAST


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("synthetic")
    write_synthetic_trail(state)
    return state


@pytest.fixture
def johannesburg_display(monkeypatch) -> None:
    monkeypatch.setenv("PAYOPS_TIMEZONE", "UTC")  # the palm-pay zone may differ: the display zone wins
    monkeypatch.setenv("PAYOPS_DISPLAY_TIMEZONE", "Africa/Johannesburg")


def cli(*args: str) -> str:
    out = runner.invoke(app, list(args), catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


def test_the_display_zone_defaults_to_payops_timezone():
    assert Settings(timezone="Europe/London").display_zone == "Europe/London"
    shown = Settings(timezone="Europe/London", display_timezone="Africa/Johannesburg").display_zone
    assert shown == "Africa/Johannesburg"
    with pytest.raises(ValueError, match="IANA time zone"):
        Settings(display_timezone="Mars/Olympus_Mons")


def test_why_shows_its_times_in_the_display_zone(synthetic, johannesburg_display):
    out = cli("why", IDS["reroute"], "--state-dir", str(synthetic))
    assert "window ending 2025-11-24 12:05:00 SAST" in out and " UTC" not in out


def test_lessons_list_shows_its_times_in_the_display_zone(synthetic, johannesburg_display):
    lines = cli("lessons", "list", "--state-dir", str(synthetic)).splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d SAST  d-", line) for line in lines), lines


def test_audit_show_names_the_time_in_the_display_zone_and_keeps_epoch_seconds(synthetic, johannesburg_display):
    records = json.loads(cli("audit", "show", IDS["reroute"], "--state-dir", str(synthetic)))
    decision = records[0]
    assert decision["kind"] == "decision" and isinstance(decision["at"], float)
    assert decision["time"] == "2025-11-24 12:05:00 SAST"
    assert decision["record"]["window_end"] == REROUTE_AT  # the record itself: epoch seconds, untouched


def test_the_chat_reads_and_shows_times_in_the_display_zone(synthetic, johannesburg_display):
    out = cli("chat", "--state-dir", str(synthetic), "--no-llm", "--ask", "why did you reroute psp_a at 12:05?")
    assert IDS["reroute"] in out and "2025-11-24 12:05:00 SAST" in out and " UTC" not in out


def test_cycle_output_shows_the_window_in_the_display_zone(tmp_path, johannesburg_display):
    out = cli("run", "--ticks", "1", "--tick-seconds", "0", "--state-dir", str(tmp_path / "s"))
    header = next(line for line in out.splitlines() if line.startswith("── tick"))
    assert re.search(r"window ending \d{4}-\d\d-\d\d \d\d:\d\d:\d\d SAST", header), header


def test_render_cycle_takes_the_zone_and_names_it():
    from zoneinfo import ZoneInfo

    from payops.render import render_cycle

    state = {"tick": 1, "window_end": REROUTE_AT, "decision_id": "d-1",
             "diagnosis": {"category": "healthy", "summary": "ok", "target": {}, "evidence": ["fine"],
                           "confidence": 0.9},
             "proposal": {"tool": "no_action", "target": {}, "args": {}},
             "verdict": {"verdict": "allow", "results": [], "blast_radius": 0.0},
             "execution": {"status": "skipped", "detail": "nothing to do"}}
    assert "window ending 2025-11-24 10:05:00 UTC" in render_cycle(state)
    assert "window ending 2025-11-24 12:05:00 SAST" in render_cycle(state, tz=ZoneInfo("Africa/Johannesburg"))


def test_the_api_chat_reads_and_shows_times_in_the_display_zone(synthetic, johannesburg_display):
    from fastapi.testclient import TestClient

    from payops.api import create_app

    app = create_app(Settings(state_dir=synthetic, webhook_url=None))
    with TestClient(app) as client:
        key = app.state.backend.keys.create("viewer-person", "viewer")[1]
        r = client.post("/v1/chat", json={"question": "why did you reroute psp_a at 12:05?"},
                        headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert IDS["reroute"] in r.json()["decision_ids"] and "2025-11-24 12:05:00 SAST" in r.json()["answer"]
    assert " UTC" not in r.json()["answer"]


def test_keys_list_shows_when_each_key_was_made_in_the_display_zone(tmp_path, johannesburg_display):
    cli("keys", "create", "--name", "alice", "--role", "viewer", "--state-dir", str(tmp_path))
    line = cli("keys", "list", "--state-dir", str(tmp_path)).strip()
    assert re.search(r"created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d SAST", line), line
