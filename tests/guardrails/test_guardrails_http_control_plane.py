"""The HTTP control plane against a local orchestrator (http.server on 127.0.0.1).

The orchestrator dedupes by Idempotency-Key, as the protocol requires; the tests
count how many times it really applied each action.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from guardrails_helpers import StubReasoner

from payops.graph.services import build_services
from payops.settings import Settings
from payops.tools.actions import validate_proposal
from payops.tools.http_control_plane import IDEMPOTENCY_HEADER, HttpControlPlane

CLIENT_TIMEOUT = 0.3  # the client's read timeout; a "hanging" orchestrator answers only when the test ends
NOW = 1_000.0


@dataclass
class Orchestrator:
    """POST /actions, GET /actions/<id>, POST /actions/<id>/rollback; `script` scripts the next POSTs to /actions.

    Behaviours: "ok"; "fail" (503, not applied); "apply_then_hang" (applied, then no answer);
    "apply_then_500" (applied, then 500); "refuse" (422).
    """

    script: list[str] = field(default_factory=list)
    rollback_script: list[str] = field(default_factory=list)
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    applications: list[str] = field(default_factory=list)  # every real application, in order
    rolled_back: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["actions"]:
            key = headers[IDEMPOTENCY_HEADER.lower()]
            behaviour = self.script.pop(0) if self.script else "ok"
            if behaviour == "fail":
                return 503, {"error": "busy"}
            if behaviour == "refuse":
                return 422, {"error": "unknown tool"}
            if key not in self.applied:
                self.applied[key] = {**body, "status": "applied"}
                self.applications.append(key)
            if behaviour == "apply_then_hang":
                self.release.wait(30)
                return 200, {"status": "applied"}
            if behaviour == "apply_then_500":
                return 500, {"error": "crashed after applying"}
            return 200, {"status": self.applied[key]["status"]}
        if method == "GET" and len(parts) == 2 and parts[0] == "actions":
            found = self.applied.get(parts[1])
            return (200, {"status": found["status"]}) if found else (404, {"error": "unknown"})
        if method == "POST" and len(parts) == 3 and parts[2] == "rollback":
            if self.rollback_script and self.rollback_script.pop(0) == "fail":
                return 503, {"error": "busy"}
            found = self.applied.get(parts[1])
            if found is None:
                return 404, {"error": "unknown"}
            if found["status"] != "rolled_back":
                found["status"] = "rolled_back"
                self.rolled_back.append(parts[1])
            return 200, {"status": "rolled_back"}
        return 404, {"error": "no route"}


@pytest.fixture
def orchestrator(local_server) -> Iterator[tuple[Orchestrator, Any]]:
    orch = Orchestrator()
    server = local_server(orch.handle)
    yield orch, server
    orch.release.set()


def plane(server: Any, attempts: int = 3) -> HttpControlPlane:
    return HttpControlPlane(server.url, timeout=CLIENT_TIMEOUT, attempts=attempts, backoff_seconds=0.01)


REROUTE = validate_proposal("reroute_traffic",
                            {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}, "ttl_seconds": 120})


def posts(server: Any) -> list[tuple[str, str]]:
    return [(path, headers.get(IDEMPOTENCY_HEADER.lower(), ""))
            for method, path, headers, _ in server.requests if method == "POST"]


def test_apply_posts_once_with_the_decision_id_as_idempotency_key(orchestrator) -> None:
    orch, server = orchestrator
    cp = plane(server)
    result = cp.apply(REROUTE, "d-1", NOW)
    assert result.status == "executed"
    method, path, headers, body = server.requests[0]
    assert (method, path, headers[IDEMPOTENCY_HEADER.lower()]) == ("POST", "/actions", "d-1")
    assert body["tool"] == "reroute_traffic" and body["target"] == {"route": "psp_a"}
    assert body["expires_at"] == NOW + 120
    assert [(a.action_id, a.confirmed) for a in cp.in_force()] == [("d-1", True)]
    assert cp.apply(REROUTE, "d-1", NOW + 1).status == "executed"  # same key: nothing sent again
    assert len(server.requests) == 1 and orch.applications == ["d-1"]


def test_applied_then_timed_out_is_retried_under_the_same_key_and_applied_once(orchestrator) -> None:
    orch, server = orchestrator
    orch.script = ["apply_then_hang", "ok"]
    result = plane(server).apply(REROUTE, "d-2", NOW)
    assert result.status == "executed"
    assert posts(server) == [("/actions", "d-2"), ("/actions", "d-2")]
    assert orch.applications == ["d-2"]


@pytest.mark.parametrize("behaviour", ["apply_then_hang", "apply_then_500"])
def test_ambiguous_failure_is_unknown_then_reconciled_without_applying_twice(orchestrator, behaviour) -> None:
    orch, server = orchestrator
    orch.script = [behaviour] * 2
    cp = plane(server, attempts=2)
    result = cp.apply(REROUTE, "d-3", NOW)
    assert result.status == "unknown" and "reconciling" in result.detail
    assert [(a.action_id, a.confirmed) for a in cp.in_force()] == [("d-3", False)]  # counted as possibly in force
    assert cp.apply(REROUTE, "d-3", NOW + 1).status == "unknown"  # the same decision is not sent again meanwhile
    settled = cp.reconcile(NOW + 60)
    assert [(s.action_id, s.outcome) for s in settled] == [("d-3", "confirmed")]
    assert [(a.action_id, a.confirmed) for a in cp.in_force()] == [("d-3", True)]
    assert orch.applications == ["d-3"] and len(posts(server)) == 2  # the GET settled it: no third POST
    assert cp.reconcile(NOW + 120) == []


def test_failure_before_applying_is_resent_under_the_same_key(orchestrator) -> None:
    orch, server = orchestrator
    orch.script = ["fail", "fail"]
    cp = plane(server, attempts=2)
    assert cp.apply(REROUTE, "d-4", NOW).status == "unknown"  # a 503 may or may not have applied it
    assert orch.applications == []
    settled = cp.reconcile(NOW + 60)
    assert [(s.action_id, s.outcome) for s in settled] == [("d-4", "reapplied")]
    assert orch.applications == ["d-4"] and posts(server)[-1] == ("/actions", "d-4")


def test_unknown_past_its_ttl_is_dropped_not_resent(orchestrator) -> None:
    orch, server = orchestrator
    orch.script = ["fail", "fail"]
    cp = plane(server, attempts=2)
    cp.apply(REROUTE, "d-5", NOW)
    settled = cp.reconcile(NOW + 121)
    assert [(s.action_id, s.outcome) for s in settled] == [("d-5", "dropped")]
    assert cp.in_force() == [] and orch.applications == []


def test_unreachable_or_refused_is_failed_and_not_in_force(orchestrator) -> None:
    orch, server = orchestrator
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = HttpControlPlane(f"http://127.0.0.1:{port}", timeout=CLIENT_TIMEOUT, attempts=2, backoff_seconds=0.01)
    result = dead.apply(REROUTE, "d-6", NOW)
    assert result.status == "failed" and "not applied" in result.detail
    assert dead.in_force() == [] and dead.reconcile(NOW) == []
    orch.script = ["refuse"]
    cp = plane(server)
    refused = cp.apply(REROUTE, "d-7", NOW)
    assert refused.status == "failed" and "422" in refused.detail
    assert cp.in_force() == [] and len(posts(server)) == 1  # a refusal is not retried


def test_rollback_that_fails_is_retried_next_time(orchestrator) -> None:
    orch, server = orchestrator
    cp = plane(server, attempts=1)
    cp.apply(REROUTE, "d-8", NOW)
    orch.rollback_script = ["fail"]
    assert cp.expire(NOW + 120) == []  # TTL reached, but the orchestrator was busy
    assert [(s.action_id, s.outcome) for s in cp.reconcile(NOW + 120)] == [("d-8", "rollback_failed")]
    assert [a.action_id for a in cp.in_force()] == ["d-8"]
    assert [a.action_id for a in cp.expire(NOW + 180)] == ["d-8"]
    assert orch.rolled_back == ["d-8"] and cp.in_force() == []


# -- through the agent: unknown -> reconciled on the next tick; TTL -> rollback recorded ---------------

def test_agent_reconciles_next_tick_and_records_the_ttl_rollback(orchestrator, make_agent) -> None:
    orch, server = orchestrator
    orch.script = ["apply_then_hang", "apply_then_hang"]
    agent = make_agent(StubReasoner(REROUTE), control_plane=plane(server, attempts=2))
    first = agent.tick().state
    decision_id = first["decision_id"]
    assert first["execution"]["status"] == "unknown"
    assert [a["action_id"] for a in first["in_force"]] == [decision_id]

    second = agent.tick().state
    reconciled = [n for n in second["housekeeping"] if n["op"] == "reconcile"]
    assert [(n["action_id"], n["outcome"]) for n in reconciled] == [(decision_id, "confirmed")]
    assert second["execution"]["status"] == "denied"  # the same reroute again: already in force
    states = [agent.tick().state for _ in range(2)]  # TTL 120 s: rolled back two ticks later
    rollbacks = [n for s in states for n in s["housekeeping"] if n["op"] == "rollback"]
    assert [(n["action_id"], n["reason"]) for n in rollbacks] == [(decision_id, "ttl expired")]
    assert orch.applications.count(decision_id) == 1 and orch.rolled_back == [decision_id]
    kinds = [e.kind for e in agent.services.audit.get(decision_id)]
    assert kinds == ["decision", "reconcile", "rollback"]
    rollback = agent.services.audit.get(decision_id)[-1].record
    assert rollback["tool"] == "reroute_traffic" and rollback["target"] == {"route": "psp_a"}


def test_unknown_outcome_survives_a_restart(orchestrator, make_agent) -> None:
    orch, server = orchestrator
    orch.script = ["apply_then_hang", "apply_then_hang"]
    first = make_agent(StubReasoner(REROUTE), control_plane=plane(server, attempts=2))
    decision_id = first.tick().state["decision_id"]
    first.checkpointer.conn.close()
    # a new process: a fresh control plane, restored from the checkpoint
    second = make_agent(StubReasoner(validate_proposal("no_action", {})), control_plane=plane(server))
    state = second.tick().state
    reconciled = [(n["action_id"], n["outcome"]) for n in state["housekeeping"] if n["op"] == "reconcile"]
    assert reconciled == [(decision_id, "confirmed")]
    assert orch.applications == [decision_id]


def test_orchestrator_url_selects_the_http_control_plane(orchestrator, tmp_path) -> None:
    _, server = orchestrator
    from payops.wiring import agent_services

    settings = Settings(state_dir=tmp_path / "s", orchestrator_url=server.url)
    assert isinstance(build_services(settings).control_plane, HttpControlPlane)
    svc = agent_services(settings, "simulator", "demo", 1)
    assert isinstance(svc.control_plane, HttpControlPlane)
    assert svc.source.simulator.policy is svc.control_plane  # the simulator obeys what is in force
    assert not isinstance(build_services(Settings(state_dir=tmp_path / "t")).control_plane, HttpControlPlane)
