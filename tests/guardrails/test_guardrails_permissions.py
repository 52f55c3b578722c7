"""The permission table comes from the palm-pay spec at run time: editing the spec changes behaviour."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from guardrails_helpers import StubReasoner
from pydantic import ValidationError

from payops.models import VerdictKind
from payops.palmpay.spec import PACKAGED_SPEC
from payops.settings import Settings
from payops.tools.actions import (
    ACTIONS,
    MAINTENANCE_ACTIONS,
    PALM_ACTIONS,
    ROUTING_ACTIONS,
    Permission,
    as_langchain_tools,
    validate_proposal,
)
from payops.tools.palm_ops import PalmOps
from payops.tools.permissions import action_levels, permission_table, refreshed, spec_file


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    packaged = spec_file(None)
    assert packaged is not None and packaged.name == PACKAGED_SPEC
    copy = tmp_path / "palm-pay.spec.json"
    shutil.copy(packaged, copy)
    return copy


def edit(path: Path, change) -> None:
    raw = json.loads(path.read_text())
    change(raw)
    before = path.stat().st_mtime_ns
    path.write_text(json.dumps(raw))
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))  # a visibly newer file on any file system


def set_level(level: str):
    return lambda raw: raw["agi"]["autonomy"].__setitem__("level", level)


def test_packaged_spec_levels() -> None:
    levels = action_levels(permission_table())
    assert levels["suspend_palm_link"] is Permission.SUPERVISED  # agi.autonomy.level
    assert levels["reactivate_palm_link"] is Permission.SUPERVISED
    assert levels["revoke_palm_link"] is Permission.HUMAN_REQUIRED  # action_permissions: palm_link_revoked
    assert all(levels[name] is Permission.AUTONOMOUS for name in ROUTING_ACTIONS)
    table = permission_table()
    assert [t.expression for t in table.triggers] == ["error_rate > 5", "consecutive_failures > 3"]
    assert table.checkpoint_terminal and table.checkpoint_sensitive and not table.unknown_checkpoints
    assert not table.reversible(PALM_ACTIONS["revoke_palm_link"])
    assert table.reversible(PALM_ACTIONS["suspend_palm_link"])


def test_editing_the_spec_changes_the_table_without_code_or_restart(spec_copy: Path) -> None:
    table = permission_table(path=spec_copy)
    assert refreshed(table) is table  # unchanged file: same table, no re-read
    edit(spec_copy, lambda raw: (
        raw["agi"]["autonomy"].__setitem__("level", "human_required"),
        raw["agi"]["autonomy"].__setitem__("escalation_triggers", ["error_rate > 50"]),
        [p.__setitem__("permission", "supervised") for p in raw["agi"]["safety"]["action_permissions"]
         if p["action"] == "palm_link_revoked"],
        raw["agi"]["autonomy"].__setitem__("human_checkpoints", ["before modifying sensitive data fields"]),
    ))
    new = refreshed(table)
    assert new is not table
    levels = action_levels(new)
    assert levels["suspend_palm_link"] is Permission.HUMAN_REQUIRED
    assert levels["revoke_palm_link"] is Permission.SUPERVISED
    assert [t.expression for t in new.triggers] == ["error_rate > 50"]
    assert not new.checkpoints(PALM_ACTIONS["revoke_palm_link"])  # no terminal-state checkpoint any more


def test_settings_path_is_used(spec_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(spec_copy, set_level("autonomous"))
    monkeypatch.setenv("PAYOPS_PALM_SPEC_PATH", str(spec_copy))
    assert permission_table().source == spec_copy
    assert action_levels(permission_table())["suspend_palm_link"] is Permission.AUTONOMOUS


def test_unreadable_spec_fails_closed(spec_copy: Path) -> None:
    table = permission_table(path=spec_copy)
    spec_copy.write_text("{ not json")
    os.utime(spec_copy, ns=(table.stamp[0] + 2_000_000_000,) * 2)
    broken = refreshed(table)
    assert broken.error and "not valid JSON" in broken.error
    assert all(broken.level(spec) is Permission.HUMAN_REQUIRED for spec in PALM_ACTIONS.values())
    assert broken.level(ACTIONS["reroute_traffic"]) is Permission.AUTONOMOUS  # traffic tools don't depend on it


def test_running_agent_follows_an_edited_spec(make_agent, palm_backend, spec_copy: Path) -> None:
    """Same process, same agent: after the edit the same kind of action needs a human."""
    a, b = palm_backend.links[:2]
    reasoner = StubReasoner(validate_proposal("suspend_palm_link", {"palm_pay_id": a, "reason": "fraud review"}),
                            confidence=0.95)
    agent = make_agent(reasoner, palm=PalmOps(palm_backend.service), palm_spec_path=spec_copy)
    first = agent.tick().state
    assert first["execution"]["status"] == "executed", first["verdict"]
    assert first["verdict"]["permission"] == "supervised"
    assert palm_backend.service.show(a).link_status == "suspended"

    edit(spec_copy, set_level("human_required"))
    reasoner.propose(validate_proposal("suspend_palm_link", {"palm_pay_id": b, "reason": "fraud review"}))
    second = agent.tick().state
    assert second["execution"]["status"] == "escalated"
    assert "suspend_palm_link is human_required" in second["execution"]["detail"]
    assert palm_backend.service.show(b).link_status == "active"


def test_tools_declare_permission_reversibility_rollback_and_blast_scope() -> None:
    tools = {t.name: t for t in as_langchain_tools(levels=action_levels(permission_table()))}
    assert set(tools) == set(ACTIONS) - set(MAINTENANCE_ACTIONS)  # rollbacks are the rules' call, not offered to an LLM
    for name, tool in tools.items():
        meta = tool.metadata
        assert set(meta) >= {"permission", "reversible", "rollback", "blast_scope"}
        assert meta["permission"] == action_levels(permission_table())[name].value
    assert tools["revoke_palm_link"].metadata["reversible"] is False
    assert tools["suspend_palm_link"].metadata["rollback"] == "reactivate_palm_link"
    assert tools["reroute_traffic"].metadata["blast_scope"] == "segment"
    assert tools["alert_ops"].metadata["blast_scope"] == "none"
    assert tools["suspend_palm_link"].metadata["blast_scope"] == "link"
    # argument schemas: a palm tool takes a link id, never a proxy or template reference
    schema = tools["suspend_palm_link"].args_schema
    with pytest.raises(ValidationError):
        schema.model_validate({"palm_pay_id": "+27821234567"})
    with pytest.raises(ValidationError):
        schema.model_validate({"palm_pay_id": "pp_1", "payshap_proxy": "0821234567"})
    assert schema.model_validate({"palm_pay_id": "pp_0a1b2c"}).palm_pay_id == "pp_0a1b2c"


def test_palm_proposals_name_the_link_as_their_target() -> None:
    proposal = validate_proposal("suspend_palm_link", {"palm_pay_id": "pp_abc123"})
    assert proposal.target == {"palm_pay_id": "pp_abc123"}
    from payops.tools.actions import ProposalError, revalidate

    assert revalidate(proposal) == proposal
    with pytest.raises(ProposalError):
        revalidate(proposal.model_copy(update={"target": {"palm_pay_id": "pp_other"}}))
    with pytest.raises(ProposalError):
        revalidate(proposal.model_copy(update={"target": {"bank": "ABSA"}}))


def test_spec_path_in_settings_reaches_the_services(spec_copy: Path, tmp_path: Path) -> None:
    from payops.graph.services import build_services

    edit(spec_copy, set_level("autonomous"))
    svc = build_services(Settings(state_dir=tmp_path / "s", palm_spec_path=spec_copy), in_memory=True)
    assert svc.permissions.source == spec_copy
    assert svc.permissions.level(PALM_ACTIONS["suspend_palm_link"]) is Permission.AUTONOMOUS
    assert VerdictKind.ALLOW.severity == 0  # (sanity: severity order used by evaluate)
