"""Helpers of the HTTP API tests (a module name of its own, so it never collides with another folder's conftest)."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from payops.api.settings import RATE_LIMITED_GROUPS, Bucket
from payops.palmpay import DevOtpSender, PalmPayService, SimulatedPayShapRail
from payops.palmpay.attestation import sign_scan
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


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


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
    terminal_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)  # terminal_id -> its signing key

    def register_terminal(self, terminal_id: str = "T1") -> Ed25519PrivateKey:
        """Gives a terminal a signing key and registers its public half (as an operator would)."""
        key = Ed25519PrivateKey.generate()
        self.palm.attestation.register(terminal_id, public_key_text(key), actor="test")
        self.terminal_keys[terminal_id] = key
        return key

    def signed(self, body: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """The body with the registered terminal's attestation (`changes` alter nonce/ts/signer)."""
        key = changes.pop("signer", None) or self.terminal_keys[body["terminal_id"]]
        attestation = sign_scan(
            key, terminal_id=body["terminal_id"], palm_template_ref=body["palm_template_ref"],
            liveness_passed=body["liveness_passed"], match_score=body["match_score"], amount=body["amount"],
            nonce=changes.pop("nonce", None) or secrets.token_urlsafe(16),
            ts=changes.pop("ts", None) or int(time.time()),
        )
        return {**body, "attestation": {"nonce": attestation.nonce, "ts": attestation.ts,
                                        "signature": attestation.signature}}

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
            v = self.client.post(f"/v1/palm/links/{palm_pay_id}/verify", json={"otp": code},
                                 headers=self.as_("terminal"))
            assert v.status_code == 200 and v.json()["link_status"] == "active", v.text
        return palm_pay_id, ref

    def pay(self, ref: str, amount: str = "12.50", *, key: str | None = "pay-0001-abcdef", role: str = "terminal",
            **overrides: Any):
        sign = overrides.pop("sign", True)
        body = {"palm_template_ref": ref, "amount": amount, "terminal_id": "T1", "liveness_passed": True,
                "match_score": 0.99, **overrides}
        if sign and "attestation" not in body and body["terminal_id"] in self.terminal_keys:
            with contextlib.suppress(Exception):  # a body a test made invalid on purpose goes unsigned
                body = self.signed(body)
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
