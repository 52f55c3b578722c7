"""A reroute's destination that carried nothing in the window (issue 14, session 13).

A method misrouted to a route that rejects it leaves its own route empty: the graph reads that route's health
from the latest recent window that saw it (`graph.guarding._quiet_destinations`), and the guardrail puts the
move back there to a human instead of denying it for "no traffic" (guardrails.policies.safe_destination).
"""

from __future__ import annotations

from reasoning_helpers import END, Cell, window

from payops.graph.guarding import _quiet_destinations
from payops.guardrails.policies import RouteHealth
from payops.tools.actions import validate_proposal


def _cells(wallet_on_w: int, wallet_errors: dict[str, int] | None = None) -> list[Cell]:
    cells = [Cell({"bank": "A", "method": "card", "route": r, "issuer": "VISA"}, 50, {"INSUFFICIENT_FUNDS": 2})
             for r in ("acq", "psp")]
    if wallet_on_w:
        cells.append(Cell({"bank": "A", "method": "wallet", "route": "w", "issuer": "WALLET"}, wallet_on_w,
                          wallet_errors or {}))
    else:
        cells.append(Cell({"bank": "A", "method": "wallet", "route": "acq", "issuer": "WALLET"}, 30,
                          {"ROUTE_NOT_SUPPORTED": 30}))
    return cells


BACK = validate_proposal("reroute_traffic", {"target": {"method": "wallet", "route": "acq"}, "to_routes": {"w": 1.0},
                                             "percent": 100.0})


def _health(now_cells: list[Cell], earlier: list[list[Cell]]) -> dict[str, RouteHealth]:
    now = window(now_cells)
    recent = [window(c, end=END - 60.0 * (len(earlier) - i)) for i, c in enumerate(earlier)] + [now]
    current = {"acq": RouteHealth(False, frozenset({"card"}), 0.3), "psp": RouteHealth(True, frozenset({"card"}))}
    return _quiet_destinations(BACK, now, recent, current)


def test_an_empty_destination_is_read_from_the_latest_recent_window_that_saw_it() -> None:
    quiet = _health(_cells(0), [_cells(40), _cells(40, {"GATEWAY_TIMEOUT": 1})])
    w = quiet["w"]
    assert w.quiet_for == 60.0 and w.methods == frozenset({"wallet"}) and w.healthy


def test_an_empty_destination_that_was_failing_when_last_seen_is_unhealthy() -> None:
    quiet = _health(_cells(0), [_cells(40), _cells(40, {"GATEWAY_TIMEOUT": 30})])
    assert not quiet["w"].healthy


def test_a_destination_never_seen_in_the_recent_windows_stays_unknown() -> None:
    assert _health(_cells(0), [_cells(0), _cells(0)]) == {}
