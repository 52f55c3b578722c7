"""Request and response bodies of the HTTP API.

Requests forbid unknown fields and bound every string, so a body is validated
before anything runs. Responses carry masked values only: a palm template
reference or a payment proxy is write-only (it goes in, its mask comes out).
Money is a decimal string in Rand ("12.50"), never a float.

Choices the spec defines (hands, proxy types) are plain strings here and checked
by the backend against the spec loaded at run time, so the schema does not
change when the spec does.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, field_validator

MONEY_PATTERN = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{8,100}$"

Money = Annotated[str, Field(pattern=MONEY_PATTERN, description="Rand as a decimal string, e.g. \"12.50\".",
                             examples=["12.50"])]
Text = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
TemplateRef = Annotated[str, Field(
    min_length=8, max_length=256, description="Reference to the palm template held by the terminal's vendor "
    "(never the template). Encrypted at rest; responses show only its mask.", json_schema_extra={"writeOnly": True})]
IdempotencyKey = Annotated[str, Field(pattern=IDEMPOTENCY_KEY_PATTERN, description=(
    "Unique per purchase: a retry with the same key returns the first result instead of paying again. "
    "8-100 characters: letters, digits, '_', '.', ':', '-'. A UUID is ideal."))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        # JSON may escape a lone surrogate (backslash-u d800): not text any store or hash can take.
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text") from None
        return value


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- palm-pay

class CreateLinkRequest(_In):
    user_id: Text
    palm_template_ref: TemplateRef
    palm_hand: Annotated[str, Field(max_length=32, description="Spec options, e.g. left, right.")] | None = None
    payshap_proxy: Annotated[str, Field(min_length=6, max_length=32, description=(
        "Phone or account number the payments go to. Encrypted at rest; responses show only its mask."),
        json_schema_extra={"writeOnly": True})]
    proxy_type: Annotated[str, Field(min_length=1, max_length=32, description="Spec options, e.g. phone, account.")]
    daily_limit: Money | None = Field(None, description="Rand; the spec's default when absent.")
    transaction_limit: Money | None = Field(None, description="Rand; the spec's default when absent.")
    bank: ShortText | None = Field(None, description="The payer's bank, for payment events.")


class VerifyRequest(_In):
    otp: Annotated[str, Field(pattern=r"^[0-9]{4,10}$", description="The one-time code sent to the proxy.",
                              json_schema_extra={"writeOnly": True})]


class RevokeRequest(_In):
    reason: Text = Field(..., description="Why (kept in the link's audit log; phone, account and e-mail masked).")


class SuspendRequest(_In):
    reason: Text = Field(..., description="Why (kept in the link's audit log; phone, account and e-mail masked).")


class LimitsRequest(_In):
    daily_limit: Money | None = Field(None, description="Rand; unchanged when absent.")
    transaction_limit: Money | None = Field(None, description="Rand; unchanged when absent.")
    reason: Text = Field("limit change on request", description="Why (masked like every free text).")


class RejectChangeRequest(_In):
    note: Annotated[str, Field(max_length=256)] | None = Field(None, description="Why not (masked).")


class ChangeRequestOut(_Out):
    """A change a second operator must approve (the two-person rule); it runs once, on approval."""

    request_id: str
    action: Literal["revoke", "reactivate", "set_limits", "rotate_key", "rotate_index_root"]
    palm_pay_id: str | None
    reason: str
    args: dict[str, str]
    requested_by: str = Field(..., description="The requesting operator's principal, operator:<key id>.")
    requested_at: float
    expires_at: float
    status: Literal["pending", "approved", "executed", "rejected", "expired", "failed"]
    decided_by: str | None = None
    decided_at: float | None = None
    result: str | None = None


class ScanAttestationIn(_In):
    """The terminal's Ed25519 signature over this scan (see api/README.md, "Terminal attestation")."""

    nonce: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,128}$", description=(
        "Fresh per scan, at least 96 random bits as base64url; never reused by the terminal."))]
    ts: Annotated[int, Field(ge=0, le=2**40, description="Epoch seconds on the terminal's clock when it signed.")]
    signature: Annotated[str, Field(pattern=r"^[A-Za-z0-9_+/-]{86}(==)?$", description=(
        "Base64 (URL-safe or standard) of the 64-byte Ed25519 signature over the scan message."))]


class TerminalKeyRequest(_In):
    public_key: Annotated[str, Field(min_length=40, max_length=512, description=(
        "The terminal's Ed25519 public key: base64 of its 32 raw bytes, or PEM (SubjectPublicKeyInfo)."))]


class TerminalKey(_Out):
    """A terminal's registered signing key (public data)."""

    terminal_id: str
    fingerprint: str = Field(..., description="ed25519: + the first 128 bits of SHA-256 of the raw key, in hex.")
    registered_at: datetime
    registered_by: str
    revoked_at: datetime | None = None


class PaymentRequest(_In):
    palm_template_ref: TemplateRef
    amount: Money
    terminal_id: ShortText
    liveness_passed: StrictBool = Field(..., description="The scanner's liveness result; false refuses at once.")
    # Strict: a JSON true or "0.99" is a terminal bug, never a perfect match.
    match_score: StrictFloat = Field(..., ge=0, le=1, allow_inf_nan=False, description="Palm match score in [0, 1].")
    idempotency_key: IdempotencyKey | None = Field(
        None, description="Or the Idempotency-Key header (one of the two is required; equal if both).")
    attestation: ScanAttestationIn | None = Field(None, description=(
        "The terminal's signature over this scan; required unless the server runs with "
        "PAYOPS_API_REQUIRE_ATTESTATION=false."))


class Link(_Out):
    """A palm-pay link, masked."""

    palm_pay_id: str
    user_id: str
    palm_template_ref: str = Field(..., description="Masked.")
    palm_hand: str | None
    payshap_proxy: str = Field(..., description="Masked.")
    proxy_type: str
    link_status: str
    linked_at: datetime | None
    verified_at: datetime | None
    created_at: datetime
    daily_limit: Money
    daily_spent: Money
    transaction_limit: Money
    reserved: Money = Field(..., description="Held by payments whose rail outcome is not known yet.")
    bank: str | None


class LinkCreated(_Out):
    link: Link
    otp_delivery_id: str = Field(..., description="The OTP sender's delivery id (never the code).")


class Payment(_Out):
    """A payment the backend accepted. Refusals are errors (with the card fallback) instead."""

    payment_id: str
    palm_pay_id: str
    status: Literal["pending", "completed", "failed"] = Field(..., description=(
        "pending: the rail did not answer in time; the amount stays reserved and the payment settles later "
        "(do not retry with a new key or take a card for the same purchase yet). failed: the rail declined; "
        "offer the fallback."))
    amount: Money
    currency: str
    payshap_proxy: str = Field(..., description="Masked.")
    terminal_id: str
    attempts: int
    error_code: str | None = None
    fallback: str | None = None
    rail_reference: str | None = None
    replayed: bool = Field(False, description="True when this is the stored result of an earlier request with the "
                                              "same key.")


def money(value: Decimal) -> str:
    return f"{value:.2f}"


# ---------------------------------------------------------------------------- ops

class Action(_Out):
    tool: str
    target: dict[str, str]
    args: dict[str, Any]


class Decision(_Out):
    """One tick's decision (CONTRACT.md §4 fields, plus where it sits in the audit trail)."""

    decision_id: str
    seq: int = Field(..., description="The decision record's number in the audit trail.")
    window_end: float
    category: str
    confidence: float
    summary: str | None = None
    diagnosis_target: dict[str, str] = Field(default_factory=dict, description="The segment blamed.")
    action: Action
    verdict: str | None = Field(None, description="Guardrails: allow, needs_approval or deny.")
    status: str = Field(..., description="What ran: executed, escalated, denied, skipped, failed or unknown.")
    executed: bool
    plane: str | None = Field(None, description="Where an executed action ran: simulated, shadow (recorded as what "
                              "would have run; nothing moved) or http. None when nothing was executed.")
    escalated: bool
    evidence: list[str]


class DecisionPage(_Out):
    items: list[Decision]
    next_before_seq: int | None = Field(None, description="Pass as before_seq for the next (older) page.")


class AuditRecord(_Out):
    seq: int
    kind: str
    at: float
    hash: str
    record: dict[str, Any]


class DecisionDetail(_Out):
    decision: Decision
    records: list[AuditRecord] = Field(..., description="Every audit record of the decision (approval, outcome, ...).")


class Explanation(_Out):
    decision_id: str
    explanation: str


class Approval(_Out):
    decision_id: str
    status: str
    tool: str | None = None
    target: dict[str, str] = Field(default_factory=dict)
    category: str | None = None
    confidence: float | None = None
    why_approval: list[str] = Field(default_factory=list)
    created_at: float
    expires_at: float
    approver: str | None = None
    note: str | None = None
    decided_at: float | None = None


class ApprovalAnswer(_In):
    note: str | None = Field(None, max_length=1000, description="Recorded in the audit trail with the approver.")


class ApprovalResult(_Out):
    decision_id: str
    status: str = Field(..., description="approved (applied by the agent on its next tick) or rejected.")
    approver: str


class Lesson(_Out):
    decision_id: str
    category: str
    tool: str
    target: dict[str, str]
    args: dict[str, Any]
    status: str
    approver: str | None = None
    verdict: str
    reasons: list[str]
    target_key: str
    dominant_error: str
    magnitude: str
    before: dict[str, Any]
    after: dict[str, Any]
    windows: int
    rolled_back: bool
    created_at: float
    applied_at: float | None = None
    concluded_at: float | None = None


class ChatQuestion(_In):
    question: Annotated[str, Field(min_length=1, max_length=2000)]


class ChatAnswer(_Out):
    answer: str
    decision_ids: list[str] = Field(default_factory=list,
                                    description="Decisions the answer cites (all in the audit trail).")
    note: str | None = Field(None, description="E.g. that the LLM was unavailable and the records answered directly.")


class AuditVerification(_Out):
    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    first_bad_decision: str | None = None
    reason: str = ""


class Health(_Out):
    status: Literal["ok"] = "ok"
