"""`payops eval`: run the incident corpus through the real graph and score it; `payops eval record`: make a case."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from payops.cli_errors import fail as _fail  # the one way a command gives up

eval_app = typer.Typer(
    help="Offline evaluation over recorded incidents: per-case scores, closed-loop outcomes, report, regression gate.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)




def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@eval_app.callback(invoke_without_command=True)
def run_eval(
    ctx: typer.Context,
    reasoner: list[str] = typer.Option(
        ["rules"], "--reasoner", help="rules or llm; repeat (or comma-separate) to compare."
    ),
    model: list[str] = typer.Option([], "--model", help="LLM model name(s) for --reasoner llm; one table row each."),
    tags: list[str] = typer.Option(
        [], "--tags", help="Only cases with every tag (comma-separated or repeated; 'a|b' = either)."
    ),
    corpus: Path | None = typer.Option(None, "--corpus", help="Corpus folder (default: the packaged evals/incidents)."),
    suite: str | None = typer.Option(
        None, "--suite", help="Only the cases of a named suite in evals/suites.json (llm-ci: CI's LLM replay)."
    ),
    out: Path = typer.Option(Path("eval-results"), "--out", help="Where results.json, report.md and chart.png go."),
    gate: bool = typer.Option(False, "--gate", help="Exit 1 when the rules run falls below evals/gate.json."),
    gate_file: Path | None = typer.Option(None, "--gate-file", help="Another gate file."),
    record: bool = typer.Option(False, "--record", help="Re-record LLM cassettes against the configured endpoint."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="OpenAI-compatible endpoint (default: the cassettes' or OPENAI_BASE_URL)."
    ),
    cassettes: Path | None = typer.Option(None, "--cassettes", help="Cassette folder (default: evals/cassettes)."),
    judge: str | None = typer.Option(None, "--judge", help="Grade explanations with this LLM (off by default)."),
    judge_base_url: str | None = typer.Option(None, "--judge-base-url"),
    closed: bool = typer.Option(
        True, "--closed-loop/--no-closed-loop", help="Closed-loop score on simulator cases (rules runs)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel case workers (default: one per core)."),
) -> None:
    """Replay every case through the graph and score it (the default when no subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from payops.evals import gate as gate_mod
    from payops.evals.cases import CaseError
    from payops.evals.harness import RunOptions, check_reasoner, results_json, run_model, select_cases
    from payops.evals.llm import cassette_dir, cassette_path, load_meta, recording_stats, save_meta
    from payops.evals.report import write_all
    from payops.evals.runner import EvalError
    from payops.settings import StateDirError, prepare_folder

    reasoners = _split(reasoner) or ["rules"]
    models = _split(model)
    tag_list = _split(tags)
    bad = [r for r in reasoners if r not in ("rules", "llm")]
    if bad:
        _fail(f"unknown reasoner '{bad[0]}' (choose rules or llm)")
    if "llm" in reasoners and not models:
        _fail("--reasoner llm needs --model NAME (one per model to compare)")
    if gate and (tag_list or suite):
        _fail("--gate holds the whole corpus to its recorded level: run it without --tags or --suite")
    if gate and "rules" not in reasoners:
        _fail("--gate checks the rules reasoner: include --reasoner rules")
    if record:  # the endpoint goes into meta.json: the replay aims at it
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            _fail("--record needs --base-url URL (or OPENAI_BASE_URL): the endpoint to record from")
    if record and (tag_list or suite):
        for m in models:  # requests are matched on host and port: one folder, one endpoint
            recorded_url = load_meta(m, cassettes).get("base_url")
            if recorded_url and recorded_url != base_url:
                _fail(
                    f"the other {m} cassettes were recorded against {recorded_url}: re-record a subset against the "
                    f"same --base-url, or the whole corpus (no --tags) against a new one"
                )
    plan: list[RunOptions] = []
    for r in dict.fromkeys(reasoners):
        if r == "rules":
            plan.append(
                RunOptions(closed_loop=closed, judge_model=judge, judge_base_url=judge_base_url, cassettes=cassettes)
            )
        else:
            plan += [RunOptions("llm", m, base_url, record, cassettes, closed, judge, judge_base_url) for m in models]
    try:
        cases = select_cases(corpus, tag_list, suite)
        for options in plan:
            check_reasoner(options)
    except (CaseError, EvalError) as exc:
        _fail(str(exc))
    for options in plan:
        if (
            options.reasoner == "llm"
            and not options.record
            and not any(cassette_path(c, options.model or "", cassettes).exists() for c in cases)
        ):
            _fail(
                f"no cassettes for model '{options.model}' in {cassette_dir(options.model or '', cassettes)}: "
                f"every case would be skipped (record them with --record --base-url URL)"
            )
    try:  # before minutes of cases, not after them
        prepare_folder(out, "output folder", "--out")
    except StateDirError as exc:
        _fail(str(exc), exc.exit_code)
    gate_spec = None
    if gate:
        try:
            gate_spec = gate_mod.load_gate(gate_file)
        except ValueError as exc:
            _fail(str(exc))

    console = Console(stderr=True)
    started = time.perf_counter()
    runs = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        transient=False,
    ) as progress:
        for options in plan:
            task = progress.add_task(options.label, total=len(cases), last="")

            def advance(cid: str, t: TaskID = task) -> None:  # `t`: this model's bar, bound now
                progress.update(t, advance=1, last=cid)

            if options.record and options.model:
                save_meta(options.model, base_url, cassettes)
            try:
                runs.append(
                    run_model(
                        cases,
                        options,
                        workers=workers,
                        progress=advance,
                    )
                )
            except EvalError as exc:
                _fail(str(exc))
            if options.record and options.model:
                save_meta(options.model, base_url, cassettes, recording_stats(runs[-1].scores))
    results = results_json(runs, corpus, tag_list, time.perf_counter() - started)
    failures = gate_mod.check(results, gate_spec) if gate_spec is not None else None
    paths = write_all(results, out, failures)
    _print_summary(results, failures)
    if "chart" in paths:
        typer.echo(f"wrote {paths['results']}, {paths['report']}, {paths['chart']}")
    else:
        typer.echo(f"wrote {paths['results']}, {paths['report']} (no chart: install payops[eval] for matplotlib)")
    stale = [
        (run["label"], p["case_id"], p["problem"]) for run in results["runs"] for p in run.get("cassette_problems", [])
    ]
    if stale:
        typer.echo(
            f"payops: error: {len(stale)} case(s) replayed from stale cassettes: their LLM figures are not the "
            f"model's answers",
            err=True,
        )
        for label, case_id, problem in stale:
            typer.echo(f"  {label} {case_id}: {problem}", err=True)
        raise typer.Exit(1)
    if failures:
        raise typer.Exit(1)


def _print_summary(results: dict, failures: list[str] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}%"

    console = Console()
    if not console.is_terminal:  # piped or in CI: don't squeeze the table into 80 columns
        console = Console(width=170)
    table = Table(title="payops eval", show_lines=False)
    for col in (
        "run",
        "cases",
        "pass",
        "detected",
        "category",
        "action+target",
        "ticks to detect",
        "controls clean",
        "false actions",
        "unsafe",
        "audit",
        "tokens",
        "cost",
        "skipped",
        "wall",
    ):
        table.add_column(col, justify="left" if col == "run" else "right")
    for run in results["runs"]:
        s = run["summary"]
        table.add_row(
            run["label"],
            str(s["cases"]),
            pct(s["pass_rate"]),
            pct(s["detection_rate"]),
            pct(s["category_accuracy"]),
            pct(s["action_accuracy"]),
            "–" if s["mean_ticks_to_detect"] is None else f"{s['mean_ticks_to_detect']:.2f}",
            f"{s['controls_clean']}/{s['controls']}",
            str(s["false_actions"]),
            str(s["unsafe_actions"]),
            pct(s["audit_completeness"]),
            str(s["tokens_in"] + s["tokens_out"]),
            f"${s['cost_usd']:.4f}",
            str(len(run["skipped"])),
            f"{run['wall_seconds']:.1f}s",
        )
    console.print(table)
    for run in results["runs"]:
        cl = run.get("closed_loop_summary")
        if cl:
            console.print(
                f"closed loop ({run['label']}, {cl['cases']} cases): payments saved — agent {cl['saved_agent']}, "
                f"static alerting {cl['saved_static']}, oracle {cl['saved_oracle']}; agent share of oracle "
                f"{pct(cl['share_of_oracle_agent'])}, static {pct(cl['share_of_oracle_static'])}; median time to "
                f"mitigate agent {cl['median_time_to_mitigate_s_agent']} s, "
                f"static {cl['median_time_to_mitigate_s_static']} s"
            )
        failing = [c for c in run["cases"] if not c["passed"]]
        if failing:
            console.print(
                f"{run['label']}: not passing: "
                + ", ".join(f"{c['case_id']} ({'/'.join(c['failures'])})" for c in failing)
            )
    if failures is not None:
        console.print(
            "[green]gate: passed[/green]" if not failures else "[red]gate: FAILED[/red]\n  " + "\n  ".join(failures)
        )


@eval_app.command("record")
def record(
    case_id: str = typer.Argument(..., help="Folder name of the new case."),
    scenario: str | None = typer.Option(None, "--scenario", help="Simulator scenario (labels from its oracle)."),
    events: Path | None = typer.Option(None, "--events", help="...or any CONTRACT.md §1 event file (plain or .gz)."),
    seed: int = typer.Option(0, "--seed"),
    volume: float = typer.Option(600.0, "--volume", min=1.0, help="Payments per minute (simulator)."),
    lead_in: float = typer.Option(240.0, "--lead-in", min=60.0, help="Healthy seconds before the onset (simulator)."),
    duration: float = typer.Option(240.0, "--duration", min=60.0, help="Incident seconds (simulator)."),
    tail: float = typer.Option(60.0, "--tail", min=0.0, help="Seconds after the incident (simulator)."),
    default_names: bool = typer.Option(
        False, "--default-names", help="Use the simulator's default network instead of renamed names."
    ),
    category: str | None = typer.Option(
        None, "--category", help="Expected category (event files): healthy, user, issuer, network, config, security."
    ),
    onset: float | None = typer.Option(None, "--onset", help="Incident onset, epoch seconds of event time."),
    onset_offset: float | None = typer.Option(None, "--onset-offset", help="...or seconds after the first event."),
    end: float | None = typer.Option(None, "--end", help="Incident end, epoch seconds (default: the file's end)."),
    target: str | None = typer.Option(None, "--target", help="Segment at fault, e.g. 'bank=FNB,route=psp_a'."),
    action: list[str] = typer.Option(
        [], "--action", help="Acceptable action TOOL:dim=value,... (':*' = all traffic); repeatable."
    ),
    forbid: list[str] = typer.Option(
        [], "--forbid", help="Forbidden action TOOL (any target) or TOOL:dims; repeatable."
    ),
    tags: list[str] = typer.Option([], "--tags", help="Extra tags (comma-separated or repeated)."),
    difficulty: str = typer.Option("medium", "--difficulty", help="easy, medium or hard."),
    description: str = typer.Option("", "--description"),
    fact: list[str] = typer.Option(
        [], "--fact", help="A fact a good explanation states (for the LLM judge); repeatable."
    ),
    corpus: Path | None = typer.Option(None, "--corpus", help="Corpus folder (default: the packaged evals/incidents)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing case of that id."),
) -> None:
    """Make a case: from a simulator scenario, or from an event file plus labels."""
    from payops.evals.cases import DEFAULT_CORPUS, CaseError
    from payops.evals.record import SimSpec, parse_action, record_from_events, record_simulated
    from payops.signals.simulator import default_network

    root = corpus or DEFAULT_CORPUS
    if (scenario is None) == (events is None):
        _fail("give exactly one of --scenario NAME or --events FILE")
    try:
        if scenario is not None:
            net = default_network(volume) if default_names else None
            spec = SimSpec(
                case_id,
                scenario,
                seed,
                volume,
                lead_in,
                duration,
                tail,
                network=net,
                tags=tuple(_split(tags)),
                facts=tuple(fact),
                description=description or None,
            )
            case = record_simulated(spec, root, overwrite)
            typer.echo(f"recorded {case.id} ({case.expected.category.value}, {case.difficulty}) at {case.path}")
            return
        if category is None:
            _fail("--events needs --category (and --onset/--onset-offset for an incident)")
        assert events is not None  # exactly one of --scenario and --events, checked above
        tgt = parse_action("x:" + target).target if target else {}
        case, report = record_from_events(
            case_id,
            events,
            root,
            category=category,
            onset=onset,
            onset_offset=onset_offset,
            end=end,
            target=tgt,
            actions=[parse_action(a) for a in action],
            forbidden=[parse_action(f) for f in forbid],
            description=description,
            tags=_split(tags),
            difficulty=difficulty,
            facts=fact,
            overwrite=overwrite,
        )
    except (CaseError, ValueError) as exc:
        _fail(str(exc))
        return
    if report.bad_count:
        first = report.bad[0]
        typer.echo(
            f"payops: {report.bad_count} malformed line(s) kept as they are (the agent must skip them); first at line "
            f"{first.line_no}: {first.reason}",
            err=True,
        )
    typer.echo(f"recorded {case.id} ({case.expected.category.value}) from {events} at {case.path}")


@eval_app.command("list")
def list_cases(
    tags: list[str] = typer.Option([], "--tags"),
    corpus: Path | None = typer.Option(None, "--corpus"),
) -> None:
    """List the cases with their tags."""
    from payops.evals.cases import CaseError, discover

    try:
        cases = discover(corpus, _split(tags))
    except CaseError as exc:
        _fail(str(exc))
        return
    for c in cases:
        typer.echo(f"{c.id:32s} {c.expected.category.value:9s} {c.difficulty:6s} {','.join(c.all_tags)}")
    typer.echo(f"{len(cases)} case(s), {sum(1 for c in cases if c.control)} no-fault control(s)")
