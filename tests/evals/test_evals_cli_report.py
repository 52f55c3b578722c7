"""`payops eval` end to end on a tiny corpus: files written, gate, LLM plumbing, recording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payops.cli_eval import eval_app
from payops.evals import gate as gate_mod
from payops.evals.llm import judge_explanation, parse_verdict, price_for
from payops.evals.runner import llm_call
from payops.evals.scoring import Price

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tiny_corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-out")
    result = runner.invoke(eval_app, ["--corpus", str(tiny_corpus), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "payops eval" in result.output and "closed loop" in result.output
    return out


def test_a_run_writes_results_report_and_chart(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    run = results["runs"][0]
    assert run["label"] == "rules" and run["summary"]["cases"] == 2
    assert {c["case_id"] for c in run["cases"]} == {"route-known", "quiet-control"}
    known = next(c for c in run["cases"] if c["case_id"] == "route-known")
    assert known["passed"] and known["ticks"] and known["ticks"][0]["audit_complete"]
    assert [r["case_id"] for r in run["closed_loop"]] == ["route-known"]  # controls have no closed loop
    report = (run_dir / "report.md").read_text()
    assert "## rules" in report and "Closed loop" in report and "By difficulty" in report

def test_the_chart_is_a_png(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")  # the optional extra payops[eval]
    assert (run_dir / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_fails_below_the_recorded_level_and_passes_at_it(tiny_corpus: Path, run_dir: Path, tmp_path: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    assert gate_mod.check(results,
                          {"min": {"pass_rate": 1.0, "audit_completeness": 1.0}, "max": {"unsafe_actions": 0}}) == []
    failures = gate_mod.check(results, {"min": {"pass_rate": 1.01}, "max": {"false_actions": -1}})
    assert len(failures) == 2 and "pass_rate" in failures[0] and "false_actions" in failures[1]
    assert "did not include" in gate_mod.check(results, {"run": "llm:x"})[0]

    strict = tmp_path / "gate.json"
    strict.write_text(json.dumps({"min": {"pass_rate": 1.01}}))
    result = runner.invoke(eval_app, ["--corpus", str(tiny_corpus), "--out", str(tmp_path / "o"), "--workers", "1",
                                      "--no-closed-loop", "--gate", "--gate-file", str(strict)])
    assert result.exit_code == 1 and "gate: FAILED" in result.output
    assert json.loads((tmp_path / "o" / "results.json").read_text())["gate"]["passed"] is False


def test_the_committed_gate_file_is_well_formed() -> None:
    spec = gate_mod.load_gate()
    assert spec.get("run", "rules") == "rules"
    known = set(gate_mod.metrics({"summary": {k: 0 for k in ("cases", "pass_rate", "detection_rate",
                                                             "category_accuracy", "action_accuracy",
                                                               "controls_clean", "controls", "audit_completeness",
                                                               "mean_ticks_to_detect",
                                                               "false_actions", "unsafe_actions")}, "cases": []}))
    assert set(spec["min"]) | set(spec["max"]) <= known


def test_usage_errors_exit_2_with_one_line(tiny_corpus: Path) -> None:
    r = runner.invoke(eval_app, ["--reasoner", "llm", "--corpus", str(tiny_corpus)])
    assert r.exit_code == 2 and "--model" in r.output
    r = runner.invoke(eval_app, ["--tags", "control", "--gate", "--corpus", str(tiny_corpus)])
    assert r.exit_code == 2 and "without --tags" in r.output
    r = runner.invoke(eval_app, ["--tags", "no-such-tag", "--corpus", str(tiny_corpus)])
    assert r.exit_code == 2 and "no case matches" in r.output


def test_an_llm_run_without_any_cassette_exits_2_instead_of_skipping_every_case(tiny_corpus: Path,
                                                                                tmp_path: Path) -> None:
    """No network in tests: a model with no cassettes at all would score nothing, so it is a usage error."""
    r = runner.invoke(eval_app,
                      ["--reasoner", "llm", "--model", "m", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "o"),
                                 "--cassettes", str(tmp_path / "none")])
    assert r.exit_code == 2, r.output
    assert "LLM reasoner is not available" in r.output or "no cassettes for model 'm'" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_eval_out_naming_a_file_or_an_uncreatable_folder_is_one_line_before_any_case_runs(
        tiny_corpus: Path, tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    r = runner.invoke(eval_app, ["--corpus", str(tiny_corpus), "--out", str(tmp_path / where), "--workers", "1"])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "a file" in r.output
    assert "Traceback" not in r.output and "route-known" not in r.output  # refused before the cases ran


def test_record_from_a_scenario_and_refusing_ambiguous_input(tmp_path: Path) -> None:
    r = runner.invoke(eval_app,
                      ["record", "new-case", "--scenario", "palm_spoof_burst", "--seed", "3", "--volume", "900",
                                 "--corpus", str(tmp_path), "--lead-in", "120", "--duration", "120", "--tail", "0"])
    assert r.exit_code == 0, r.output
    case_yaml = (tmp_path / "new-case" / "case.yaml").read_text()
    assert "category: security" in case_yaml and "palm: true" in case_yaml
    r = runner.invoke(eval_app, ["record", "x", "--corpus", str(tmp_path)])
    assert r.exit_code == 2 and "exactly one" in r.output
    r = runner.invoke(eval_app, ["record", "new-case", "--scenario", "healthy", "--corpus", str(tmp_path)])
    assert r.exit_code == 2 and "already exists" in r.output


def test_llm_call_records_are_read_in_either_spelling() -> None:
    a = llm_call({"model": "m", "input_tokens": 100, "output_tokens": 20, "latency_ms": 250.0})
    b = llm_call({"model_name": "m", "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                  "latency_s": 0.25, "fallback": "timeout"})
    assert (a.input_tokens, a.output_tokens, a.latency_ms, a.fallback) == (100, 20, 250.0, None)
    assert (b.input_tokens, b.output_tokens, b.latency_ms, b.fallback) == (100, 20, 250.0, "timeout")
    assert price_for("gpt-4o-mini-2024-07-18",
                     {"gpt-4o-mini": Price(0.15, 0.6)}).cost(1_000_000, 0) == pytest.approx(0.15)
    assert price_for("unknown-model", {}).cost(10**9, 10**9) == 0.0


def test_judge_grades_against_facts_and_treats_the_text_as_data() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    chat = FakeListChatModel(responses=['{"pass": true, "reason": "names the route"}', "no json here, sorry"])
    verdict = judge_explanation(chat, ("names the failing route",), "Route psp_a failing across banks")
    assert verdict is not None and verdict.passed and verdict.reason == "names the route"
    assert judge_explanation(chat, ("x",), "y").passed is False  # an unstructured answer is not a pass
    assert judge_explanation(chat, (), "anything") is None  # nothing to grade
    assert parse_verdict('verdict: {"pass": false, "reason": "misses the bank"}').passed is False
