"""`payops serve`, `payops keys create|list|revoke`, `payops openapi`: the HTTP API from a shell."""

from __future__ import annotations

import sys
from datetime import UTC, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from payops.cli_errors import fail as _fail  # the one way a command gives up
from payops.palmpay.otp_delivery import is_loopback

if TYPE_CHECKING:
    from payops.settings import Settings

keys_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="API keys for the HTTP API (stored hashed in the state directory).")

STATE_DIR = typer.Option(None, "--state-dir", help="State directory (default ./.payops or PAYOPS_STATE_DIR).")


def _settings(state_dir: Path | None) -> Settings:
    """Settings for this state folder; a bad setting is reported by PayopsGroup (cli_errors.one_line)."""
    from payops.settings import Settings

    return Settings(state_dir=state_dir) if state_dir else Settings()


def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default 127.0.0.1, or PAYOPS_API_HOST)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port (default 8080, or PAYOPS_API_PORT)."),
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Serve the HTTP API (palm-pay and ops endpoints) on the agent's state directory."""
    import uvicorn

    from payops.api import create_app
    from payops.api.settings import ApiSettings

    settings = _settings(state_dir)
    if not settings.database_url:  # before uvicorn starts: a bad folder is one line, not a failed startup
        settings.ensure_state_dir()
    api = ApiSettings()
    host = host or api.host
    port = port or api.port
    otp_sender = _otp_sender_name()
    if otp_sender == "memory":
        typer.echo("payops: OTPs are not delivered (PAYOPS_OTP_SENDER=memory): set PAYOPS_OTP_SENDER=webhook "
                   "with PAYOPS_OTP_WEBHOOK_URL / _SECRET, or console for development", err=True)
    app = create_app(settings, api_settings=api, background_jobs=True)
    app.state.backend.warm_up()
    if not app.state.backend.keys.list(include_revoked=False):
        typer.echo("payops: no active API key: every request but /healthz will be refused; "
                   "create one with `payops keys create --name N --role R`", err=True)
    if not is_loopback(host):
        typer.echo(f"payops: binding to {host}, not loopback: put TLS in front of it", err=True)
    typer.echo(f"payops API on http://{host}:{port} (state in {settings.state_dir})", err=True)
    uvicorn.run(app, host=host, port=port, server_header=False, proxy_headers=False, log_level="info")


def _otp_sender_name() -> str:
    """The configured OTP sender, or a one-line exit on a bad PAYOPS_OTP_* setting."""
    from pydantic import ValidationError

    from payops.palmpay.otp_delivery import OtpDeliverySettings

    try:
        return OtpDeliverySettings().sender
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _fail(f"bad OTP setting{' ' + where if where else ''}: {first['msg']}") from None


def openapi() -> None:
    """Print the OpenAPI schema (stable: sorted keys) — `payops openapi > openapi.json`."""
    from payops.api import openapi_schema, schema_json

    sys.stdout.write(schema_json(openapi_schema()))


def _keys(state_dir: Path | None):  # noqa: ANN202 - ApiKeyStore
    from payops.api.keys import ApiKeyStore

    return ApiKeyStore.in_state_dir(_settings(state_dir).ensure_state_dir())


def _when(ts: float | None, tz: tzinfo = UTC) -> str:
    from payops.memory.explain import when  # the one format: the display zone, named

    return "-" if ts is None else when(ts, tz)


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="Who uses it: a terminal, a dashboard, a person (recorded as actor)."),
    role: str = typer.Option(..., "--role", help="terminal, viewer or operator."),
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from payops.api.keys import ApiKeyError

    store = _keys(state_dir)
    try:
        record, key = store.create(name, role)
    except ApiKeyError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    typer.echo(key)
    typer.echo(f"key {record.key_id} for {record.name} ({record.role.value}); store it now: it is not shown again",
               err=True)


@keys_app.command("list")
def keys_list(state_dir: Path | None = STATE_DIR) -> None:
    """One line per key: id, name, role, created, revoked (never a secret)."""
    store = _keys(state_dir)
    try:
        rows = store.list()
    finally:
        store.close()
    if not rows:
        typer.echo("no API keys")
        return
    tz = _settings(state_dir).display_tz()
    for k in rows:
        state = f"revoked {_when(k.revoked_at, tz)}" if k.revoked_at else "active"
        typer.echo(f"{k.key_id}  {k.name:24s} {k.role.value:9s} created {_when(k.created_at, tz)}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id (from `payops keys list`)."),
                state_dir: Path | None = STATE_DIR) -> None:
    """Revoke a key; the next request with it is refused."""
    from payops.api.keys import ApiKeyError

    store = _keys(state_dir)
    try:
        record = store.revoke(key_id)
    except ApiKeyError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    typer.echo(f"revoked {record.key_id} ({record.name}, {record.role.value})")


def register_api(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(openapi)
    app.add_typer(keys_app, name="keys")
