"""Shared fixtures: every test gets its own state directory and a clean PAYOPS_ environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("PAYOPS_") or key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    yield
