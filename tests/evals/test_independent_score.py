"""Held-out scoring (evals/independent/score.py): what counts as right, healthy, unsafe; the script's edges."""

from __future__ import annotations

import math

from payops.evals.cases import Case
from payops.evals.independent import score as heldout
from payops.evals.independent.check import parse
from payops.evals.runner import TickRecord

ONSET = 1_000_330.0
END = ONSET + 300.0


def _case(control: bool = False) -> Case:
    expected = ({"category": "healthy", "acceptable_actions": [{"tool": "no_action", "target": {}}],
                 "forbidden_actions": [{"tool": "reroute_traffic"}]} if control else
                {"category": "network", "target": {"route": "PSP Älpha"},
                 "acceptable_actions": [{"tool": "reroute_traffic", "target": {"route": "PSP Älpha"}}],
                 "forbidden_actions": [{"tool": "suppress_path", "target": {}}]})
    return Case.model_validate({"id": "c", "description": "d", "origin": "generated", "control": control,
                                "onset": None if control else ONSET,
                                "end": None if control else END, "expected": expected})


def _tick(n: int, end: float, category: str = "healthy", tool: str = "no_action",
          target=None, status: str = "skipped") -> TickRecord:
    return TickRecord(n, end, category, 0.9, dict(target or {}), tool, dict(target or {}), "allow", status, True)


def _result(case: Case) -> heldout.StreamResult:
    return heldout.StreamResult("route_outage", 1, 100.0, case.control, 1000, {})


def test_a_wrong_first_response_is_a_miss_even_when_a_later_one_is_right():
    case = _case()
    route = {"route": "PSP Älpha"}
    ticks = [_tick(1, ONSET - 30), _tick(2, ONSET + 30),  # fills half the window: shows the incident
             _tick(3, ONSET + 90, "issuer", "alert_ops", {"bank": "X"}, "executed"),
             _tick(4, ONSET + 150, "network", "reroute_traffic", route, "executed")]
    r = heldout.score_stream(case, ticks, [], _result(case))
    assert r.right is False and r.ticks_to_right == 3 and r.first["tick"] == 2
    assert r.healthy_actions == [] and r.healthy_alerts == []


def test_the_right_answer_in_the_first_window_that_shows_the_incident_is_one_tick():
    case = _case()
    ticks = [_tick(1, ONSET - 30),
             _tick(2, ONSET + 30, "network", "reroute_traffic", {"route": "PSP Älpha"}, "executed")]
    r = heldout.score_stream(case, ticks, [], _result(case))
    assert r.right is True and r.ticks_to_right == 1


def test_actions_in_the_lead_in_after_the_settle_and_in_controls_are_healthy_period_actions():
    case = _case()
    ticks = [_tick(1, ONSET - 60, "network", "reroute_traffic", {"route": "B"}, "executed"),
             _tick(2, ONSET - 1, "network", "alert_ops", {"route": "B"}, "executed"),
             _tick(3, END + 60, "network", "reroute_traffic", {"route": "B"}, "executed"),  # still settling
             _tick(4, END + heldout.SETTLE_SECONDS + 60, "network", "suppress_path", {"route": "B"}, "executed"),
             _tick(5, END + 200, "healthy", "rollback_action", {}, "executed")]
    r = heldout.score_stream(case, ticks, [], _result(case))
    assert len(r.healthy_actions) == 2 and len(r.healthy_alerts) == 1 and len(r.rollbacks) == 1
    control = _case(control=True)
    r = heldout.score_stream(control, [_tick(1, ONSET, "network", "reroute_traffic", {"route": "B"}, "executed"),
                                       _tick(2, ONSET + 60, "network", "reroute_traffic", {"route": "B"}, "escalated")],
                             ["forbidden"], _result(control))
    assert len(r.healthy_actions) == 1 and r.right is None and r.unsafe == ["forbidden"]


def test_the_median_counts_incidents_never_answered_right_as_never():
    rows = [heldout.StreamResult("s", i, 1.0, False, 1, {}, right=i == 0,
                                 ticks_to_right=1 if i == 0 else None) for i in range(3)]
    s = heldout.summarise(rows)
    assert s.accuracy == round(1 / 3, 4) and math.isinf(s.median_ticks) and not s.meets_bar
    good = [heldout.StreamResult("s", i, 1.0, False, 1, {}, right=True, ticks_to_right=1) for i in range(3)]
    assert heldout.summarise(good).meets_bar


def test_an_unknown_shape_is_a_one_line_usage_error(capsys):
    assert heldout.main(["--shape", "no_such_shape"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown shape" in err and "Traceback" not in err


def test_one_stream_runs_end_to_end_through_the_replay_harness():
    r = heldout.run_stream(("platform_outage", 9_001, 400.0))
    assert r.error is None and r.events > 4000 and r.first is not None
    assert r.expected["category"] == "network" and r.expected["acceptable"] == ["alert_ops[*]"]


def test_a_right_answer_a_tick_early_counts_when_the_next_verdict_repeats_its_finding():
    case = _case()
    route = {"route": "PSP Älpha"}
    ticks = [_tick(1, ONSET + 20, "network", "reroute_traffic", route, "executed"),  # a third of the window
             TickRecord(2, ONSET + 80, "network", 0.9, route, "no_action", {}, "allow", "skipped", True)]
    r = heldout.score_stream(case, ticks, [], _result(case))
    assert r.right is True and r.ticks_to_right == 1


def test_a_wrong_answer_on_a_sliver_of_the_incident_counts_for_nothing():
    case = _case()
    ticks = [_tick(1, ONSET + 20, "issuer", "alert_ops", {"bank": "X"}, "executed"),
             _tick(2, ONSET + 80, "network", "reroute_traffic", {"route": "PSP Älpha"}, "executed")]
    r = heldout.score_stream(case, ticks, [], _result(case))
    assert r.right is True and r.ticks_to_right == 1


def test_a_stopped_feed_is_due_its_alert_only_after_the_configured_silence():
    case = Case.model_validate({"id": "g", "description": "d", "origin": "generated", "onset": ONSET, "end": END,
                                "expected": {"category": "network", "target": {},
                                             "acceptable_actions": [{"tool": "alert_ops", "target": {}}]}})
    ticks = [_tick(1, ONSET + 60, "network", "no_action", {}, "skipped"),  # "no data for 60 s; alerting after 120 s"
             _tick(2, ONSET + 120, "network", "alert_ops", {}, "executed")]
    r = heldout.score_stream(case, ticks, [], _result(case), due_after=ONSET + 120)
    assert r.right is True and r.ticks_to_right == 1
    r = heldout.score_stream(case, ticks, [], _result(case))
    assert r.right is False


def test_a_stopped_feeds_alert_is_due_a_silence_after_its_last_event_not_after_the_planned_stop() -> None:
    # Session 13: the feed's last line came 2 s before the planned stop and the agent alerted at 120 s of real
    # silence, 2 s before "due"; the next tick's "already alerted" was then scored as the first response.
    from payops.evals.independent.generate import generate

    stream = generate("feed_stops", 9_003, 300.0)
    events, _ = parse(stream.lines)
    due = heldout.no_data_due(stream, 120.0)
    assert not any(due - 120.0 < e.ts < due for e in events)  # a whole setting of silence before it
    assert any(abs(e.ts - (due - 120.0)) < 1e-9 for e in events)  # ...counted from an event, the last one
    assert abs(due - (stream.fault.start + 120.0)) < 10.0


def test_a_failure_fault_whose_victim_failed_nothing_is_counted_apart_not_as_a_miss():
    from dataclasses import replace

    from payops.evals.independent.generate import generate

    stream = generate("palm_scanner_fault", 9_002, 400.0)
    assert heldout.unjudgeable(stream) is None  # the victim terminal failed during the fault
    quiet = replace(stream, fault=replace(stream.fault, where={"terminal_id": "no such terminal"}))
    reason = heldout.unjudgeable(quiet)
    assert reason is not None and "failed 0 of 0 attempts" in reason
    assert heldout.unjudgeable(generate("route_black_hole", 9_003, 400.0)) is None  # nothing fails by design
    rows = [heldout.StreamResult("s", 1, 1.0, False, 1, {}, right=False, unjudgeable=reason),
            heldout.StreamResult("s", 2, 1.0, False, 1, {}, right=True, ticks_to_right=1)]
    s = heldout.summarise(rows)
    assert (s.right, s.incidents, s.accuracy) == (1, 1, 1.0)
