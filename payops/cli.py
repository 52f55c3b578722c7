"""The `payops` command: thin — parse, call a function, print."""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer

from payops.cli_errors import PayopsGroup, fail

if TYPE_CHECKING:  # imported where used: `payops replay` starts its parse workers before pydantic-settings loads
    from payops.settings import Settings
    from payops.signals.events import ParseReport

app = typer.Typer(
    name="payops",
    help="A payment-operations agent: observes 60 s windows of payments, diagnoses, acts within guardrails, learns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=PayopsGroup,  # expected errors (state folder, database, files) -> one line, not a traceback
)


CONTROL_PLANE_HELP = ("Where actions run: 'simulated' (in-process; the simulator obeys it), 'shadow' (recorded as what "
                      "would have run, nothing moves) or 'http' (PAYOPS_ORCHESTRATOR_URL). Default: simulated for the "
                      "simulator, http when an orchestrator is configured, else shadow.")
PLANE_NAMES = ("simulated", "shadow", "http")
SOURCE_HELP = ("'simulator', a JSONL event file, '-' for stdin, nats://HOST:PORT/STREAM?subject=... (JetStream) or "
               "palm (the palm-pay backend's payments); repeat to merge sources by event time.")


def _plane_option(value: str | None) -> str | None:
    if value is not None and value not in PLANE_NAMES:
        fail(f"--control-plane must be one of {', '.join(PLANE_NAMES)}, not {value!r}")
    return value


def _settings(**overrides: object) -> Settings:
    """Settings with the options given; a bad one is reported by PayopsGroup (cli_errors.one_line)."""
    from payops.settings import Settings

    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}  # pydantic validates each
    return Settings(**given)


def _print_cycle(state: dict, settings: Settings, services: object, settle: float = 0.0) -> None:
    """The cycle, then what the notifier told the console; `settle` seconds first lets webhook
    deliveries finish (a one-shot tick), so a failed one is reported now, not never."""
    from payops.render import render_cycle

    typer.echo(render_cycle(state, settings.confidence_threshold, settings.display_tz()))
    source = getattr(services, "source", None)
    lag = source.lag() if source is not None else None
    if lag is not None:  # an event log: how far this partition's worker is behind
        typer.echo(f"Consumer lag: {lag} message(s) not yet read on partition '{settings.deployment}'")
    duplicates = source.duplicates if source is not None else 0
    if duplicates:  # dropped input is shown, never silent: what a dead worker had already counted came again
        typer.echo(f"Redeliveries dropped: {duplicates} message(s) on partition '{settings.deployment}' "
                   "were counted before the restart (by stream sequence)")
    _print_notices(services, settle)
    typer.echo("")


def _print_notices(services: object, settle: float = 0.0) -> None:
    from payops.guardrails.notify import DELIVERY_FAILED
    from payops.render import printable  # a summary quotes labels from the feed

    notifier = getattr(services, "notifier", None)
    if settle and notifier is not None and hasattr(notifier, "settle"):
        notifier.settle(settle)
    drain = getattr(notifier, "drain", None)
    for kind, payload in (drain() if drain else []):
        if kind == DELIVERY_FAILED:
            kept = "kept in dead letters (`payops pending`)" if payload.get("kept") else "and it could NOT be kept"
            typer.echo(printable(f"  Notice: webhook delivery failed for "
                                 f"{payload.get('decision_id') or payload.get('kind')}"
                                 f" ({payload.get('kind')}: {payload.get('reason')}); {kept}"))
            continue
        line = (f"  [{kind}] {payload.get('summary') or payload.get('tool', '')} "
                f"{payload.get('decision_id', '')}").rstrip()
        typer.echo(printable(line))


def _report_bad_lines(report: Any) -> None:  # a ParseReport, or merged_source's duck-typed one
    bad_count: int = getattr(report, "bad_count", 0)  # 0 without a report (None)
    if bad_count:
        first = report.bad[0]
        typer.echo(f"payops: skipped {report.bad_count} malformed event line(s); "
                   f"first at line {first.line_no}: {first.reason}", err=True)


def _no_valid_events(source: object) -> None:
    """A file or stream with no valid event at all (empty, binary, another format) is a usage error, exit 2."""
    report = getattr(source, "report", None)
    if report is not None and not getattr(source, "ordered", False) and not report.accepted:
        fail(f"no valid events: {report.bad_count} lines skipped")


@app.command()
def run(
    ticks: int | None = typer.Option(None, "--ticks", min=1, help="Stop after N ticks (default: run until Ctrl-C)."),
    tick_seconds: float = typer.Option(0.5, "--tick-seconds", min=0.0,
                                       help="Wall seconds between ticks (0.5 demo; 60 production)."),
    scenario: str = typer.Option("demo", "--scenario", help="Simulator scenario (see `payops scenarios`)."),
    seed: int = typer.Option(7, "--seed", help="Simulator seed."),
    source: list[str] = typer.Option(["simulator"], "--source", help=SOURCE_HELP),
    state_dir: Path | None = typer.Option(None, "--state-dir",
                                          help="State directory (default ./.payops or PAYOPS_STATE_DIR)."),
    control_plane: str | None = typer.Option(None, "--control-plane", help=CONTROL_PLANE_HELP, callback=_plane_option),
) -> None:
    """Run the agent loop: every tick decide over the last window and print the cycle."""
    from payops.scheduling import TickLocked, TickUsageError, partition_lock

    settings = _settings(state_dir=state_dir)
    try:
        # One loop per deployment: a second `run` (or a cron `tick`) on it would decide windows twice.
        with partition_lock(settings):
            _run_loop(settings, ticks, tick_seconds, scenario, seed, source, control_plane)
    except TickLocked:
        fail(f"deployment '{settings.deployment}' is already being run by another process", code=75)
    except TickUsageError as exc:
        fail(str(exc))


def _run_loop(settings: Settings, ticks: int | None, tick_seconds: float, scenario: str, seed: int, source: list[str],
              control_plane: str | None = None) -> None:
    from contextlib import ExitStack

    from payops.guardrails.notify import EXIT_FLUSH_SECONDS
    from payops.palm_jobs import in_background
    from payops.scheduling import close_agent
    from payops.signals.sources import SourceError
    from payops.storage.keys import KeyProblem
    from payops.wiring import agent_services, durable_agent

    try:
        services = agent_services(settings, source, scenario, seed, control_plane=control_plane)
    except (SourceError, ValueError) as exc:
        fail(str(exc))
    except KeyProblem as exc:  # data without its key: a one-line refusal, never a new key
        fail(str(exc), code=1)
    agent = durable_agent(services)
    done = 0
    jobs = ExitStack()
    try:
        jobs.enter_context(in_background(settings))  # palm-pay settlement rounds (palm_jobs.py)
        while ticks is None or done < ticks:
            result = agent.tick()
            if result is None:
                _no_valid_events(services.source)
                typer.echo("payops: the source has no events; nothing to do.")
                break
            _print_cycle(result.state, settings, services)
            done += 1
            if agent.drained(float(result.state["window_end"])):
                typer.echo("payops: the source is exhausted.")
                break
            if ticks is None or done < ticks:
                time.sleep(tick_seconds)
    except KeyboardInterrupt:
        typer.echo(f"\npayops: stopped after {done} tick(s); state saved in {settings.state_dir}.")
    except SourceError as exc:  # the log went away mid-run: what was decided is checkpointed
        fail(f"{exc}; stopped after {done} tick(s), state saved in {settings.state_dir}", code=1)
    finally:
        jobs.close()
        _print_notices(services, settle=EXIT_FLUSH_SECONDS)  # deliveries still out when the loop ends
        _report_bad_lines(getattr(services.source, "report", None))
        close_agent(agent, services)


@app.command()
def tick(
    scenario: str = typer.Option("demo", "--scenario", help="Simulator scenario when the source is the simulator."),
    seed: int = typer.Option(7, "--seed"),
    source: list[str] = typer.Option(["simulator"], "--source", help=SOURCE_HELP),
    state_dir: Path | None = typer.Option(None, "--state-dir"),
    partition: str | None = typer.Option(None, "--partition",
                                         help="The deployment to tick (default PAYOPS_DEPLOYMENT); one worker at a "
                                              "time each."),
    control_plane: str | None = typer.Option(None, "--control-plane", help=CONTROL_PLANE_HELP, callback=_plane_option),
) -> None:
    """Exactly one cycle of one partition, then exit (cron, Kubernetes CronJob; see docs/scheduling.md).

    Exit status: 0 done (or nothing due yet), 75 another tick of this partition is running
    (try again next time), 2 bad arguments or settings, 1 failure.
    """
    from payops.errors import EX_FAILURE, EX_TEMPFAIL
    from payops.scheduling import TickLocked, TickUsageError, run_tick
    from payops.settings import StateDirError
    from payops.storage.db import DatabaseError, redact_dsn

    settings = _settings(state_dir=state_dir, deployment=partition)
    try:
        outcome = run_tick(settings, source=source, scenario=scenario, seed=seed, control_plane=control_plane)
    except TickLocked:
        fail(f"another tick of partition '{settings.deployment}' is still running; try again later", code=EX_TEMPFAIL)
    except TickUsageError as exc:
        fail(str(exc))
    except DatabaseError as exc:
        fail(str(exc), code=EX_FAILURE)
    except StateDirError as exc:  # the state folder is a file, cannot be created or is read-only
        fail(str(exc), code=exc.exit_code)
    except Exception as exc:  # one line a scheduler's log can show; the DSN's password never appears
        fail(f"tick of partition '{settings.deployment}' failed: {type(exc).__name__}: {redact_dsn(str(exc))[:500]}",
             code=EX_FAILURE)
    if outcome.status == "idle":
        _no_valid_events(outcome.services.source if outcome.services is not None else None)
        typer.echo("payops: the source has no events; nothing to do.")
    elif outcome.status == "not_due":
        typer.echo(f"payops: the next window of partition '{outcome.partition}' ends at {outcome.window_end:.0f}, "
                   "still in the future; nothing to do yet.")
    else:
        from payops.guardrails.notify import EXIT_FLUSH_SECONDS

        assert outcome.state is not None  # run_tick's "done" carries the decided window's state
        _print_cycle(outcome.state, settings, outcome.services, settle=EXIT_FLUSH_SECONDS)


# A week of stream covers every test and demo; longer runs are a typo (`1e9`) that would fill the disk.
MAX_SIMULATE_MINUTES = 7 * 24 * 60
# ~200 bytes an event: 50 M events is ~10 GB, far past any replay benchmark (4 M lines) yet bounded.
MAX_SIMULATE_EVENTS = 50_000_000


@app.command()
def simulate(
    scenario: str = typer.Option(..., "--scenario", help="Scenario name (see `payops scenarios`)."),
    minutes: float = typer.Option(15.0, "--minutes", help="Length of the stream, healthy lead-in included "
                                  f"(1 to {MAX_SIMULATE_MINUTES:,} minutes, at most {MAX_SIMULATE_EVENTS:,} events)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", help="Where to write the JSON Lines events."),
    per_minute: float = typer.Option(600.0, "--per-minute", min=10.0, max=100_000.0,
                                     help="Payments per minute (10 to 100,000)."),
    rename_seed: int | None = typer.Option(None, "--rename-seed",
                                           help="Give banks, routes, issuers and terminals fresh names (unseen-name "
                                                "tests)."),
) -> None:
    """Write a simulated event stream (CONTRACT.md §1) with a healthy lead-in before the incident."""
    from payops.signals.simulator import (
        SCENARIOS,
        Simulator,
        default_network,
        rename_network,
        timed_scenario,
        write_stream,
    )

    if not (math.isfinite(minutes) and 1.0 <= minutes <= MAX_SIMULATE_MINUTES):
        fail(f"--minutes must be between 1 and {MAX_SIMULATE_MINUTES:,} (a week), not {minutes:g}")
    if minutes * per_minute > MAX_SIMULATE_EVENTS:
        fail(f"--minutes {minutes:g} at --per-minute {per_minute:g} is {minutes * per_minute:,.0f} events; "
             f"the most one file holds is {MAX_SIMULATE_EVENTS:,} (write several, or fewer per minute)")
    if scenario not in SCENARIOS:
        fail(f"unknown scenario '{scenario}' (choose from {', '.join(SCENARIOS)})")
    net = default_network(per_minute)
    if rename_seed is not None:
        net, _ = rename_network(net, rename_seed)
    try:
        sim = Simulator(timed_scenario(scenario, net, minutes), net, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    try:
        handle = out.open("wb")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    with handle:
        n = write_stream(sim, sim.start_ts + minutes * 60.0, handle)
    typer.echo(f"wrote {n} events ({minutes:g} min of '{scenario}', seed {seed}) to {out}")


@app.command()
def replay(
    events: Path = typer.Argument(..., help="JSON Lines events sorted by ts (CONTRACT.md §1)."),
    out: Path = typer.Option(..., "--out", help="Where to write one decision per tick (CONTRACT.md §4)."),
    window: float = typer.Option(60.0, "--window", min=1.0, help="Window length in seconds."),
    tick_: float = typer.Option(60.0, "--tick", min=1.0, help="Seconds of event time between decisions."),
    control_plane: str = typer.Option("shadow", "--control-plane", callback=_plane_option,
                                      help="'shadow' (default: a recorded feed cannot respond; nothing is judged or "
                                           "learned from moves that did not happen), 'simulated' (the in-process "
                                           "router) or 'http'."),
) -> None:
    """Offline, deterministic decisions over a recorded event file (no network, no API key).

    Bad lines (the first 1,000 with their line number and reason, and the count) go to
    OUT.rejects.json next to the decisions.
    """
    from payops.signals.sources import SourceError, open_jsonl

    _finite_seconds("--window", window)
    _finite_seconds("--tick", tick_)
    if control_plane == "http" and not _settings().orchestrator_url:
        fail("--control-plane http needs PAYOPS_ORCHESTRATOR_URL (the orchestrator's base URL)")

    if not events.exists():
        fail(f"no such file: {events}")
    if events.is_dir():
        fail(f"is a directory, not an event file: {events}")
    # Open the file first: a big one starts its parse workers now, and they parse
    # while this process imports the agent (langgraph, langchain_core: most of a second).
    try:
        source = open_jsonl(events)
    except SourceError as exc:
        fail(str(exc))
    from payops import wiring

    if _ONE_SHOT_PROCESS:
        # What the imports allocated (~125k objects of the graph stack) lives until the
        # process exits: frozen, no later full collection walks it again, nor do the
        # interpreter's collections at exit (together ~0.2 s of a 1M-event replay).
        gc.freeze()
    stats: dict = {}
    late = {"late_events": 0, "late_dropped": 0, "ahead_of_clock": 0}
    n = 0
    try:
        for state in wiring.replay(events, out, window, tick_, stats, source=source, control_plane=control_plane):
            n += 1
            digest = state.get("snapshot") or {}
            for name in late:
                late[name] += int(digest.get(name) or 0)
    except SourceError as exc:
        fail(f"{exc} ({n} decisions written to {out} before it)")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    report = stats.get("report")
    if report is not None and not report.accepted:
        out.unlink(missing_ok=True)
        fail(f"no valid events: {report.bad_count} lines skipped" + _rejects_note(_write_rejects(report, out)))
    typer.echo(f"wrote {n} decisions to {out}; late events: {late['late_events']} ({late['late_dropped']} counted in "
               f"no window), {late['ahead_of_clock']} discarded as ahead of the clock", err=True)
    if report is not None:
        rejects = _write_rejects(report, out)
        if report.bad_count:
            first = report.bad[0]
            typer.echo(f"payops: skipped {report.bad_count} malformed event line(s); first at line {first.line_no}: "
                       f"{first.reason}{_rejects_note(rejects)}", err=True)
    if _ONE_SHOT_PROCESS:
        gc.freeze()  # the same for what the replay allocated: the process exits next


def _finite_seconds(option: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        fail(f"{option} must be a finite number of seconds above 0, not {value}")


def _write_rejects(report: ParseReport, out: Path) -> Path | None:
    """OUT.rejects.json: every bad line's number and reason (the first 1,000) and the counts; None if clean.

    A stale report of an earlier replay to the same OUT is removed: the file always describes this run.
    """
    path = out.with_name(out.name + ".rejects.json")
    if not getattr(report, "bad_count", 0):
        path.unlink(missing_ok=True)
        return None
    try:
        path.write_bytes(orjson.dumps(report.rejects_json(), option=orjson.OPT_INDENT_2))
    except OSError as exc:
        typer.echo(f"payops: cannot write the rejects report {path}: {exc.strerror}", err=True)
        return None
    return path


def _rejects_note(path: Path | None) -> str:
    return f" (every line number in {path})" if path is not None else ""


@app.command()
def scenarios() -> None:
    """List the simulator's scenarios."""
    from payops.signals.simulator import SCENARIOS, build_scenario, default_network

    net = default_network()
    for name in SCENARIOS:
        typer.echo(f"{name:22s} {build_scenario(name, net).description}")


# True when this process runs one command and exits (the `payops` executable), not when
# a test or another program invokes `app` in its own long-lived process.
_ONE_SHOT_PROCESS = False


def main() -> None:
    global _ONE_SHOT_PROCESS
    _ONE_SHOT_PROCESS = True
    _register_subcommands()
    app()


def _register_subcommands() -> None:
    from payops.cli_ops import audit_app, lessons_app, notify_app, register_ops
    from payops.cli_palm import palm_app

    app.add_typer(palm_app, name="palm", help="Palm-pay backend operations (masked output).")
    app.add_typer(audit_app, name="audit", help="Inspect and verify the hash-chained audit trail.")
    app.add_typer(lessons_app, name="lessons", help="Long-term lessons learned from outcomes.")
    app.add_typer(notify_app, name="notify", help="Webhook notifications not delivered: `payops notify retry`.")
    register_ops(app)
    app.add_typer(__import__("payops.cli_db", fromlist=["db_app"]).db_app, name="db",
                  help="Create and migrate the schema (SQLite or PostgreSQL): `payops db upgrade`.")
    # serve, keys, openapi (payops/cli_api.py); the read-only ops chat (payops/cli_chat.py)
    __import__("payops.cli_api", fromlist=["register_api"]).register_api(app)
    app.command("chat")(__import__("payops.cli_chat", fromlist=["chat"]).chat)
    from payops.cli_eval import eval_app

    app.add_typer(eval_app, name="eval", help="Offline evaluation over the incident corpus (and `payops eval record`).")
    app.add_typer(__import__("payops.cli_llm", fromlist=["llm_app"]).llm_app, name="llm",
                  help="A local OpenAI-compatible LLM: `payops llm serve`.")
    app.command("publish")(__import__("payops.cli_nats", fromlist=["publish"]).publish)  # event file -> NATS JetStream


if __name__ == "__main__":
    main()
