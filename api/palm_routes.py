"""Palm-pay endpoints for terminals and the enrolment flow.

Each one calls PalmPayService and returns its masked view. Refusals come back
as the spec's code, HTTP status and message with the card fallback (see
errors.py). Payments need an idempotency key (the Idempotency-Key header or the
body field): a terminal that lost a response retries with the same key and gets
the first result back (`replayed: true`), never a second payment. Keys are
scoped to the calling key's id (names are unique too), so two clients cannot collide or probe
each other's payments; the payment id is `<key id>:<key>`. A first request
that was refused paid nothing, so a retry with its key is decided afresh (the
backend numbers it as the next attempt of the same payment). A replay whose body differs from the
first (another amount, terminal, palm or score) is 409: the key is for one purchase only.

Administration is operators' work, never a terminal's: one operator may suspend; revoking,
lifting a suspension, changing limits and rotating the data key are change requests that a
second, different operator approves (the two-person rule). The actor recorded is always the
calling key's principal, `<role>:<key id>`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Request

from payops.palmpay import LinkView, PaymentResult
from payops.palmpay.attestation import ScanAttestation
from payops.palmpay.errors import SUPPLEMENTAL_ERRORS
from payops.palmpay.models import ChangeRequest

from .auth import OPERATOR, TERMINAL, VIEWER, require
from .errors import ApiError
from .keys import ApiKey
from .models import (
    IDEMPOTENCY_KEY_PATTERN,
    ChangeRequestOut,
    CreateLinkRequest,
    LimitsRequest,
    Link,
    LinkCreated,
    Payment,
    PaymentRequest,
    RejectChangeRequest,
    RevokeRequest,
    SuspendRequest,
    VerifyRequest,
    money,
)
from .openapi_docs import errors

router = APIRouter(prefix="/v1/palm", tags=["palm-pay"])

LinkId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The link's palm_pay_id.")]
RequestId = Annotated[str, Path(pattern=r"^cr_[0-9a-f]{16}$", description="The change request's id.")]
RequestStatus = Literal["pending", "approved", "executed", "rejected", "expired", "failed", "all"]


def _link(view: LinkView) -> Link:
    return Link(
        palm_pay_id=view.palm_pay_id, user_id=view.user_id, palm_template_ref=view.palm_template_ref,
        palm_hand=view.palm_hand, payshap_proxy=view.payshap_proxy, proxy_type=view.proxy_type,
        link_status=view.link_status, linked_at=view.linked_at, verified_at=view.verified_at,
        created_at=view.created_at, daily_limit=money(view.daily_limit), daily_spent=money(view.daily_spent),
        transaction_limit=money(view.transaction_limit), reserved=money(view.reserved), bank=view.bank,
    )


def _request(found: ChangeRequest) -> ChangeRequestOut:
    return ChangeRequestOut(**found.model_dump())


def _payment(result: PaymentResult) -> Payment:
    return Payment(**{**result.model_dump(), "amount": money(result.amount)})


def _invalid(message: str) -> ApiError:
    entry = SUPPLEMENTAL_ERRORS["PALM_PAY_INVALID_INPUT"]
    return ApiError("PALM_PAY_INVALID_INPUT", entry.status, message or entry.message)


@router.post("/links", status_code=201, response_model=LinkCreated, summary="Enrol: link a palm to a payment proxy",
             responses=errors(401, 403, 409, 413, 422, 429, 502))
def create_link(body: CreateLinkRequest, request: Request, client: ApiKey = Depends(require(TERMINAL))) -> LinkCreated:
    """Creates a link pending verification and sends a one-time code to the proxy. Rate-limited per key."""
    backend = request.app.state.backend
    backend.limit("enrolment", client, on_palm_path=True)
    view, delivery_id = backend.palm.create_link(
        body.user_id, body.palm_template_ref, body.palm_hand, body.payshap_proxy, body.proxy_type,
        body.daily_limit, body.transaction_limit, body.bank, actor=f"customer@{client.principal}",
    )
    return LinkCreated(link=_link(view), otp_delivery_id=delivery_id)


@router.get("/links/{palm_pay_id}", response_model=Link, summary="Show a link (masked)",
            responses=errors(401, 403, 404, 422))
def show_link(palm_pay_id: LinkId, request: Request,
              client: ApiKey = Depends(require(TERMINAL, OPERATOR, VIEWER))) -> Link:
    return _link(request.app.state.backend.palm.show(palm_pay_id))


@router.post("/links/{palm_pay_id}/verify", response_model=Link, summary="Verify the one-time code",
             responses=errors(401, 403, 404, 409, 410, 413, 422, 429))
def verify_link(palm_pay_id: LinkId, body: VerifyRequest, request: Request,
                client: ApiKey = Depends(require(TERMINAL))) -> Link:
    """pending_verification -> active. Rate-limited per key (on top of the backend's per-code attempt cap)."""
    backend = request.app.state.backend
    backend.limit("verification", client, on_palm_path=True)
    return _link(backend.palm.verify(palm_pay_id, body.otp))


@router.post("/links/{palm_pay_id}/resend-otp", response_model=LinkCreated, summary="Send a new one-time code",
             responses=errors(401, 403, 404, 409, 410, 422, 429, 502))
def resend_otp(palm_pay_id: LinkId, request: Request, client: ApiKey = Depends(require(TERMINAL))) -> LinkCreated:
    """Voids the previous code. Capped by the backend, and rate-limited per key like verification."""
    backend = request.app.state.backend
    backend.limit("verification", client, on_palm_path=True)
    delivery_id = backend.palm.resend_otp(palm_pay_id)
    return LinkCreated(link=_link(backend.palm.show(palm_pay_id)), otp_delivery_id=delivery_id)


@router.post("/links/{palm_pay_id}/suspend", response_model=Link, summary="Suspend a link for review",
             responses=errors(401, 403, 404, 409, 413, 422))
def suspend_link(palm_pay_id: LinkId, body: SuspendRequest, request: Request,
                 client: ApiKey = Depends(require(OPERATOR))) -> Link:
    """One operator may suspend (the safe direction); lifting it takes two. The key id is the actor."""
    return _link(request.app.state.backend.palm.suspend(palm_pay_id, body.reason, client.principal))


@router.post("/links/{palm_pay_id}/revoke", status_code=202, response_model=ChangeRequestOut,
             summary="Ask to revoke a link (a second operator approves)", responses=errors(401, 403, 404, 413, 422))
def revoke_link(palm_pay_id: LinkId, body: RevokeRequest, request: Request,
                client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    """The spec marks revocation human_required and it is permanent: this records a change request that a
    second, different operator approves (`POST /v1/palm/requests/{id}/approve`); nothing changes until then.
    Terminals cannot revoke."""
    return _request(request.app.state.backend.palm.request_change(
        "revoke", requested_by=client.principal, palm_pay_id=palm_pay_id, reason=body.reason))


@router.post("/links/{palm_pay_id}/reactivate", status_code=202, response_model=ChangeRequestOut,
             summary="Ask to lift a suspension (a second operator approves)", responses=errors(401, 403, 404, 413, 422))
def reactivate_link(palm_pay_id: LinkId, body: RevokeRequest, request: Request,
                    client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    return _request(request.app.state.backend.palm.request_change(
        "reactivate", requested_by=client.principal, palm_pay_id=palm_pay_id, reason=body.reason))


@router.post("/links/{palm_pay_id}/limits", status_code=202, response_model=ChangeRequestOut,
             summary="Ask to change a link's limits (a second operator approves)",
             responses=errors(401, 403, 404, 413, 422))
def change_limits(palm_pay_id: LinkId, body: LimitsRequest, request: Request,
                  client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    args = {k: v for k, v in (("daily_limit", body.daily_limit), ("transaction_limit", body.transaction_limit)) if v}
    return _request(request.app.state.backend.palm.request_change(
        "set_limits", requested_by=client.principal, palm_pay_id=palm_pay_id, reason=body.reason, args=args))


@router.post("/key-rotations", status_code=202, response_model=ChangeRequestOut,
             summary="Ask to rotate the data key (a second operator approves)", responses=errors(401, 403, 422))
def rotate_key(request: Request, client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    return _request(request.app.state.backend.palm.request_change(
        "rotate_key", requested_by=client.principal, reason="data key rotation"))


@router.post("/index-root-rotations", status_code=202, response_model=ChangeRequestOut,
             summary="Ask to rotate the blind-index root (a second operator approves)",
             responses=errors(401, 403, 422))
def rotate_index_root(request: Request, client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    return _request(request.app.state.backend.palm.request_change(
        "rotate_index_root", requested_by=client.principal, reason="blind-index root rotation"))


@router.get("/requests", response_model=list[ChangeRequestOut], summary="Change requests (pending by default)",
            responses=errors(401, 403, 422))
def list_requests(request: Request, status: RequestStatus = "pending",
                  client: ApiKey = Depends(require(OPERATOR))) -> list[ChangeRequestOut]:
    found = request.app.state.backend.palm.change_requests(None if status == "all" else status)
    return [_request(r) for r in found]


@router.post("/requests/{request_id}/approve", response_model=ChangeRequestOut,
             summary="Approve another operator's change request (it runs now, once)",
             responses=errors(401, 403, 404, 409, 410, 422))
def approve_request(request_id: RequestId, request: Request,
                    client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    """403 when the approver is the requester; 409 when already decided; 410 when expired."""
    return _request(request.app.state.backend.palm.approve_request(request_id, approved_by=client.principal))


@router.post("/requests/{request_id}/reject", response_model=ChangeRequestOut,
             summary="Reject another operator's change request", responses=errors(401, 403, 404, 409, 410, 413, 422))
def reject_request(request_id: RequestId, request: Request, body: RejectChangeRequest | None = None,
                   client: ApiKey = Depends(require(OPERATOR))) -> ChangeRequestOut:
    return _request(request.app.state.backend.palm.reject_request(
        request_id, decided_by=client.principal, note=(body.note if body else None) or ""))


@router.post("/payments", response_model=Payment, summary="Resolve a palm and pay",
             responses=errors(400, 401, 403, 404, 409, 413, 422, 429))
def pay(body: PaymentRequest, request: Request,
        idempotency_key: Annotated[str | None, Header(
            pattern=IDEMPOTENCY_KEY_PATTERN, description="Unique per purchase; or the body's idempotency_key.")] = None,
        client: ApiKey = Depends(require(TERMINAL))) -> Payment:
    """The terminal's signature over the scan first (`attestation`), then liveness, the palm match, the link's
    state and limits, then the PayShap rail.

    200 with status completed, failed (the rail declined: offer the card) or pending (settles later).
    Refusals (spoof, not registered, inactive, limits) are errors with the spec's code. Rate-limited per key.
    """
    backend = request.app.state.backend
    backend.limit("payments", client, on_palm_path=True)
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise _invalid("The Idempotency-Key header and the body's idempotency_key differ")
    key = idempotency_key or body.idempotency_key
    if not key:
        raise _invalid("An idempotency key is required (Idempotency-Key header or idempotency_key)")
    signed = body.attestation
    scan = ScanAttestation(signed.nonce, signed.ts, signed.signature) if signed else None
    result = backend.palm.pay(body.palm_template_ref, body.amount, body.terminal_id,
                              liveness_passed=body.liveness_passed, match_score=body.match_score,
                              idempotency_key=f"{client.key_id}:{key}", attestation=scan,
                              require_attestation=backend.api.require_attestation)
    return _payment(result)
