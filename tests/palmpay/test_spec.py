"""The spec is loaded at run time and drives behaviour; editing a copy changes what happens."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from payops.palmpay import (
    IllegalTransitionError,
    PalmPayError,
    PalmPayOptions,
    PalmPayService,
    SpecError,
    action_permissions,
    allowed_transitions,
    error_table,
    escalation_triggers,
    human_checkpoints,
    load_spec,
)


def test_packaged_spec_is_the_shared_spec():
    shared = Path("/work/shared/palm-pay.spec.json")
    if not shared.exists():
        pytest.skip("shared spec not present on this machine")
    packaged = Path(__file__).resolve().parents[2] / "palmpay" / "palm-pay.spec.json"
    assert json.loads(packaged.read_text()) == json.loads(shared.read_text())


def test_default_load_reads_the_packaged_copy(spec_raw):
    spec = load_spec()
    assert spec.source.startswith("package:")
    assert spec.transitions == {(t["from"], t["to"]) for t in spec_raw["states"]["transitions"]}


def test_helpers_expose_the_spec(spec_raw):
    assert allowed_transitions() == {(t["from"], t["to"]) for t in spec_raw["states"]["transitions"]}
    assert action_permissions() == {
        p["action"]: p["permission"] for p in spec_raw["agi"]["safety"]["action_permissions"]
    }
    assert action_permissions()["palm_link_revoked"] == "human_required"
    assert human_checkpoints() == tuple(spec_raw["agi"]["autonomy"]["human_checkpoints"])
    table = error_table()
    assert {code: (e.status, e.message) for code, e in table.items()} == {
        e["code"]: (e["status"], e["message"]) for e in spec_raw["errors"]
    }
    triggers = {t.metric: t for t in escalation_triggers()}
    assert set(triggers) == {"error_rate", "consecutive_failures"}
    assert triggers["consecutive_failures"].fires(4) and not triggers["consecutive_failures"].fires(3)
    assert triggers["error_rate"].threshold == 5


def test_settings_palm_spec_path_is_honoured(tmp_path, monkeypatch, spec_raw):
    edited = dict(spec_raw, version="9.9.9-test")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(edited))
    monkeypatch.setenv("PAYOPS_PALM_SPEC_PATH", str(path))
    assert load_spec().source == str(path)
    assert load_spec().raw["version"] == "9.9.9-test"


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda s: s["errors"].pop(0), "PALM_PAY_NOT_REGISTERED"),
        (lambda s: s["states"]["transitions"].append({"from": "active", "to": "nowhere"}), "unknown state"),
        (lambda s: s["states"]["values"][1].update(initial=True), "initial state"),
        (lambda s: s["agi"]["autonomy"]["escalation_triggers"].append("whenever"), "escalation trigger"),
    ],
)
def test_malformed_spec_is_refused_with_a_clear_error(tmp_path, spec_raw, mutate, fragment):
    mutate(spec_raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec_raw))
    with pytest.raises(SpecError, match=fragment):
        load_spec(path)


def test_unreadable_spec(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(tmp_path / "broken.json")


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "edited-spec.json"
    path.write_text(json.dumps(raw))
    return path


def test_removing_a_transition_in_a_spec_copy_refuses_it(tmp_path, monkeypatch, spec_raw, clock, otp):
    spec_raw["states"]["transitions"] = [
        t for t in spec_raw["states"]["transitions"] if (t["from"], t["to"]) != ("suspended", "active")
    ]
    monkeypatch.setenv("PAYOPS_PALM_SPEC_PATH", str(_write(tmp_path, spec_raw)))
    from payops.settings import Settings

    options = PalmPayOptions.from_settings(Settings(), state_dir=tmp_path / "state")
    with PalmPayService(options, clock=clock, verification=otp) as service:
        view, delivery = service.create_link("u1", "tmpl-edited-0001", "left", "0821112222", "phone")
        service.verify(view.palm_pay_id, otp.code_for(delivery))
        service.suspend(view.palm_pay_id, "fraud alert", "operator:a11ce0000001")
        with pytest.raises(IllegalTransitionError) as err:
            service.reactivate(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
        assert (err.value.from_state, err.value.to_state) == ("suspended", "active")
        assert service.show(view.palm_pay_id).link_status == "suspended"
        refused = [a for a in service.audit_log(view.palm_pay_id) if a.outcome == "refused"]
        assert [(a.action, a.from_status, a.to_status, a.actor) for a in refused] == [
            ("reactivate", "suspended", "active", "operator:a11ce0000001")
        ]


def test_same_operation_works_with_the_packaged_spec(service, enroll):
    view, _, _ = enroll()
    service.suspend(view.palm_pay_id, "fraud alert", "operator:a11ce0000001")
    reactivated = service.reactivate(view.palm_pay_id, "operator:a11ce0000001", approved_by="operator:b0b000000002")
    assert reactivated.link_status == "active"


def test_removing_the_fraud_suspension_transition_keeps_the_link_active(tmp_path, spec_raw, make_service, otp):
    spec_raw["states"]["transitions"] = [
        t for t in spec_raw["states"]["transitions"] if (t["from"], t["to"]) != ("active", "suspended")
    ]
    service = make_service(spec_path=_write(tmp_path, spec_raw))
    view, delivery = service.create_link("u1", "tmpl-edited-0002", None, "0821112223", "phone")
    service.verify(view.palm_pay_id, otp.code_for(delivery))
    for _ in range(3):
        with pytest.raises(PalmPayError):
            service.pay("tmpl-edited-0002", 10, "T1", True, 0.5)
    assert service.show(view.palm_pay_id).link_status == "active"
    assert [a.outcome for a in service.audit_log(view.palm_pay_id) if a.action == "fraud_suspension"] == ["refused"]


def test_error_table_edits_change_the_raised_error(tmp_path, spec_raw, make_service):
    for entry in spec_raw["errors"]:
        if entry["code"] == "PALM_PAY_NOT_REGISTERED":
            entry.update(status=418, message="Unknown palm (edited)")
    service = make_service(spec_path=_write(tmp_path, spec_raw))
    with pytest.raises(PalmPayError) as err:
        service.pay("tmpl-never-enrolled", 10, "T1", True, 0.99)
    assert (err.value.code, err.value.status, err.value.message) == (
        "PALM_PAY_NOT_REGISTERED",
        418,
        "Unknown palm (edited)",
    )


def test_limit_defaults_and_event_payloads_come_from_the_spec(tmp_path, spec_raw, make_service):
    for field in spec_raw["fields"]:
        if field["name"] == "daily_limit":
            field["default"] = 1234
    for event in spec_raw["events"]:
        if event["name"] == "palm_pay.link.created":
            event["payload"] = ["palm_pay_id", "proxy_type"]
    service = make_service(spec_path=_write(tmp_path, spec_raw))
    view, _ = service.create_link("u1", "tmpl-edited-0003", None, "0821112224", "phone")
    assert view.daily_limit == Decimal("1234")
    (created,) = service.consume()
    assert created.name == "palm_pay.link.created"
    assert list(created.payload) == ["palm_pay_id", "proxy_type"]
