"""Operators register each terminal's Ed25519 public key (palmpay/attestation.py).

A payment's scan must be signed by the key registered for the terminal it names
(when attestation is required, the default). Registering a key replaces the
previous one (a re-imaged till); deleting it stops that terminal's payments at once.
The calling operator's key id is recorded as the actor in the palm-pay audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from payops.palmpay.attestation import AttestationKeyError
from payops.palmpay.attestation import TerminalKey as TerminalKeyRecord

from .auth import OPERATOR, VIEWER, require
from .errors import ApiError
from .keys import ApiKey
from .models import TerminalKey, TerminalKeyRequest
from .openapi_docs import errors

router = APIRouter(prefix="/v1/palm/terminals", tags=["palm-pay"])

TerminalId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:@-]{1,64}$", description="The terminal's terminal_id.")]


def _out(record: TerminalKeyRecord) -> TerminalKey:
    def dt(ts: float | None) -> datetime | None:
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    return TerminalKey(terminal_id=record.terminal_id, fingerprint=record.fingerprint,
                       registered_at=dt(record.registered_at), registered_by=record.registered_by,
                       revoked_at=dt(record.revoked_at))


def _actor(client: ApiKey) -> str:
    return client.principal  # the authenticated key, never its name


@router.put("/{terminal_id}/key", response_model=TerminalKey, summary="Register a terminal's signing key",
            responses=errors(401, 403, 413, 422))
def register_key(terminal_id: TerminalId, body: TerminalKeyRequest, request: Request,
                 client: ApiKey = Depends(require(OPERATOR))) -> TerminalKey:
    """Registers (or replaces) the Ed25519 public key whose signatures this terminal's scans must carry."""
    palm = request.app.state.backend.palm
    try:
        record = palm.attestation.register(terminal_id, body.public_key, actor=_actor(client))
    except AttestationKeyError as exc:
        raise ApiError("PALM_PAY_INVALID_INPUT", 422, str(exc)) from None
    return _out(record)


@router.get("", response_model=list[TerminalKey], summary="Terminals and their signing keys",
            responses=errors(401, 403))
def list_keys(request: Request, client: ApiKey = Depends(require(OPERATOR, VIEWER))) -> list[TerminalKey]:
    return [_out(record) for record in request.app.state.backend.palm.attestation.terminals()]


@router.delete("/{terminal_id}/key", response_model=TerminalKey, summary="Revoke a terminal's signing key",
               responses=errors(401, 403, 404, 422))
def revoke_key(terminal_id: TerminalId, request: Request, client: ApiKey = Depends(require(OPERATOR))) -> TerminalKey:
    """The terminal's signed scans are refused from now on (a stolen or retired till). Returns the revoked key."""
    attestation = request.app.state.backend.palm.attestation
    if not attestation.revoke(terminal_id, actor=_actor(client)):
        raise ApiError("PALM_PAY_TERMINAL_NOT_FOUND", 404, "No active key is registered for this terminal")
    return next(_out(record) for record in attestation.terminals() if record.terminal_id == terminal_id)
