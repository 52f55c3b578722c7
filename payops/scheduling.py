"""Scheduled ticks: `payops tick` from cron, a Kubernetes CronJob or a pool of workers.

A partition is one agent deployment (`--partition` or PAYOPS_DEPLOYMENT): one
LangGraph thread, one event source (a merchant's, a region's, a segment group's),
its own decision ids. Each tick of a partition runs exactly once:

- the tick holds the partition's lock from before it reads the checkpoint until
  after it writes the next one: a file lock in the state directory on SQLite, a
  PostgreSQL session advisory lock (`payops:tick:<partition>`) with a database URL,
  so workers on any number of machines queue on the same partition without overlap;
- a tick that finds the lock held exits at once with EX_TEMPFAIL (75, payops.errors): the
  scheduler simply tries again at the next slot;
- a worker killed mid-tick writes no checkpoint (ticks checkpoint once, at the end)
  and its lock dies with its connection, so the next tick of the partition redoes
  the same window under the same decision id. The control planes and palm-pay
  operations take that id as their idempotency key and approvals are keyed by it,
  so the redo finds the action already applied instead of applying it again.

A window whose end is still in the future (a live feed that a pool of workers
would otherwise race ahead of) is not ticked: the run ends "not due" with exit 0.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payops.errors import BadInput, Unavailable

if TYPE_CHECKING:
    from payops.graph.services import AgentServices
    from payops.settings import Settings


PARTITION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")


class TickLocked(Unavailable):
    """Another tick holds the lock; the scheduler should simply try again next time."""


class TickUsageError(BadInput, ValueError):
    """The tick cannot start as configured (unknown scenario, unreadable source, bad partition or URL)."""


@dataclass
class TickOutcome:
    status: str  # "done" | "idle" (the source has no events) | "not_due" (the next window has not ended yet)
    partition: str
    state: dict[str, Any] | None = None
    services: AgentServices | None = None
    window_end: float | None = None


def check_partition(name: str) -> str:
    if not PARTITION_NAME.match(name):
        raise TickUsageError(f"bad partition name {name!r}: 1-100 letters, digits or . _ : @ - "
                             "(starting with a letter or digit)")
    return name


def lock_name(partition: str) -> str:
    """The advisory lock of one partition's ticks (storage.locks.advisory_key hashes it)."""
    return f"payops:tick:{partition}"


def lock_path(state_dir: Path, partition: str) -> Path:
    """The file lock of one partition's ticks; the default deployment keeps the historical name."""
    return state_dir / ("tick.lock" if partition == "default" else f"tick-{partition}.lock")


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


@contextmanager
def partition_lock(settings: Settings) -> Iterator[None]:
    """Hold the partition's tick lock for the block, or raise TickLocked at once."""
    partition = check_partition(settings.deployment)
    if settings.database_url:
        from payops.storage.db import is_postgres_url
        from payops.storage.locks import LockHeld, advisory_lock

        if not is_postgres_url(settings.database_url):
            raise TickUsageError("PAYOPS_DATABASE_URL must be a postgresql:// URL")
        try:
            with advisory_lock(settings.database_url, lock_name(partition)):
                yield
        except LockHeld:
            raise TickLocked(f"advisory lock {lock_name(partition)}") from None
        return
    with tick_lock(lock_path(settings.ensure_state_dir(), partition)):
        yield


def run_tick(settings: Settings, *, source: str | Sequence[str] | None = "simulator", scenario: str = "demo",
             seed: int = 7, wall_clock: Callable[[], float] = time.time,
             control_plane: str | None = None) -> TickOutcome:
    """One tick of `settings.deployment`, under its partition lock; everything opened is closed again.

    Raises TickLocked (another tick holds the partition), TickUsageError (bad set-up),
    storage.db.DatabaseError (PostgreSQL unreachable or not migrated), or whatever the tick raised.
    """
    from payops.signals.sources import SourceError
    from payops.wiring import agent_services, durable_agent

    partition = settings.deployment
    with partition_lock(settings):
        try:
            services = agent_services(settings, source, scenario, seed, control_plane=control_plane)
        except (SourceError, ValueError) as exc:  # PlaneChoiceError is a ValueError
            raise TickUsageError(str(exc)) from None
        agent = None
        try:
            agent = durable_agent(services)  # reads the checkpoint inside the lock: the window nobody has decided
            end = agent.next_window_end()
            if end is None:
                return TickOutcome("idle", partition, services=services)
            # A live feed's window is complete once the allowed lateness has passed too: events
            # stamped before its end may still be on their way (the simulator's are all there).
            lateness = 0.0 if services.source is None or services.source.ordered else settings.allowed_lateness_seconds
            if end + lateness > wall_clock():
                return TickOutcome("not_due", partition, services=services, window_end=end)
            result = agent.tick(end)
            assert result is not None
            return TickOutcome("done", partition, result.state, services, end)
        finally:
            close_agent(agent, services)


def close_agent(agent: Any, services: AgentServices) -> None:
    """Close what a tick opened (database connections above all: a worker loop must not leak them)."""
    things = [getattr(getattr(agent, "checkpointer", None), "conn", None), services.audit, services.approvals,
              getattr(services.lessons.store, "conn", None), services.palm, services.control_plane, services.source]
    seen: set[int] = set()
    for thing in things:
        closer = getattr(thing, "close", None)
        if thing is None or closer is None or id(thing) in seen:
            continue
        seen.add(id(thing))
        with suppress(Exception):
            closer()
