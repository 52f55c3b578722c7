"""Palm-pay settlement jobs on a schedule: `payops palm maintain` and the background of serve / run.

One round (palmpay.settlement.run_maintenance) at a time per deployment: the
round holds a lock like `payops tick` does (a file lock in the state directory on
SQLite, a PostgreSQL session advisory lock with a database URL), and a round that
finds it held skips at once (exit 75 from the CLI) instead of asking the rail the
same questions twice. The settlements themselves are exactly-once in the store,
so the lock saves work; it is not what keeps the money right.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from payops.errors import Unavailable
from payops.scheduling import TickLocked, tick_lock

if TYPE_CHECKING:
    from payops.palmpay import PalmPayService
    from payops.palmpay.settlement import MaintenanceReport
    from payops.settings import Settings

log = logging.getLogger("payops.palm_jobs")

LOCK_NAME = "payops:palm:maintain"
LOCK_FILE = "palm-maintain.lock"


class MaintenanceLocked(Unavailable):
    """Another round holds the lock; try again next time."""


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_FILE


@contextmanager
def maintenance_lock(settings: Settings) -> Iterator[None]:
    """Hold the deployment's maintenance lock for the block, or raise MaintenanceLocked at once."""
    if settings.database_url:
        from payops.storage.locks import LockHeld, advisory_lock

        try:
            with advisory_lock(settings.database_url, f"{LOCK_NAME}:{settings.deployment}"):
                yield
        except LockHeld:
            raise MaintenanceLocked(f"advisory lock {LOCK_NAME}") from None
        return
    try:
        with tick_lock(lock_path(settings.ensure_state_dir())):
            yield
    except TickLocked:
        raise MaintenanceLocked(str(lock_path(settings.state_dir))) from None


def maintain_once(settings: Settings, service: PalmPayService) -> MaintenanceReport:
    """One locked round on `service`. Raises MaintenanceLocked when another round is running."""
    from payops.palmpay.settlement import run_maintenance

    with maintenance_lock(settings):
        return run_maintenance(service)


def palm_state_exists(settings: Settings) -> bool:
    """Whether this deployment uses palm-pay at all (so `payops run` does not create its database)."""
    from payops.palmpay.options import DB_FILE

    return bool(settings.database_url) or (settings.state_dir / DB_FILE).exists()


class BackgroundMaintenance:
    """A daemon thread that runs a locked round every `interval_s` seconds until stopped.

    `service` is called on each round (the API opens its palm backend lazily). A round that
    fails is logged and retried next interval: a rail outage must not stop the thread.
    """

    def __init__(self, settings: Settings, service: Callable[[], PalmPayService], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._settings = settings
        self._service = service
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # completed rounds, for tests and status

    def start(self) -> BackgroundMaintenance:
        self._thread = threading.Thread(target=self._loop, name="palm-maintenance", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        # The first round runs at once and a stop waits for the round under way: a short
        # `payops run --ticks 1` still settles, and nothing is cut off mid-round.
        while True:
            self.run_round()
            if self._stop.wait(self._interval_s):
                return

    def run_round(self) -> MaintenanceReport | None:
        try:
            report = maintain_once(self._settings, self._service())
        except MaintenanceLocked:
            log.info("palm-pay maintenance skipped: another round is running")
            return None
        except Exception:  # logged, retried next interval: the thread must outlive a rail outage
            log.exception("palm-pay maintenance round failed")
            return None
        self.rounds += 1
        log.info("palm-pay maintenance: %s", report.summary())
        return report


@contextmanager
def in_background(settings: Settings, service: Callable[[], PalmPayService] | None = None
                  ) -> Iterator[BackgroundMaintenance | None]:
    """Run settlement rounds in the background for the block (None when switched off or unused).

    Without `service`, a palm-pay backend of its own is opened on the first round (if this
    deployment has palm-pay state at all) and closed at the end.
    """
    interval = settings.palm_maintenance_interval_s
    if interval <= 0 or (service is None and not palm_state_exists(settings)):
        yield None
        return
    opened: list[PalmPayService] = []
    lock = threading.Lock()

    def own() -> PalmPayService:
        with lock:
            if not opened:
                from payops.palmpay import PalmPayOptions, PalmPayService

                opened.append(PalmPayService(PalmPayOptions.from_settings(settings)))
            return opened[0]

    jobs = BackgroundMaintenance(settings, service or own, interval).start()
    try:
        yield jobs
    finally:
        jobs.stop()
        for palm in opened:
            palm.close()
