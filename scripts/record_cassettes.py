"""Record the LLM reasoner's vcrpy cassettes from a real OpenAI-compatible server.

By default it starts SmolLM2 itself (`payops llm serve`'s command line) with the
interpreter that has the local-llm extra, on a free loopback port, records every
case of tests/reasoning/reasoning_llm_cases.py and stops the server:

    python scripts/record_cassettes.py --server-python /work/llm-venv/bin/python
    python scripts/record_cassettes.py --base-url http://127.0.0.1:8011/v1   # a server already running
    python scripts/record_cassettes.py --only route_outage

The tests replay the cassettes with record_mode="none": no server, no key, no network.
Authorization headers are filtered out. Re-record after changing a prompt, the
briefing or the rule engine's figures (the request body is part of the match).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reasoning"))

from reasoning_llm_cases import CASES, CASSETTES, make_reasoner, recorder  # noqa: E402

from payops.cli_llm import server_command  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", help="use this running server instead of starting one")
    ap.add_argument("--server-python", default=sys.executable, help="interpreter with the local-llm extra (starts the server)")
    ap.add_argument("--only", action="append", choices=sorted(CASES), help="record only these cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "payops-llm-server.log"))
    args = ap.parse_args(argv)

    proc: subprocess.Popen | None = None
    base_url = args.base_url
    if base_url is None:
        port = free_port()
        cmd = server_command(python=args.server_python, port=port, threads=args.threads)
        log = open(args.log, "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})  # idle threads must not spin
        base_url = f"http://127.0.0.1:{port}/v1"
        print(f"started the model server (pid {proc.pid}) at {base_url}; log: {args.log}", file=sys.stderr)
    try:
        wait_ready(base_url, proc)
        CASSETTES.mkdir(parents=True, exist_ok=True)
        for name in args.only or sorted(CASES):
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
                "calls": [{k: c.get(k) for k in ("phase", "attempt", "ok", "error", "total_tokens", "latency_ms")} for c in decision.llm_calls],
            }))
            if not len(cassette):
                path.write_text("interactions: []\nversion: 1\n")  # replay then proves no request is made
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
