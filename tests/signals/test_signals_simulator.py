"""The simulator: every scenario shows its incident where its oracle says, any names, any volume,
seeds, the daily wave, and closed-loop obedience to the traffic policy."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pytest

from payops.signals.jsonl import JsonlParser
from payops.signals.policy import Diversion, NoPolicy, RetryPolicy, matches
from payops.signals.simulator import (
    SCENARIOS,
    NetworkConfig,
    Simulator,
    build_scenario,
    default_network,
    oracle_at,
    oracle_for_window,
    oracle_timeline,
    random_network,
    rename_network,
    with_volume,
    write_stream,
)
from payops.signals.window import EventWindow

LEAD_IN, DURATION = 120.0, 240.0
USER_CODES = {"USER_DECLINED", "INSUFFICIENT_FUNDS", "INCORRECT_PIN", "EXPIRED_CARD", "DO_NOT_HONOR",
              "PALM_PAY_DAILY_LIMIT", "PALM_PAY_TRANSACTION_LIMIT", "PALM_PAY_LINK_INACTIVE", "PALM_PAY_NOT_REGISTERED"}


def snapshots(sim: Simulator, ends: list[float]):
    w = EventWindow(60.0)
    out = {}
    for end in ends:
        w.add(sim.advance_sorted(sim.start_ts + end))
        out[end] = w.snapshot(sim.start_ts + end)
    return out


NETWORKS = {
    "default": with_volume(default_network(), 3000),
    "random": random_network(5, banks=8, card_routes=3, terminals=9, payments_per_minute=3000),
    "renamed": rename_network(with_volume(default_network(), 3000), 11)[0],
}


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("name", [s for s in SCENARIOS if s != "demo"])
def test_every_scenario_shows_its_incident_on_the_segment_its_oracle_blames(name: str, network: str) -> None:
    net = NETWORKS[network]
    sc = build_scenario(name, net, lead_in=LEAD_IN, duration=DURATION)
    snaps = snapshots(Simulator(sc, net, seed=4), [60.0, 120.0, 180.0, 240.0, 300.0])
    before, during = snaps[120.0], snaps[300.0]
    truth = oracle_for_window(sc, 240.0, 300.0)
    if name == "healthy":
        assert truth.healthy and during.total.failure_rate < 0.08
        return
    assert truth.category == sc.expectations[0].category and oracle_for_window(sc, 60.0, 120.0).healthy
    target = dict(truth.target)
    seg_before = before.segment(**target) if target else before.total
    seg = during.segment(**target) if target else during.total
    assert seg is not None and seg.attempts >= 20
    if name == "latency_degradation":
        assert seg.latency_p95_ms > 3 * seg_before.latency_p95_ms
    elif name == "retry_storm":
        assert seg.attempts_per_payment > max(1.2, 1.15 * seg_before.attempts_per_payment)
        assert seg.errors.get("RETRY_EXHAUSTED", 0) > 0
    else:
        assert seg.failure_rate > 2.0 * max(seg_before.failure_rate if seg_before else 0.0, 0.02)
        codes = set(seg.errors)
        if truth.category == "user":
            assert seg.error_share(*USER_CODES) > 0.8
        if name == "routing_misconfig":
            assert seg.dominant_error() == "ROUTE_NOT_SUPPORTED"
        if name == "palm_spoof_burst":
            assert seg.dominant_error() == "PALM_PAY_SPOOF_DETECTED" and "PALM_PAY_SPOOF_DETECTED" in codes
    if network == "renamed":
        names = set(during.values("bank")) | set(during.values("route")) | set(during.values("terminal_id"))
        old = default_network()
        assert not names & (set(old.banks) | set(old.routes) | set(old.terminals))


def test_demo_runs_its_incidents_one_after_another() -> None:
    sc = build_scenario("demo", default_network())
    answers = [oracle_at(sc, t).category for t in (100, 200, 700, 1000, 1300, 1700)]
    assert answers == ["healthy", "network", "config", "user", "network", "healthy"]


def test_oracle_needs_the_incident_to_fill_the_window() -> None:
    sc = build_scenario("issuer_outage", default_network(), lead_in=300.0, duration=600.0)
    assert oracle_for_window(sc, 250.0, 310.0).healthy  # 10 s of it in a 60 s window
    answer = oracle_for_window(sc, 300.0, 360.0)
    assert answer.category == "issuer" and answer.accepts("suppress_path") and not answer.accepts("no_action")
    assert answer.target == sc.expectations[0].target
    assert oracle_at(sc, 899.0).category == "issuer" and oracle_at(sc, 900.0).healthy
    timeline = oracle_timeline(sc, 1200.0)
    assert len(timeline) == 20 and sum(1 for _, a in timeline if not a.healthy) == 10
    with pytest.raises(ValueError):
        oracle_for_window(sc, 10.0, 10.0)


def test_renaming_changes_every_name_but_not_the_shape() -> None:
    net = default_network()
    renamed, mapping = rename_network(net, 3)
    assert set(renamed.banks) == set(mapping["bank"].values()) and not set(renamed.banks) & set(net.banks)
    assert list(renamed.banks.values()) == list(net.banks.values())
    assert set(renamed.methods) == set(net.methods)  # methods are contract vocabulary
    for name in SCENARIOS:
        original, fresh = build_scenario(name, net), build_scenario(name, renamed)
        for a, b in zip(original.expectations, fresh.expectations, strict=True):
            assert {k: mapping.get(k, {}).get(v, v) for k, v in a.target.items()} == dict(b.target)
    assert rename_network(net, 3)[0] == renamed and rename_network(net, 4)[0] != renamed


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    sc = build_scenario("route_outage", default_network(), lead_in=30.0, duration=60.0)
    a = Simulator(sc, seed=1).advance_batch(1_764_000_120.0).to_jsonl()
    b = Simulator(sc, seed=1).advance_batch(1_764_000_120.0).to_jsonl()
    c = Simulator(sc, seed=2).advance_batch(1_764_000_120.0).to_jsonl()
    assert a == b and a != c


@pytest.mark.parametrize("per_minute, minutes", [(10.0, 30.0), (600.0, 2.0), (100_000.0, 0.2)])
def test_volume_from_ten_to_a_hundred_thousand_payments_a_minute(per_minute: float, minutes: float) -> None:
    sim = Simulator(build_scenario("healthy", default_network()), with_volume(default_network(), per_minute), seed=3)
    sim.advance_batch(sim.start_ts + minutes * 60.0)
    expected = per_minute * minutes
    assert abs(sim.payments - expected) < 5 * np.sqrt(expected)


def test_daily_wave_moves_volume_through_the_day() -> None:
    net = replace(default_network(60.0), daily_wave=0.5)
    sim = Simulator(build_scenario("healthy", net), net, seed=0)
    sim.advance_batch(sim.start_ts + 600.0)
    early = sim.payments
    sim.now = sim.start_ts + 6 * 3600.0  # the crest of the sine
    sim.advance_batch(sim.now + 600.0)
    assert (sim.payments - early) / early == pytest.approx(1.5, rel=0.15)


def test_optional_dimensions_when_configured() -> None:
    net = random_network(2, merchants=20, regions=3, payments_per_minute=600)
    events = Simulator(build_scenario("healthy", net), net, seed=1).advance(1_764_000_060.0)
    assert all(e.merchant_id in net.merchants and e.region in net.regions for e in events)
    assert all((e.terminal_id is not None) == (e.method == "palm") for e in events)
    assert all(e.palm_pay_id is not None for e in events if e.method == "palm")


def test_network_validation() -> None:
    with pytest.raises(ValueError):
        with_volume(default_network(), 0.0)
    with pytest.raises(ValueError):
        random_network(1, card_routes=1)


def test_advance_sorted_is_one_stream_sorted_by_time() -> None:
    sc = build_scenario("route_outage", default_network(), lead_in=0.0, duration=600.0)  # 8-30 s timeouts
    sim = Simulator(sc, seed=5)
    generated = []
    original = sim.advance_batch
    sim.advance_batch = lambda until: generated.append(original(until)) or generated[-1]  # type: ignore[method-assign]
    last, total = 0.0, 0
    for step in range(1, 11):
        batch = sim.advance_sorted(sim.start_ts + 30.0 * step)
        ts = batch.ts
        assert (np.diff(ts) >= 0).all() and (ts < sim.start_ts + 30.0 * step).all() and (ts >= last).all()
        last = ts[-1] if len(ts) else last
        total += len(batch)
    held = len(sim._held) if sim._held is not None else 0
    assert held > 0 and total + held == sum(len(b) for b in generated)  # held back, never lost


def test_write_stream_writes_valid_sorted_contract_lines() -> None:
    net = rename_network(default_network(), 8)[0]
    sim = Simulator(build_scenario("palm_spoof_burst", net, lead_in=30.0, duration=60.0), net, seed=2)
    buf = io.BytesIO()
    n = write_stream(sim, sim.start_ts + 150.0, buf)
    parser = JsonlParser()
    batch = parser.parse(buf.getvalue())
    assert len(batch) == n > 0 and parser.report.bad_count == 0
    assert (np.diff(batch.ts) >= 0).all()


# -- closed loop: the simulator obeys whatever policy is in force ---------------------------

class Policy:
    """A TrafficPolicy with fixed rules, independent of any control plane."""

    def __init__(self, suppress: Mapping[str, str] | None = None, fallback: str | None = None,
                 reroute: tuple[Mapping[str, str], str] | None = None, retry: RetryPolicy | None = None) -> None:
        self.suppress, self.fallback, self.route, self.retry = suppress, fallback, reroute, retry
        self.calls = 0

    def reroute(self, dims, candidates, draw):
        self.calls += 1
        if self.route and matches(self.route[0], dims):
            return self.route[1]
        return None

    def suppression(self, dims):
        return Diversion(self.fallback) if self.suppress is not None and matches(self.suppress, dims) else None

    def retry_policy(self, dims):
        return self.retry


def _events(policy, scenario: str = "healthy", seconds: float = 120.0, net: NetworkConfig | None = None):
    net = net or with_volume(default_network(), 3000)
    sim = Simulator(build_scenario(scenario, net, lead_in=0.0, duration=seconds), net, seed=9, policy=policy)
    return sim, sim.advance(sim.start_ts + seconds)


def test_suppressed_bank_disappears_and_is_counted_as_diverted() -> None:
    sim, events = _events(Policy(suppress={"bank": "FNB"}))
    assert events and not any(e.bank == "FNB" for e in events)
    assert sim.diverted == pytest.approx(0.26 * sim.payments, rel=0.1)


def test_suppressed_terminal_offers_the_fallback_method() -> None:
    sim, events = _events(Policy(suppress={"terminal_id": "T3"}, fallback="card"))
    assert not any(e.terminal_id == "T3" for e in events) and sim.diverted == 0


def test_suppressed_bank_route_path_is_dropped_after_routing() -> None:
    _, events = _events(Policy(suppress={"bank": "FNB", "route": "psp_a"}))
    assert not any(e.bank == "FNB" and e.route == "psp_a" for e in events)
    assert any(e.bank == "FNB" and e.route == "psp_b" for e in events)


def test_reroute_moves_traffic_and_is_asked_per_payment() -> None:
    policy = Policy(reroute=({"route": "psp_a"}, "psp_b"))
    sim, events = _events(policy)
    assert not any(e.route == "psp_a" for e in events) and any(e.route == "psp_b" for e in events)
    assert policy.calls == sim.payments - sim.diverted


def test_retry_policy_in_force_overrides_a_misconfigured_storm() -> None:
    _, storm = _events(NoPolicy(), "retry_storm")
    _, calm = _events(Policy(retry=RetryPolicy(max_attempts=1)), "retry_storm")
    assert max(e.attempt for e in storm) == 6 and max(e.attempt for e in calm) == 1


def test_the_simulated_control_plane_is_obeyed() -> None:
    from payops.tools.control_plane import ActionInForce, SimulatedControlPlane

    plane = SimulatedControlPlane()
    plane.actions["a1"] = ActionInForce("a1", "suppress_path", {"route": "eft_switch"}, {"fallback": None}, 0.0, 1e12)
    _, events = _events(plane)
    assert events and not any(e.route == "eft_switch" for e in events)


def test_generated_networks_take_extra_methods_and_any_size() -> None:
    net = random_network(3, banks=25, card_routes=5, terminals=40, extra_methods=("wallet", "qr"),
                         payments_per_minute=6000)
    assert len(net.banks) == 25 and len(net.terminals) == 40 and {"wallet", "qr"} <= set(net.methods)
    events = Simulator(build_scenario("healthy", net), net, seed=1).advance(1_764_000_030.0)
    wallet = [e for e in events if e.method == "wallet"]
    assert wallet and all(len(net.routes_for("wallet")) == 1 and e.route in net.routes_for("wallet") for e in wallet)
    assert {e.bank for e in events} <= set(net.banks) and len({e.bank for e in events}) > 15
    for name in SCENARIOS:
        build_scenario(name, net)  # every scenario finds its victims by role
