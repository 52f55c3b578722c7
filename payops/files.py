"""Folders and files that hold state: created, checked and made private in one place.

Part of the kernel (like payops.settings and payops.errors): it imports nothing else of payops, so
settings, storage, memory and palm-pay may all use it.

* `prepare_folder`: the one check before anything writes in a folder (it is a folder, exists, can be
  written); a one-line `StateDirError` otherwise.
* `private_dir` / `private_file`: folders 0700 and files 0600, before anything is written to them:
  state and keys are nobody else's business.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from payops.errors import PayopsError

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "StateDirError", "prepare_folder", "private_dir", "private_file"]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class StateDirError(PayopsError):
    """The state folder cannot be used. `exit_code` 2 when the path given is wrong (a file: retrying
    will not help), 1 when the system refuses (permissions, a read-only disk)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def prepare_folder(path: Path, what: str = "state folder", option: str = "--state-dir") -> Path:
    """The one check before anything writes in a folder: it is a folder, exists (created with its
    parents) and can be written. Raises StateDirError with a one-line message naming `option`."""
    if path.exists() and not path.is_dir():
        raise StateDirError(f"the {what} {path} is a file, not a folder (choose another {option})", 2)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a parent is a file
        raise StateDirError(f"cannot create the {what} {path}: part of the path is a file", 2) from None
    except OSError as exc:
        raise StateDirError(f"cannot create the {what} {path}: {(exc.strerror or 'refused').lower()}") from None
    if not os.access(path, os.W_OK | os.X_OK):  # SQLite also creates journal files beside its databases
        raise StateDirError(f"the {what} {path} is read-only: payops needs to write there")
    return path


def private_dir(path: str | Path) -> Path:
    """Create (or tighten) a folder to 0700: state and keys are nobody else's business."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    with contextlib.suppress(OSError):  # not ours to chmod (e.g. a shared mount): leave it
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            folder.chmod(PRIVATE_DIR)
    return folder


def private_file(path: str | Path) -> Path:
    """Make a state file 0600 before anything is written to it (SQLite gives -wal/-shm the same mode)."""
    file = Path(path)
    if str(file) == ":memory:":
        return file
    private_dir(file.parent)
    try:
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        with contextlib.suppress(OSError):
            if stat.S_IMODE(file.stat().st_mode) & 0o077:
                file.chmod(PRIVATE_FILE)
    return file
