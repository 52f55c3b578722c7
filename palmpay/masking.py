"""Masked forms of sensitive values: the only forms logs, events, errors and views carry."""

from __future__ import annotations

import re

_VISIBLE = 4
_MASK = "*"


def _mask(value: str, shown: int) -> str:
    text = value.strip()
    if len(text) < 2 * shown:
        # Too short: showing the tail would reveal most of the value.
        return _MASK * 6
    return _MASK * 6 + text[-shown:]


def mask_proxy(proxy: str) -> str:
    """'0821234321' -> '******4321' (fixed width so the length is not revealed)."""
    return _mask(proxy, _VISIBLE)


def mask_ref(template_ref: str) -> str:
    """Template reference masked fully except its last 4 characters."""
    return _mask(template_ref, _VISIBLE)


# Free text (reasons, notes, actor labels) may quote a phone number, an account number or an
# e-mail address; these are masked before anything is stored. A phone or account is a run of
# 6+ digits (spaces, dashes, dots or brackets allowed between them, optional leading +) standing
# on its own: digits inside identifiers (pp_..., request ids, key ids) stay readable.
_DIGIT_RUN = re.compile(r"(?<![\w-])\+?\(?\d(?:[\d\s().-]*\d){5,}(?![\w-])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_free_text(text: str) -> str:
    """'call 082 123 4321 or jo@example.com' -> 'call ******4321 or [e-mail]'."""
    masked = _EMAIL.sub("[e-mail]", text)
    return _DIGIT_RUN.sub(_mask_digits, masked)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _mask_digits(match: re.Match[str]) -> str:
    found = match.group(0)
    if _ISO_DATE.fullmatch(found):
        return found  # a date is not a number anyone can be reached at
    return _mask(re.sub(r"\D", "", found), _VISIBLE)
