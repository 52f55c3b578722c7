"""Crash points for the crash script (scripts/crash_test.py): `PAYOPS_CRASH_AT=NAME[:N]`
makes the process kill itself with SIGKILL the N-th time (default 1st) it reaches the
point NAME — a kill -9 exactly after a write, with nothing flushed or cleaned up.
Unset (always, outside the script) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_ENV = "PAYOPS_CRASH_AT"
_seen: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(_ENV)
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth) if nth.isdigit() else 1


def crash_point(name: str) -> None:
    target = _target()
    if target is None or target[0] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
