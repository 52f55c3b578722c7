"""Notifiers: where alerts and approval requests go (console, webhook).

A notifier never blocks a tick and never raises into it: failures are recorded.
"""

from __future__ import annotations

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


class WebhookNotifier:
    """POSTs JSON to a URL from a background thread, retried with tenacity."""

    def __init__(self, url: str, attempts: int = 4, timeout: float = 5.0) -> None:
        self.url = url
        self.attempts = attempts
        self.timeout = timeout
        self.failures = 0
        self.sent = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="payops-webhook", daemon=True)
        self._thread.start()

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait({"kind": kind, "payload": redact(payload)})
        except queue.Full:
            self.failures += 1  # never block a tick on a slow receiver

    def _run(self) -> None:
        import httpx
        from tenacity import retry, stop_after_attempt, wait_exponential

        @retry(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.2, max=5), reraise=True)
        def post(body: dict[str, Any]) -> None:
            response = httpx.post(self.url, json=body, timeout=self.timeout)
            response.raise_for_status()

        while True:
            body = self._queue.get()
            if body is None:
                return
            try:
                post(body)
                self.sent += 1
            except Exception:
                self.failures += 1
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> None:
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        done.wait(timeout)


@dataclass
class FanoutNotifier:
    notifiers: list[Notifier]

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        for n in self.notifiers:
            n.notify(kind, payload)
