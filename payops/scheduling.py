"""One tick at a time per state directory: a non-blocking file lock for cron runs."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class TickLocked(Exception):
    """Another tick holds the lock; the scheduler should simply try again next time."""


@contextmanager
def tick_lock(path: Path) -> Iterator[None]:
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TickLocked(str(path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process dies
