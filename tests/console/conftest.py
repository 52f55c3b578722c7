"""Fixtures for the console tests: one recorded run of the agent (module scope), an app over a copy of it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import run_agent
from fastapi.testclient import TestClient

from payops.api import create_app
from payops.settings import Settings


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("console-run") / "state"
    states = run_agent(state, 25)
    assert any((s.get("execution") or {}).get("status") == "escalated" for s in states)  # an approval waits
    return state


@pytest.fixture
def state_dir(recorded_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(recorded_run, copy)
    return copy


@pytest.fixture
def console(state_dir: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(Settings(state_dir=state_dir, webhook_url=None))
    with TestClient(app) as client:
        store = app.state.backend.keys
        keys = {role: store.create(f"{role}-person", role)[1] for role in ("terminal", "operator", "viewer")}
        keys["operator-2"] = store.create("second-operator", "operator")[1]
        client.app_keys = keys  # type: ignore[attr-defined]
        yield client, keys
