"""`payops palm ...`: operate the palm-pay backend from a shell.

Thin by design: parse, call PalmPayService, print the masked result as JSON.
State lives in Settings.state_dir. Refusals print one line on stderr; exit
status 2 for unusable input (bad arguments, unknown link, broken config), 1
for a refusal by the rules (limits, inactive link, spoof, ...).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from pydantic import BaseModel

from payops.palmpay import DevOtpSender, PalmPayError, PalmPayOptions, PalmPayService
from payops.palmpay.crypto import KeyRingError
from payops.palmpay.spec import SpecError

palm_app = typer.Typer(
    name="palm",
    help="Palm-pay backend: link palms to PayShap proxies, verify, pay, administer links.",
    no_args_is_help=True,
    add_completion=False,
)

INPUT_ERRORS = frozenset({"PALM_PAY_INVALID_INPUT", "PALM_PAY_LINK_NOT_FOUND"})


def _fail(line: str, code: int) -> typer.Exit:
    typer.echo(f"error: {line}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _service(sender: DevOtpSender | None = None) -> Iterator[PalmPayService]:
    """The backend on Settings; OTPs go to `sender` (--show-otp) or the PAYOPS_OTP_* sender."""
    from pydantic import ValidationError

    from payops.palmpay.otp_delivery import sender_from_settings

    try:
        from payops.settings import Settings

        verification = sender if sender is not None else sender_from_settings()
        service = PalmPayService(PalmPayOptions.from_settings(Settings()), verification=verification)
    except ValidationError as exc:
        raise _fail(f"palm-pay is not usable: {_first_error(exc)}", 2) from None
    except (SpecError, KeyRingError, ValueError, OSError) as exc:
        raise _fail(f"palm-pay is not usable: {exc}", 2) from None
    try:
        yield service
    except PalmPayError as exc:
        hint = f" [fallback: {exc.fallback}]" if exc.code not in INPUT_ERRORS else ""
        raise _fail(f"{exc.code} ({exc.status}): {exc.message}{hint}", 2 if exc.code in INPUT_ERRORS else 1) from None
    finally:
        service.close()


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors():
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(exc).splitlines()[0]


def _print(model: BaseModel) -> None:
    typer.echo(model.model_dump_json(indent=2))


@palm_app.command("link")
def link(
    user: Annotated[str, typer.Option("--user", help="Customer id")],
    template_ref: Annotated[str, typer.Option("--template-ref", help="Palm template reference from the terminal")],
    proxy: Annotated[str, typer.Option("--proxy", help="PayShap proxy (phone or account number)")],
    proxy_type: Annotated[str, typer.Option("--proxy-type", help="phone or account")] = "phone",
    hand: Annotated[str | None, typer.Option("--hand", help="left or right")] = None,
    daily_limit: Annotated[str | None, typer.Option("--daily-limit", help="Rand, e.g. 5000")] = None,
    transaction_limit: Annotated[str | None, typer.Option("--transaction-limit", help="Rand, e.g. 3000")] = None,
    bank: Annotated[str | None, typer.Option("--bank", help="Payer's bank, for payment events")] = None,
    show_otp: Annotated[
        bool, typer.Option("--show-otp", help="DEMO ONLY: print the one-time code from the dev OTP sender")
    ] = False,
) -> None:
    """Create a palm-to-proxy link (pending verification) and send an OTP (PAYOPS_OTP_SENDER)."""
    sender = DevOtpSender() if show_otp else None
    with _service(sender) as service:
        view, delivery_id = service.create_link(
            user, template_ref, hand, proxy, proxy_type, daily_limit, transaction_limit, bank
        )
    _print(view)
    typer.echo(f"OTP sent (delivery {delivery_id})")
    if sender is not None:
        typer.echo(f"demo OTP: {sender.code_for(delivery_id)}")


@palm_app.command("resend-otp")
def resend_otp(
    palm_pay_id: Annotated[str, typer.Argument(help="Link id (pp_...), still pending verification")],
    show_otp: Annotated[
        bool, typer.Option("--show-otp", help="DEMO ONLY: print the new code instead of sending it")
    ] = False,
) -> None:
    """Send a new one-time code to a pending link's proxy (the previous code stops working)."""
    sender = DevOtpSender() if show_otp else None
    with _service(sender) as service:
        delivery_id = service.resend_otp(palm_pay_id)
    typer.echo(f"OTP sent (delivery {delivery_id})")
    if sender is not None:
        typer.echo(f"demo OTP: {sender.code_for(delivery_id)}")


@palm_app.command("verify")
def verify(
    palm_pay_id: Annotated[str, typer.Argument(help="Link id (pp_...)")],
    otp: Annotated[str, typer.Argument(help="One-time code")],
) -> None:
    """Verify a pending link with its OTP; the link becomes active."""
    with _service() as service:
        _print(service.verify(palm_pay_id, otp))


@palm_app.command("pay")
def pay(
    template_ref: Annotated[str, typer.Option("--template-ref", help="Matched palm template reference")],
    amount: Annotated[str, typer.Option("--amount", help="Rand, e.g. 12.50")],
    terminal: Annotated[str, typer.Option("--terminal", help="Terminal id")],
    score: Annotated[float, typer.Option("--score", help="Match score 0..1")] = 0.99,
    liveness: Annotated[bool, typer.Option("--liveness/--no-liveness", help="Liveness check result")] = True,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Payment id for retries")] = None,
) -> None:
    """Pay by palm over the (simulated) PayShap rail."""
    with _service() as service:
        _print(service.pay(template_ref, amount, terminal, liveness, score, idempotency_key))


@palm_app.command("suspend")
def suspend(
    palm_pay_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    actor: Annotated[str, typer.Option("--actor", help="Who asks (recorded in the audit log)")],
) -> None:
    """Suspend an active link."""
    with _service() as service:
        _print(service.suspend(palm_pay_id, reason, actor))


@palm_app.command("reactivate")
def reactivate(
    palm_pay_id: Annotated[str, typer.Argument()],
    actor: Annotated[str, typer.Option("--actor")],
    reason: Annotated[str, typer.Option("--reason")] = "review completed",
) -> None:
    """Lift a suspension after review."""
    with _service() as service:
        _print(service.reactivate(palm_pay_id, actor, reason))


@palm_app.command("revoke")
def revoke(
    palm_pay_id: Annotated[str, typer.Argument()],
    actor: Annotated[str, typer.Option("--actor", help="The human who approved the revocation")],
    reason: Annotated[str, typer.Option("--reason")] = "revoked on request",
) -> None:
    """Permanently revoke a link (human-approved action in the spec)."""
    with _service() as service:
        _print(service.revoke(palm_pay_id, actor, reason))


@palm_app.command("show")
def show(palm_pay_id: Annotated[str, typer.Argument()]) -> None:
    """Show a link (masked)."""
    with _service() as service:
        _print(service.show(palm_pay_id))


@palm_app.command("rotate-key")
def rotate_key() -> None:
    """Create a new data key and re-encrypt every sensitive field with it."""
    with _service() as service:
        _print(service.rotate_key())


@palm_app.command("maintain")
def maintain() -> None:
    """One settlement round: expire unverified links, settle or release pending payments (cron-safe).

    Exit status: 0 done, 75 another round holds the lock (try again next time), 2 bad settings.
    """
    from payops.palm_jobs import MaintenanceLocked, maintain_once
    from payops.scheduling import EX_TEMPFAIL
    from payops.settings import Settings

    with _service() as service:
        try:
            report = maintain_once(Settings(), service)
        except MaintenanceLocked:
            raise _fail("another palm-pay maintenance round is running; try again later", EX_TEMPFAIL) from None
    _print(report)
    typer.echo(report.summary(), err=True)


def main() -> None:  # pragma: no cover - convenience entry point
    palm_app(prog_name="payops palm")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
