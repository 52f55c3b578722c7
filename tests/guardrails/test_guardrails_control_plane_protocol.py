"""Every control plane is a whole `ControlPlane`: no capability the agent calls is optional (issue 19)."""

from __future__ import annotations

import inspect

import httpx
import pytest

from payops.models import ProposedAction
from payops.tools.control_plane import ControlPlane, ShadowControlPlane, SimulatedControlPlane
from payops.tools.http_control_plane import HttpControlPlane

MEMBERS = [name for name, value in inspect.getmembers(ControlPlane)
           if inspect.isfunction(value) and not name.startswith("_")]


def _http() -> HttpControlPlane:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "applied"})

    return HttpControlPlane("http://orchestrator.test", client=httpx.Client(transport=httpx.MockTransport(handler)))


PLANES = {"simulated": SimulatedControlPlane, "shadow": ShadowControlPlane, "http": _http}


def test_the_protocol_names_every_capability_a_tick_calls() -> None:
    assert set(MEMBERS) == {"apply", "rollback", "expire", "in_force", "reconcile", "restore", "close"}


@pytest.mark.parametrize("name", sorted(PLANES))
def test_every_plane_implements_the_whole_protocol(name: str) -> None:
    plane = PLANES[name]()
    assert isinstance(plane, ControlPlane)
    assert plane.plane == name
    for member in MEMBERS:
        assert callable(getattr(type(plane), member, None)), member
    plane.close()


@pytest.mark.parametrize("name", sorted(PLANES))
def test_a_restarted_plane_restores_what_was_in_force_and_reconciles_nothing_new(name: str) -> None:
    before = PLANES[name]()
    action = ProposedAction(tool="suppress_path", target={"route": "psp_a"}, args={"ttl_seconds": 600.0})
    assert before.apply(action, "d-1", 100.0).status == "executed"
    saved = [a.to_json() for a in before.in_force()]
    after = PLANES[name]()
    after.restore(saved)
    assert [a.to_json() for a in after.in_force()] == saved
    assert after.reconcile(200.0) == []
    assert after.apply(action, "d-1", 200.0).detail.find("already") >= 0  # the key is known: not applied again
    before.close()
    after.close()
