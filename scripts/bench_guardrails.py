"""Prints the cost of the guard step and the audit trail (figures, not a test).

    python scripts/bench_guardrails.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from payops.guardrails.policies import GuardContext, PastAction, RouteHealth, evaluate
from payops.memory.audit import AuditLog
from payops.models import Category, Diagnosis
from payops.tools.actions import validate_proposal
from payops.tools.permissions import permission_table, refreshed


def per_call(fn, n: int) -> float:  # noqa: ANN001 - any zero-argument callable
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    table = permission_table()
    history = tuple(PastAction("suppress_path", {"bank": f"B{i}"}, {}, 9_000.0 + i, True) for i in range(200))
    ctx = GuardContext(now=10_000.0, permissions=table, blast_radius=0.3, history=history,
                       routes={f"psp_{i}": RouteHealth(True, frozenset({"card"}), 0.02) for i in range(20)},
                       target_methods=frozenset({"card"}), target_failure_rate=0.5)
    proposal = validate_proposal("reroute_traffic", {"target": {"route": "psp_0"}, "to_routes": {"psp_1": 1.0}})
    diagnosis = Diagnosis(category=Category.NETWORK, summary="s", confidence=0.9)
    print(
        "evaluate() with 200 past actions, 20 routes: "
        f"{per_call(lambda: evaluate(proposal, diagnosis, ctx), 5000) * 1e6:.1f} us"
    )
    print(f"permission refresh (stat of the spec file):  {per_call(lambda: refreshed(table), 20000) * 1e6:.1f} us")
    print(f"permission table load (parse the spec):       {per_call(permission_table, 200) * 1e3:.2f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.db")
        record = {
            "decision_id": "d-x",
            "snapshot": {"attempts": 1000, "failures": 80},
            "diagnosis": {"evidence": ["e"] * 5},
            "verdict": {"results": [{"rule": f"r{i}", "verdict": "allow", "reason": "fine " * 8} for i in range(11)]},
        }
        n = 2000
        start = time.perf_counter()
        for i in range(n):
            log.append(f"d-{i}", "decision", float(i), record)
        append = (time.perf_counter() - start) / n
        start = time.perf_counter()
        assert log.verify().ok
        verify = time.perf_counter() - start
        size = (Path(tmp) / "audit.db").stat().st_size + sum(p.stat().st_size for p in Path(tmp).glob("audit.db-*"))
        print(f"audit append (hash chain, WAL):                {append * 1e3:.3f} ms/record")
        print(
            f"audit verify:                                  {verify / n * 1e6:.1f} us/record "
            f"({n} records, {size / n:.0f} bytes each)"
        )


if __name__ == "__main__":
    main()
