"""Masking of sensitive fields before anything is logged, audited or printed."""

from __future__ import annotations

import re
from typing import Any

SENSITIVE_KEYS = frozenset({"palm_template_ref", "payshap_proxy", "otp", "proxy", "template_ref", "data_key", "api_key",
                            "authorization", "password", "secret"})
# Anything that looks like a phone number or an account number inside free text: a run of
# 9+ digits (spaces allowed inside) standing on its own. Digits inside an identifier
# (a decision id such as d-3141592653abcdef, a link id) are not a proxy and stay readable,
# or ids in the audit trail would be mangled at random.
_DIGITS = re.compile(r"(?<![\w-])\+?\d[\d ]{7,}\d(?![\w-])")


def mask(value: str, keep: int = 4) -> str:
    text = str(value)
    if len(text) <= keep:
        return "*" * len(text)
    return "*" * (len(text) - keep) + text[-keep:]


def mask_text(text: str) -> str:
    return _DIGITS.sub(lambda m: mask(m.group(0).replace(" ", "")), text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with sensitive keys masked and digit runs in text masked."""
    if isinstance(value, dict):
        return {k: (mask(str(v)) if k in SENSITIVE_KEYS and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value
