"""Masked forms of sensitive values: the only forms logs, events, errors and views carry."""

from __future__ import annotations

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
