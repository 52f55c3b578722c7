"""Masking of sensitive fields before anything is logged, audited or printed."""

from __future__ import annotations

import re
from typing import Any

SENSITIVE_KEYS = frozenset({"palm_template_ref", "payshap_proxy", "otp", "proxy", "template_ref", "data_key", "api_key"})
# Anything that looks like a phone number or an account number inside free text.
_DIGITS = re.compile(r"\+?\d[\d ]{7,}\d")


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
