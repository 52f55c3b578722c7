"""`payops lessons list | show | export | import` on a real state directory."""

from __future__ import annotations

import json

import pytest
from memory_helpers import IDS, write_synthetic_trail
from typer.testing import CliRunner

from payops.cli import _register_subcommands, app

_register_subcommands()
runner = CliRunner()


@pytest.fixture()
def state(tmp_path):
    write_synthetic_trail(tmp_path / "state")
    return tmp_path / "state"


def lessons(*args: str):
    if args[0] == "import":  # a write: as an authenticated operator of the deployment imported into
        state_dir = args[args.index("--state-dir") + 1]
        return runner.invoke(app, ["lessons", *args], env={"PAYOPS_API_KEY": operator_key(state_dir)})
    return runner.invoke(app, ["lessons", *args])


def operator_key(state_dir, name: str = "thandi") -> str:
    """The (one) operator key of `state_dir`, created on first use."""
    from pathlib import Path

    from payops.api.keys import ApiKeyStore

    if str(state_dir) not in _KEYS:
        store = ApiKeyStore.in_state_dir(Path(state_dir))
        try:
            _KEYS[str(state_dir)] = store.create(name, "operator")
        finally:
            store.close()
    return _KEYS[str(state_dir)][1]


_KEYS: dict = {}


def test_list_and_filters(state):
    out = lessons("list", "--state-dir", str(state))
    assert out.exit_code == 0
    lines = out.output.strip().splitlines()
    assert [line.split()[3] for line in lines] == [IDS["suppress_t5_yesterday"], IDS["reroute"], IDS["suppress_t3"],
                                                   IDS["suppress_fnb"]]
    assert "harmed (rolled back)" in lines[-1]
    harmed = lessons("list", "--verdict", "harmed", "--state-dir", str(state))
    assert harmed.exit_code == 0 and harmed.output.count("\n") == 1 and IDS["suppress_fnb"] in harmed.output
    network = lessons("list", "--category", "network", "--tool", "suppress_path", "--state-dir", str(state)).output
    assert IDS["suppress_t3"] in network and IDS["reroute"] not in network and IDS["suppress_fnb"] not in network
    assert "no lessons matching" in lessons("list", "--verdict", "inconclusive", "--state-dir", str(state)).output


def test_show_by_id_or_prefix(state):
    out = lessons("show", IDS["reroute"], "--state-dir", str(state))
    assert out.exit_code == 0
    shown = json.loads(out.output)
    assert shown["verdict"] == "helped" and shown["target"] == {"route": "psp_a"}
    assert shown["after"]["platform"]["failure_rate"] == 0.0417
    ambiguous = lessons("show", IDS["reroute"][:-1], "--state-dir", str(state))  # a prefix of every synthetic id
    assert ambiguous.exit_code == 2
    missing = lessons("show", "d-nothing", "--state-dir", str(state))
    assert missing.exit_code == 2 and "no lesson d-nothing" in missing.output


def test_export_then_import_into_another_deployment(state, tmp_path):
    out_file = tmp_path / "lessons.json"
    exported = lessons("export", "--out", str(out_file), "--state-dir", str(state))
    assert exported.exit_code == 0 and "exported 4 lessons" in exported.output
    other = tmp_path / "other"
    other.mkdir()
    imported = lessons("import", str(out_file), "--state-dir", str(other))
    assert imported.exit_code == 0 and "imported 4 lessons (0 of them decided here" in imported.output
    again = tmp_path / "again.json"
    lessons("export", "--out", str(again), "--state-dir", str(other))
    marks = ("origin", "verified", "imported_at")
    reexported = json.loads(again.read_text())
    assert [{k: v for k, v in lesson.items() if k not in marks} for lesson in reexported] == \
        [{k: v for k, v in lesson.items() if k not in marks} for lesson in json.loads(out_file.read_text())]
    assert {(lesson["origin"], lesson["verified"]) for lesson in reexported} == {("imported", False)}


def test_import_is_all_or_nothing(state, tmp_path):
    good = json.loads(lessons("show", IDS["reroute"], "--state-dir", str(state)).output)
    other = tmp_path / "other"
    other.mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([good | {"decision_id": "d-new"}, good | {"verdict": "great"}]))
    out = lessons("import", str(bad), "--state-dir", str(other))
    assert out.exit_code == 2 and "lesson #2: verdict" in out.output and "nothing was imported" in out.output
    assert "no lessons yet" in lessons("list", "--state-dir", str(other)).output
    for content, message in (("{not json", "is not JSON"), (json.dumps({"a": 1}), "JSON list")):
        bad.write_text(content)
        out = lessons("import", str(bad), "--state-dir", str(other))
        assert out.exit_code == 2 and message in out.output
    out = lessons("import", str(tmp_path / "absent.json"), "--state-dir", str(other))
    assert out.exit_code == 2 and "no such file" in out.output


def test_export_to_an_unwritable_place_fails_cleanly(state, tmp_path):
    out = lessons("export", "--out", str(tmp_path / "no" / "such" / "dir.json"), "--state-dir", str(state))
    assert out.exit_code == 2 and "cannot write" in out.output


def test_an_import_is_audited_with_who_how_many_and_the_files_digest(state, tmp_path):
    import hashlib

    from payops.memory.audit import AuditLog

    out_file = tmp_path / "lessons.json"
    lessons("export", "--out", str(out_file), "--state-dir", str(state))
    # back into the deployment that decided them: every decision id is in its audit trail
    out = lessons("import", str(out_file), "--state-dir", str(state))
    assert out.exit_code == 0 and "imported 4 lessons (4 of them decided here" in out.output
    thandi = _KEYS[str(state)][0].principal
    assert out.output.strip().endswith(f"audited as {thandi}")
    audit = AuditLog(state / "audit.db")
    [entry] = list(audit.entries("lessons_import"))
    assert entry.record == {"actor": thandi, "count": 4, "verified": 4, "file_name": "lessons.json",
                            "file_sha256": hashlib.sha256(out_file.read_bytes()).hexdigest()}
    assert audit.verify().ok
    audit.close()


def test_a_fabricated_harm_with_a_made_up_decision_id_is_kept_as_an_unverified_import(state, tmp_path):
    good = json.loads(lessons("show", IDS["reroute"], "--state-dir", str(state)).output)
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps([good | {"decision_id": "d-0000made0up", "verdict": "harmed"}]))
    out = lessons("import", str(fake), "--state-dir", str(state))
    assert out.exit_code == 0 and "imported 1 lessons (0 of them decided here" in out.output
    shown = json.loads(lessons("show", "d-0000made0up", "--state-dir", str(state)).output)
    assert (shown["origin"], shown["verified"]) == ("imported", False)
    listed = lessons("list", "--state-dir", str(state)).output.splitlines()
    assert [line for line in listed if "d-0000made0up" in line][0].endswith("harmed (imported)")
    assert not any("imported" in line for line in listed if "d-0000made0up" not in line)


@pytest.mark.parametrize("change, message", [
    ({"tool": "wire_money"}, "lesson #1: tool 'wire_money' is not an action this agent has"),
    ({"category": "weather"}, "lesson #1: category 'weather' is not one of"),
    ({"created_at": "yesterday"}, "lesson #1: created_at"),
])
def test_import_refuses_a_lesson_this_agent_could_not_have_learned_in_one_line(state, tmp_path, change, message):
    good = json.loads(lessons("show", IDS["reroute"], "--state-dir", str(state)).output)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([good | {"decision_id": "d-new"} | change]))
    out = lessons("import", str(bad), "--state-dir", str(state))
    assert out.exit_code == 2 and message in out.output and len(out.output.strip().splitlines()) == 1
    assert lessons("show", "d-new", "--state-dir", str(state)).exit_code == 2


def test_a_fabricated_harm_no_longer_forces_escalation_of_a_good_reroute(tmp_path):
    """The issue's case end to end: an imported 'harmed' reroute lesson with a made-up decision id, then the
    same route outage. Trusted as the agent's own it held confidence under the threshold (escalated)."""
    state = str(tmp_path / "state")

    def run(ticks: int) -> str:
        out = runner.invoke(app, ["run", "--scenario", "route_outage", "--ticks", str(ticks), "--tick-seconds", "0",
                                  "--state-dir", state])
        assert out.exit_code == 0, out.output
        return out.output

    run(1)  # a deployment with state, before the outage (it starts at the 6th window)
    fake = tmp_path / "fake.json"
    day_before = 1_764_000_000.0 - 86_400
    fake.write_text(json.dumps([{
        "decision_id": "d-fabricated0001", "category": "network", "target_key": "route=psp_a", "target_dims": "route",
        "dominant_error": "GATEWAY_TIMEOUT", "error_codes": "GATEWAY_TIMEOUT,NETWORK_ERROR", "magnitude": "major",
        "method_mix": "card", "tool": "reroute_traffic", "target": {"route": "psp_a"},
        "args": {"to_routes": {"psp_b": 1.0}},
        "verdict": "harmed", "reasons": ["successes per window fell 482 -> 350 (z=6.0)"], "created_at": day_before,
        "applied_at": day_before, "concluded_at": day_before + 180}]))
    assert lessons("import", str(fake), "--state-dir", state).exit_code == 0
    cycles = run(5).split("Diagnosis:")
    reroute = next(c for c in cycles if "Proposed Action: reroute_traffic" in c)
    assert "EXECUTED" in reroute and "ESCALATED" not in reroute


def test_an_import_needs_an_operator_key_never_a_typed_name(state, tmp_path):
    out_file = tmp_path / "lessons.json"
    lessons("export", "--out", str(out_file), "--state-dir", str(state))
    typed = runner.invoke(app, ["lessons", "import", str(out_file), "--as", "thandi", "--state-dir", str(state)])
    assert typed.exit_code == 2  # no such option: who imports is not typed
    no_key = runner.invoke(app, ["lessons", "import", str(out_file), "--state-dir", str(state)],
                           env={"PAYOPS_API_KEY": ""})
    assert no_key.exit_code == 2 and "operator API key" in no_key.output
    from payops.api.keys import ApiKeyStore

    store = ApiKeyStore.in_state_dir(state)
    _, viewer = store.create("watcher", "viewer")
    store.close()
    as_viewer = runner.invoke(app, ["lessons", "import", str(out_file), "--api-key", viewer, "--state-dir", str(state)])
    assert as_viewer.exit_code == 2 and "operator API key is needed" in as_viewer.output
    from payops.memory.audit import AuditLog

    audit = AuditLog(state / "audit.db")
    assert not list(audit.entries("lessons_import"))
    audit.close()
