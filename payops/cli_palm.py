"""`payops palm ...`: operate the palm-pay backend from a shell.

Thin by design: parse, call PalmPayService, print the masked result as JSON.
State lives in Settings.state_dir. Refusals print one line on stderr; exit
status 2 for unusable input (bad arguments, unknown link, broken config), 1
for a refusal by the rules (limits, inactive link, spoof, ...).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from payops.cli_errors import fail as _fail  # the one way a command gives up
from payops.palmpay import DevOtpSender, PalmPayError, PalmPayOptions, PalmPayService
from payops.palmpay.attestation import ScanAttestation
from payops.palmpay.crypto import KeyRingError
from payops.palmpay.spec import SpecError

palm_app = typer.Typer(
    name="palm",
    help="Palm-pay backend: link palms to PayShap proxies, verify, pay, administer links.",
    no_args_is_help=True,
    add_completion=False,
)

INPUT_ERRORS = frozenset({"PALM_PAY_INVALID_INPUT", "PALM_PAY_LINK_NOT_FOUND", "PALM_PAY_REQUEST_NOT_FOUND"})


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


ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="PAYOPS_API_KEY", show_envvar=True,
                 help="Your operator API key (`payops keys create --role operator`); recorded as the actor"),
]
TerminalKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="PAYOPS_API_KEY", show_envvar=True,
                 help="The terminal's API key (`payops keys create --role terminal`), as over HTTP"),
]


@dataclass(frozen=True)
class _Caller:
    principal: str  # "<role>:<key id>", what the records name
    key_id: str


def _authenticated(api_key: str | None, role: str) -> _Caller:
    """The key's principal, checked against the key store like the HTTP API's: never a name the caller types.
    Missing, unknown, revoked or of another role: one line on stderr, exit 2."""
    from payops.api.keys import ApiKeyStore
    from payops.settings import Settings

    if not api_key:
        raise _fail(f"{_a(role)} API key is needed: --api-key or PAYOPS_API_KEY", 2)
    store = ApiKeyStore.in_state_dir(Settings().ensure_state_dir())
    try:
        key = store.authenticate(api_key)
    finally:
        store.close()
    if key is None:
        raise _fail("the API key is missing, unknown or revoked", 2)
    if key.role.value != role:
        raise _fail(f"{_a(role)} API key is needed (this one is {_a(key.role.value)} key)", 2)
    return _Caller(key.principal, key.key_id)


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _operator(api_key: str | None) -> str:
    """The authenticated operator's principal ("operator:<key id>")."""
    return _authenticated(api_key, "operator").principal


def _terminal(api_key: str | None) -> _Caller:
    """Customer-present enrolment and payment take a terminal key, as POST /v1/palm/links and /payments do."""
    return _authenticated(api_key, "terminal")


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
    api_key: TerminalKeyOption = None,
) -> None:
    """Create a palm-to-proxy link (pending verification) and send an OTP (PAYOPS_OTP_SENDER)."""
    terminal = _terminal(api_key)
    sender = DevOtpSender() if show_otp else None
    with _service(sender) as service:
        view, delivery_id = service.create_link(
            user, template_ref, hand, proxy, proxy_type, daily_limit, transaction_limit, bank,
            actor=f"customer@{terminal.principal}",
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
    api_key: TerminalKeyOption = None,
) -> None:
    """Send a new one-time code to a pending link's proxy (the previous code stops working)."""
    _terminal(api_key)
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
    api_key: TerminalKeyOption = None,
) -> None:
    """Verify a pending link with its OTP; the link becomes active."""
    _terminal(api_key)
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
    sign_with: Annotated[Path | None, typer.Option(
        "--sign-with", help="Sign the scan as the terminal would, with this Ed25519 private key (PEM)")] = None,
    require_attestation: Annotated[bool, typer.Option(
        "--require-attestation", help="Refuse the payment unless the scan is signed")] = False,
    api_key: TerminalKeyOption = None,
) -> None:
    """Pay by palm over the (simulated) PayShap rail."""
    terminal_key = _terminal(api_key)
    # Scoped by the key's id, as over HTTP: another key's retry never replays this key's payment.
    idempotency_key = f"{terminal_key.key_id}:{idempotency_key}" if idempotency_key else None
    attestation = _sign(sign_with, template_ref, amount, terminal, liveness, score) if sign_with else None
    with _service() as service:
        _print(service.pay(template_ref, amount, terminal, liveness, score, idempotency_key,
                           attestation=attestation, require_attestation=require_attestation))


def _sign(
    key_file: Path, template_ref: str, amount: str, terminal: str, liveness: bool, score: float
) -> ScanAttestation:
    """What a terminal does before it sends a scan (demos and tests of the backend's check)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from payops.palmpay.attestation import sign_scan
    from payops.palmpay.money import MoneyError

    try:
        key = load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(f"cannot read the signing key {key_file}: {type(exc).__name__}", 2) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise _fail(f"{key_file} is not an Ed25519 private key", 2)
    try:
        return sign_scan(key, terminal_id=terminal, palm_template_ref=template_ref, liveness_passed=liveness,
                         match_score=score, amount=amount, nonce=secrets.token_urlsafe(16), ts=int(time.time()))
    except MoneyError as exc:
        raise _fail(f"PALM_PAY_INVALID_INPUT: amount: {exc}", 2) from None


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
    status: Annotated[
        str, typer.Option("--status", help="pending, approved, executed, rejected, expired, failed or all")
    ] = "pending",
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
    """Ask for a new data key: a change request a second operator approves. The settlement rounds (`payops palm
    maintain`) then re-encrypt every sensitive field and retire the old key after the backup window."""
    actor = _operator(api_key)
    with _service() as service:
        _requested(service.request_change("rotate_key", requested_by=actor, reason="data key rotation"))


@palm_app.command("rotate-index-root")
def rotate_index_root(api_key: ApiKeyOption = None) -> None:
    """Ask to rotate the blind-index root; a second operator approves it. The settlement rounds
    (`payops palm maintain`) then re-index the links and retire the old root after the backup window."""
    actor = _operator(api_key)
    with _service() as service:
        _requested(service.request_change("rotate_index_root", requested_by=actor, reason="blind-index root rotation"))


@palm_app.command("erase-revoked-pii")
def erase_revoked_pii() -> None:
    """Erase the encrypted PII of links revoked longer ago than the retention period (cron-safe; POPIA)."""
    with _service() as service:
        typer.echo(f"erased the PII of {service.erase_revoked_pii()} revoked link(s)")


terminal_app = typer.Typer(name="terminal", no_args_is_help=True, add_completion=False,
                           help="Terminal signing keys: every payment's scan is signed by its terminal (Ed25519).")
palm_app.add_typer(terminal_app, name="terminal")


@terminal_app.command("register")
def terminal_register(
    terminal_id: Annotated[str, typer.Argument(help="The terminal's terminal_id")],
    public_key: Annotated[str | None, typer.Option("--public-key", help="base64 of the 32-byte public key")] = None,
    public_key_file: Annotated[Path | None, typer.Option("--public-key-file", help="PEM public key file")] = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Register (or replace) the public key a terminal's scans must be signed with (an operator key)."""
    from payops.palmpay.attestation import AttestationKeyError

    actor = _operator(api_key)
    if (public_key is None) == (public_key_file is None):
        raise _fail("give exactly one of --public-key or --public-key-file", 2)
    try:
        text = public_key if public_key is not None else public_key_file.read_text()  # type: ignore[union-attr]
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {public_key_file}: {type(exc).__name__}", 2) from None
    with _service() as service:
        try:
            record = service.attestation.register(terminal_id, text, actor=actor)
        except (AttestationKeyError, ValueError) as exc:
            raise _fail(str(exc), 2) from None
    typer.echo(f"terminal {record.terminal_id}: key {record.fingerprint} registered")


@terminal_app.command("revoke")
def terminal_revoke(
    terminal_id: Annotated[str, typer.Argument(help="The terminal's terminal_id")], api_key: ApiKeyOption = None
) -> None:
    """Stop accepting a terminal's signatures (a stolen or retired till; an operator key)."""
    actor = _operator(api_key)
    with _service() as service:
        try:
            done = service.attestation.revoke(terminal_id, actor=actor)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
    if not done:
        raise _fail(f"terminal {terminal_id} has no active key", 2)
    typer.echo(f"terminal {terminal_id}: key revoked")


@terminal_app.command("list")
def terminal_list() -> None:
    """Terminals, their key fingerprints and whether they are revoked."""
    with _service() as service:
        records = service.attestation.terminals()
    for record in records:
        state = "revoked" if record.revoked_at is not None else "active"
        typer.echo(f"{record.terminal_id}\t{record.fingerprint}\t{state}\t{record.registered_by}")


@terminal_app.command("keygen")
def terminal_keygen(
    private_key_out: Annotated[Path, typer.Option("--private-key-out", help="Where to write the private key (0600)")],
) -> None:
    """DEVELOPMENT: make a terminal key pair; prints the public key to register. Real terminals keep theirs in
    secure hardware and only ever export the public half."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(private_key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _fail(f"cannot create {private_key_out}: {exc.strerror}", 2) from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    typer.echo(base64.b64encode(raw).decode())


@palm_app.command("maintain")
def maintain() -> None:
    """One settlement round: expire unverified links, settle or release pending payments (cron-safe).

    Exit status: 0 done, 75 another round holds the lock (try again next time), 2 bad settings.
    """
    from payops.errors import EX_TEMPFAIL
    from payops.palm_jobs import MaintenanceLocked, maintain_once
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
    main()
