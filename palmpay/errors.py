"""Customer-facing refusals.

Codes, HTTP statuses and messages of the spec's `errors` table come from the
spec at run time. A few refusals the spec does not name (bad input, a wrong
OTP, an illegal state change) are listed here under the same rules: a stable
code, an HTTP status, a message that never reveals internals, and the card
fallback for the terminal.
"""

from __future__ import annotations

from typing import Any

from payops.errors import PayopsError

from .spec import ErrorEntry, PalmPaySpec

CARD_FALLBACK = "card"

# Refusals beyond the spec's table; same shape, same "no internals" rule.
SUPPLEMENTAL_ERRORS: dict[str, ErrorEntry] = {
    "PALM_PAY_INVALID_INPUT": ErrorEntry(422, "The request is not valid"),
    "PALM_PAY_LINK_NOT_FOUND": ErrorEntry(404, "Palm payment link not found"),
    "PALM_PAY_ILLEGAL_TRANSITION": ErrorEntry(409, "This change is not allowed for the link's current state"),
    "PALM_PAY_PALM_LIMIT": ErrorEntry(409, "A customer can link at most two palms, one left and one right"),
    "PALM_PAY_OTP_INVALID": ErrorEntry(401, "The verification code is incorrect"),
    "PALM_PAY_OTP_EXPIRED": ErrorEntry(410, "The verification code has expired — please request a new one"),
    "PALM_PAY_OTP_ATTEMPTS_EXCEEDED": ErrorEntry(429, "Too many incorrect codes — please request a new one"),
    "PALM_PAY_OTP_RESEND_LIMIT": ErrorEntry(429, "Too many codes requested — please re-enroll"),
    "PALM_PAY_OTP_DELIVERY_FAILED": ErrorEntry(502, "The verification code could not be sent — please try again"),
    "PALM_PAY_IDEMPOTENCY_CONFLICT": ErrorEntry(409, "This payment reference was already used for another payment"),
    "PALM_PAY_NOT_AUTHORISED": ErrorEntry(
        403, "This change needs an authorised operator and a second operator's approval"),
    "PALM_PAY_REQUEST_NOT_FOUND": ErrorEntry(404, "Change request not found"),
    "PALM_PAY_REQUEST_NOT_PENDING": ErrorEntry(409, "This change request was already decided"),
    "PALM_PAY_REQUEST_EXPIRED": ErrorEntry(410, "This change request expired before a second operator approved it"),
    # Terminal attestation (attestation.py): an untrusted scan is refused like a spoof (403), never as a
    # 401, which would tell the terminal its API key is wrong.
    "PALM_PAY_ATTESTATION_REQUIRED": ErrorEntry(422, "This terminal must sign its palm scans"),
    "PALM_PAY_ATTESTATION_INVALID": ErrorEntry(403, "The palm scan could not be verified — please use a card"),
    "PALM_PAY_ATTESTATION_STALE": ErrorEntry(403, "The palm scan has expired — please scan again"),
    "PALM_PAY_ATTESTATION_REPLAYED": ErrorEntry(409, "This palm scan was already used — please scan again"),
}


class PalmPayError(PayopsError):
    """A refusal the terminal or API caller can show as is.

    `message` is the spec's text; `detail` (optional) is a safe, masked hint for
    operators and is never required to understand the refusal.
    """

    def __init__(self, code: str, status: int, message: str, *, detail: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.fallback = CARD_FALLBACK
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "status": self.status,
            "message": self.message,
            "fallback": self.fallback,
        }
        if self.detail:
            body["detail"] = self.detail
        return body


class IllegalTransitionError(PalmPayError):
    """A link_status change that the spec's transitions do not allow."""

    def __init__(self, entry: ErrorEntry, from_state: str, to_state: str) -> None:
        super().__init__(
            "PALM_PAY_ILLEGAL_TRANSITION", entry.status, entry.message, detail=f"{from_state} -> {to_state}"
        )
        self.from_state = from_state
        self.to_state = to_state


class ErrorCatalog:
    """Builds PalmPayError objects from the spec's table plus the supplemental codes."""

    def __init__(self, spec: PalmPaySpec) -> None:
        self._entries = {**SUPPLEMENTAL_ERRORS, **spec.errors}

    def entry(self, code: str) -> ErrorEntry:
        return self._entries[code]

    def make(self, code: str, *, detail: str | None = None, message: str | None = None) -> PalmPayError:
        entry = self._entries[code]
        return PalmPayError(code, entry.status, message or entry.message, detail=detail)

    def illegal_transition(self, from_state: str, to_state: str) -> IllegalTransitionError:
        return IllegalTransitionError(self._entries["PALM_PAY_ILLEGAL_TRANSITION"], from_state, to_state)
