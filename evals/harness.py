"""One evaluation run: every case replayed and scored, the closed loop for simulator cases, per model.

Cases are independent, so they run in a process pool (one worker per core by
default). A custom reasoner factory (tests: a deliberately wrong reasoner) runs
in-process instead.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from .cases import Case, discover, load_case
from .closed_loop import MIN_ORACLE_SAVED, ClosedLoopResult, closed_loop
from .runner import CaseRun, EvalError, ReasonerFactory, llm_factory, replay_case, rules_factory
from .scoring import Aggregate, CaseScore, Price, aggregate, by_category, by_difficulty, by_tag, score_case

Progress = Callable[[str], None]

# A recording must not time out: a request that times out is not written to the cassette, so
# its replay would take another path (and a single-threaded local server keeps computing the
# abandoned answer, so the retry times out too). How fast a busy recorder answers is not
# what the cassette is for; the live latency is kept in meta.json.
RECORD_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class RunOptions:
    reasoner: str = "rules"  # rules | llm
    model: str | None = None  # LLM model name (llm runs)
    base_url: str | None = None
    record: bool = False  # re-record cassettes against the endpoint
    cassettes: Path | None = None
    closed_loop: bool = True
    judge_model: str | None = None
    judge_base_url: str | None = None

    @property
    def label(self) -> str:
        return self.reasoner if self.reasoner == "rules" else f"llm:{self.model}"


@dataclass
class CaseOutcome:
    score: CaseScore
    ticks: list[dict[str, Any]]
    closed: ClosedLoopResult | None = None
    skipped: str | None = None
    cassette_problem: str | None = None  # the replay did not reproduce the recording (stale cassette)


@dataclass
class ModelRun:
    options: RunOptions
    outcomes: list[CaseOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def scores(self) -> list[CaseScore]:
        return [o.score for o in self.outcomes if o.skipped is None]

    @property
    def closed(self) -> list[ClosedLoopResult]:
        return [o.closed for o in self.outcomes if o.closed is not None]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(o.score.case_id, o.skipped) for o in self.outcomes if o.skipped is not None]

    @property
    def cassette_problems(self) -> list[tuple[str, str]]:
        return [(o.score.case_id, o.cassette_problem) for o in self.outcomes if o.cassette_problem is not None]

    def summary(self) -> Aggregate:
        return aggregate(self.scores, self.options.label)


def _factory(options: RunOptions) -> ReasonerFactory:
    if options.reasoner == "rules":
        return rules_factory
    if options.reasoner == "llm":
        if not options.model:
            raise EvalError("--reasoner llm needs --model NAME (the model the cassettes were recorded with)")
        return _llm_factory(options.record)
    raise EvalError(f"unknown reasoner '{options.reasoner}' (rules or llm)")


def _llm_factory(record: bool) -> ReasonerFactory:
    """The LLM reasoner as the eval runs it: no time-out while recording; no back-off in a replay
    (tenacity's wait between retries relieves a live endpoint; from a cassette it only adds seconds)."""

    def build(settings: Any) -> Any:
        if record:
            # A slow local model may take minutes a call: the tick budget must not cut a recording short.
            budget = RECORD_TIMEOUT_SECONDS * 2 * (1 + settings.llm_max_retries)  # two phases, every attempt
            return llm_factory(settings.model_copy(update={"llm_timeout_seconds": RECORD_TIMEOUT_SECONDS,
                                                           "llm_tick_budget_seconds": budget}))
        from tenacity import wait_none

        reasoner = llm_factory(settings)
        if hasattr(reasoner, "wait"):
            reasoner.wait = wait_none()
        return reasoner

    return build


def check_reasoner(options: RunOptions) -> None:
    """Fail early, with a clear message, when the reasoner cannot be built at all."""
    factory = _factory(options)
    if options.reasoner == "llm":
        from .llm import replay_environment
        from .runner import eval_settings

        url = replay_environment(options.model or "", options.base_url, options.record, options.cassettes)
        probe = Case.model_validate({"id": "probe", "description": "probe", "control": True,
                                     "expected": {"category": "healthy"}})
        factory(eval_settings(probe, options.model, url))


def evaluate_case(case: Case, options: RunOptions, factory: ReasonerFactory | None = None,
                  prices: dict[str, Price] | None = None) -> CaseOutcome:
    from .llm import cassette, cassette_path, judge_chat, judge_explanation, price_for, replay_environment

    factory = factory or _factory(options)
    tape = None
    url = options.base_url
    if options.reasoner == "llm":
        url = replay_environment(options.model or "", options.base_url, options.record, options.cassettes)
        path = cassette_path(case, options.model or "", options.cassettes)
        if not options.record and not path.exists():
            score = CaseScore(case.id, case.expected.category.value, case.difficulty, case.all_tags, case.control)
            return CaseOutcome(score, [], skipped=f"no cassette at {path} (record with --record against an endpoint)")
        tape = cassette(case, options.model or "", options.record, options.cassettes)
    run: CaseRun = replay_case(case, factory, llm_model=options.model, llm_base_url=url, cassette=tape)
    problem = tape.problem(case.id) if tape is not None else None
    if problem is not None:  # the LLM's answers were not all replayed: the case failed, whatever the rules did
        run.error = f"stale cassette: {problem}" + (f" (and {run.error})" if run.error else "")
    score = score_case(case, run, price_for(options.model, prices or {}))
    if options.judge_model and case.expected.facts and not case.control:
        first = next((t for t in run.ticks
                      if t.category != "healthy" and case.onset is not None and t.window_end > case.onset), None)
        if first is not None:
            explanation = first.summary + "\n" + "\n".join(first.evidence)
            judge_case = case.model_copy(update={"id": f"{case.id}.judge"})
            try:
                with cassette(judge_case, options.judge_model, options.record, options.cassettes):
                    judge = judge_chat(options.judge_model, options.judge_base_url)
                    verdict = judge_explanation(judge, case.expected.facts, explanation)
                score.judge = None if verdict is None else verdict.passed
            except FileNotFoundError:
                score.judge = None
    closed = None
    if options.closed_loop and case.generator is not None and not case.control and options.reasoner == "rules":
        closed = closed_loop(case, factory)
    return CaseOutcome(score, [t.to_json() for t in run.ticks], closed, cassette_problem=problem)


def _worker(case_dir: str, options: RunOptions, prices: dict[str, Price]) -> CaseOutcome:
    return evaluate_case(load_case(Path(case_dir)), options, None, prices)


def run_model(cases: list[Case], options: RunOptions, *, workers: int | None = None,
              factory: ReasonerFactory | None = None, progress: Progress | None = None) -> ModelRun:
    from .llm import load_prices

    prices = load_prices()
    started = time.perf_counter()
    result = ModelRun(options)
    workers = workers or os.cpu_count() or 1
    if options.reasoner == "llm":
        workers = 1  # one endpoint, one cassette at a time; vcrpy patches the process
    if factory is not None or workers <= 1 or len(cases) <= 1:
        for case in cases:
            result.outcomes.append(evaluate_case(case, options, factory, prices))
            if progress:
                progress(case.id)
    else:
        # spawn, not fork: the progress bar's refresh thread may hold a lock at fork time.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_worker, str(c.path), options, prices): c for c in cases}
            for fut in as_completed(futures):
                result.outcomes.append(fut.result())
                if progress:
                    progress(futures[fut].id)
        order = {c.id: i for i, c in enumerate(cases)}
        result.outcomes.sort(key=lambda o: order[o.score.case_id])
    result.wall_seconds = round(time.perf_counter() - started, 2)
    return result


def closed_loop_summary(results: Iterable[ClosedLoopResult]) -> dict[str, Any]:
    rows = [r for r in results if r.error is None]
    out: dict[str, Any] = {"cases": len(rows), "errors": sum(1 for r in results if r.error),
                           "min_oracle_saved": MIN_ORACLE_SAVED}
    for v in ("agent", "static", "oracle"):
        saved = [r.saved(v) or 0 for r in rows]
        out[f"saved_{v}"] = sum(saved)
        ttm = [
            after
            for r in rows
            if v in r.outcomes and (after := r.outcomes[v].mitigated_after_s) is not None
        ]
        out[f"mitigated_{v}"] = len(ttm)
        out[f"median_time_to_mitigate_s_{v}"] = median(ttm) if ttm else None
    # Significantly fewer payments than nobody acting: the action made things worse.
    out["agent_worse_than_none"] = [r.case_id for r in rows if (r.saved("agent") or 0) < -MIN_ORACLE_SAVED]
    out["static_worse_than_none"] = [r.case_id for r in rows if (r.saved("static") or 0) < -MIN_ORACLE_SAVED]
    scored = [r for r in rows if r.share_of_oracle("agent") is not None]
    out["cases_with_oracle_saving"] = len(scored)
    for v in ("agent", "static"):
        oracle_total = sum(r.saved("oracle") or 0 for r in scored)
        mine = sum(r.saved(v) or 0 for r in scored)
        out[f"share_of_oracle_{v}"] = round(mine / oracle_total, 4) if oracle_total else None
    return out


def model_json(run: ModelRun) -> dict[str, Any]:
    scores = run.scores
    return {
        "label": run.options.label,
        "reasoner": run.options.reasoner,
        "model": run.options.model,
        "wall_seconds": run.wall_seconds,
        "summary": run.summary().to_json(),
        "by_category": {k: v.to_json() for k, v in by_category(scores).items()},
        "by_difficulty": {k: v.to_json() for k, v in by_difficulty(scores).items()},
        "by_tag": {k: v.to_json() for k, v in by_tag(scores).items()},
        "cases": [{**o.score.to_json(), "ticks": o.ticks} for o in run.outcomes if o.skipped is None],
        "skipped": [{"case_id": c, "reason": r} for c, r in run.skipped],
        "cassette_problems": [{"case_id": c, "problem": p} for c, p in run.cassette_problems],
        "closed_loop": [r.to_json() for r in run.closed],
        "closed_loop_summary": closed_loop_summary(run.closed) if run.closed else None,
    }


def results_json(runs: list[ModelRun], corpus: Path | None, tags: Iterable[str], wall: float) -> dict[str, Any]:
    return {
        "version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": str(corpus) if corpus else "packaged",
        "tags": list(tags),
        "wall_seconds": round(wall, 2),
        "runs": [model_json(r) for r in runs],
    }


SUITES_FILE = Path(__file__).resolve().parent / "suites.json"


def suite_case_ids(name: str) -> list[str]:
    """The case ids of a named suite in evals/suites.json (e.g. `llm-ci`, CI's quick LLM replay)."""
    suites = json.loads(SUITES_FILE.read_text())
    if name not in suites:
        raise EvalError(f"no suite '{name}' (choose from {', '.join(sorted(suites))})")
    return list(suites[name]["cases"])


def select_cases(corpus: Path | None, tags: Iterable[str], suite: str | None = None) -> list[Case]:
    cases = discover(corpus, tags)
    if suite is not None:
        wanted = set(suite_case_ids(suite))
        missing = sorted(wanted - {c.id for c in (discover(corpus, ()) if tags else cases)})
        if missing:
            raise EvalError(f"suite '{suite}' names cases not in the corpus: {', '.join(missing)}")
        cases = [c for c in cases if c.id in wanted]
    if not cases:
        raise EvalError("no case matches" + (f" the tags {', '.join(tags)}" if tags else "") + " in the corpus")
    return cases
