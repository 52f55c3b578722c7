"""One mapping, at the CLI entry, of the errors a user can cause to a one-line message and an exit status.

Commands fail early on what they can check (payops.settings.prepare_state_dir) with `fail`, the one
way a command gives up; this catches what only shows when a file is touched (a read-only database, a
full disk, a folder a command cannot create) and every payops.errors.PayopsError a command lets through
(EXIT_CODES: its branch's status), so none of them ends in a traceback. Messages name the user's path
and the reason, never a library's internals (SQL, stack frames). Bugs — anything not listed here —
still raise.
"""

from __future__ import annotations

import sqlite3
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from payops.errors import EX_FAILURE, EX_TEMPFAIL, EX_USAGE, BadInput, Conflict, NotFound, PayopsError, Unavailable

# The exit status of each branch of the exception tree (payops/errors.py); the root's is EX_FAILURE.
EXIT_CODES: dict[type[PayopsError], int] = {
    BadInput: EX_USAGE,
    NotFound: EX_USAGE,  # the name given is wrong: the same command fails again
    Conflict: EX_FAILURE,
    Unavailable: EX_TEMPFAIL,
}
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


def exit_code(exc: PayopsError) -> int:
    """The exit status for `exc`: its own `exit_code` when it knows better (StateDirError), else its branch's."""
    own = getattr(exc, "exit_code", None)
    if isinstance(own, int):
        return own
    return next((code for branch, code in EXIT_CODES.items() if isinstance(exc, branch)), EX_FAILURE)


def fail(message: str, code: int = EX_USAGE) -> NoReturn:
    """Give up: `payops: error: <message>` on stderr, exit status `code` (default: the input is wrong)."""
    typer.echo(f"payops: error: {message}", err=True)
    raise typer.Exit(code)


def one_line(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit status for an expected error, or None for a bug (which should raise)."""
    from pydantic import ValidationError  # here, not at import: `payops replay` starts its parse workers first

    if isinstance(exc, PayopsError):  # e.g. KeyProblem, data without its key: messages hold no key material
        return str(exc), exit_code(exc)
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

    # typer passes a typer.Context; its base, typer's own copy of click's Context, has no public name.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # narrower ctx, see above
        import os

        from payops.cli_env import unknown_name_warnings

        for line in unknown_name_warnings(os.environ):
            typer.echo(line, err=True)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):  # typer's own: the `click` package's classes never reach here
            raise
        except Exception as exc:
            mapped = one_line(exc)
            if mapped is None:
                raise
            message, code = mapped
            typer.echo(f"payops: error: {message}", err=True)
            raise typer.Exit(code) from None
