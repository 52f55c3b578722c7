"""Closed loop: the simulator obeys the agent's control plane, so good and bad actions show in payments."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_evals_scoring import BlameInnocentBank

from payops.evals.cases import load_case
from payops.evals.closed_loop import HUMAN_RESPONSE_SECONDS, MIN_ORACLE_SAVED, closed_loop, concrete_action
from payops.evals.harness import closed_loop_summary
from payops.signals.simulator import default_network


@pytest.fixture(scope="module")
def outcome(tiny_corpus: Path):
    return closed_loop(load_case(tiny_corpus / "route-known"))


def test_oracle_and_agent_save_payments_on_a_route_outage(outcome) -> None:
    assert outcome.error is None
    assert outcome.saved("none") == 0
    assert outcome.saved("oracle") > MIN_ORACLE_SAVED
    assert outcome.saved("agent") > MIN_ORACLE_SAVED
    assert outcome.outcomes["oracle"].mitigated_after_s == 0.0
    # The agent's reroute really changed the simulated traffic: far fewer failed attempts.
    assert outcome.attempts_avoided("agent") > 0
    assert 0 < outcome.share_of_oracle("agent") <= 1.5


def test_static_alerting_acts_a_human_response_after_the_page(outcome) -> None:
    static = outcome.outcomes["static"]
    assert static.mitigated_after_s is not None and static.mitigated_after_s >= HUMAN_RESPONSE_SECONDS
    assert outcome.saved("static") < outcome.saved("oracle")


def test_a_wrong_agent_loses_payments_in_the_closed_loop(tiny_corpus: Path) -> None:
    wrong = closed_loop(load_case(tiny_corpus / "route-known"), lambda settings: BlameInnocentBank())
    assert wrong.error is None
    assert wrong.saved("agent") < -MIN_ORACLE_SAVED  # it switched off a healthy bank
    assert wrong.outcomes["agent"].mitigated_after_s is None
    summary = closed_loop_summary([wrong])
    assert summary["agent_worse_than_none"] == ["route-known"]


def test_closed_loop_refuses_controls(tiny_corpus: Path) -> None:
    with pytest.raises(ValueError, match="no closed loop"):
        closed_loop(load_case(tiny_corpus / "quiet-control"))


def test_concrete_actions_name_healthy_destinations_that_carry_the_traffic() -> None:
    net = default_network()
    reroute = concrete_action("reroute_traffic", {"route": "psp_a"}, net)
    assert reroute is not None and set(reroute.args["to_routes"]) == {"psp_b"}
    assert concrete_action("reroute_traffic", {"route": "eft_switch"}, net) is None  # nothing else carries eft
    palm = concrete_action("suppress_path", {"terminal_id": "T3"}, net)
    assert palm is not None and palm.args["fallback"] == "card"
    assert concrete_action("adjust_retry_policy", {}, net).args["max_attempts"] == 2
