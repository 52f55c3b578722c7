"""`langgraph dev` on langgraph.json, and one tick fired by a LangGraph Server cron (issue 18).

Needs the optional `server` extra (`pip install -e '.[server]'`: langgraph-cli, langgraph-api and its
in-memory runtime); skipped with the reason where it is not installed, as in CI, which installs `.[test]`.
A cron's smallest step is a minute: the test waits for the next minute boundary, so it is `slow`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("langgraph_api") is None,
                       reason="langgraph-api is not installed (the optional extra: pip install -e '.[server]')"),
]


def _langgraph_cli() -> str:
    here = Path(sys.executable).parent / "langgraph"
    found = str(here) if here.exists() else shutil.which("langgraph")
    if found is None:
        pytest.skip("the langgraph command is not installed (pip install -e '.[server]')")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def events(tmp_path: Path) -> Path:
    """Three minutes of a route outage, stamped in the past: every window is due at once."""
    from payops.signals.simulator import Simulator, default_network, timed_scenario, write_stream

    path = tmp_path / "events.jsonl"
    net = default_network(300.0)
    sim = Simulator(timed_scenario("route_outage", net, 3.0), net, seed=7)
    with path.open("wb") as fh:
        write_stream(sim, sim.start_ts + 3 * 60.0, fh)
    return path


@pytest.fixture()
def server(tmp_path: Path, events: Path):
    port = _free_port()
    env = {**os.environ, "PAYOPS_STATE_DIR": str(tmp_path / "state"), "PAYOPS_SOURCE": str(events),
           "PAYOPS_DEPLOYMENT": "default"}
    for name in ("PAYOPS_DATABASE_URL", "PAYOPS_WEBHOOK_URL", "PAYOPS_ORCHESTRATOR_URL"):
        env.pop(name, None)
    log = (tmp_path / "langgraph-dev.log").open("wb")
    # Not from the repository: `langgraph dev` keeps its state (crons included) in `.langgraph_api/` under
    # the folder it runs in, and restores it on the next start. The graphs' paths in langgraph.json are
    # relative to that folder too: the test's copy makes them absolute.
    config = orjson.loads((ROOT / "langgraph.json").read_bytes())
    config["dependencies"] = [str(ROOT)]
    config["graphs"] = {name: str(ROOT / spec.removeprefix("./")) for name, spec in config["graphs"].items()}
    config.pop("env", None)
    (tmp_path / "langgraph.json").write_bytes(orjson.dumps(config))
    proc = subprocess.Popen([_langgraph_cli(), "dev", "--config", str(tmp_path / "langgraph.json"),
                             "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + "/ok", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    else:
        proc.kill()
        pytest.fail("langgraph dev did not answer /ok within 60 s:\n"
                    + (tmp_path / "langgraph-dev.log").read_text()[-3000:])
    assert proc.poll() is None, (tmp_path / "langgraph-dev.log").read_text()[-3000:]
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    log.close()


def _decisions(state_dir: Path) -> list[dict]:
    path = state_dir / "audit.db"
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            rows = conn.execute("SELECT record FROM audit_log WHERE kind = 'decision' ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
    return [orjson.loads(r[0]) for r in rows]


def test_both_graphs_load_and_their_schemas_render_under_langgraph_dev(server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assistants = {a["graph_id"]: a["assistant_id"] for a in client.assistants.search()}
    assert set(assistants) == {"payops", "payops-tick"}
    for assistant_id in assistants.values():  # was a 500 on Python 3.11 (issue 18)
        schemas = client.assistants.get_schemas(assistant_id)
        assert schemas["input_schema"] and schemas["output_schema"]


def test_a_server_cron_on_the_tick_assistant_decides_a_real_window_into_the_agents_store(
        server: str, tmp_path: Path, events: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    cron = client.crons.create("payops-tick", schedule="* * * * *", input={})
    state_dir = tmp_path / "state"
    deadline = time.monotonic() + 90  # the next minute boundary, then the tick
    while not _decisions(state_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    client.crons.delete(cron["cron_id"])
    decided = _decisions(state_dir)
    assert len(decided) == 1, "not one tick in the agent's audit trail within 90 s:\n" + \
        (tmp_path / "langgraph-dev.log").read_text()[-3000:]

    # The decision is the one `payops replay` makes for the first window of the same events.
    from payops.render import decision_line
    from payops.wiring import replay

    first = next(iter(replay(events, tmp_path / "replay.jsonl", 60.0, 60.0)))
    record = decided[0]
    assert record["window_end"] == first["window_end"]
    assert record["decision_id"] != ""  # the deployment's own id (replay's deployment is "replay")
    assert record["diagnosis"]["category"] == decision_line(first)["category"]
    assert record["proposal"]["tool"] == decision_line(first)["action"]["tool"]

    # And the agent's checkpointer (the authoritative one) holds the tick: `payops` resumes after it.
    from payops.graph.runner import Agent
    from payops.graph.services import build_services
    from payops.settings import Settings

    services = build_services(Settings(state_dir=state_dir, webhook_url=None))
    agent = Agent.durable(services)
    try:
        assert agent.last_state()["decision_id"] == record["decision_id"]
    finally:
        agent.checkpointer.conn.close()
