"""Console page timings over an audit trail of 10,000 decisions (issue bar: a page in < 300 ms).

Builds a state directory with a short real run of the agent, then appends copies of its decision records
under new ids and times until there are N decisions, signs in, and times each page (first request and the
median of the next ones). The trail is decoded once per server: by the first page when nothing came before
it (the "cold" line), else in the background from the sign-in page on. Prints figures, asserts nothing.

    python scripts/bench_console.py [--decisions 10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "console"))
from console_helpers import run_agent, sign_in  # noqa: E402 - needs the sys.path entry

from payops.api import create_app  # noqa: E402 - kept below the sys.path entry
from payops.memory.audit import AuditLog  # noqa: E402 - kept below the sys.path entry
from payops.settings import Settings  # noqa: E402 - kept below the sys.path entry

TYPING_SECONDS = 2.0  # an operator pasting a key into the sign-in page


def grow(state: Path, decisions: int) -> None:
    audit = AuditLog(state / "audit.db")
    seeds = [e for e in audit.entries("decision")]
    have = len(seeds)
    last = max(e.record.get("window_end", e.at) for e in seeds)
    i = 0
    while have < decisions:
        e = seeds[i % len(seeds)]
        last += 60.0
        record = {**e.record, "decision_id": f"d-bench{have:09d}", "window_end": last}
        audit.append(record["decision_id"], "decision", last, record)
        have += 1
        i += 1
    audit.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        run_agent(state, 25)
        started = time.perf_counter()
        grow(state, args.decisions)
        print(f"audit trail: {args.decisions:,} decisions (filled in {time.perf_counter() - started:.1f}s)")
        app = create_app(Settings(state_dir=state, webhook_url=None))
        with TestClient(app) as client:  # cold: a first page that decodes the whole trail itself
            key = app.state.backend.keys.create("bench", "operator")[1]
            sign_in(client, key)
            t0 = time.perf_counter()
            assert client.get("/console").status_code == 200
            print(f"{'/console (cold: no sign-in page seen)':<40} first {(time.perf_counter() - t0) * 1000:7.1f} ms")
        app = create_app(Settings(state_dir=state, webhook_url=None))
        with TestClient(app) as client:  # as an operator arrives: the sign-in page starts decoding the trail
            key = app.state.backend.keys.create("bench-2", "operator")[1]
            client.get("/console/sign-in")
            time.sleep(TYPING_SECONDS)
            sign_in(client, key)
            pages = ["/console", "/console/now/fragment", "/console/decisions", "/console/decisions?category=network",
                     "/console/decisions/d-bench000005000", "/console/incidents", "/console/approvals",
                     "/console/audit"]
            for page in pages:
                t0 = time.perf_counter()
                assert client.get(page).status_code == 200, page
                first = (time.perf_counter() - t0) * 1000
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    response = client.get(page, follow_redirects=False)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200 and "Paste a" not in response.text, page
                print(f"{page:<40} first {first:7.1f} ms   median {statistics.median(times):7.1f} ms   "
                      f"max {max(times):7.1f} ms")


if __name__ == "__main__":
    main()
