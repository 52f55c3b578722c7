"""One digest over the replay decisions of the whole eval corpus: run it before and after a refactor.

    python scripts/replay_fingerprint.py [--corpus evals/incidents] [--per-case] [--keep DIR] [--eval]

Replays every case's `events.jsonl.gz` exactly as `payops replay EVENTS --out DECISIONS --window W
--tick T` does (the same `payops.wiring.replay`, in this process, with the case's window and tick),
and prints the SHA-256 of the decision files, concatenated in case order. Nothing is excluded: the
decisions of a replay carry no random or wall-clock field (decision ids derive from the deployment
and the window end), so two runs of the same code print the same digest and any change in a
decision, its evidence or its field order changes it. `--per-case` also prints each case's digest,
to find the case that moved; `--keep DIR` keeps the decision files to diff.

Replay runs the shadow plane, where no action moves traffic, so the outcome-watching path (assess,
rollbacks of harmful actions, lessons) never runs in it. `--eval` adds a second digest over `payops
eval --workers 1` on the same corpus: every case's ticks plus the closed-loop runs on the simulator
(actions in force, outcomes judged), from its results.json with the fields that time the run left out
(`wall_seconds`, `created_at`, `llm_latency_ms`: wall-clock by design) and the corpus's path.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def case_params(case_dir: Path) -> tuple[float, float]:
    """window_seconds and tick_seconds from case.yaml (two flat keys: no YAML parser needed)."""
    values = {"window_seconds": 60.0, "tick_seconds": 60.0}
    for line in (case_dir / "case.yaml").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in values:
            values[key] = float(value)
    return values["window_seconds"], values["tick_seconds"]


TIMING_FIELDS = frozenset({"wall_seconds", "created_at", "llm_latency_ms"})


def _untimed(value: object) -> object:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def eval_digest(corpus: Path, work: Path) -> str:
    out = work / "eval"
    done = subprocess.run([sys.executable, "-c", "from payops.cli import main; main()", "eval", "--corpus", str(corpus),
                           "--out", str(out), "--workers", "1"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"payops eval failed ({done.returncode}):\n{done.stderr[-2000:]}")
    results = _untimed(json.loads((out / "results.json").read_text()))
    assert isinstance(results, dict)
    results.pop("corpus", None)  # the corpus's path (or "packaged"): where it ran, not what it decided
    return hashlib.sha256(json.dumps(results, sort_keys=True).encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "evals" / "incidents")
    parser.add_argument("--per-case", action="store_true")
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--eval", action="store_true", help="also digest payops eval's results (closed loop included)")
    args = parser.parse_args()

    from payops.wiring import replay

    cases = sorted(p for p in args.corpus.iterdir() if (p / "events.jsonl.gz").exists())
    total = hashlib.sha256()
    work = Path(tempfile.mkdtemp(prefix="payops-fingerprint-"))
    try:
        for case in cases:
            events = work / f"{case.name}.jsonl"
            with gzip.open(case / "events.jsonl.gz", "rb") as src, events.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            out = work / f"{case.name}.decisions.jsonl"
            window, tick = case_params(case)
            for _ in replay(events, out, window, tick):
                pass
            data = out.read_bytes()
            total.update(data)
            if args.per_case:
                lines = data.count(b"\n")
                print(f"{hashlib.sha256(data).hexdigest()[:16]}  {case.name}  ({lines} decisions)")
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, args.keep / out.name)
        print(f"{total.hexdigest()}  {len(cases)} cases")
        if args.eval:
            print(f"{eval_digest(args.corpus, work)}  payops eval (untimed results.json)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
