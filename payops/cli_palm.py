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

INPUT_ERRORS = frozenset({"PALM_PAY_INVALID_INPUT", "PALM_PAY_LINK_NOT_FOUND", "PALM_PAY_REQUEST_NOT_FOUND"})


def _fail(line: str, code: int) -> typer.Exit:
    typer.echo(f"error: {line}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _service(sender: DevOtpSender | None = None) -> Iterator[PalmPayService]:
    try:
        from payops.settings import Settings

        service = PalmPayService(PalmPayOptions.from_settings(Settings()), verification=sender or DevOtpSender())
    except (SpecError, KeyRingError, ValueError, OSError) as exc:
        raise _fail(f"palm-pay is not usable: {exc}", 2) from None
    try:
        yield service
    except PalmPayError as exc:
        hint = f" [fallback: {exc.fallback}]" if exc.code not in INPUT_ERRORS else ""
        raise _fail(f"{exc.code} ({exc.status}): {exc.message}{hint}", 2 if exc.code in INPUT_ERRORS else 1) from None
    finally:
        service.close()


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
    """Create a palm-to-proxy link (pending verification) and send an OTP."""
    sender = DevOtpSender()
    with _service(sender) as service:
        view, delivery_id = service.create_link(
            user, template_ref, hand, proxy, proxy_type, daily_limit, transaction_limit, bank
        )
    _print(view)
    typer.echo(f"OTP sent (delivery {delivery_id})")
    if show_otp:
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


ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="PAYOPS_API_KEY", show_envvar=True,
                 help="Your operator API key (`payops keys create --role operator`); recorded as the actor"),
]


def _operator(api_key: str | None) -> str:
    """The authenticated operator's principal ("operator:<key id>"): never a name the caller types."""
    from payops.api.keys import ApiKeyError, ApiKeyStore
    from payops.settings import Settings

    if not api_key:
        raise _fail("an operator API key is needed: --api-key or PAYOPS_API_KEY", 2)
    store = ApiKeyStore.in_state_dir(Settings().ensure_state_dir())
    try:
        return store.authenticate_operator(api_key).principal
    except ApiKeyError as exc:
        raise _fail(str(exc), 2) from None
    finally:
        store.close()


def _requested(request: BaseModel) -> None:
    _print(request)
    typer.echo(f"a second operator approves it with: payops palm approve-request {request.request_id}")  # type: ignore[attr-defined]


@palm_app.command("suspend")
def suspend(
    palm_pay_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    api_key: ApiKeyOption = None,
) -> None:
    """Suspend an active link (one operator: the safe direction)."""
    actor = _operator(api_key)
    with _service() as service:
        _print(service.suspend(palm_pay_id, reason, actor))


@palm_app.command("reactivate")
def reactivate(
    palm_pay_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")] = "review completed",
    api_key: ApiKeyOption = None,
) -> None:
    """Ask to lift a suspension: a change request a second operator approves."""
    actor = _operator(api_key)
    with _service() as service:
        _requested(service.request_change("reactivate", requested_by=actor, palm_pay_id=palm_pay_id, reason=reason))


@palm_app.command("revoke")
def revoke(
    palm_pay_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")] = "revoked on request",
    api_key: ApiKeyOption = None,
) -> None:
    """Ask to revoke a link for good: a change request a second operator approves."""
    actor = _operator(api_key)
    with _service() as service:
        _requested(service.request_change("revoke", requested_by=actor, palm_pay_id=palm_pay_id, reason=reason))


@palm_app.command("set-limits")
def set_limits(
    palm_pay_id: Annotated[str, typer.Argument()],
    daily_limit: Annotated[str | None, typer.Option("--daily-limit", help="Rand, e.g. 5000")] = None,
    transaction_limit: Annotated[str | None, typer.Option("--transaction-limit", help="Rand, e.g. 3000")] = None,
    reason: Annotated[str, typer.Option("--reason")] = "limit change on request",
    api_key: ApiKeyOption = None,
) -> None:
    """Ask to change a link's limits: a change request a second operator approves."""
    actor = _operator(api_key)
    args = {k: v for k, v in (("daily_limit", daily_limit), ("transaction_limit", transaction_limit)) if v is not None}
    with _service() as service:
        _requested(service.request_change("set_limits", requested_by=actor, palm_pay_id=palm_pay_id, reason=reason,
                                          args=args))


@palm_app.command("requests")
def requests(
    status: Annotated[str, typer.Option("--status", help="pending, approved, executed, rejected, expired, failed or all")]
    = "pending",
) -> None:
    """List change requests waiting for (or decided by) a second operator."""
    if status not in {"pending", "approved", "executed", "rejected", "expired", "failed", "all"}:
        raise _fail(f"unknown status {status!r}", 2)
    with _service() as service:
        found = service.change_requests(None if status == "all" else status)
    typer.echo("[" + ",".join(r.model_dump_json() for r in found) + "]")


@palm_app.command("approve-request")
def approve_request(
    request_id: Annotated[str, typer.Argument(help="Change request id (cr_...)")],
    api_key: ApiKeyOption = None,
) -> None:
    """Approve another operator's change request: it runs now, exactly once."""
    actor = _operator(api_key)
    with _service() as service:
        _print(service.approve_request(request_id, approved_by=actor))


@palm_app.command("reject-request")
def reject_request(
    request_id: Annotated[str, typer.Argument(help="Change request id (cr_...)")],
    note: Annotated[str, typer.Option("--note")] = "",
    api_key: ApiKeyOption = None,
) -> None:
    """Reject another operator's change request."""
    actor = _operator(api_key)
    with _service() as service:
        _print(service.reject_request(request_id, decided_by=actor, note=note))


@palm_app.command("show")
def show(palm_pay_id: Annotated[str, typer.Argument()]) -> None:
    """Show a link (masked)."""
    with _service() as service:
        _print(service.show(palm_pay_id))


@palm_app.command("rotate-key")
def rotate_key(api_key: ApiKeyOption = None) -> None:
    """Ask for a new data key (every sensitive field re-encrypted): a change request a second operator approves."""
    actor = _operator(api_key)
    with _service() as service:
        _requested(service.request_change("rotate_key", requested_by=actor, reason="data key rotation"))


@palm_app.command("erase-revoked-pii")
def erase_revoked_pii() -> None:
    """Erase the encrypted PII of links revoked longer ago than the retention period (cron-safe; POPIA)."""
    with _service() as service:
        typer.echo(f"erased the PII of {service.erase_revoked_pii()} revoked link(s)")


def main() -> None:  # pragma: no cover - convenience entry point
    palm_app(prog_name="payops palm")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
