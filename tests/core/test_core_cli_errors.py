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
def test_a_read_only_state_folder_is_one_line_for_the_commands_that_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          command: str) -> None:
    state = tmp_path / "state"
    assert invoke("run", "--ticks", "1", "--tick-seconds", "0", "--state-dir", str(state)).exit_code == 0
    import payops.settings

    real_access = payops.settings.os.access
    # What access(2) answers on a read-only mount or to a user without write permission (root ignores chmod).
    monkeypatch.setattr(payops.settings.os, "access",
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
