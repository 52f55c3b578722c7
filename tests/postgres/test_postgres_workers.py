"""Several workers on one partition through PostgreSQL: each window decided once, no double action,
a worker killed mid-tick taken over; `payops tick`'s exit codes for a scheduler."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pg_helpers import Orchestrator, tick_worker, wait_for, worker_settings

from payops.errors import EX_FAILURE, EX_TEMPFAIL, EX_USAGE
from payops.graph.nodes import decision_id_for
from payops.memory.audit import AuditLog
from payops.scheduling import TickLocked, lock_name, run_tick
from payops.storage.locks import advisory_lock
from payops.storage.postgres import agent_database

pytestmark = pytest.mark.postgres

SPAWN = multiprocessing.get_context("spawn")  # no inherited connections or pool threads
TICK = 60.0
SIM_START = 1_764_000_000.0  # the simulator's first event time: window k ends at SIM_START + k * TICK
ACTION_WINDOW = 4  # the demo's route outage starts at 180 s: the window ending at 240 s reroutes


@pytest.fixture
def orchestrator():
    orch = Orchestrator().start()
    yield orch
    orch.stop()


def _audit(dsn: str, state_dir: Path) -> AuditLog:
    """The trail with the workers' keys (their state folder's): another key would be refused, rightly."""
    return AuditLog(database=agent_database(dsn, max_size=1), key_home=state_dir)


def _drain(results, expected_messages: int, timeout: float = 60.0) -> list[tuple]:
    out = []
    while len(out) < expected_messages:
        try:
            out.append(results.get(timeout=timeout))
        except queue.Empty:
            break
    return out


def test_concurrent_workers_decide_each_window_once_and_never_act_twice(pg_dsn, tmp_path, orchestrator):
    workers, target = 4, 6
    start, results, done_count = SPAWN.Barrier(workers), SPAWN.Queue(), SPAWN.Value("i", 0)  # all start together
    procs = [SPAWN.Process(target=tick_worker, args=(pg_dsn, str(tmp_path), orchestrator.url, "p1", target, start,
                                                     results, done_count)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    outcomes = _drain(results, 10_000, timeout=2)
    assert not [o for o in outcomes if o[0] == "error"], outcomes
    done = [o for o in outcomes if o[0] == "done"]
    locked = [o for o in outcomes if o[0] == "locked"]
    assert len(done) >= target and len(done) + len(locked) == len(outcomes)
    assert locked, "the workers never overlapped: the test proved nothing about the lock"
    # Each window once, in order, with no gap: the ticks ran one after another.
    ends = sorted(o[3] for o in done)
    assert ends == [SIM_START + TICK * k for k in range(1, len(done) + 1)]
    assert len({o[2] for o in done}) == len(done)
    assert len({o[1] for o in done}) > 1, "one worker did everything: no hand-over between workers was exercised"
    audit = _audit(pg_dsn, tmp_path)
    decisions = Counter(e.decision_id for e in audit.entries("decision"))
    assert set(decisions) == {o[2] for o in done} and set(decisions.values()) == {1}
    assert audit.verify().ok
    # No double action: every key was applied once, and only for a decision that executed it.
    keys = orchestrator.keys()
    assert len(keys) == len(set(keys))
    executed = {o[2] for o in done if o[4] == "executed"}
    assert set(keys) == executed
    assert decision_id_for("payops:p1", SIM_START + TICK * ACTION_WINDOW) in keys  # the demo's reroute ran once


def test_a_worker_killed_mid_tick_is_taken_over_without_a_double_action(pg_dsn, tmp_path, orchestrator):
    orchestrator.hold_new = True  # the first POST of each key is applied, then left unanswered
    start, results = SPAWN.Event(), SPAWN.Queue()
    victim = SPAWN.Process(target=tick_worker,
                           args=(pg_dsn, str(tmp_path), orchestrator.url, "p1", ACTION_WINDOW, start, results))
    victim.start()
    start.set()
    assert orchestrator.held.wait(60), "the worker never reached the action"
    action_id = decision_id_for("payops:p1", SIM_START + TICK * ACTION_WINDOW)
    assert orchestrator.keys() == [action_id]  # applied at the orchestrator; the worker waits for the answer
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    before = [r for r in _drain(results, ACTION_WINDOW - 1, timeout=5)]
    assert [r[3] for r in before] == [SIM_START + TICK * k for k in range(1, ACTION_WINDOW)]

    orchestrator.hold_new = False
    settings = worker_settings(pg_dsn, str(tmp_path), "p1", orchestrator.url)
    taken: list = []

    def take_over() -> bool:
        try:
            taken.append(run_tick(settings))  # the dead worker's lock went with its connection
            return True
        except TickLocked:
            return False

    assert wait_for(take_over, timeout=20)
    outcome = taken[0]
    assert outcome.status == "done" and outcome.window_end == SIM_START + TICK * ACTION_WINDOW  # the same window again
    assert outcome.state["decision_id"] == action_id
    assert outcome.state["execution"]["status"] == "executed"
    assert orchestrator.keys() == [action_id] and orchestrator.posts[action_id] == 2  # re-sent, applied once
    audit = _audit(pg_dsn, tmp_path)
    decisions = Counter(e.decision_id for e in audit.entries("decision"))
    assert decisions[action_id] == 1 and set(decisions.values()) == {1} and len(decisions) == ACTION_WINDOW
    assert audit.verify().ok
    nxt = run_tick(settings)  # and the partition carries on from there
    assert nxt.window_end == SIM_START + TICK * (ACTION_WINDOW + 1)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "payops.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _cli_all(runs: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, tuple[int, str, str]]:
    """Several `payops` runs at once (each pays ~2 s of imports; two cores overlap them)."""
    procs = {name: subprocess.Popen([sys.executable, "-m", "payops.cli", *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env) for name, (args, env) in runs.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[name] = (proc.returncode, stdout, stderr)
    return out


def test_tick_exit_codes_for_schedulers(pg_dsn, empty_pg_dsn, tmp_path):
    env = {**os.environ, "PAYOPS_STATE_DIR": str(tmp_path), "PAYOPS_DATABASE_URL": pg_dsn}
    done = _cli(["tick", "--partition", "shop-1"], env)
    assert done.returncode == 0, done.stderr
    assert "Diagnosis:" in done.stdout
    secret = pg_dsn.replace("payops_test@", "payops_test:hunter2@").rsplit(":", 1)[0] + ":1/nowhere"
    with advisory_lock(pg_dsn, lock_name("shop-1")):  # another tick of the partition is running
        runs = _cli_all({
            "busy": (["tick", "--partition", "shop-1"], env),
            "other": (["tick", "--partition", "shop-2"], env),  # other partitions are not held up
            "usage": (["tick", "--partition", "bad name"], env),
            "unmigrated": (["tick"], {**env, "PAYOPS_DATABASE_URL": empty_pg_dsn}),
            "down": (["tick"], {**env, "PAYOPS_DATABASE_URL": secret}),
            "verify": (["audit", "verify"], env),  # operators' commands read the same database
            "why": (["why", decision_id_for("payops:shop-1", SIM_START + TICK)], env),
        })
    code, stdout, stderr = runs["busy"]
    assert code == EX_TEMPFAIL and "still running" in stderr and not stdout
    assert runs["other"][0] == 0, runs["other"][2]
    assert runs["usage"][0] == EX_USAGE and "bad partition name" in runs["usage"][2]
    assert runs["unmigrated"][0] == EX_FAILURE and "payops db upgrade" in runs["unmigrated"][2]
    code, stdout, stderr = runs["down"]
    assert code == EX_FAILURE and "cannot connect" in stderr and "hunter2" not in stderr + stdout
    assert runs["verify"][0] == 0 and "audit trail intact" in runs["verify"][1], runs["verify"][2]
    assert runs["why"][0] == 0 and "healthy" in runs["why"][1].lower(), runs["why"][2]
    audit = _audit(pg_dsn, tmp_path)
    assert [e.record["window_end"] for e in audit.entries("decision")] == [SIM_START + TICK, SIM_START + TICK]
    assert audit.verify().ok


def test_db_upgrade_command_is_idempotent(empty_pg_dsn, tmp_path):
    env = {**os.environ, "PAYOPS_STATE_DIR": str(tmp_path), "PAYOPS_DATABASE_URL": empty_pg_dsn}
    first = _cli(["db", "upgrade"], env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_agent" in first.stdout and "applied 0002_palmpay" in first.stdout
    again = _cli(["db", "upgrade"], env)
    assert again.returncode == 0 and "nothing to apply" in again.stdout and "applied" not in again.stdout
    status = _cli(["db", "status"], env)
    from payops.storage.migrations import available

    latest = max(m.version for m in available())  # every migration this code ships, whoever added the last one
    assert status.returncode == 0 and f"version {latest} of {latest}" in status.stdout


class _DiesOnInvoke:
    """Stands in for the approval graph: the worker exits with an error right after recording the
    request (unlike SIGKILL, LangGraph checkpoints the unfinished tick on the way out)."""

    def __init__(self, graph) -> None:
        self.graph = graph

    def invoke(self, *args, **kwargs):
        raise SystemExit("killed between recording the approval request and pausing its thread")

    def __getattr__(self, name):
        return getattr(self.graph, name)


def test_a_tick_that_failed_mid_escalation_is_redone_and_its_approval_thread_opened(pg_dsn, tmp_path):
    from payops.graph.approval import resume, thread_for
    from payops.graph.services import build_services
    from payops.memory.approvals import APPLIED, APPROVED, PENDING
    from payops.scheduling import close_agent
    from payops.wiring import agent_services, durable_agent

    settings = worker_settings(pg_dsn, str(tmp_path), "p1", confidence_threshold=1.0)  # every action needs a human
    for _ in range(ACTION_WINDOW - 1):
        assert run_tick(settings).status == "done"
    services = agent_services(settings, "simulator", "demo", 7)
    agent = durable_agent(services)
    services.approval_graph = _DiesOnInvoke(services.approval_graph)
    with pytest.raises(SystemExit):
        agent.tick()
    close_agent(agent, services)
    action_id = decision_id_for("payops:p1", SIM_START + TICK * ACTION_WINDOW)
    operator = build_services(settings)
    durable_agent(operator)
    assert operator.approvals.get(action_id).status == PENDING
    assert not operator.approval_graph.get_state(thread_for(action_id)).next  # recorded, but no paused thread

    again = run_tick(settings)  # the next tick redoes the unfinished window and pauses the thread
    assert again.state["decision_id"] == action_id and again.state["execution"]["status"] == "escalated"
    assert operator.approval_graph.get_state(thread_for(action_id)).next == ("await_decision",)
    assert resume(operator, action_id, {"approved": True, "approver": "operator:0000000000a1"}) == APPROVED
    applied = [n for n in run_tick(settings).state["housekeeping"] if n.get("op") == "approved_action_applied"]
    assert [n["decision_id"] for n in applied] == [action_id]
    assert operator.approvals.get(action_id).status == APPLIED
    assert _audit(pg_dsn, tmp_path).verify().ok
