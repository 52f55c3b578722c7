"""Notifiers: where alerts and approval requests go (console, webhook).

A notifier never blocks a tick and never raises into it: failures are counted.
Every payload is redacted (guardrails never send a proxy or template reference).

Kinds sent by the agent: "alert" (alert_ops ran), "approval_requested",
"approval_expired", "approved_action_applied", "supervised_action" (a supervised
action ran on its own: ops are told), "reconciled" (an unknown outcome settled),
"rollback_failed".
"""

from __future__ import annotations

import atexit
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from payops.memory.redact import redact


class Notifier(Protocol):
    def notify(self, kind: str, payload: dict[str, Any]) -> None: ...


@dataclass
class ListNotifier:
    """Keeps messages in memory; the CLI prints them after the cycle."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        self.messages.append((kind, redact(payload)))

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.messages = self.messages, []
        return out


# Bounded so a dead receiver cannot grow memory without limit; beyond it messages are dropped and counted.
WEBHOOK_QUEUE_SIZE = 1000
# At process exit (e.g. `payops tick` from cron) queued messages get this long to go out.
EXIT_FLUSH_SECONDS = 5.0


class WebhookNotifier:
    """POSTs JSON {"kind", "payload"} to a URL from a background thread, retried with tenacity.

    `notify` only enqueues: a slow or dead receiver never delays a tick. After
    `attempts` tries a message is given up and counted in `failures`.
    """

    def __init__(self, url: str, attempts: int = 4, timeout: float = 5.0, backoff_seconds: float = 0.2,
                 max_backoff_seconds: float = 5.0) -> None:
        self.url = url
        self.attempts = attempts
        self.timeout = timeout
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.failures = 0
        self.sent = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=WEBHOOK_QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="payops-webhook", daemon=True)
        self._thread.start()
        atexit.register(self.flush, EXIT_FLUSH_SECONDS)

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait({"kind": kind, "payload": redact(payload)})
        except queue.Full:
            self.dropped += 1  # never block a tick on a slow receiver

    def _run(self) -> None:
        import httpx
        from tenacity import retry, stop_after_attempt, wait_exponential

        client = httpx.Client(timeout=self.timeout)

        @retry(stop=stop_after_attempt(self.attempts), reraise=True,
               wait=wait_exponential(multiplier=self.backoff_seconds, max=self.max_backoff_seconds))
        def post(body: dict[str, Any]) -> None:
            response = client.post(self.url, json=body)
            response.raise_for_status()

        try:
            while True:
                body = self._queue.get()
                try:
                    if body is None:
                        return
                    post(body)
                    self.sent += 1
                except Exception:
                    self.failures += 1
                finally:
                    self._queue.task_done()
        finally:
            client.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` seconds for queued messages to go out; True when all did (or were given up)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        atexit.unregister(self.flush)


@dataclass
class FanoutNotifier:
    notifiers: list[Notifier]

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        for n in self.notifiers:
            try:
                n.notify(kind, payload)
            except Exception:  # one broken channel must not silence the others or break the tick
                continue

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """What the console members kept (the CLI prints it after the cycle)."""
        out: list[tuple[str, dict[str, Any]]] = []
        for n in self.notifiers:
            if isinstance(n, ListNotifier):
                out += n.drain()
        return out
