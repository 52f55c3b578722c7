"""Regenerate the evaluation corpus under evals/incidents/ from the plan in payops.evals.corpus.

    python scripts/make_eval_corpus.py            # every case (overwrites)
    python scripts/make_eval_corpus.py --only issuer_outage-101 --out /tmp/corpus

Deterministic: the same plan gives byte-identical files (gzip mtime 0), so a
regenerated corpus diffs clean unless the simulator changed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from payops.evals.cases import DEFAULT_CORPUS
from payops.evals.corpus import full_plan
from payops.evals.record import record_simulated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_CORPUS, help="corpus folder (default: evals/incidents)")
    parser.add_argument("--only", action="append", default=[], help="case id to (re)make; repeatable")
    parser.add_argument("--clean", action="store_true", help="remove case folders that are no longer in the plan")
    args = parser.parse_args(argv)

    specs = [s for s in full_plan() if not args.only or s.case_id in args.only]
    if args.only and len(specs) != len(args.only):
        known = {s.case_id for s in full_plan()}
        print(f"unknown case id(s): {', '.join(sorted(set(args.only) - known))}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for spec in specs:
        case = record_simulated(spec, args.out, overwrite=True)
        size = case.events_path.stat().st_size
        total += size
        kind = "control" if case.control else case.expected.category.value
        print(f"{case.id:32s} {kind:9s} {case.difficulty:6s} {spec.volume:6g}/min {size / 1024:7.1f} KiB")
    if args.clean and not args.only:
        planned = {s.case_id for s in specs}
        for folder in sorted(p for p in args.out.iterdir() if p.is_dir() and p.name not in planned):
            shutil.rmtree(folder)
            print(f"removed {folder.name}")
    print(f"{len(specs)} case(s), {total / 1024 / 1024:.2f} MiB of events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
