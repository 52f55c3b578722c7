"""A tiny corpus made once per session: one incident whose answer is known, one no-fault control."""

from __future__ import annotations

from pathlib import Path

import pytest

from payops.evals.record import SimSpec, record_simulated
from payops.signals.simulator import default_network


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    # A route outage at good volume on the default network: the rules answer it right in the first window.
    record_simulated(SimSpec("route-known", "route_outage", seed=5, volume=600, lead_in=180, duration=180, tail=0,
                             network=default_network(600), facts=("names the failing route",)), root)
    record_simulated(SimSpec("quiet-control", "healthy", seed=6, volume=300, lead_in=180, duration=120, tail=0,
                             network=default_network(300), difficulty="easy"), root)
    return root
