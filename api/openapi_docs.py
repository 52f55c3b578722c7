"""The error responses each operation documents, and the stable JSON of the whole schema."""

from __future__ import annotations

import json
from typing import Any

from .errors import ErrorBody

_WHY = {
    400: "Refused by the rules (e.g. PALM_PAY_TRANSACTION_LIMIT).",
    401: "No valid API key (or, on verify, PALM_PAY_OTP_INVALID). No detail is given.",
    403: "The key's role may not call this (or a palm-pay refusal such as PALM_PAY_SPOOF_DETECTED or "
         "PALM_PAY_ATTESTATION_INVALID).",
    404: "Not found (e.g. PALM_PAY_LINK_NOT_FOUND, PALM_PAY_NOT_REGISTERED).",
    409: "Conflicts with the current state (duplicate palm, illegal transition, reused idempotency key, "
         "approval no longer pending, ambiguous id).",
    410: "Expired (verification, code, approval request).",
    413: "Request body over the size limit.",
    422: "The request is not valid: `fields` names each field and rule (never the value sent).",
    429: "Rate limit of this key (Retry-After says when to retry), or a palm-pay limit.",
    502: "A downstream service failed (e.g. the OTP could not be sent).",
    503: "Not available in this deployment.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in statuses}


def schema_json(schema: dict[str, Any]) -> str:
    """Byte-stable text: sorted keys, two-space indent, non-ASCII kept, one trailing newline."""
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
