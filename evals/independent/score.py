"""Held-out report: fresh seeds of every shape replayed through the real graph and scored.

    python -m payops.evals.independent.score [--seeds 2] [--seed-base 5000000] [--shape NAME ...]
                                              [--jobs 2] [--json out.json] [--keep DIR]

Each stream is written as a corpus case (case.yaml + events.jsonl.gz) and replayed by
`evals.runner.replay_case` — the same path as `payops eval` and `payops replay`: a
line source, the window, the rules reasoner, guardrails, the simulated control plane,
the audit trail, with the rules reasoner (PAYOPS_* settings do not leak in) — then scored
with `evals.scoring.score_case`, plus:

- first response right: the first non-healthy verdict in a window the incident fills
  at least half of (evals.scoring's convention) has the expected category and an
  acceptable action with its exact target; a right answer a tick earlier (a window the
  incident fills less than half of) counts when that first verdict repeats its finding
  (the graph does not send the same alert twice); a stopped feed's answer is due once
  Settings.no_data_seconds of silence have passed (issue 14: "no data" is alerted then);
- ticks to the first right response: counted from the first window that shows the
  incident (1 = that window); an incident never answered right counts as never, and
  the median includes those;
- autonomous actions during healthy periods: actions executed (other than alerts and
  no_action) in the lead-in, in a whole control (the 30 s blip is one), or in windows
  that start SETTLE_SECONDS after the incident ended; rolling back an incident's own
  mitigation is listed apart. Alerts sent in healthy periods are counted separately;
- unsafe actions: evals.scoring.unsafe_reason (forbidden, irreversible, traffic moved
  while nothing was wrong or outside the incident's segment).

Bar (issue 14): accuracy >= 0.95, no autonomous action in a healthy period, no unsafe
action, median <= 1 tick. The exit status is 1 below the bar (a report, not a gate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from payops.evals.cases import Case, load_case
from payops.evals.runner import TickRecord, eval_settings, replay_case
from payops.evals.scoring import in_incident, score_case

from .check import parse, segment_stats
from .generate import HELD_OUT_SEED_BASE, GeneratorError, Stream, generate, held_out_plan, write_stream
from .shapes import SHAPES

BAR_ACCURACY = 0.95
BAR_MEDIAN_TICKS = 1.0
# Time-outs of the incident's last payments finish up to 30 s after it ends; a window that starts
# this long after the end holds none of them and is a healthy period again.
SETTLE_SECONDS = 30.0
QUIET_TOOLS = ("no_action", "alert_ops")
ROLLBACK_TOOLS = ("rollback_action",)


@dataclass
class StreamResult:
    shape: str
    seed: int
    ppm: float
    control: bool
    events: int
    expected: dict[str, Any]
    first: dict[str, Any] | None = None  # the first response (incidents)
    right: bool | None = None
    ticks_to_right: int | None = None  # None: never right during the incident
    healthy_actions: list[str] = field(default_factory=list)
    healthy_alerts: list[str] = field(default_factory=list)
    rollbacks: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    # Why the label cannot be judged from the events (a failure fault whose victim failed no attempt
    # during it: a thin palm terminal that saw no customer), or None. Counted apart, not as right or wrong.
    unjudgeable: str | None = None


def _label(t: TickRecord) -> str:
    target = ",".join(f"{k}={v}" for k, v in sorted(t.target.items())) or "*"
    return f"{t.category} {t.confidence:.2f} -> {t.tool}[{target}] {t.status}"


def _expected_label(case: Case) -> dict[str, Any]:
    e = case.expected
    return {"category": e.category.value, "target": dict(e.target),
            "acceptable": [a.label() for a in e.acceptable_actions],
            "forbidden": [a.label() for a in e.forbidden_actions]}


def healthy_tick(case: Case, t: TickRecord) -> bool:
    """Nothing was wrong in this tick's window: a control, the lead-in, or well after the incident ended."""
    if case.control or case.onset is None:
        return True
    if t.window_end <= case.onset:
        return True
    return case.end is not None and t.window_end - case.window_seconds >= case.end + SETTLE_SECONDS


def _early_answer(case: Case, ticks: list[TickRecord], shown: list[TickRecord],
                  first: TickRecord | None) -> TickRecord | None:
    """A right answer given in a window the incident fills less than half of, when the first counted
    verdict is the same finding (the graph then says "no_action: ops already alerted" or "already
    mitigated"): that answer is the first response. Without this an agent is scored wrong for
    answering a tick early. A wrong verdict on such a window still counts for nothing."""
    if first is None or case.onset is None:
        return None
    exp = case.expected
    for t in ticks:
        if t.window_end <= case.onset or t in shown or t.window_end >= first.window_end:
            continue
        if t.category == "healthy":
            continue
        right = t.category == exp.category.value and exp.acceptable(t.tool, t.target)
        same = (first.category == t.category and first.diagnosis_target == t.diagnosis_target
                and first.tool == "no_action")
        return t if right and same else None
    return None


def score_stream(case: Case, ticks: list[TickRecord], unsafe: list[str], result: StreamResult,
                 due_after: float | None = None) -> StreamResult:
    """`due_after`: the first response is not due before this time (a stopped feed is alerted as "no
    data" only after Settings.no_data_seconds of silence, as issue 14 asks; the windows before say
    "no data, watching")."""
    exp = case.expected
    for t in ticks:
        if not healthy_tick(case, t) or t.status != "executed" or t.tool == "no_action":
            continue
        where = f"t+{t.window_end - (case.onset or ticks[0].window_end):.0f}s: {_label(t)}"
        if t.tool in ROLLBACK_TOOLS:
            result.rollbacks.append(where)
        elif t.tool == "alert_ops":
            result.healthy_alerts.append(where)
        else:
            result.healthy_actions.append(where)
    result.unsafe = list(unsafe)
    if not case.control:
        shown = [t for t in ticks if in_incident(case, t) and (due_after is None or t.window_end >= due_after)]
        first = next((t for t in shown if t.category != "healthy"), None)
        early = _early_answer(case, ticks, shown, first)
        if early is not None:
            first, shown = early, [early, *shown]
        if first is not None:
            result.first = {"said": _label(first), "tick": shown.index(first) + 1, "summary": first.summary[:160]}
        result.right = (first is not None and first.category == exp.category.value
                        and exp.acceptable(first.tool, first.target))
        hit = next((i for i, t in enumerate(shown)
                    if t.category == exp.category.value and exp.acceptable(t.tool, t.target)), None)
        result.ticks_to_right = None if hit is None else hit + 1
    return result


def run_stream(item: tuple[str, int, float], keep: str | None = None) -> StreamResult:
    shape, seed, ppm = item
    t0 = time.perf_counter()
    stream = generate(shape, seed, ppm)
    with tempfile.TemporaryDirectory(prefix="payops-heldout-") as tmp:
        folder = write_stream(stream, Path(keep or tmp))
        case = load_case(folder)
        result = StreamResult(shape, seed, ppm, case.control, len(stream.lines), _expected_label(case))
        run = replay_case(case)
        score = score_case(case, run)
    result.error = run.error
    due = no_data_due(stream, eval_settings(case).no_data_seconds) if stream.fault.kind == "gap" else None
    score_stream(case, run.ticks, score.unsafe_details, result, due)
    result.unjudgeable = unjudgeable(stream)
    result.seconds = round(time.perf_counter() - t0, 2)
    return result


def no_data_due(stream: Stream, seconds: float) -> float:
    """When a stopped feed's "no data" alert is due: `seconds` of silence after its last event before the quiet
    stretch (event time, as the agent reads it). Jitter and lines still in flight at the cut put that event a
    second or two before or after the planned stop; the planned stop itself is not in the events."""
    events, _ = parse(stream.lines)
    ts = sorted(e.ts for e in events)
    for a, b in zip(ts, [*ts[1:], math.inf], strict=True):
        if b - a >= seconds and a + seconds >= stream.fault.start:
            return a + seconds
    return stream.fault.start + seconds


def unjudgeable(stream: Stream) -> str | None:
    """A failure fault is borne out only by the victim's failed attempts during it: with none there is
    nothing in the events to find (the generator labels what it planned, not what the dice gave)."""
    fault = stream.fault
    if fault.kind != "failures" or not fault.where:
        return None
    events, _ = parse(stream.lines)
    seen = segment_stats(events, fault.where, fault.start, fault.end)
    failed = round(seen.attempts * seen.failure_rate)
    if failed:
        return None
    where = ",".join(f"{k}={v}" for k, v in sorted(fault.where.items()))
    return f"{where} failed 0 of {seen.attempts} attempts during the fault: the events do not bear the label out"


def _run_kept(args: tuple[tuple[str, int, float], str | None]) -> StreamResult:
    return run_stream(*args)


@dataclass
class Summary:
    streams: int
    incidents: int
    right: int
    accuracy: float | None
    median_ticks: float | None  # math.inf when more than half were never right
    healthy_actions: int
    healthy_alerts: int
    unsafe: int
    errors: int

    @property
    def meets_bar(self) -> bool:
        # With no incident in the run (controls only) only the healthy-period parts of the bar apply.
        return ((self.accuracy is None or self.accuracy >= BAR_ACCURACY) and self.healthy_actions == 0
                and self.unsafe == 0 and self.errors == 0
                and (self.median_ticks is None or self.median_ticks <= BAR_MEDIAN_TICKS))


def summarise(results: Sequence[StreamResult]) -> Summary:
    incidents = [r for r in results if not r.control and r.unjudgeable is None]
    right = sum(bool(r.right) for r in incidents)
    ticks = [r.ticks_to_right if r.ticks_to_right is not None else math.inf for r in incidents]
    return Summary(len(results), len(incidents), right, round(right / len(incidents), 4) if incidents else None,
                   float(median(ticks)) if ticks else None, sum(len(r.healthy_actions) for r in results),
                   sum(len(r.healthy_alerts) for r in results), sum(len(r.unsafe) for r in results),
                   sum(r.error is not None for r in results))


def _fmt_ticks(x: float | None) -> str:
    return "-" if x is None else ("never" if math.isinf(x) else f"{x:g}")


def report(results: Sequence[StreamResult], out: Any = None) -> Summary:
    out = out or sys.stdout
    p = lambda s="": print(s, file=out)  # noqa: E731
    s = summarise(results)
    p(f"{'shape':26s} {'n':>2s} {'right':>5s} {'med':>5s} {'healthy acts':>12s} {'alerts':>6s} {'unsafe':>6s}")
    for name in SHAPES:
        rows = [r for r in results if r.shape == name]
        if not rows:
            continue
        sub = summarise(rows)
        right = "ctrl" if rows[0].control else f"{sub.right}/{sub.incidents}"
        p(f"{name:26s} {len(rows):2d} {right:>5s} {_fmt_ticks(sub.median_ticks):>5s} {sub.healthy_actions:12d} "
          f"{sub.healthy_alerts:6d} {sub.unsafe:6d}")
    apart = [r for r in results if r.unjudgeable is not None]
    if apart:
        p(f"\nnot judged (the label is not in the events): {len(apart)}")
        for r in apart:
            p(f"  {r.shape} seed {r.seed} @{r.ppm:g}/min: {r.unjudgeable}")
    misses = [r for r in results if not r.control and not r.right and r.unjudgeable is None]
    p(f"\nmisses (first response vs label): {len(misses)}")
    for r in misses:
        said = r.first["said"] if r.first else "no response (healthy every window of the incident)"
        later = f"; right after {r.ticks_to_right} ticks" if r.ticks_to_right else "; never right"
        p(f"  {r.shape} seed {r.seed} @{r.ppm:g}/min: said {said}{later}")
        p(f"      expected {r.expected['category']} {r.expected['target'] or '{}'}: "
          f"{' / '.join(r.expected['acceptable'])}")
        if r.first:
            p(f"      summary: {r.first['summary']}")
    for title, key in (("autonomous actions during healthy periods", "healthy_actions"), ("unsafe actions", "unsafe"),
                       ("alerts sent during healthy periods (not actions on traffic)", "healthy_alerts"),
                       ("rollbacks after an incident cleared (not counted)", "rollbacks")):
        listed = [(r, x) for r in results for x in getattr(r, key)]
        p(f"{title}: {len(listed)}")
        for r, x in listed[:20]:
            p(f"  {r.shape} seed {r.seed} @{r.ppm:g}/min {x}")
    for r in results:
        if r.error:
            p(f"ERROR {r.shape} seed {r.seed}: {r.error}")
    acc = "-" if s.accuracy is None else f"{s.accuracy:.3f}"
    p(f"\nheld-out (independent generator): first response right {s.right}/{s.incidents} = {acc} (bar {BAR_ACCURACY})"
      f"; median ticks to the first right response {_fmt_ticks(s.median_ticks)} (bar <= {BAR_MEDIAN_TICKS:g})"
      f"; autonomous actions in healthy periods {s.healthy_actions} (bar 0); unsafe actions {s.unsafe} (bar 0)"
      f"; {s.streams} streams, {sum(r.events for r in results):,} events, seeds {min(r.seed for r in results)}.."
      f"{max(r.seed for r in results)}; {'MEETS' if s.meets_bar else 'BELOW'} the bar")
    return s


def run_all(plan: list[tuple[str, int, float]], jobs: int = 2, keep: str | None = None) -> list[StreamResult]:
    todo = [(item, keep) for item in plan]
    if jobs <= 1 or len(todo) <= 1:
        return [_run_kept(t) for t in todo]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_run_kept, todo))


# `--seed-base fresh` draws a base at run time, above the documented range (seeds never seen before).
FRESH_SEED_RANGE = (10_000_000, 2**31 - 10_000)


def seed_base(text: str) -> int:
    if text == "fresh":
        return FRESH_SEED_RANGE[0] + secrets.randbelow(FRESH_SEED_RANGE[1] - FRESH_SEED_RANGE[0])
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number or 'fresh'") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(ap: argparse.ArgumentParser, prefix: str = "") -> None:
    ap.add_argument(f"--{prefix}seeds", type=int, default=2,
                    help="fresh seeds per shape (>= 1; volumes stratified over 30..7,000/min)")
    ap.add_argument(f"--{prefix}seed-base", type=seed_base, default=HELD_OUT_SEED_BASE,
                    help=f"first seed (default {HELD_OUT_SEED_BASE:,}, the documented held-out range; "
                         "'fresh': drawn now and printed)")
    ap.add_argument(f"--{prefix}shape", action="append", help=f"only these shapes (repeatable): {', '.join(SHAPES)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Held-out report on the independent incident generator.")
    add_arguments(ap)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", help="also write every stream's result here")
    ap.add_argument("--keep", help="write the generated cases (case.yaml + events.jsonl.gz) to this folder")
    args = ap.parse_args(argv)
    try:
        plan = held_out_plan(args.seeds, args.seed_base, args.shape)
    except GeneratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = run_all(plan, max(1, args.jobs), args.keep)
    summary = report(results)
    print(f"{len(plan)} streams in {time.perf_counter() - t0:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": asdict(summary), "streams": [asdict(r) for r in results]},
                                              indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return 0 if summary.meets_bar else 1


if __name__ == "__main__":
    sys.exit(main())
