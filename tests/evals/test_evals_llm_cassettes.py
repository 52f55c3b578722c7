"""The committed SmolLM2 cassettes replay offline through the real eval path, and a stale one fails loudly.

evals/cassettes/smollm2/ was recorded from SmolLM2-135M on llama.cpp with
`python scripts/record_cassettes.py --suite eval` (evals/README.md). vcrpy matches
on the request body, so a change to a prompt, the briefing or the rule engine's
figures makes these tests fail with the case and the re-record command.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from payops.cli_eval import eval_app
from payops.evals.cases import DEFAULT_CORPUS, load_case
from payops.evals.harness import RunOptions, evaluate_case
from payops.evals.llm import cassette_dir, cassette_path

pytest.importorskip("vcr")

MODEL = "smollm2"
INCIDENT = "route_outage-105"  # an easy route outage: the LLM is asked on every incident tick
CONTROL = "healthy-132"  # a no-fault control: the rules see nothing, so the LLM is never asked
# Why the LLM reasoner lets the rules decide (graph/reasoners/llm.py `_why`).
FALLBACK_REASONS = ("malformed answer: ", "timeout", "API error HTTP ", "connection error")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection during the replay fails the test: the answers must come from the cassette."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"a replay tried to open a connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-replay-only")


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the cassettes are a few MB


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=LOADER)


def _interactions(path: Path) -> list[dict[str, Any]]:
    assert path.exists(), f"{path} is not recorded: python scripts/record_cassettes.py --suite eval --only {path.stem}"
    return _load(path)["interactions"]


def _answer(interaction: dict[str, Any]) -> dict[str, Any]:
    return json.loads(interaction["response"]["body"]["string"])


def test_the_cassettes_hold_no_secret_and_only_the_headers_a_replay_needs() -> None:
    folder = cassette_dir(MODEL)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["model"] == MODEL and meta["base_url"].startswith("http://127.0.0.1:")
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        assert "authorization" not in text.lower() and "bearer" not in text.lower(), path.name
        for interaction in yaml.load(text, Loader=LOADER)["interactions"]:
            assert set(interaction["request"]["headers"]) <= {"content-type"}, path.name
            assert set(interaction["response"]["headers"]) <= {"content-type", "openai-processing-ms"}, path.name


def test_a_recorded_incident_replays_offline_with_the_models_answers(offline: None) -> None:
    case = load_case(DEFAULT_CORPUS / INCIDENT)
    interactions = _interactions(cassette_path(case, MODEL))
    assert interactions, "the incident's recording holds no LLM call"

    outcome = evaluate_case(case, RunOptions("llm", MODEL, closed_loop=False))

    assert outcome.skipped is None
    assert outcome.cassette_problem is None, outcome.cassette_problem
    # Every recorded answer was used, once, in order: the calls that got an answer carry its usage.
    answered = [c for t in outcome.ticks for c in t["llm_calls"] if c["input_tokens"] > 0]
    assert len(answered) == len(interactions)
    for call, interaction in zip(answered, interactions, strict=True):
        usage = _answer(interaction)["usage"]
        assert (call["input_tokens"], call["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
        assert call["model"] == MODEL
    assert outcome.score.tokens_in == sum(_answer(i)["usage"]["prompt_tokens"] for i in interactions)
    assert outcome.score.llm_calls == len(answered)  # the recording never timed out: every call was answered

    # Each tick the LLM was asked about ends with its validated answer or with the reason the rules decided.
    replies = iter(interactions)
    for tick in (t for t in outcome.ticks if t["llm_calls"]):
        calls = tick["llm_calls"]
        last = [next(replies) for _ in calls][-1]
        if calls[-1]["fallback"] is None:
            tool_calls = _answer(last)["choices"][0]["message"]["tool_calls"]
            assert tick["tool"] in (tool_calls[0]["function"]["name"], "no_action")  # no_action: already in force
        else:
            assert calls[-1]["fallback"].startswith(FALLBACK_REASONS)
    assert outcome.score.audit_complete


def test_a_control_replays_with_no_llm_call(offline: None) -> None:
    case = load_case(DEFAULT_CORPUS / CONTROL)
    assert _interactions(cassette_path(case, MODEL)) == []
    outcome = evaluate_case(case, RunOptions("llm", MODEL, closed_loop=False))
    assert outcome.cassette_problem is None, outcome.cassette_problem
    assert outcome.ticks and not any(t["llm_calls"] for t in outcome.ticks)
    assert outcome.score.passed


def _stale_copy(root: Path) -> Path:
    """The incident's cassette with one figure changed in the first recorded prompt."""
    folder = root / MODEL
    folder.mkdir(parents=True)
    shutil.copy(cassette_dir(MODEL) / "meta.json", folder / "meta.json")
    tape = _load(cassette_dir(MODEL) / f"{INCIDENT}.yaml")
    request = tape["interactions"][0]["request"]
    body = json.loads(request["body"])
    content = body["messages"][1]["content"]
    at = next(i for i, ch in enumerate(content) if ch.isdigit())
    body["messages"][1]["content"] = content[:at] + str((int(content[at]) + 1) % 10) + content[at + 1:]
    request["body"] = json.dumps(body, separators=(",", ":"))
    (folder / f"{INCIDENT}.yaml").write_text(yaml.safe_dump(tape))
    return root


def test_a_request_the_cassette_does_not_hold_fails_the_case_and_says_how_to_fix_it(offline: None,
                                                                                    tmp_path: Path) -> None:
    case = load_case(DEFAULT_CORPUS / INCIDENT)
    outcome = evaluate_case(case, RunOptions("llm", MODEL, closed_loop=False, cassettes=_stale_copy(tmp_path)))

    problem = outcome.cassette_problem
    assert problem is not None
    assert "not in the cassette" in problem and "message 1 (user) differs" in problem
    assert f"record_cassettes.py --suite eval --only {INCIDENT}" in problem
    assert outcome.score.error.startswith("stale cassette") and not outcome.score.passed


def test_the_eval_command_exits_1_on_a_stale_cassette(offline: None, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS / INCIDENT, corpus / INCIDENT)
    r = CliRunner().invoke(eval_app,
                           ["--reasoner", "llm", "--model", MODEL, "--corpus", str(corpus), "--out",
                            str(tmp_path / "out"),
                                      "--cassettes", str(_stale_copy(tmp_path / "cassettes"))])
    assert r.exit_code == 1, r.output
    assert "stale cassettes" in r.output and INCIDENT in r.output
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert [p["case_id"] for p in run["cassette_problems"]] == [INCIDENT]


def test_the_ci_suite_names_corpus_cases_and_every_one_has_a_cassette() -> None:
    from payops.evals.harness import select_cases, suite_case_ids

    wanted = suite_case_ids("llm-ci")
    cases = select_cases(None, [], "llm-ci")
    assert sorted(c.id for c in cases) == sorted(wanted)
    assert INCIDENT in wanted and CONTROL in wanted  # the cassette tests above replay suite cases
    missing = [c.id for c in cases if not cassette_path(c, MODEL).exists()]
    assert missing == [], f"re-record: python scripts/record_cassettes.py --suite ci (missing {missing})"


def test_an_unknown_suite_is_refused_by_name() -> None:
    from payops.evals.harness import select_cases
    from payops.evals.runner import EvalError

    with pytest.raises(EvalError, match="no suite 'nightly'"):
        select_cases(None, [], "nightly")


def test_a_suite_narrowed_by_tags_is_not_a_missing_case() -> None:
    from payops.evals.harness import select_cases

    cases = select_cases(None, ["route_outage"], "llm-ci")
    assert [c.id for c in cases] == ["route_outage-105"]


def test_saving_meta_for_a_suite_keeps_only_its_cases(tmp_path: Path) -> None:
    from payops.evals.llm import load_meta, save_meta

    save_meta("m", "http://127.0.0.1:8011/v1", tmp_path, recorded={"a": {"llm_calls": 1}, "b": {"llm_calls": 2}})
    save_meta("m", "http://127.0.0.1:8011/v1", tmp_path, keep={"b"})
    assert list(load_meta("m", tmp_path)["cases"]) == ["b"]
