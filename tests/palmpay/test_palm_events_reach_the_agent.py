"""Palm-pay's own payments reach the agent (`--source palm`): a spoof burst at one terminal is blamed on it."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from payops.graph.runner import Agent
from payops.graph.services import build_services
from payops.palmpay import PalmPayError
from payops.settings import Settings
from payops.signals.palm_source import PalmSource
from payops.tools.control_plane import SimulatedControlPlane

TERMINALS = ("T-north", "T-south", "T-east")


def test_a_spoof_burst_at_one_palm_terminal_paid_through_the_backend_is_blamed_on_that_terminal(
        service, enroll, clock) -> None:
    links = [enroll(daily_limit=50_000, transaction_limit=5_000) for _ in range(24)]

    def pay_minute(minute: int, spoofs_at: str | None) -> None:
        for i in range(60):  # one payment a second, terminals in turn
            clock.advance(timedelta(seconds=1))
            terminal = TERMINALS[i % 3]
            _, ref, _ = links[(minute * 60 + i) % len(links)]
            service.pay(ref, "12.50", terminal, liveness_passed=True, match_score=0.97)
            if terminal == spoofs_at:
                for _ in range(3):  # an attacker presenting fake palms at this terminal
                    with contextlib.suppress(PalmPayError):  # refused: liveness failed
                        service.pay(ref, "12.50", terminal, liveness_passed=False, match_score=0.41)

    for minute in range(6):
        pay_minute(minute, None)
    for minute in range(6, 8):
        pay_minute(minute, "T-east")

    source = PalmSource(lambda after, limit: [(r.id, r.event) for r in service.payment_events_after(after, limit)],
                        follow=False)
    settings = Settings(deployment="palm-e2e", webhook_url=None)
    agent = Agent(build_services(settings, source=source, in_memory=True, control_plane=SimulatedControlPlane()))
    states = []
    while True:
        result = agent.tick()
        states.append(result.state)
        if source.exhausted:
            break
    blamed = [(s["diagnosis"]["category"], s["diagnosis"].get("target")) for s in states]
    assert all(category == "healthy" for category, _ in blamed[:5]), blamed
    assert ("security", {"terminal_id": "T-east"}) in blamed[5:], blamed
