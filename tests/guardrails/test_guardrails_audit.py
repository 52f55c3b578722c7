"""The audit trail: complete decision records, a hash chain that catches tampering, no plaintext secrets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from guardrails_helpers import StubReasoner
from typer.testing import CliRunner

from payops.cli_ops import audit_app
from payops.graph.approval import resume
from payops.guardrails.policies import POLICIES
from payops.memory.audit import AuditLog
from payops.memory.redact import redact
from payops.tools.actions import validate_proposal
from payops.tools.palm_ops import PalmOps

ALICE = "operator:a11ce0a11ce0"  # an authenticated operator: approvers are API key principals, never typed names

runner = CliRunner()


def trail(path: Path, n: int = 5) -> list[str]:
    log = AuditLog(path)
    ids = [f"d-{i:04d}abcdef{i:04d}" for i in range(1, n + 1)]
    for i, decision_id in enumerate(ids, start=1):
        log.append(decision_id, "decision", 1000.0 + i, {"decision_id": decision_id, "tick": i, "figures": [i, i * 2]})
    log.close()
    return ids


def tamper(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in sql:
            conn.execute(statement)
    conn.close()


EDIT_BODY = "UPDATE audit_log SET record = replace(record, '\"tick\":3', '\"tick\":33') WHERE seq = 3"
EDIT_KIND = "UPDATE audit_log SET kind = 'approval' WHERE seq = 3"
EDIT_TIME = "UPDATE audit_log SET at = at + 1 WHERE seq = 3"
DELETE_MIDDLE = "DELETE FROM audit_log WHERE seq = 3"
DELETE_LAST = "DELETE FROM audit_log WHERE seq = 5"
# Reorder: records 2 and 3 swap places (every column but seq moves).
SWAP = (
    "DROP INDEX audit_log_once",  # the attacker drops the one-record-per-(decision, kind) index first
    "CREATE TEMP TABLE t AS SELECT * FROM audit_log WHERE seq IN (2, 3)",
    "UPDATE audit_log SET decision_id = (SELECT decision_id FROM t WHERE seq = 5 - audit_log.seq), "
    "at = (SELECT at FROM t WHERE seq = 5 - audit_log.seq), kind = (SELECT kind FROM t WHERE seq = 5 - audit_log.seq), "
    "record = (SELECT record FROM t WHERE seq = 5 - audit_log.seq), "
    "prev_hash = (SELECT prev_hash FROM t WHERE seq = 5 - audit_log.seq), "
    "hash = (SELECT hash FROM t WHERE seq = 5 - audit_log.seq) WHERE seq IN (2, 3)",
)


@pytest.mark.parametrize("statements, first_bad, words", [
    ((EDIT_BODY,), 3, "altered"),
    ((EDIT_KIND,), 3, "altered"),
    ((EDIT_TIME,), 3, "altered"),
    ((DELETE_MIDDLE,), 3, "missing"),
    ((DELETE_LAST,), 5, "removed"),
    (SWAP, 2, "does not follow"),
])
def test_verify_names_the_first_bad_record(tmp_path: Path, statements: tuple[str, ...], first_bad: int,
                                           words: str) -> None:
    db = tmp_path / "state" / "audit.db"
    db.parent.mkdir()
    ids = trail(db)
    assert AuditLog(db).verify().ok
    tamper(db, *statements)
    result = AuditLog(db).verify()
    assert not result.ok and result.first_bad_seq == first_bad and words in result.reason

    cli = runner.invoke(audit_app, ["verify", "--state-dir", str(db.parent)])
    assert cli.exit_code == 1
    assert f"BROKEN at record {first_bad}" in cli.output
    if statements[0].startswith("UPDATE"):
        assert f"(decision {ids[first_bad - 1]})" in cli.output  # the edited decision is named
    elif statements != (DELETE_LAST,):
        assert "(decision d-" in cli.output


def test_intact_trail_verifies_and_cli_exits_zero(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    trail(state / "audit.db")
    cli = runner.invoke(audit_app, ["verify", "--state-dir", str(state)])
    assert cli.exit_code == 0 and "intact: 5 records" in cli.output
    shown = runner.invoke(audit_app, ["show", "#2", "--state-dir", str(state)])
    assert shown.exit_code == 0 and '"seq": 2' in shown.output
    tail = runner.invoke(audit_app, ["tail", "-n", "2", "--state-dir", str(state)])
    assert tail.exit_code == 0 and [line.split()[0] for line in tail.output.splitlines()] == ["#4", "#5"]


def test_deleting_every_row_is_caught_by_the_head(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    trail(db)
    tamper(db, "DELETE FROM audit_log")
    result = AuditLog(db).verify()
    assert not result.ok and result.first_bad_seq == 1


def test_decision_record_holds_the_whole_story(make_agent) -> None:
    reroute = validate_proposal("reroute_traffic", {"target": {"route": "psp_a"}, "to_routes": {"psp_b": 1.0}})
    call = {"model": "stub-llm", "prompt_tokens": 812, "completion_tokens": 64, "latency_ms": 420.0}
    agent = make_agent(StubReasoner(reroute, confidence=0.6, llm_calls=(call,)))
    decision_id = agent.tick().state["decision_id"]
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE, "note": "ok"})
    agent.tick()
    entries = {e.kind: e.record for e in agent.services.audit.get(decision_id)}
    record = entries["decision"]
    assert {"attempts", "failures", "failure_rate", "latency_p95_ms", "top_errors"} <= set(record["snapshot"])
    assert record["snapshot"]["attempts"] == 60
    assert record["diagnosis"]["evidence"] and record["diagnosis"]["alternatives"]
    assert record["proposal"]["tool"] == "reroute_traffic"
    rules = {r["rule"]: r for r in record["verdict"]["results"]}
    assert len(rules) == len(POLICIES) and all(r["reason"] for r in rules.values())
    assert rules["confidence"]["verdict"] == "needs_approval"
    assert record["verdict"]["verdict"] == "needs_approval" and "blast_radius" in record["verdict"]
    assert record["execution"]["status"] == "escalated"
    assert record["approval"]["status"] == "pending" and record["approval"]["expires_at"]
    assert "lessons_consulted" in record
    assert record["llm_calls"] == [call]
    assert (entries["approval"]["approver"], entries["approval"]["note"]) == (ALICE, "ok")
    assert entries["approved_action"]["execution"]["status"] == "executed"
    assert agent.services.audit.verify().ok


def test_no_sensitive_value_reaches_the_audit_file(make_agent, palm_backend, tmp_path: Path) -> None:
    proxy, ref = palm_backend.proxies[0], palm_backend.template_refs[0]
    link = palm_backend.links[0]
    reasoner = StubReasoner(validate_proposal("suspend_palm_link",
                                              {"palm_pay_id": link, "reason": f"fraud on {proxy}"}))
    agent = make_agent(reasoner, palm=PalmOps(palm_backend.service))
    agent.tick()
    reasoner.propose(validate_proposal("alert_ops", {"summary": f"customer {proxy} complained",
                                                     "evidence": [f"proxy {proxy}"]}))
    agent.tick()
    reasoner.propose(validate_proposal("revoke_palm_link", {"palm_pay_id": link, "reason": "confirmed fraud"}))
    decision_id = agent.tick().state["decision_id"]
    resume(agent.services, decision_id, {"approved": True, "approver": ALICE, "note": f"called {proxy}"})
    agent.services.audit.append("d-extra", "decision", 0.0, {"payshap_proxy": proxy, "palm_template_ref": ref})
    agent.tick()
    audit_files = list((tmp_path / "state").glob("audit.db*"))
    blob = b"".join(p.read_bytes() for p in audit_files)
    assert blob and proxy.encode() not in blob and ref.encode() not in blob
    assert proxy[-4:].encode() in blob  # masked, not dropped: the last digits remain for operators
    assert link.encode() in blob  # link ids are not secrets


def test_redaction_keeps_identifiers_readable() -> None:
    record = {"decision_id": "d-123456789abcdef0", "note": "call +27 82 123 4567", "payshap_proxy": "0821234567"}
    masked = redact(record)
    assert masked["decision_id"] == "d-123456789abcdef0"
    assert "123 4567" not in masked["note"] and masked["note"].endswith("4567")
    assert masked["payshap_proxy"] == "******4567"
