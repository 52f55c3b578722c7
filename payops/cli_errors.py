"""One mapping, at the CLI entry, of the errors a user can cause to a one-line message and an exit status.

Commands fail early on what they can check (payops.settings.prepare_state_dir); this catches what
only shows when a file is touched (a read-only database, a full disk, a folder a command cannot
create), so none of them ends in a traceback. Messages name the user's path and the reason, never a
library's internals (SQL, stack frames). Bugs — anything not listed here — still raise.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import click
import typer
from typer.core import TyperGroup

EX_FAILURE = 1  # the system refused: permissions, disk, a database that cannot be opened
EX_USAGE = 2  # the input is wrong: retrying the same command will not help
# A ValidationError of these models is the user's environment or options; of any other model, a bug.
SETTINGS_MODELS = ("Settings", "ApiSettings")


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return "the state database is read-only (check the state folder's permissions)"
    if "unable to open" in text:
        return "the state database cannot be opened (check --state-dir and its permissions)"
    if "locked" in text or "busy" in text:
        return "the state database is locked by another process; try again"
    if "disk" in text or "full" in text:
        return "the state database cannot be written: the disk is full or failing"
    return "the state database cannot be used (it may be damaged or from another program)"


def one_line(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit status for an expected error, or None for a bug (which should raise)."""
    from pydantic import ValidationError  # here, not at import: `payops replay` starts its parse workers first

    from payops.settings import StateDirError

    if isinstance(exc, StateDirError):
        return str(exc), exc.exit_code
    from payops.storage.keys import KeyProblem

    if isinstance(exc, KeyProblem):  # data without its key: refused in one line (messages hold no key material)
        return str(exc), EX_FAILURE
    if isinstance(exc, ValidationError) and exc.title in SETTINGS_MODELS:
        first = exc.errors()[0]
        name = "PAYOPS_" + ("API_" if exc.title == "ApiSettings" else "") + str(first["loc"][0]).upper()
        return f"bad setting {name}: {first['msg'].removeprefix('Value error, ')}", EX_USAGE
    if isinstance(exc, sqlite3.Error):
        return _sqlite_reason(exc), EX_FAILURE
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}", EX_FAILURE
    return None


class PayopsGroup(TyperGroup):
    """The root command group: every subcommand runs inside `invoke`, so this is the one catch."""

    def invoke(self, ctx: click.Context) -> Any:
        import os

        from payops.cli_env import unknown_name_warnings

        for line in unknown_name_warnings(os.environ):
            click.echo(line, err=True)
        try:
            return super().invoke(ctx)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            mapped = one_line(exc)
            if mapped is None:
                raise
            message, code = mapped
            click.echo(f"payops: error: {message}", err=True)
            raise typer.Exit(code) from None
