"""Event time: a watermark with an allowed lateness, late and far-ahead events counted and shown, never a stall."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from payops import wiring
from payops.render import data_quality_line, decision_line
from payops.signals.simulator import Simulator, build_scenario, default_network, write_stream
from payops.signals.sources import LineSource, open_jsonl

START = 1_764_000_000.0


def _lines(tmp_path: Path, minutes: float = 6.0) -> list[bytes]:
    """A simulated issuer outage at 600 payments/min, in time order."""
    net = default_network(600)
    sim = Simulator(build_scenario("issuer_outage", net, lead_in=120.0, duration=240.0), net, seed=4, start_ts=START)
    path = tmp_path / "clean.jsonl"
    with path.open("wb") as out:
        write_stream(sim, START + minutes * 60.0, out)
    return path.read_bytes().splitlines()


def _write(tmp_path: Path, name: str, lines: list[bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _jittered(lines: list[bytes], seconds: float, seed: int = 5) -> list[bytes]:
    """Each event's time moved by up to ±seconds, the file order kept (a collector's delivery)."""
    rng = random.Random(seed)
    out = []
    for text in lines:
        event = orjson.loads(text)
        event["ts"] += rng.uniform(-seconds, seconds)
        out.append(orjson.dumps(event))
    return out


def _outlier(lines: list[bytes], ts: float) -> bytes:
    return orjson.dumps({**orjson.loads(lines[0]), "ts": ts, "payment_id": "outlier"})


def _accounting(tmp_path: Path, events: Path) -> dict[str, int]:
    """Replay (ticks as long as the window) and add up where every valid event went."""
    stats: dict = {}
    totals = {"decisions": 0, "in_windows": 0, "late": 0, "late_in_no_window": 0, "ahead": 0, "late_field": 0}
    for state in wiring.replay(events, tmp_path / "d.jsonl", 60.0, 60.0, stats):
        digest = state["snapshot"]
        totals["decisions"] += 1
        totals["in_windows"] += digest["attempts"]
        totals["late"] += digest["late_events"]
        totals["late_in_no_window"] += digest["late_dropped"]
        totals["ahead"] += digest["ahead_of_clock"]
        totals["late_field"] += decision_line(state).get("late_events", 0)
    totals["valid"] = stats["report"].accepted
    totals["unaccounted"] = totals["valid"] - totals["in_windows"] - totals["late_in_no_window"] - totals["ahead"]
    return totals


def test_five_seconds_of_jitter_costs_nothing_with_the_default_lateness(tmp_path: Path) -> None:
    lines = _lines(tmp_path)
    t = _accounting(tmp_path, _write(tmp_path, "jitter.jsonl", _jittered(lines, 5.0)))
    assert t["valid"] == len(lines)
    assert t["late"] == 0 and t["unaccounted"] == 0
    assert t["in_windows"] == len(lines)  # every event counted in the window it belongs to


def test_a_shuffled_file_loses_nothing_silently_and_every_late_event_is_in_the_decisions(tmp_path: Path) -> None:
    lines = _lines(tmp_path)
    random.Random(3).shuffle(lines)
    t = _accounting(tmp_path, _write(tmp_path, "shuffled.jsonl", lines))
    assert t["late"] > len(lines) // 2  # most arrive long after their window was decided...
    assert t["unaccounted"] == 0  # ...and every one of them is counted somewhere
    assert t["late_field"] == t["late"] + t["ahead"]  # CONTRACT §4 `late_events`, tick by tick


@pytest.mark.parametrize("where", ["first line", "mid-file"])
def test_an_event_stamped_1e12_is_counted_and_discarded_and_never_sets_or_stalls_the_clock(
        tmp_path: Path, where: str) -> None:
    lines = _lines(tmp_path, minutes=4.0)
    at = 0 if where == "first line" else len(lines) // 2
    clean = _accounting(tmp_path, _write(tmp_path, "clean.jsonl", lines))
    t = _accounting(tmp_path, _write(tmp_path, "outlier.jsonl", lines[:at] + [_outlier(lines, 1e12)] + lines[at:]))
    assert t["decisions"] == clean["decisions"] == 4  # the run ends with the file, on the same clock
    assert t["ahead"] == 1 and t["late_field"] == 1 and t["unaccounted"] == 0
    assert t["in_windows"] == clean["in_windows"] == len(lines)


def test_an_outlier_far_in_the_past_on_line_one_does_not_set_the_clock_and_is_counted_late(tmp_path: Path) -> None:
    lines = _lines(tmp_path, minutes=3.0)
    path = _write(tmp_path, "past.jsonl", [_outlier(lines, 1000.0), *lines])
    assert open_jsonl(path, workers=0).first_ts() == orjson.loads(lines[0])["ts"]
    t = _accounting(tmp_path, path)
    assert t["decisions"] == 3 and t["late_in_no_window"] == 1 and t["unaccounted"] == 0


def test_the_last_events_read_ahead_within_the_lateness_get_a_window_of_their_own(tmp_path: Path) -> None:
    # The file ends 5 s into the third minute: reading up to 60 s + 10 s of lateness takes them in
    # with the second tick and the source is exhausted; a third window must still decide them.
    lines = [b for b in _lines(tmp_path, minutes=3.0) if orjson.loads(b)["ts"] < START + 125.0]
    t = _accounting(tmp_path, _write(tmp_path, "short.jsonl", lines))
    assert t["decisions"] == 3 and t["in_windows"] == len(lines) and t["unaccounted"] == 0


def test_events_ahead_of_the_clock_are_discarded_as_they_are_met_and_reading_goes_on() -> None:
    rows = [START, START + 1, 1e12, START + 2, START + 700, START + 3, START + 70]
    source = LineSource(_stream(rows), max_skew_seconds=600.0)
    batch = source.read_until(START + 60)
    assert batch.ts.tolist() == [START, START + 1, START + 2, START + 3]  # both outliers met before START+70
    assert source.report.ahead_of_clock == 2 and source.report.take_new_ahead() == 2
    assert source.report.take_new_ahead() == 0
    assert source.read_until(START + 120).ts.tolist() == [START + 70]


def test_a_live_stream_starts_its_clock_without_waiting_for_a_sample(tmp_path: Path) -> None:
    import os

    read_fd, write_fd = os.pipe()
    os.write(write_fd, _stream([START, START + 1]).getvalue())  # the pipe stays open: more may come
    with os.fdopen(read_fd, "rb") as stream:
        assert LineSource(stream).first_ts() == START
    os.close(write_fd)


def test_the_cycle_output_shows_late_and_discarded_events_only_when_there_are_some() -> None:
    assert data_quality_line({"late_events": 0, "late_dropped": 0, "ahead_of_clock": 0, "bad_lines": 0}) == ""
    shown = data_quality_line({"late_events": 7, "late_dropped": 5, "ahead_of_clock": 1, "bad_lines": 2})
    assert shown.startswith("Data quality: 7 event(s) arrived after their window was decided (5 counted in no window)")
    assert "1 event(s) discarded as implausibly far ahead of the clock" in shown and "2 bad line(s)" in shown


def test_replay_is_deterministic_with_late_events(tmp_path: Path) -> None:
    lines = _lines(tmp_path, minutes=4.0)
    random.Random(8).shuffle(lines)
    path = _write(tmp_path, "shuffled.jsonl", lines)
    runs = []
    for name in ("a.jsonl", "b.jsonl"):
        list(wiring.replay(path, tmp_path / name, 60.0, 60.0))
        runs.append((tmp_path / name).read_bytes())
    assert runs[0] == runs[1] and b'"late_events"' in runs[0]


def _stream(times: list[float]):  # type: ignore[no-untyped-def]
    import io

    base = {"payment_id": "p", "method": "card", "route": "psp_a", "bank": "FNB", "issuer": "VISA",
            "status": "success", "latency_ms": 300.0}
    return io.BytesIO(b"".join(orjson.dumps({**base, "ts": t}) + b"\n" for t in times))


def test_a_restart_mid_file_decides_the_same_windows_with_no_spurious_late_events(tmp_path: Path) -> None:
    from payops.scheduling import close_agent
    from payops.settings import Settings
    from payops.wiring import agent_services, durable_agent

    path = _write(tmp_path, "jitter.jsonl", _jittered(_lines(tmp_path, minutes=5.0), 5.0))
    straight = [(s["snapshot"]["attempts"], s["snapshot"]["late_events"])
                for s in wiring.replay(path, tmp_path / "d.jsonl", 60.0, 60.0)]
    settings = Settings(state_dir=tmp_path / "state", webhook_url=None)
    seen = []
    for ticks in (2, 3):  # a process decides two windows and exits; the next one resumes from the checkpoint
        services = agent_services(settings, str(path), "demo", 7)
        agent = durable_agent(services)
        for _ in range(ticks):
            result = agent.tick()
            assert result is not None
            seen.append((result.state["snapshot"]["attempts"], result.state["snapshot"]["late_events"]))
        close_agent(agent, services)
    assert seen == straight[:5] and all(late == 0 for _, late in seen)


def test_a_cron_tick_on_a_live_file_waits_for_the_allowed_lateness_after_the_window_end(tmp_path: Path) -> None:
    from payops.scheduling import run_tick
    from payops.settings import Settings

    path = _write(tmp_path, "live.jsonl", _lines(tmp_path, minutes=3.0))
    settings = Settings(state_dir=tmp_path / "state", webhook_url=None)
    first = orjson.loads(path.read_bytes().split(b"\n", 1)[0])["ts"]
    early = run_tick(settings, source=str(path), wall_clock=lambda: first + 65.0)  # past the end, not the lateness
    assert early.status == "not_due" and early.window_end == first + 60.0
    done = run_tick(settings, source=str(path), wall_clock=lambda: first + 71.0)
    assert done.status == "done" and done.window_end == first + 60.0


def test_a_feed_that_resumes_after_a_long_silence_is_read_not_discarded_as_ahead(tmp_path: Path) -> None:
    lines = _lines(tmp_path, minutes=6.0)
    quiet = [line for line in lines if orjson.loads(line)["ts"] - START < 60.0]
    resumed = [orjson.dumps({**orjson.loads(line), "ts": orjson.loads(line)["ts"] + 900.0})  # 15 min later
               for line in lines if orjson.loads(line)["ts"] - START >= 60.0]
    totals = _accounting(tmp_path, _write(tmp_path, "gap.jsonl", quiet + resumed))
    assert totals["ahead"] == 0  # a collector down for 15 minutes is not a broken clock
    assert totals["in_windows"] == len(quiet) + len(resumed)
    assert totals["decisions"] >= 20  # the clock walked through the quiet windows and on


def test_two_agreeing_lines_a_year_ahead_are_still_a_broken_clock(tmp_path: Path) -> None:
    lines = _lines(tmp_path, minutes=4.0)
    year = START + 365 * 86400.0
    broken = lines[:100] + [_outlier(lines, year), _outlier(lines, year + 1)] + lines[100:]
    totals = _accounting(tmp_path, _write(tmp_path, "year.jsonl", broken))
    assert totals["ahead"] == 2 and totals["decisions"] <= 6
