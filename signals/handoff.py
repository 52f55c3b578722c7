"""Numpy columns handed from a parse worker to the agent's process through a file.

A pool's results come back over a pipe, read by a thread of the receiving
process that needs the GIL for every 64 KB. While that process is busy (a
replay imports the agent's stack as the workers parse) the thread gets the GIL
only every switch interval, the pipe stays full and the workers wait on it:
measured, 1M events came back ~0.25 s later than with an idle receiver. So a
worker writes its columns to a file in a directory the receiver owns (and
removes with everything in it when it is done), and only the file's name and
the columns' layout cross the pipe. Writing and reading cost one copy each.

A worker that cannot write the file (no space, say) hands the columns back
inline instead: slower, never lost.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ColumnFile:
    """Where a worker left its columns: dtype and length of each, in order."""

    path: str
    layout: tuple[tuple[str, int], ...]


def hand_over(columns: Sequence[np.ndarray], folder: str | None, name: str) -> ColumnFile | tuple[np.ndarray, ...]:
    """Write `columns` to folder/name for `take_over`; the columns themselves if there is no folder or no room."""
    arrays = tuple(np.ascontiguousarray(c) for c in columns)
    if folder is None:
        return arrays
    path = os.path.join(folder, name)
    try:
        with open(path, "xb") as out:
            for array in arrays:
                out.write(array.data.cast("B"))  # the array's own buffer, as bytes (it is contiguous)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return arrays
    return ColumnFile(path, tuple((a.dtype.str, len(a)) for a in arrays))


def take_over(columns: ColumnFile | tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The columns `hand_over` gave; a file is read and removed."""
    if not isinstance(columns, ColumnFile):
        return columns
    try:
        with open(columns.path, "rb") as handle:
            arrays = tuple(_read(handle, np.dtype(dtype), count) for dtype, count in columns.layout)
    finally:
        os.unlink(columns.path)
    return arrays


def _read(handle: io.BufferedReader, dtype: np.dtype[Any], count: int) -> np.ndarray:
    array = np.empty(count, dtype)
    if count and handle.readinto(array.data.cast("B")) != array.nbytes:
        raise OSError(f"short column file: {handle.name}")
    return array
