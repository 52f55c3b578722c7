"""Notifiers: where alerts and approval requests go (console, webhook).

A notifier never blocks a tick and never raises into it. A webhook delivery carries an
`Idempotency-Key` (decision id and kind) so a receiver drops the repeat a re-run tick sends after a
crash; one that still fails after its retries is kept as a dead letter (guardrails/dead_letters.py)
and reported on the console (`drain`), never only counted. Every payload is redacted (guardrails
never send a proxy or template reference).

Kinds sent by the agent: "alert" (alert_ops ran), "approval_requested",
"approval_expired", "approved_action_applied", "supervised_action" (a supervised
action ran on its own: ops are told), "reconciled" (an unknown outcome settled),
"rollback_failed".
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from payops.guardrails.dead_letters import DeadLetters, failure_reason, idempotency_key
from payops.memory.redact import redact
from payops.tools.http_control_plane import IDEMPOTENCY_HEADER  # one name for the header, both HTTP clients

# What the console is told when a delivery is given up (the CLI prints it with the cycle).
DELIVERY_FAILED = "delivery_failed"


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

    `notify` only enqueues: a slow or dead receiver never delays a tick. After `attempts` tries a
    message is given up: counted in `failures`, kept in `dead_letters` when given, and listed by
    `drain_failures` for the console.
    """

    def __init__(self, url: str, attempts: int = 4, timeout: float = 5.0, backoff_seconds: float = 0.2,
                 max_backoff_seconds: float = 5.0, dead_letters: DeadLetters | None = None) -> None:
        self.url = url
        self.attempts = attempts
        self.timeout = timeout
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.dead_letters = dead_letters
        self.failures = 0
        self.sent = 0
        self.dropped = 0
        self._given_up: list[tuple[str, dict[str, Any]]] = []
        self._given_up_lock = threading.Lock()
        self._in_flight: dict[str, Any] | None = None
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=WEBHOOK_QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="payops-webhook", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        body = {"kind": kind, "payload": redact(payload)}
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.dropped += 1  # never block a tick on a slow receiver, but keep the message
            self._give_up(body, "the send queue was full (the receiver is too slow or down)")

    def _give_up(self, body: dict[str, Any], reason: str) -> None:
        key = idempotency_key(body["kind"], body["payload"])
        kept = False
        if self.dead_letters is not None:
            try:
                self.dead_letters.add(key, body, reason)
                kept = True
            except Exception:  # noqa: BLE001 - the disk failed too: the console notice still says so
                kept = False
        with self._given_up_lock:
            self._given_up.append(
                (
                    DELIVERY_FAILED,
                    {
                        "decision_id": body["payload"].get("decision_id"),
                        "kind": body["kind"],
                        "reason": reason,
                        "kept": kept,
                    },
                )
            )

    def drain_failures(self) -> list[tuple[str, dict[str, Any]]]:
        """Deliveries given up since the last call, for the console (the dead letters keep them)."""
        with self._given_up_lock:
            out, self._given_up = self._given_up, []
        return out

    def _run(self) -> None:
        import httpx
        from tenacity import retry, stop_after_attempt, wait_exponential

        client = httpx.Client(timeout=self.timeout)

        @retry(
            stop=stop_after_attempt(self.attempts),
            reraise=True,
            wait=wait_exponential(multiplier=self.backoff_seconds, max=self.max_backoff_seconds),
        )
        def post(body: dict[str, Any]) -> None:
            key = idempotency_key(body["kind"], body["payload"])
            response = client.post(self.url, json=body, headers={IDEMPOTENCY_HEADER: key})
            response.raise_for_status()

        try:
            while True:
                body = self._queue.get()
                if body is None:  # close(): the sentinel
                    self._queue.task_done()
                    return
                try:
                    self._in_flight = body
                    post(body)
                    self.sent += 1
                except Exception as exc:  # noqa: BLE001 - any failure of the receiver: keep the message
                    self.failures += 1
                    self._give_up(body, failure_reason(exc))
                finally:
                    self._in_flight = None
                    self._queue.task_done()
        finally:
            client.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` seconds for queued messages to go out; True when all did (or were given up)."""
        done = threading.Event()

        def drained() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=drained, daemon=True).start()
        return done.wait(timeout)

    def _at_exit(self) -> None:
        # `payops tick` from cron exits right after its cycle: what has not gone out by then is kept.
        if not self.flush(EXIT_FLUSH_SECONDS):
            self.keep_unsent("not sent before the process exited")

    def keep_unsent(self, reason: str) -> int:
        """Move what is still queued or in flight to the dead letters (a repeat of one the receiver did
        get carries the same idempotency key); returns how many."""
        unsent = [self._in_flight] if self._in_flight is not None else []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if item is not None:
                unsent.append(item)
        for body in unsent:
            self._give_up(body, reason)
        return len(unsent)

    def close(self, timeout: float = 10.0) -> None:
        if not self.flush(timeout):
            self.keep_unsent("not sent before the notifier closed")
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        atexit.unregister(self._at_exit)


def retry_dead_letters(url: str, dead_letters: DeadLetters, timeout: float = 5.0) -> tuple[int, int]:
    """Send every dead letter again, once each, under its original idempotency key; a delivered one
    is removed. Returns (delivered, still failing)."""
    import httpx

    delivered = failing = 0
    with httpx.Client(timeout=timeout) as client:
        for letter in dead_letters.list():
            try:
                client.post(url, json=letter.body, headers={IDEMPOTENCY_HEADER: letter.key}).raise_for_status()
            except Exception as exc:  # noqa: BLE001
                dead_letters.add(letter.key, letter.body, failure_reason(exc))
                failing += 1
                continue
            dead_letters.remove(letter.key)
            delivered += 1
    return delivered, failing


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
        """What the console members kept, then the webhook deliveries given up (the CLI prints both after the cycle)."""
        out: list[tuple[str, dict[str, Any]]] = []
        for n in self.notifiers:
            if isinstance(n, ListNotifier):
                out += n.drain()
        for n in self.notifiers:
            if isinstance(n, WebhookNotifier):
                out += n.drain_failures()
        return out

    def settle(self, timeout: float) -> None:
        """Give queued webhook deliveries up to `timeout` seconds (a one-shot `payops tick` before it prints)."""
        for n in self.notifiers:
            if isinstance(n, WebhookNotifier):
                n.flush(timeout)
