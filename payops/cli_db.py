"""`payops db upgrade | status`: create and migrate the schema of every store."""

from __future__ import annotations

from pathlib import Path

import typer

from payops.cli_errors import fail as _fail  # the one way a command gives up
from payops.settings import Settings

db_app = typer.Typer(no_args_is_help=True, add_completion=False)

STATE_DIR = typer.Option(None, "--state-dir", help="State directory (default ./.payops or PAYOPS_STATE_DIR).")




def _settings(state_dir: Path | None) -> Settings:
    settings = Settings(state_dir=state_dir) if state_dir else Settings()
    if settings.database_url:
        from payops.storage.db import is_postgres_url

        if not is_postgres_url(settings.database_url):
            _fail("PAYOPS_DATABASE_URL must be a postgresql:// URL")
    return settings


@db_app.command("upgrade")
def upgrade(state_dir: Path | None = STATE_DIR) -> None:
    """Create or migrate every store: PostgreSQL when PAYOPS_DATABASE_URL is set (versioned, idempotent,
    safe to run from several pods at once), else the SQLite files in the state directory."""
    from payops.storage.db import DatabaseError, redact_dsn

    settings = _settings(state_dir)
    if not settings.database_url:
        paths = _upgrade_sqlite(settings)
        typer.echo(f"SQLite state in {settings.state_dir} is up to date ({', '.join(paths)})")
        return
    from payops.storage import migrations

    try:
        report = migrations.upgrade(settings.database_url)
    except DatabaseError as exc:
        _fail(str(exc), code=1)
    except Exception as exc:
        _fail(f"upgrade failed: {type(exc).__name__}: {redact_dsn(str(exc))[:500]}", code=1)
    for migration in report.applied:
        typer.echo(f"applied {migration.version:04d}_{migration.name}")
    assert report.status is not None
    done = "nothing to apply; " if not report.applied else ""
    typer.echo(f"{done}PostgreSQL schema at version {report.status.current} "
               f"(latest {report.status.latest}); LangGraph checkpoint and store tables set up")


@db_app.command("status")
def status(state_dir: Path | None = STATE_DIR) -> None:
    """The schema version and what `upgrade` would apply; exits 1 when an upgrade is needed."""
    from payops.storage.db import DatabaseError

    settings = _settings(state_dir)
    if not settings.database_url:
        if settings.state_dir.exists() and not settings.state_dir.is_dir():
            from payops.settings import StateDirError

            raise StateDirError(
                f"the state folder {settings.state_dir} is a file, not a folder (choose another --state-dir)", 2
            )
        typer.echo(
            f"SQLite state in {settings.state_dir}: created and migrated on first use (or by `payops db upgrade`)"
        )
        return
    from payops.storage import migrations

    try:
        found = migrations.status(settings.database_url)
    except DatabaseError as exc:
        _fail(str(exc), code=1)
    typer.echo(f"PostgreSQL schema at version {found.current} of {found.latest}")
    if found.pending:
        typer.echo(f"pending: {', '.join(f'{v:04d}' for v in found.pending)} (run `payops db upgrade`)")
    if found.edited:
        typer.echo(f"EDITED after being applied: {', '.join(f'{v:04d}' for v in found.edited)}", err=True)
    if not found.up_to_date:
        raise typer.Exit(1)


def _upgrade_sqlite(settings: Settings) -> list[str]:
    """Open each SQLite store once: each creates or migrates its own file, as on first use."""
    from langgraph.store.sqlite import SqliteStore

    from payops.graph.runner import sqlite_checkpointer
    from payops.graph.services import sqlite_store
    from payops.memory.approvals import ApprovalBook
    from payops.palmpay.options import PalmPayOptions
    from payops.palmpay.store import PalmPayStore

    state = settings.ensure_state_dir()
    from payops.memory.stores import open_audit

    open_audit(settings.model_copy(update={"database_url": None})).close()
    ApprovalBook(state / "approvals.db").close()
    lessons = sqlite_store(state / "lessons.db")
    assert isinstance(lessons, SqliteStore)  # what sqlite_store builds (it is typed as the BaseStore it serves as)
    lessons.conn.close()
    saver = sqlite_checkpointer(str(state / "checkpoints.db"))
    saver.setup()
    saver.conn.close()
    palm_path = PalmPayOptions.from_settings(settings).database_path
    PalmPayStore(palm_path).close()
    return ["audit.db", "approvals.db", "lessons.db", "checkpoints.db", palm_path.name]
