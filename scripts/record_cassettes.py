"""Record the LLM cassettes from a real OpenAI-compatible server (SmolLM2 on llama.cpp by default).

Two suites use cassettes, and both match on the request body, so both need
re-recording after a prompt, the briefing or the rule engine's figures change:

- reasoning: the LLM reasoner's unit cases (tests/reasoning/reasoning_llm_cases.py,
  tests/reasoning/cassettes/), a minute or two;
- eval: the incident corpus for `payops eval --reasoner llm --model smollm2`
  (evals/cassettes/smollm2/<case>.yaml + meta.json), every anomalous tick of every
  case: about two hours on 2 cores. --tags / --only re-record a part.
- ci: what CI replays, re-recorded in one go (well under 20 minutes): the reasoning
  cases plus the eval suite `llm-ci` of evals/suites.json (one case per category, the
  prompt-injection case, the no-call controls). It removes the other eval cassettes,
  which the same change has made stale; `--suite eval` brings the whole corpus back.

By default it starts the server itself (`payops llm serve`'s command line: repacked
CPU kernels off) with the interpreter that has the local-llm extra, records, stops
the server, and (eval) replays what it recorded to prove the cassettes reproduce it:

    python scripts/record_cassettes.py --server-python /work/llm-venv/bin/python                 # reasoning
    python scripts/record_cassettes.py --server-python /work/llm-venv/bin/python --suite eval    # the corpus
    python scripts/record_cassettes.py --server-python /work/llm-venv/bin/python --suite all
    python scripts/record_cassettes.py --server-python /work/llm-venv/bin/python --suite ci      # what CI replays
    python scripts/record_cassettes.py --suite eval --tags route_outage --base-url http://127.0.0.1:8011/v1

The eval cassettes match on host and port too: they are recorded on one fixed port
(the one in meta.json, else 8011). Replays use record_mode="none": no server, no
key, no network. Headers, the authorization above all, are not stored.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reasoning"))

from reasoning_llm_cases import CASES, CASSETTES, make_reasoner, recorder  # noqa: E402 - needs the sys.path entry

from payops.cli_llm import server_command  # noqa: E402 - kept below the sys.path entry

EVAL_MODEL = "smollm2"
EVAL_PORT = 8011


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eval_port() -> int:
    """The port the eval cassettes were recorded on (host and port are part of their match)."""
    from payops.evals.llm import load_meta

    url = load_meta(EVAL_MODEL).get("base_url")
    return (urlparse(url).port if url else None) or EVAL_PORT


def wait_ready(base_url: str, proc: subprocess.Popen | None, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the model server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no server answered at {base_url} within {seconds:.0f}s")


def start_server(python: str, port: int, threads: int, log_path: str) -> subprocess.Popen:
    cmd = server_command(python=python, port=port, threads=threads)
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it until stop_server, after we return
    # No OMP_WAIT_POLICY=PASSIVE here (`payops llm serve` sets it so an idle server does not spin):
    # this server only lives for the recording, and passive waits made generation ~3x slower here.
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    print(f"started the model server (pid {proc.pid}) on 127.0.0.1:{port}; log: {log_path}", file=sys.stderr,
          flush=True)
    return proc


def record_reasoning(base_url: str, only: list[str]) -> None:
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        raise SystemExit(f"not a reasoning case: {', '.join(unknown)} (choose from {', '.join(sorted(CASES))})")
    CASSETTES.mkdir(parents=True, exist_ok=True)
    for name in only or sorted(CASES):
        path = CASSETTES / f"{name}.yaml"
        path.unlink(missing_ok=True)  # a clean recording, not an append
        snapshot, context = CASES[name]()
        reasoner = make_reasoner(base_url)
        started = time.monotonic()
        with recorder("all").use_cassette(path.name) as cassette:
            decision = reasoner.decide(snapshot, context)
        print(json.dumps({
            "case": name, "seconds": round(time.monotonic() - started, 1), "requests": len(cassette),
            "reasoner": decision.diagnosis.reasoner, "category": decision.diagnosis.category.value,
            "target": decision.diagnosis.target, "tool": decision.proposal.tool, "notes": list(decision.notes),
            "calls": [{k: c.get(k) for k in ("phase", "attempt", "ok", "error", "total_tokens", "latency_ms")}
                      for c in decision.llm_calls],
        }), flush=True)
        if not len(cassette):
            path.write_text("interactions: []\nversion: 1\n")  # replay then proves no request is made


def record_eval(base_url: str, only: list[str], tags: list[str], out: Path, verify: bool,
                suite: str | None = None) -> int:
    """`payops eval --reasoner llm --record` over the chosen cases, then a replay of them with record_mode none."""
    from payops.evals.harness import RunOptions, results_json, run_model, select_cases
    from payops.evals.llm import cassette_dir, load_meta, recording_stats, save_meta
    from payops.evals.report import write_all

    recorded_url = load_meta(EVAL_MODEL).get("base_url")
    if (only or tags) and recorded_url and recorded_url != base_url:
        raise SystemExit(f"the other cassettes were recorded against {recorded_url}: "
                         "record a part against the same URL")
    cases = select_cases(None, tags, suite)
    if only:  # --only re-records those cases and leaves every other cassette as it is
        unknown = sorted(set(only) - {c.id for c in cases})
        if unknown:
            raise SystemExit(f"--only names cases not in the corpus: {', '.join(unknown)}")
        cases = [c for c in cases if c.id in set(only)]
    if suite is not None:  # the rest of the corpus is stale after the change that needs this re-record
        keep = {c.id for c in cases}
        for path in cassette_dir(EVAL_MODEL).glob("*.yaml"):
            if path.stem not in keep:
                path.unlink()
        save_meta(EVAL_MODEL, recorded_url or base_url, keep=keep)
    started = time.monotonic()

    def progress(case_id: str, n=[0]) -> None:  # noqa: B006 - a counter across calls
        n[0] += 1
        print(f"[{n[0]}/{len(cases)}] {case_id} recorded, {time.monotonic() - started:.0f}s so far", file=sys.stderr,
              flush=True)

    options = RunOptions("llm", EVAL_MODEL, base_url, record=True, closed_loop=False)
    save_meta(EVAL_MODEL, base_url)
    run = run_model(cases, options, progress=progress)
    save_meta(EVAL_MODEL, base_url, recorded=recording_stats(run.scores))
    results = results_json([run], None, tags, time.monotonic() - started)
    write_all(results, out)
    summary = results["runs"][0]["summary"]
    size = sum(p.stat().st_size for p in cassette_dir(EVAL_MODEL).glob("*.yaml"))
    print(json.dumps({"suite": "eval", "cases": len(cases), "seconds": round(time.monotonic() - started),
                      "llm_calls": summary["llm_calls"], "failed_calls": summary["llm_fallbacks"],
                      "tokens": summary["tokens_in"] + summary["tokens_out"],
                      "mean_latency_ms": summary["llm_latency_ms"],
                      "pass_rate": summary["pass_rate"], "cassettes_bytes": size, "results": str(out)}), flush=True)
    if not verify:
        return 0
    replayed = run_model(cases, RunOptions("llm", EVAL_MODEL, None, closed_loop=False))
    problems = replayed.cassette_problems
    print(json.dumps({"replay": "record_mode none", "cases": len(cases), "seconds": replayed.wall_seconds,
                      "stale": [c for c, _ in problems], "pass_rate": replayed.summary().pass_rate}), flush=True)
    for case_id, problem in problems:
        print(f"  {case_id}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=("reasoning", "eval", "ci", "all"), default="reasoning")
    ap.add_argument("--base-url", help="use this running server instead of starting one")
    ap.add_argument("--server-python", default=sys.executable,
                    help="interpreter with the local-llm extra (starts the server)")
    ap.add_argument("--only", action="append", default=[], help="record only these cases (repeatable)")
    ap.add_argument(
        "--tags", action="append", default=[], help="eval: only cases with these tags (as payops eval --tags)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "payops-eval-record",
        help="eval: where the recording run's results.json and report.md go",
    )
    ap.add_argument("--no-verify", dest="verify", action="store_false", help="eval: skip the replay after recording")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "payops-llm-server.log"))
    args = ap.parse_args(argv)
    if args.suite in ("all", "ci") and (args.only or args.tags):
        ap.error("--only and --tags pick cases of one suite: use --suite reasoning or --suite eval")

    proc: subprocess.Popen | None = None
    base_url = args.base_url
    if base_url is None:
        port = eval_port() if args.suite in ("eval", "ci", "all") else free_port()
        proc = start_server(args.server_python, port, args.threads, args.log)
        base_url = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    status = 0
    try:
        wait_ready(base_url, proc)
        if args.suite in ("reasoning", "ci", "all"):
            record_reasoning(base_url, args.only)
        if args.suite in ("eval", "all"):
            status = record_eval(base_url, args.only, args.tags, args.out, args.verify)
        if args.suite == "ci":
            status = record_eval(base_url, [], [], args.out, args.verify, suite="llm-ci")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"recorded in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
