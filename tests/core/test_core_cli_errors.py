"""Bad input a new user tries gets one line and an exit status, never a traceback (issue 16 items 9/10)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payops.cli import _register_subcommands, app
from payops.cli_errors import one_line

_register_subcommands()
runner = CliRunner()

# Every command the issue names, with arguments that get it as far as touching the state folder.
STATE_COMMANDS = {
    "pending": ["pending"],
    "run": ["run", "--ticks", "1", "--tick-seconds", "0"],
    "tick": ["tick"],
    "db status": ["db", "status"],
    "db upgrade": ["db", "upgrade"],
    "approve": ["approve", "d-1"],
    "keys list": ["keys", "list"],
    "serve": ["serve", "--port", "1"],
    "why": ["why", "d-1"],
    "audit tail": ["audit", "tail"],
    "lessons list": ["lessons", "list"],
    "chat": ["chat", "--ask", "what is happening now?", "--no-llm"],
}
WRITERS = ["pending", "run", "approve", "keys list", "serve"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def assert_one_line(result, code: int, *words: str) -> None:  # noqa: ANN001
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("payops: error: "), result.output
    assert "Traceback" not in result.output and "sqlite" not in result.output.lower()
    for w in words:
        assert w in lines[0]


@pytest.mark.parametrize("command", STATE_COMMANDS)
def test_a_state_dir_that_is_a_file_is_a_usage_error_for_every_command(tmp_path: Path, command: str) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    result = invoke(*STATE_COMMANDS[command], "--state-dir", str(a_file))
    assert_one_line(result, 2, "is a file, not a folder", str(a_file))


@pytest.mark.parametrize("command", ["run", "keys list", "serve"])
def test_a_state_folder_below_a_file_cannot_be_created_and_says_so(tmp_path: Path, command: str) -> None:
    (tmp_path / "notes.txt").write_text("not a folder")
    result = invoke(*STATE_COMMANDS[command], "--state-dir", str(tmp_path / "notes.txt" / "state"))
    assert_one_line(result, 2, "cannot create the state folder", "part of the path is a file")


@pytest.mark.parametrize("command", ["run", "keys list"])
def test_a_state_folder_the_system_refuses_to_create_is_a_runtime_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        command: str) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # tests run as root here, which no chmod refuses
    result = invoke(*STATE_COMMANDS[command], "--state-dir", str(tmp_path / "new"))
    assert_one_line(result, 1, "cannot create the state folder", "permission denied")


@pytest.mark.parametrize("command", WRITERS)
def test_a_read_only_state_folder_is_one_line_for_the_commands_that_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    state = tmp_path / "state"
    assert invoke("run", "--ticks", "1", "--tick-seconds", "0", "--state-dir", str(state)).exit_code == 0
    import payops.files  # where the state folder's writability is checked (payops.settings calls it)

    real_access = payops.files.os.access
    # What access(2) answers on a read-only mount or to a user without write permission (root ignores chmod).
    monkeypatch.setattr(payops.files.os, "access",
                        lambda p, mode: False if Path(p) == state and mode & 2 else real_access(p, mode))
    result = invoke(*STATE_COMMANDS[command], "--state-dir", str(state))
    assert_one_line(result, 1, "read-only", str(state))


def test_a_database_that_cannot_be_opened_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "audit.db").mkdir(parents=True)  # a folder where the audit database should be: SQLite cannot open it
    result = invoke("audit", "tail", "--state-dir", str(state))
    assert_one_line(result, 1, "cannot be opened")


def test_a_read_only_database_maps_to_a_message_without_sql(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path).execute("create table t (x)").connection.commit()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        ro.execute("insert into t values (1)")
    message, code = one_line(caught.value)
    assert code == 1 and "read-only" in message and "insert" not in message


def test_a_bug_is_not_disguised_as_a_user_error() -> None:
    assert one_line(KeyError("x")) is None and one_line(ValueError("x")) is None


# -- issue 16 item 10: names, URLs and sizes a user can get wrong -----------------------------------------

def test_a_misspelled_payops_variable_is_warned_with_the_closest_known_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOPS_WEBHOK_URL", "https://hooks.example.com/x")
    result = runner.invoke(app, ["scenarios"], catch_exceptions=False)
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["payops: warning: unknown environment variable PAYOPS_WEBHOK_URL is ignored "
                        "(did you mean PAYOPS_WEBHOOK_URL?)"]


def test_known_payops_variables_of_both_settings_classes_raise_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"PAYOPS_API_PORT": "8081", "PAYOPS_TIMEZONE": "UTC", "PAYOPS_CONFIDENCE_THRESHOLD": "0.9"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert "warning" not in runner.invoke(app, ["scenarios"], catch_exceptions=False).stderr


def test_a_name_close_to_nothing_is_warned_without_a_guess() -> None:
    from payops.cli_env import unknown_name_warnings

    assert unknown_name_warnings({"PAYOPS_CONFIDENCE_TRESHOLD": "1", "PAYOPS_BANANA": "1", "HOME": "/"}) == [
        "payops: warning: unknown environment variable PAYOPS_BANANA is ignored",
        "payops: warning: unknown environment variable PAYOPS_CONFIDENCE_TRESHOLD is ignored "
        "(did you mean PAYOPS_CONFIDENCE_THRESHOLD?)"]


@pytest.mark.parametrize("url", ["not-a-url", "hooks.example.com/T0KEN", "ftp://hooks.example.com/T0KEN",
                                 "https:///T0KEN"])
def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("PAYOPS_WEBHOOK_URL", url)
    result = invoke("run", "--ticks", "1", "--tick-seconds", "0")
    assert_one_line(result, 2, "bad setting PAYOPS_WEBHOOK_URL", "http")
    assert "T0KEN" not in result.output


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", ""])
def test_an_unknown_time_zone_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("PAYOPS_TIMEZONE", zone)
    assert_one_line(invoke("run", "--ticks", "1", "--tick-seconds", "0"), 2, "bad setting PAYOPS_TIMEZONE", "IANA")


def test_a_webhook_url_with_a_host_is_accepted() -> None:
    from payops.settings import Settings

    url = "https://hooks.example.com:8443/a?b=c"
    assert Settings(webhook_url=f" {url} ").webhook_url == url


@pytest.mark.parametrize("minutes", ["1e9", "inf", "nan", "0.5", "20000"])
def test_simulate_refuses_a_length_outside_its_documented_bounds_and_writes_nothing(
        tmp_path: Path, minutes: str) -> None:
    out = tmp_path / "e.jsonl"
    result = invoke("simulate", "--scenario", "demo", "--minutes", minutes, "--out", str(out))
    assert_one_line(result, 2, "--minutes")
    assert not out.exists()


def test_simulate_refuses_more_events_than_one_file_holds(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    result = invoke("simulate", "--scenario", "demo", "--minutes", "10000", "--per-minute", "100000", "--out", str(out))
    assert_one_line(result, 2, "1,000,000,000 events", "50,000,000")
    assert not out.exists()


def test_every_settings_class_with_a_payops_prefix_is_known_to_the_warning() -> None:
    """A new pydantic-settings class must be registered, or its names would be warned as unknown."""
    import re

    from payops.cli_env import SETTINGS_CLASSES, _source_of, settings_fields

    root = Path(__file__).resolve().parents[2]
    declared = set()
    for path in root.rglob("*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        settings_class = r'class (\w+)\(BaseSettings\):\n(?:.*\n){0,3}?.*env_prefix="(PAYOPS_\w*)"'
        for match in re.finditer(settings_class, path.read_text()):
            declared.add((match[1], match[2]))
    registered = {(cls, settings_fields(_source_of(pkg, name), cls)[0]) for pkg, name, cls in SETTINGS_CLASSES}
    assert declared and declared == registered


def test_a_missing_audit_key_is_one_line_for_every_command_that_opens_the_trail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("PAYOPS_KEY_DIR", str(tmp_path / "keys"))  # the keys live elsewhere for this run only
    assert invoke("run", "--ticks", "1", "--tick-seconds", "0", "--state-dir", str(state)).exit_code == 0
    monkeypatch.delenv("PAYOPS_KEY_DIR")
    for command in (["pending"], ["approve", "d-1"], ["why", "d-1"], ["audit", "tail"]):
        assert_one_line(invoke(*command, "--state-dir", str(state)), 1, "audit-hmac")
