"""Parse worker processes for a big JSONL file: its chunks parsed on the other cores, in file order.

`LineSource` (sources.py) reads from a ParallelChunks when `open_jsonl` decides a file is worth the
workers (`parse_workers`); it parses the rest itself if they fail (WorkersFailed says where).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from typing import Any

from payops.errors import Unavailable

from .jsonl import JsonlParser, parse_range

# Bytes of the file per chunk handed to a worker.
PARALLEL_CHUNK_BYTES = 4 << 20
# Input handed to the workers ahead of the agent. Generous, so that the workers
# parse a whole 1M-event replay (~220 MB) while the agent's process is still
# importing its graph stack; bounded, so a bigger file does not pile up parsed
# columns (~32 bytes per ~215-byte line: this much input is ~40 MB of results).
PARALLEL_AHEAD_BYTES = 256 << 20


def _ranges(path: str, size: int, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """[start, end) byte ranges of whole lines, about chunk_bytes each."""
    with open(path, "rb") as handle:
        start = 0
        while start < size:
            probe = start + chunk_bytes
            if probe >= size:
                yield start, size
                return
            handle.seek(probe)
            end = size
            while True:
                block = handle.read(1 << 16)
                if not block:
                    break
                found = block.find(b"\n")
                if found >= 0:
                    end = probe + found + 1
                    break
                probe += len(block)
            yield start, min(end, size)
            start = end


PARSE_START_METHOD = "forkserver"
# What the fork server imports once, before it forks the workers: the parser (numpy,
# msgspec), and __main__, which multiprocessing would otherwise import again in every
# worker (for the `payops` command that is the CLI module).
PARSE_PRELOAD = ["__main__", JsonlParser.__module__]


class WorkersFailed(Unavailable):
    """The parse workers could not start or died; the file is whole from byte `resume_at` on."""

    def __init__(self, resume_at: int, reason: str) -> None:
        super().__init__(reason)
        self.resume_at = resume_at


class ParallelChunks:
    """A file's chunks parsed by worker processes, handed back in file order.

    Up to PARALLEL_AHEAD_BYTES of input (at least two chunks per worker) is in
    flight, so memory stays bounded. The file is read as it is when opened (a
    replay input, not a growing log: use stdin for that).

    The pool starts on a thread: starting it waits while the fork server starts
    python and imports the parser, and this process need not wait with it (a
    replay imports the agent meanwhile). `next` waits for it. Workers hand their
    columns over through files in a private temporary directory (handoff.py),
    removed with whatever is left in it on close.

    A concurrent.futures pool, not multiprocessing.Pool: a worker that cannot start
    (cannot import the parser) or dies breaks the pool and `next` raises
    WorkersFailed at once, where multiprocessing.Pool starts new workers for ever and
    waits for the lost result with them (a replay hung for 9 minutes that way).
    """

    def __init__(self, path: str, size: int, workers: int, chunk_bytes: int | None = None,
                 ahead_bytes: int | None = None) -> None:
        chunk_bytes = chunk_bytes or PARALLEL_CHUNK_BYTES
        self._path = path
        self._ranges = _ranges(path, size, chunk_bytes)
        self._inflight: deque[tuple[int, int, Future[tuple[Any, ...]]]] = deque()  # (start, end, future) in file order
        self._handed_to = 0  # bytes [0, this) were handed back
        self._max_inflight = max(2 * workers, (ahead_bytes or PARALLEL_AHEAD_BYTES) // chunk_bytes)
        try:
            self._handoff_dir: str | None = tempfile.mkdtemp(prefix="payops-parse-")
        except OSError:  # no writable temporary directory: results come back through the pipe
            self._handoff_dir = None
        self._pools: list[ProcessPoolExecutor] = []  # the pool, once started
        self._finalizer = weakref.finalize(self, _shut_down, self._pools, self._handoff_dir)
        self._start_error: BaseException | None = None
        context = None
        try:
            context = multiprocessing.get_context(PARSE_START_METHOD)
            # forkserver, not fork: forking a process that runs other threads (an HTTP
            # server, a notifier) can copy a lock held mid-operation and deadlock the pool.
            context.set_forkserver_preload(PARSE_PRELOAD)
            if PARSE_START_METHOD == "forkserver":
                with _safe_path():  # here, on the caller's thread: the environment is changed for a moment
                    multiprocessing.forkserver.ensure_running()  # spawns it (a few ms); it imports on its own
        except Exception as exc:  # handed to the caller of next()
            self._start_error = exc
        self._starter = threading.Thread(target=self._start, args=(context, workers), name="parse-pool-start",
                                         daemon=True)
        if self._start_error is None:
            self._starter.start()

    def _start(self, context: BaseContext | None, workers: int) -> None:
        try:
            self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
            self._pools.append(self._pool)
            while len(self._inflight) < self._max_inflight and self._submit():
                pass
        except Exception as exc:  # handed to the caller of next()
            self._start_error = exc

    def _started(self) -> None:
        if self._starter.ident is not None:  # started (not when the fork server could not be)
            self._starter.join()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            self._fail(f"{type(error).__name__}: {error}")

    def _fail(self, reason: str) -> None:
        self.close()
        raise WorkersFailed(self._handed_to, reason)

    def _submit(self) -> bool:
        found = next(self._ranges, None)
        if found is None:
            return False
        self._inflight.append((*found, self._pool.submit(parse_range, self._path, *found, self._handoff_dir)))
        return True

    def next(self) -> tuple[Any, ...] | None:
        """The next chunk's parse_range result; None at the end; WorkersFailed when the workers failed."""
        self._started()
        if not self._inflight:
            self.close()
            return None
        start, end, future = self._inflight[0]
        try:
            result = future.result()
            self._submit()
        except Exception as exc:  # a broken pool or a worker's error (not BaseException: Ctrl-C stops the run)
            self._fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        self._inflight.popleft()
        self._handed_to = end
        return result

    def close(self) -> None:
        if self._starter.ident is not None:
            self._starter.join()
        self._finalizer()


@contextmanager
def _safe_path() -> Iterator[None]:
    """Start the fork server without the current folder on its sys.path.

    It runs `python -c ...`, which puts the current folder first on sys.path, and
    Python 3.11's fork server does not take the parent's sys.path: a folder holding a
    `payops/` directory (the repository, with a non-editable install) would shadow the
    installed package and no worker could import the parser. PYTHONSAFEPATH (3.11+)
    leaves it out; the `payops` command's own sys.path has no such entry either.
    Set only while the fork server is spawned, on the thread that spawns it.
    """
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = before


def _init_worker() -> None:
    # Workers ignore Ctrl-C: the agent's process handles it and terminates them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _shut_down(pools: list[ProcessPoolExecutor], handoff_dir: str | None) -> None:
    for pool in pools:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # stop work nobody will read (a replay stopped early)
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(5)
    pools.clear()
    if handoff_dir is not None:  # with the columns of chunks never read (a replay stopped early)
        shutil.rmtree(handoff_dir, ignore_errors=True)
