"""Helpers for the PostgreSQL tests: an orchestrator stub that counts applications by
idempotency key, and the functions worker processes run (spawned, so importable)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson


@dataclass
class Orchestrator:
    """POST /actions applies once per Idempotency-Key (a repeat answers 200 and applies nothing).

    `hold_new` makes the first POST of every new key record the application and then not
    answer until `release` is set: the caller is left waiting, as if the answer were lost,
    which is where a test kills it.
    """

    hold_new: bool = False
    applied: list[dict[str, Any]] = field(default_factory=list)
    posts: Counter = field(default_factory=Counter)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def keys(self) -> list[str]:
        with self._lock:
            return [a["key"] for a in self.applied]

    def _handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, bool]:
        with self._lock:
            if method == "POST" and path == "/actions":
                key = headers.get("idempotency-key", "")
                self.posts[key] += 1
                if key in {a["key"] for a in self.applied}:
                    return 200, {"status": "applied", "replayed": True}, False
                self.applied.append({"key": key, "tool": body["tool"], "target": body["target"],
                                     "pid_post": self.posts[key]})
                return 200, {"status": "applied"}, self.hold_new
            if method == "GET" and path.startswith("/actions/"):
                key = path.split("/")[2]
                found = key in {a["key"] for a in self.applied}
                return (200, {"status": "applied"}, False) if found else (404, None, False)
            if method == "POST" and path.endswith("/rollback"):
                return 200, {"status": "rolled_back"}, False
            return 404, None, False

    def start(self) -> Orchestrator:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = orjson.loads(raw) if raw else None
                status, payload, hold = outer._handle(self.command, self.path, headers, body)
                if hold:
                    outer.held.set()
                    outer.release.wait(30)
                data = orjson.dumps(payload) if payload is not None else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller is gone (killed)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# Per-process state (the reasoner's recent windows) starts empty on every cron-style tick, so the
# rules reasoner is a little less sure of the demo's route outage (0.78) than in a long run:
# a lower bar lets that reroute run autonomously, through the orchestrator.
WORKER_CONFIDENCE_THRESHOLD = 0.6


def wait_for(predicate: Any, timeout: float = 20.0, step: float = 0.02) -> bool:
    """Poll until predicate() is true (for cross-process hand-offs); False after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def worker_settings(dsn: str, state_dir: str, partition: str = "default", orchestrator_url: str | None = None,
                    **extra: Any):
    from payops.settings import Settings

    extra.setdefault("confidence_threshold", WORKER_CONFIDENCE_THRESHOLD)
    return Settings(state_dir=Path(state_dir), database_url=dsn, deployment=partition,
                    orchestrator_url=orchestrator_url, webhook_url=None, **extra)


def tick_worker(dsn: str, state_dir: str, orchestrator_url: str | None, partition: str, target: int,
                start: Any, results: Any, done: Any = None) -> None:
    """Tick one partition like a cron-driven worker until `target` ticks are done (by anyone:
    the shared counter `done`; without it, until this worker has made `target` attempts).
    Reports each outcome (done / locked / error) on `results`."""
    from payops.scheduling import TickLocked, run_tick

    settings = worker_settings(dsn, state_dir, partition, orchestrator_url)
    rng = random.Random(os.getpid())
    if start is not None:
        start.wait(60)
    for attempt in range(MAX_ATTEMPTS):
        if (done.value if done is not None else attempt) >= target:
            return
        try:
            outcome = run_tick(settings)
        except TickLocked:
            results.put(("locked", os.getpid(), None, None, None))
            time.sleep(rng.uniform(0.0, 0.05))  # another worker has the partition: try again soon
            continue
        except Exception as exc:  # reported, so the test shows it instead of hanging
            results.put(("error", os.getpid(), f"{type(exc).__name__}: {exc}", None, None))
            return
        state = outcome.state or {}
        if done is not None:
            with done.get_lock():
                done.value += 1
        results.put((outcome.status, os.getpid(), state.get("decision_id"), outcome.window_end,
                     (state.get("execution") or {}).get("status")))
        time.sleep(rng.uniform(0.1, 0.2))  # like a scheduler's next slot: another worker gets the next window


MAX_ATTEMPTS = 200


def audit_worker(dsn: str, count: int, tag: str, start: Any) -> None:
    from payops.memory.audit import AuditLog
    from payops.storage.postgres import agent_database

    log = AuditLog(database=agent_database(dsn, max_size=1))
    start.wait(60)
    for i in range(count):
        log.append(f"{tag}-{i}", "decision", float(i), {"worker": tag, "i": i})
    log.close()


# -- palm-pay through PostgreSQL -----------------------------------------------------------------

PALM_SPEC = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"
PALM_REF = "tmpl-pg-concurrent-0001"


def palm_service(dsn: str, state_dir: str, rail: Any = None, verification: Any = None):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from payops.palmpay import DevOtpSender, ManualClock, PalmPayOptions, PalmPayService

    options = PalmPayOptions(state_dir=Path(state_dir), spec_path=PALM_SPEC, database_url=dsn)
    noon = datetime(2025, 6, 2, 12, 0, tzinfo=ZoneInfo("Africa/Johannesburg"))
    return PalmPayService(options, clock=ManualClock(noon), rail=rail, verification=verification or DevOtpSender())


def pay_many(service: Any, count: int, amounts: list[int], ref: str = PALM_REF) -> list[str]:
    from payops.palmpay import PalmPayError

    outcomes = []
    for i in range(count):
        try:
            outcomes.append(service.pay(ref, amounts[i % len(amounts)], "T1", True, 0.99).status)
        except PalmPayError as exc:
            outcomes.append(exc.code)
    return outcomes


def palm_pay_worker(dsn: str, state_dir: str, count: int, amounts: list[int], start: Any, results: Any) -> None:
    with palm_service(dsn, state_dir) as service:
        start.wait(60)
        results.put(pay_many(service, count, amounts))
