"""Helpers of the HTTP API tests (a module name of its own, so it never collides with another folder's conftest)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from payops.api.settings import RATE_LIMITED_GROUPS, Bucket
from payops.palmpay import DevOtpSender, PalmPayService, SimulatedPayShapRail
from payops.settings import Settings

PACKAGED_SPEC = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"
SPEC_ERRORS = {e["code"]: (e["status"], e["message"]) for e in json.loads(PACKAGED_SPEC.read_text())["errors"]}
# Generous buckets: tests that are not about rate limits must never meet one.
NO_LIMIT = Bucket(burst=1e9, per_second=1e9)
NO_LIMITS = {f"{group}_{part}": 1e9 for group in RATE_LIMITED_GROUPS for part in ("burst", "per_second")}


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    """A TestClient on the app, the palm backend behind it, and one key per role."""

    client: TestClient
    app: Any
    palm: PalmPayService
    otp: DevOtpSender
    rail: SimulatedPayShapRail
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)  # role -> key
    n: int = 0

    def as_(self, role: str) -> dict[str, str]:
        return bearer(self.keys[role])

    def enrol(self, *, verify: bool = True, **overrides: Any) -> tuple[str, str]:
        """Creates (and verifies) a link through the API. Returns (palm_pay_id, template_ref)."""
        self.n += 1
        ref = f"tmpl-{self.n:04d}-9c2e51b4d8aa7f3a"
        body = {"user_id": f"user-{self.n}", "palm_template_ref": ref, "payshap_proxy": f"0829{self.n:06d}",
                "proxy_type": "phone", "bank": "FNB", **overrides}
        r = self.client.post("/v1/palm/links", json=body, headers=self.as_("terminal"))
        assert r.status_code == 201, r.text
        palm_pay_id = r.json()["link"]["palm_pay_id"]
        if verify:
            code = self.otp.code_for(r.json()["otp_delivery_id"])
            v = self.client.post(f"/v1/palm/links/{palm_pay_id}/verify", json={"otp": code}, headers=self.as_("terminal"))
            assert v.status_code == 200 and v.json()["link_status"] == "active", v.text
        return palm_pay_id, ref

    def pay(self, ref: str, amount: str = "12.50", *, key: str | None = "pay-0001-abcdef", role: str = "terminal",
            **overrides: Any):
        body = {"palm_template_ref": ref, "amount": amount, "terminal_id": "T1", "liveness_passed": True,
                "match_score": 0.99, **overrides}
        headers = {**self.as_(role), **({"Idempotency-Key": key} if key else {})}
        return self.client.post("/v1/palm/payments", json=body, headers=headers)


ApiFactory = Callable[..., Api]

# Every proposed action waits for a human (confidence is below 1): escalations do not depend on how
# confident today's reasoner happens to be about a scenario.
ALWAYS_ASK = {"confidence_threshold": 1.0}


def seed_agent(state_dir: Path, scenario: str, ticks: int, seed: int = 7, **settings: Any) -> list[dict[str, Any]]:
    """Runs the real agent on `state_dir` for `ticks` ticks (as `payops run` would) and closes it."""
    from payops.graph.runner import opened
    from payops.wiring import agent_services, durable_agent

    services = agent_services(Settings(state_dir=state_dir, **settings), "simulator", scenario, seed)
    states = []
    with opened(durable_agent(services)) as agent:
        for _ in range(ticks):
            result = agent.tick()
            assert result is not None
            states.append(result.state)
    services.audit.close()
    if services.approvals is not None:
        services.approvals.close()
    return states
