"""Notifiers: the webhook posts with retries on a background thread and never blocks a tick."""

from __future__ import annotations

import socket
import threading

from guardrails_helpers import StubReasoner
from payops.guardrails.notify import FanoutNotifier, ListNotifier, WebhookNotifier
from payops.settings import Settings
from payops.tools.actions import validate_proposal
from payops.wiring import notifier_for

WAIT = 30.0  # generous upper bound for background work; tests never assert on durations


def test_webhook_retries_until_the_receiver_accepts(local_server) -> None:  # noqa: ANN001
    answers = iter([500, 503, 200])
    server = local_server(lambda method, path, headers, body: (next(answers), {}))
    hook = WebhookNotifier(server.url + "/hook", attempts=4, backoff_seconds=0.01)
    hook.notify("alert", {"summary": "route psp_a down", "payshap_proxy": "0821234567", "note": "call 0821234567"})
    assert hook.flush(WAIT)
    assert (hook.sent, hook.failures) == (1, 0)
    assert len(server.requests) == 3
    method, path, _, body = server.requests[-1]
    assert (method, path, body["kind"]) == ("POST", "/hook", "alert")
    assert "0821234567" not in str(body) and body["payload"]["payshap_proxy"].endswith("4567")
    hook.close()


def test_webhook_gives_up_after_its_attempts_and_counts_it(local_server) -> None:  # noqa: ANN001
    server = local_server(lambda *request: (503, {}))
    hook = WebhookNotifier(server.url, attempts=3, backoff_seconds=0.01)
    hook.notify("approval_requested", {"decision_id": "d-1"})
    assert hook.flush(WAIT)
    assert (hook.sent, hook.failures, len(server.requests)) == (0, 1, 3)
    hook.close()


def test_notify_returns_while_the_receiver_is_still_busy(local_server) -> None:  # noqa: ANN001
    received, release = threading.Event(), threading.Event()

    def slow(*request: object) -> tuple[int, dict]:
        received.set()
        release.wait(WAIT)
        return 200, {}

    server = local_server(slow)
    hook = WebhookNotifier(server.url, attempts=1)
    hook.notify("alert", {"summary": "x"})  # returns at once: the post happens on the notifier's thread
    assert received.wait(WAIT)  # the receiver has the request and has not answered
    assert hook.sent == 0 and not release.is_set()
    hook.notify("alert", {"summary": "y"})  # queued behind it, still without blocking
    release.set()
    assert hook.flush(WAIT)
    assert hook.sent == 2 and len(server.requests) == 2
    hook.close()


def test_dead_receiver_is_counted_not_raised() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = WebhookNotifier(f"http://127.0.0.1:{port}", attempts=2, backoff_seconds=0.01)
    hook.notify("alert", {"summary": "x"})
    assert hook.flush(WAIT)
    assert (hook.sent, hook.failures) == (0, 1)
    hook.close()


def test_settings_webhook_url_gets_the_agents_approval_requests(local_server, make_agent) -> None:  # noqa: ANN001
    server = local_server(lambda *request: (200, {}))
    notifier = notifier_for(Settings(webhook_url=server.url))
    assert isinstance(notifier, FanoutNotifier)
    console, hook = notifier.notifiers
    assert isinstance(console, ListNotifier) and isinstance(hook, WebhookNotifier)
    reroute = validate_proposal("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}})
    agent = make_agent(StubReasoner(reroute, confidence=0.5))
    agent.services.notifier = notifier
    decision_id = agent.tick().state["decision_id"]
    assert hook.flush(WAIT)
    kinds = [(body["kind"], body["payload"]["decision_id"]) for _, _, _, body in server.requests]
    assert kinds == [("approval_requested", decision_id)]
    assert [k for k, _ in console.drain()] == ["approval_requested"]
    hook.close()


def test_one_broken_channel_does_not_silence_the_others() -> None:
    class Broken:
        def notify(self, kind: str, payload: dict) -> None:
            raise RuntimeError("down")

    console = ListNotifier()
    FanoutNotifier([Broken(), console]).notify("alert", {"summary": "x"})
    assert console.drain() == [("alert", {"summary": "x"})]


def test_fanout_drains_what_its_console_members_kept() -> None:
    from payops.guardrails.notify import FanoutNotifier, ListNotifier

    class Broken:
        def notify(self, kind, payload):  # noqa: ANN001, ANN201
            raise RuntimeError("down")

    console = ListNotifier()
    fan = FanoutNotifier([Broken(), console])
    fan.notify("alert", {"summary": "psp_a down"})
    assert fan.drain() == [("alert", {"summary": "psp_a down"})]
    assert fan.drain() == []
