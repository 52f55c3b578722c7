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


def test_webhook_retries_until_the_receiver_accepts(local_server) -> None:
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


def test_webhook_gives_up_after_its_attempts_and_counts_it(local_server) -> None:
    server = local_server(lambda *request: (503, {}))
    hook = WebhookNotifier(server.url, attempts=3, backoff_seconds=0.01)
    hook.notify("approval_requested", {"decision_id": "d-1"})
    assert hook.flush(WAIT)
    assert (hook.sent, hook.failures, len(server.requests)) == (0, 1, 3)
    hook.close()


def test_notify_returns_while_the_receiver_is_still_busy(local_server) -> None:
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


def test_settings_webhook_url_gets_the_agents_approval_requests(local_server, make_agent) -> None:
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
        def notify(self, kind, payload):
            raise RuntimeError("down")

    console = ListNotifier()
    fan = FanoutNotifier([Broken(), console])
    fan.notify("alert", {"summary": "psp_a down"})
    assert fan.drain() == [("alert", {"summary": "psp_a down"})]
    assert fan.drain() == []


# -- at least once, never silently lost (issue 16: notifications) ---------------------------------------

def dead_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_delivery_carries_the_decision_id_and_kind_as_its_idempotency_key(local_server) -> None:
    answers = iter([503, 200, 200])
    server = local_server(lambda *request: (next(answers), {}))
    hook = WebhookNotifier(server.url, attempts=3, backoff_seconds=0.01)
    hook.notify("approval_requested", {"decision_id": "d-abc", "tool": "reroute_traffic"})
    hook.notify("alert", {"summary": "no decision"})
    assert hook.flush(WAIT)
    keys = [headers.get("idempotency-key") for _, _, headers, _ in server.requests]
    assert keys[0] == keys[1] == "d-abc:approval_requested"  # the retry repeats the key: the receiver dedupes it
    assert keys[2].startswith("alert:") and len(keys[2]) > len("alert:") + 16
    hook.close()


def test_a_delivery_given_up_is_kept_as_a_dead_letter_and_told_to_the_console(tmp_path) -> None:
    from payops.guardrails.dead_letters import DeadLetters

    box = DeadLetters(tmp_path / "dl.db")
    secret_url = f"http://127.0.0.1:{dead_port()}/hook?token=S3CRET"
    hook = WebhookNotifier(secret_url, attempts=2, backoff_seconds=0.01, dead_letters=box)
    fan = FanoutNotifier([ListNotifier(), hook])
    fan.notify("approval_requested", {"decision_id": "d-1", "payshap_proxy": "0821234567"})
    assert hook.flush(WAIT)
    [letter] = box.list()
    assert (letter.key, letter.kind, letter.decision_id, letter.failures) == (
        "d-1:approval_requested", "approval_requested", "d-1", 1)
    assert "0821234567" not in str(letter.body) and "S3CRET" not in letter.reason and "ConnectError" in letter.reason
    notices = [p for k, p in fan.drain() if k == "delivery_failed"]
    assert notices == [{"decision_id": "d-1", "kind": "approval_requested", "reason": letter.reason, "kept": True}]
    assert fan.drain() == []
    hook.close()


def test_what_is_still_queued_when_the_notifier_closes_is_kept_not_dropped(local_server, tmp_path) -> None:
    from payops.guardrails.dead_letters import DeadLetters

    release = threading.Event()
    server = local_server(lambda *request: (release.wait(WAIT), (200, {}))[1])
    box = DeadLetters(tmp_path / "dl.db")
    hook = WebhookNotifier(server.url, attempts=1, dead_letters=box)
    for i in range(3):
        hook.notify("alert", {"decision_id": f"d-{i}"})
    hook.close(timeout=0.2)  # the receiver is still holding the first one
    release.set()
    assert sorted(letter.decision_id for letter in box.list()) == ["d-0", "d-1", "d-2"]


def test_retrying_dead_letters_sends_them_with_their_keys_and_removes_the_delivered(local_server, tmp_path) -> None:
    from payops.guardrails.dead_letters import DeadLetters
    from payops.guardrails.notify import retry_dead_letters

    box = DeadLetters(tmp_path / "dl.db")
    box.add("d-1:alert", {"kind": "alert", "payload": {"decision_id": "d-1"}}, "HTTP 503")
    box.add("d-2:alert", {"kind": "alert", "payload": {"decision_id": "d-2"}}, "HTTP 503")
    server = local_server(
        lambda method, path, headers, body: (200 if body["payload"]["decision_id"] == "d-1" else 500, {}))
    assert retry_dead_letters(server.url, box) == (1, 1)
    assert [(letter.key, letter.failures) for letter in box.list()] == [("d-2:alert", 2)]
    assert [h["idempotency-key"] for _, _, h, _ in server.requests] == ["d-1:alert", "d-2:alert"]


def test_the_cycle_output_and_payops_pending_show_a_failed_delivery_and_notify_retry_sends_it(
        local_server, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from payops.cli import _register_subcommands, app

    _register_subcommands()
    runner = CliRunner()
    state = str(tmp_path / "st")
    monkeypatch.setenv("PAYOPS_WEBHOOK_URL", f"http://127.0.0.1:{dead_port()}/hook")
    # the demo's route outage: rerouted at tick 4, its outcome judged (and sent) at tick 7
    run = runner.invoke(app, ["run", "--ticks", "8", "--tick-seconds", "0", "--scenario", "demo", "--state-dir", state],
                        catch_exceptions=False)
    assert run.exit_code == 0, run.output
    notices = [line for line in run.output.splitlines() if "Notice: webhook delivery failed for d-" in line]
    assert notices and all("kept in dead letters" in line for line in notices)
    pending = runner.invoke(app, ["pending", "--state-dir", state], catch_exceptions=False)
    assert f"{len(notices)} webhook notification(s) not delivered" in pending.output
    server = local_server(lambda *request: (200, {}))
    monkeypatch.setenv("PAYOPS_WEBHOOK_URL", server.url)
    retry = runner.invoke(app, ["notify", "retry", "--state-dir", state], catch_exceptions=False)
    assert retry.exit_code == 0 and f"delivered {len(notices)}; 0 still failing" in retry.output
    assert len(server.requests) == len(notices)
    assert all(h["idempotency-key"].startswith("d-") for _, _, h, _ in server.requests)
    assert "not delivered" not in runner.invoke(app, ["pending", "--state-dir", state], catch_exceptions=False).output


def test_the_dead_letter_file_is_private(tmp_path) -> None:
    import stat

    from payops.guardrails.dead_letters import DeadLetters

    letters = DeadLetters.in_state_dir(tmp_path)
    letters.add("d-1:alert", {"kind": "alert", "payload": {"decision_id": "d-1"}}, "receiver answered HTTP 500")
    letters.close()
    files = list(tmp_path.glob("dead_letters.db*"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
