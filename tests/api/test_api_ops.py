"""Ops endpoints over a state directory the real agent wrote: decisions, approvals, lessons, why, chat, audit,
metrics."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from api_helpers import ALWAYS_ASK, Api, ApiFactory, seed_agent
from prometheus_client.parser import text_string_to_metric_families

from payops.memory.audit import AuditLog
from payops.memory.explain import explain_decision


@pytest.fixture
def outage(tmp_path: Path) -> tuple[Path, list[dict]]:
    """route_outage: healthy minutes, then an action on psp_a waiting for a human."""
    state = tmp_path / "state"
    return state, seed_agent(state, "route_outage", 8, **ALWAYS_ASK)


def _escalated(states: list[dict]) -> dict:
    [one] = [s for s in states if s["execution"]["status"] == "escalated"]
    return one


def _metrics(api: Api) -> dict[str, float]:
    text = api.client.get("/metrics", headers=api.as_("viewer")).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def test_approve_through_the_api_then_the_agent_applies_it(make_api: ApiFactory, outage) -> None:
    state, states = outage
    api = make_api(state_dir=state)
    escalated = _escalated(states)
    decision_id = escalated["decision_id"]

    pending = api.client.get("/v1/approvals", headers=api.as_("viewer")).json()
    assert [p["decision_id"] for p in pending] == [decision_id]
    assert pending[0]["tool"] == escalated["proposal"]["tool"]
    assert pending[0]["target"] == escalated["proposal"]["target"]
    assert pending[0]["why_approval"]

    assert api.client.post(f"/v1/approvals/{decision_id}/approve", headers=api.as_("viewer")).status_code == 403
    ok = api.client.post(f"/v1/approvals/{decision_id}/approve", json={"note": "checked the other routes"},
                         headers=api.as_("operator"))
    assert ok.status_code == 200
    # The approver is the key's principal (its unique id), not the name a key was given.
    operator = api.app.state.backend.keys.authenticate(api.keys["operator"]).principal
    assert operator.startswith("operator:") and "operator-client" not in operator
    assert ok.json() == {"decision_id": decision_id, "status": "approved", "approver": operator}
    again = api.client.post(f"/v1/approvals/{decision_id}/reject", headers=api.as_("operator"))
    assert again.status_code == 409 and again.json()["code"] == "APPROVAL_NOT_PENDING"
    assert api.client.get("/v1/approvals", headers=api.as_("viewer")).json() == []

    later = seed_agent(state, "route_outage", 2, **ALWAYS_ASK)  # the agent, restarted, applies it
    applied = [h for s in later for h in s.get("housekeeping") or [] if h.get("op") == "approved_action_applied"]
    assert [h["decision_id"] for h in applied] == [decision_id]

    detail = api.client.get(f"/v1/decisions/{decision_id}", headers=api.as_("viewer")).json()
    kinds = [r["kind"] for r in detail["records"]]
    assert kinds[:3] == ["decision", "approval", "approved_action"]
    approval = detail["records"][1]["record"]
    assert approval["approver"] == operator and approval["note"] == "checked the other routes"
    assert detail["decision"]["escalated"] is True
    assert detail["decision"]["action"]["tool"] == escalated["proposal"]["tool"]

    why = api.client.get(f"/v1/decisions/{decision_id}/why", headers=api.as_("operator")).json()
    assert why["explanation"] == explain_decision(AuditLog(state / "audit.db").get(decision_id))
    assert operator in why["explanation"]


def test_lessons(make_api: ApiFactory, tmp_path: Path) -> None:
    from payops.graph.services import sqlite_store
    from payops.memory.lessons import Lesson, LessonStore

    state = tmp_path / "state"
    state.mkdir()
    store = LessonStore(sqlite_store(state / "lessons.db"))
    common = {"target_key": "route=psp_a", "target_dims": "route", "dominant_error": "NETWORK_ERROR",
              "target": {"route": "psp_a"}, "created_at": 1764000000.0}
    store.put(Lesson(decision_id="d-aaaa", category="network", tool="reroute_traffic", verdict="helped",
                     approver="alice", **common))
    store.put(Lesson(decision_id="d-bbbb", category="network", tool="suppress_path", verdict="harmed", **common))
    store.put(Lesson(decision_id="d-cccc", category="issuer", tool="suppress_path", verdict="no_effect", **common))
    api = make_api(state_dir=state)

    def ids(**params) -> set[str]:
        r = api.client.get("/v1/lessons", params=params, headers=api.as_("viewer"))
        assert r.status_code == 200, r.text
        return {lesson["decision_id"] for lesson in r.json()}

    assert ids() == {"d-aaaa", "d-bbbb", "d-cccc"}
    assert ids(category="network") == {"d-aaaa", "d-bbbb"}
    assert ids(tool="suppress_path") == {"d-bbbb", "d-cccc"}
    assert ids(verdict="harmed") == {"d-bbbb"}
    one = api.client.get("/v1/lessons/d-aaaa", headers=api.as_("operator")).json()
    assert one["tool"] == "reroute_traffic" and one["approver"] == "alice" and one["target"] == {"route": "psp_a"}
    assert api.client.get("/v1/lessons/d-ffff", headers=api.as_("viewer")).status_code == 404
    assert api.client.get("/v1/lessons", params={"verdict": "great"}, headers=api.as_("viewer")).status_code == 422


def test_reject_by_prefix_and_list_by_status(make_api: ApiFactory, outage) -> None:
    state, states = outage
    api = make_api(state_dir=state)
    decision_id = _escalated(states)["decision_id"]
    r = api.client.post(f"/v1/approvals/{decision_id[:8]}/reject", json={"note": "not now"},
                        headers=api.as_("operator"))
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["decision_id"] == decision_id
    rejected = api.client.get("/v1/approvals", params={"status": "rejected"}, headers=api.as_("viewer")).json()
    operator = api.app.state.backend.keys.authenticate(api.keys["operator"]).principal
    assert [(a["decision_id"], a["approver"], a["note"]) for a in rejected] == [(decision_id, operator, "not now")]
    missing = api.client.post("/v1/approvals/d-ffffffffffffffff/approve", headers=api.as_("operator"))
    assert missing.status_code == 404


def test_an_answer_after_expiry_is_recorded_as_expired(make_api: ApiFactory, outage) -> None:
    from payops.graph.services import build_services
    from payops.settings import Settings

    state, states = outage
    services = build_services(Settings(state_dir=state))
    services.clock = lambda: time.time() + 10 * 24 * 3600  # long after the request's expiry
    api = make_api(state_dir=state, services=services)
    decision_id = _escalated(states)["decision_id"]
    r = api.client.post(f"/v1/approvals/{decision_id}/approve", headers=api.as_("operator"))
    assert r.status_code == 410 and r.json()["code"] == "APPROVAL_EXPIRED"
    expired = api.client.get("/v1/approvals", params={"status": "expired"}, headers=api.as_("viewer")).json()
    assert [a["decision_id"] for a in expired] == [decision_id]


def test_decision_filters_and_pages(make_api: ApiFactory, outage) -> None:
    state, states = outage
    api = make_api(state_dir=state)

    def ids(**params) -> list[str]:
        r = api.client.get("/v1/decisions", params={"limit": 500, **params}, headers=api.as_("viewer"))
        assert r.status_code == 200, r.text
        return [d["decision_id"] for d in r.json()["items"]]

    newest_first = [s["decision_id"] for s in reversed(states)]
    assert ids() == newest_first
    for category in {s["diagnosis"]["category"] for s in states}:
        assert ids(category=category) == [s["decision_id"] for s in reversed(states)
                                          if s["diagnosis"]["category"] == category]
    assert ids(escalated="true") == [_escalated(states)["decision_id"]]
    assert ids(executed="true") == [s["decision_id"] for s in reversed(states)
                                    if s["execution"]["status"] == "executed" and s["proposal"]["tool"] != "no_action"]
    assert ids(escalated="false", category=states[0]["diagnosis"]["category"]) == [
        s["decision_id"] for s in reversed(states)
        if s["execution"]["status"] != "escalated" and s["diagnosis"]["category"] == states[0]["diagnosis"]["category"]]
    assert ids(segment="route=psp_a") == [s["decision_id"] for s in reversed(states)
                                          if s["diagnosis"].get("target", {}).get("route") == "psp_a"
                                          or s["proposal"]["target"].get("route") == "psp_a"]
    assert ids(segment=["route=psp_a", "bank=NOBANK"]) == []
    middle = states[len(states) // 2]["window_end"]
    assert ids(since=middle) == [s["decision_id"] for s in reversed(states) if s["window_end"] >= middle]
    assert ids(until=middle) == [s["decision_id"] for s in reversed(states) if s["window_end"] <= middle]

    pages, cursor = [], None
    while True:
        params = {"limit": 3, **({"before_seq": cursor} if cursor else {})}
        page = api.client.get("/v1/decisions", params=params, headers=api.as_("viewer")).json()
        pages.append([d["decision_id"] for d in page["items"]])
        cursor = page["next_before_seq"]
        if cursor is None:
            break
    assert [i for p in pages for i in p] == newest_first and all(len(p) <= 3 for p in pages)

    bad = api.client.get("/v1/decisions", params={"segment": "no-equals-sign"}, headers=api.as_("viewer"))
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"].startswith("query.segment")
    assert api.client.get("/v1/decisions/d-0000000000000000", headers=api.as_("viewer")).status_code == 404
    assert api.client.get("/v1/decisions/d-0000000000000000/why", headers=api.as_("viewer")).status_code == 404


def test_audit_verify_reports_a_tampered_record(make_api: ApiFactory, outage) -> None:
    state, states = outage
    api = make_api(state_dir=state)
    intact = api.client.get("/v1/audit/verify", headers=api.as_("viewer")).json()
    assert intact["ok"] is True and intact["count"] == len(states)
    conn = sqlite3.connect(state / "audit.db")
    conn.execute("UPDATE audit_log SET record = CAST('{}' AS BLOB) WHERE seq = 3")
    conn.commit()
    conn.close()
    broken = api.client.get("/v1/audit/verify", headers=api.as_("viewer")).json()
    assert broken["ok"] is False and broken["first_bad_seq"] == 3
    assert broken["first_bad_decision"] == states[2]["decision_id"]


def test_metrics_count_what_the_records_say(make_api: ApiFactory, outage) -> None:
    state, states = outage
    audit = AuditLog(state / "audit.db")
    llm_record = {"decision_id": "d-llm", "window_end": 1.0, "diagnosis": {"category": "issuer"},
                  "proposal": {"tool": "suppress_path"}, "execution": {"status": "denied"},
                  "llm_calls": [{"model": "smollm2", "usage": {"prompt_tokens": 120, "completion_tokens": 30},
                                 "latency_ms": 400.0},
                                {"model": "smollm2", "input_tokens": 80, "output_tokens": 20, "latency_ms": 3000.0}]}
    audit.append("d-llm", "decision", 1.0, llm_record)
    audit.close()
    api = make_api(state_dir=state)
    _, ref = api.enrol()
    assert api.pay(ref, "3.00").status_code == 200
    assert api.pay(ref, liveness_passed=False, key="spoof-0001-abcdef").status_code == 403
    assert api.pay("tmpl-unknown-palm-0001", key="unk-0001-abcdef").status_code == 404

    m = _metrics(api)
    records = [*states, llm_record]
    assert m["payops_ticks_total{}"] == len(records)
    for category, n in Counter(r["diagnosis"]["category"] for r in records).items():
        assert m[f"payops_decisions_total{{category={category}}}"] == n
    acted = [r for r in records if r["proposal"]["tool"] != "no_action"]
    for outcome in ("executed", "escalated", "denied"):
        assert m[f"payops_actions_total{{outcome={outcome}}}"] == sum(r["execution"]["status"] == outcome
                                                                       for r in acted)
    assert m["payops_approvals_pending{}"] == 1
    assert m["payops_llm_calls_total{model=smollm2}"] == 2
    assert m["payops_llm_tokens_total{direction=input,model=smollm2}"] == 200
    assert m["payops_llm_tokens_total{direction=output,model=smollm2}"] == 50
    assert m["payops_llm_latency_seconds_bucket{le=0.5}"] == 1 and m["payops_llm_latency_seconds_bucket{le=5.0}"] == 2
    assert m["payops_llm_latency_seconds_sum{}"] == pytest.approx(3.4)
    assert m["payops_palm_payment_attempts_total{result=success}"] == 1
    assert m["payops_palm_payment_attempts_total{result=failure}"] == 2
    assert m["payops_palm_refusals_total{code=PALM_PAY_SPOOF_DETECTED}"] == 1
    assert m["payops_palm_refusals_total{code=PALM_PAY_NOT_REGISTERED}"] == 1

    seed_agent(state, "route_outage", 2, **ALWAYS_ASK)  # more ticks from another "process": the next scrape sees them
    assert _metrics(api)["payops_ticks_total{}"] == len(records) + 2


def test_chat_answers_from_the_records(make_api: ApiFactory, outage) -> None:
    pytest.importorskip("payops.chat")
    state, states = outage
    api = make_api(state_dir=state)
    decision_id = _escalated(states)["decision_id"]
    r = api.client.post("/v1/chat", json={"question": f"why did you propose {decision_id}?"}, headers=api.as_("viewer"))
    assert r.status_code == 200, r.text
    assert decision_id in r.json()["decision_ids"] and _escalated(states)["proposal"]["tool"] in r.json()["answer"]
    assert api.client.post("/v1/chat", json={"question": ""}, headers=api.as_("viewer")).status_code == 422


def test_metrics_show_each_partitions_consumer_lag_at_its_latest_tick(make_api: ApiFactory, outage) -> None:
    state, _ = outage
    audit = AuditLog(state / "audit.db")
    base = {"window_end": 1.0, "diagnosis": {"category": "healthy"}, "proposal": {"tool": "no_action"},
            "execution": {"status": "skipped"}}
    for seq, partition, lag in ((1, "merchant-a", 40), (2, "merchant-b", 3), (3, "merchant-a", 12)):
        audit.append(f"d-lag{seq}", "decision", float(seq),
                     {**base, "decision_id": f"d-lag{seq}", "source": {"partition": partition, "lag": lag}})
    audit.close()
    m = _metrics(make_api(state_dir=state))
    assert m["payops_source_consumer_lag{partition=merchant-a}"] == 12  # the latest tick's, not a sum
    assert m["payops_source_consumer_lag{partition=merchant-b}"] == 3


def test_metrics_show_the_redeliveries_each_partitions_worker_dropped(make_api: ApiFactory, outage) -> None:
    state, _ = outage
    audit = AuditLog(state / "audit.db")
    base = {"window_end": 1.0, "diagnosis": {"category": "healthy"}, "proposal": {"tool": "no_action"},
            "execution": {"status": "skipped"}}
    ticks = ((1, "merchant-a", {"duplicates": 7}), (2, "merchant-b", {}), (3, "merchant-a", {"duplicates": 9}))
    for seq, partition, extra in ticks:
        audit.append(f"d-dup{seq}", "decision", float(seq), {**base, "decision_id": f"d-dup{seq}",
                                                              "source": {"partition": partition, "lag": 0, **extra}})
    audit.close()
    m = _metrics(make_api(state_dir=state))
    assert m["payops_source_redeliveries_dropped{partition=merchant-a}"] == 9  # its worker's count at the latest tick
    assert m["payops_source_redeliveries_dropped{partition=merchant-b}"] == 0


def test_a_tick_from_a_log_records_its_consumer_lag() -> None:
    from payops.graph.runner import Agent
    from payops.graph.services import build_services
    from payops.settings import Settings
    from payops.signals.palm_source import PalmSource

    rows = [(i + 1, {"ts": 100.0 + 2 * i, "payment_id": f"p{i}", "method": "palm", "route": "rail", "bank": "B",
                     "issuer": "PALM", "status": "success", "latency_ms": 10.0}) for i in range(300)]  # 10 minutes
    source = PalmSource(lambda after, limit: [r for r in rows if r[0] > after][:min(limit, 20)], follow=False)
    services = build_services(Settings(deployment="lagged", webhook_url=None), source=source, in_memory=True)
    Agent(services).tick()
    [entry] = [e for e in services.audit.tail(5) if e.kind == "decision"]
    assert entry.record["source"]["partition"] == "lagged"
    assert entry.record["source"]["lag"] == 20  # rows still unread after the first minute (one page's worth)
