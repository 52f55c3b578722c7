"""`payops palm ...` (palm_app): masked output, demo OTP only on request, exit 2 on bad input."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from payops.cli_palm import palm_app

REF = "tmpl-cli-0001-abcdef"
PROXY = "0827654321"


def _create_key(state, name: str, role: str) -> str:
    from payops.api.keys import ApiKeyStore

    store = ApiKeyStore.in_state_dir(state)
    try:
        return store.create(name, role)[1]
    finally:
        store.close()


@pytest.fixture
def run(tmp_path, monkeypatch):
    """The CLI on a fresh state folder, with a terminal's API key in PAYOPS_API_KEY (link, verify, pay)."""
    monkeypatch.setenv("PAYOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PAYOPS_API_KEY", _create_key(tmp_path / "state", "till-0", "terminal"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(palm_app, list(args))

    return invoke


@pytest.fixture
def keys(tmp_path, run):
    """Creates an API key in the CLI's state dir; returns the key itself."""
    def create(name: str, role: str = "operator") -> str:
        return _create_key(tmp_path / "state", name, role)

    return create


def _json(output: str) -> dict:
    return json.loads(output[output.index("{") : output.rindex("}") + 1])


def _link(run, *extra: str):
    result = run("link", "--user", "u1", "--template-ref", REF, "--proxy", PROXY, "--bank", "FNB", *extra)
    assert result.exit_code == 0, result.output
    return result


def test_full_flow_with_masked_output(run, keys):
    result = _link(run, "--show-otp", "--hand", "left")
    view = _json(result.output)
    otp = re.search(r"demo OTP: (\d{6})", result.output).group(1)
    assert view["payshap_proxy"] == "******4321" and view["palm_template_ref"] == "******cdef"
    assert PROXY not in result.output and REF not in result.output

    verified = run("verify", view["palm_pay_id"], otp)
    assert verified.exit_code == 0 and _json(verified.output)["link_status"] == "active"

    paid = run("pay", "--template-ref", REF, "--amount", "12.50", "--terminal", "T1")
    assert paid.exit_code == 0, paid.output
    assert _json(paid.output)["status"] == "completed" and _json(paid.output)["amount"] == "12.50"

    shown = run("show", view["palm_pay_id"])
    assert _json(shown.output)["daily_spent"] == "12.50"
    alice, bob = keys("alice"), keys("bob")
    link_id = view["palm_pay_id"]
    assert run("suspend", link_id, "--reason", "lost phone", "--api-key", alice).exit_code == 0
    asked = run("reactivate", link_id, "--api-key", alice)
    assert asked.exit_code == 0 and _json(asked.output)["status"] == "pending"
    assert _json(run("show", link_id).output)["link_status"] == "suspended"  # nothing changes until approved
    lifted = run("approve-request", _json(asked.output)["request_id"], "--api-key", bob)
    assert lifted.exit_code == 0 and _json(lifted.output)["status"] == "executed"
    rotation = run("rotate-key", "--api-key", bob)
    rotated = run("approve-request", _json(rotation.output)["request_id"], "--api-key", alice)
    assert rotated.exit_code == 0 and _json(rotated.output)["result"].startswith("active key ")
    paid_again = run("pay", "--template-ref", REF, "--amount", "1", "--terminal", "T1")
    assert paid_again.exit_code == 0, paid_again.output
    revocation = _json(run("revoke", link_id, "--api-key", bob).output)
    assert run("approve-request", revocation["request_id"], "--api-key", alice).exit_code == 0
    assert _json(run("show", link_id).output)["link_status"] == "revoked"


def test_revoking_with_a_typed_actor_and_no_key_is_refused(run):
    view = _json(_link(run).output)
    typed = run("revoke", view["palm_pay_id"], "--actor", "anyone")
    assert typed.exit_code == 2
    no_key = run("revoke", view["palm_pay_id"])
    assert no_key.exit_code == 2 and "operator API key" in no_key.output
    assert _json(run("show", view["palm_pay_id"]).output)["link_status"] != "revoked"


def test_a_terminal_key_or_an_unknown_key_cannot_write_from_the_cli(run, keys):
    view = _json(_link(run).output)
    for key in (keys("till-1", role="terminal"), "payops_000000000000_" + "x" * 43):
        result = run("suspend", view["palm_pay_id"], "--reason", "x", "--api-key", key)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert _json(run("show", view["palm_pay_id"]).output)["link_status"] == "pending_verification"


def test_enrolment_and_payment_from_the_cli_need_a_terminal_key(run, keys, monkeypatch):
    view = _json(_link(run).output)
    monkeypatch.delenv("PAYOPS_API_KEY")
    commands = (
        ("link", "--user", "u2", "--template-ref", "tmpl-cli-0002-abcdef", "--proxy", "0827654322"),
        ("verify", view["palm_pay_id"], "123456"),
        ("resend-otp", view["palm_pay_id"]),
        ("pay", "--template-ref", REF, "--amount", "5", "--terminal", "T1"),
    )
    operator = keys("alice")
    for args in commands:
        for extra, says in (((), "a terminal API key is needed: --api-key or PAYOPS_API_KEY"),
                            (("--api-key", operator), "(this one is an operator key)"),
                            (("--api-key", "payops_000000000000_" + "x" * 43), "unknown or revoked")):
            result = run(*args, *extra)
            assert result.exit_code == 2 and result.output.count("\n") == 1, (args, extra, result.output)
            assert says in result.output, result.output
    assert _json(run("show", view["palm_pay_id"]).output)["link_status"] == "pending_verification"
    enrolments = [e for e in run_audit(run, view["palm_pay_id"]) if e["action"] == "create_link"]
    assert enrolments and enrolments[0]["actor"].startswith("customer@terminal:")


def run_audit(run, palm_pay_id: str) -> list[dict]:
    from payops.palmpay import PalmPayOptions, PalmPayService
    from payops.settings import Settings

    with PalmPayService(PalmPayOptions.from_settings(Settings())) as service:
        return [e.model_dump() for e in service.audit_log(palm_pay_id)]


def test_an_operator_cannot_approve_their_own_request(run, keys):
    alice = keys("alice")
    view = _json(_link(run).output)
    asked = _json(run("revoke", view["palm_pay_id"], "--api-key", alice).output)
    own = run("approve-request", asked["request_id"], "--api-key", alice)
    assert own.exit_code == 1 and "PALM_PAY_NOT_AUTHORISED" in own.output
    listed = json.loads(run("requests").output)
    assert [r["request_id"] for r in listed] == [asked["request_id"]]
    assert _json(run("show", view["palm_pay_id"]).output)["link_status"] == "pending_verification"


def test_otp_is_not_printed_without_the_demo_flag(run):
    result = _link(run)
    assert "demo OTP" not in result.output and "OTP sent" in result.output


def test_bad_input_is_one_line_and_exit_2(run):
    for args in (
        ("link", "--user", "u1", "--template-ref", REF, "--proxy", "12"),
        ("pay", "--template-ref", REF, "--amount", "1.234", "--terminal", "T1"),
        ("show", "pp_missing"),
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("payops: error: PALM_PAY_")


def test_rule_refusals_exit_1_with_card_fallback(run):
    _link(run)
    result = run("pay", "--template-ref", REF, "--amount", "5", "--terminal", "T1")
    assert result.exit_code == 1
    assert "PALM_PAY_LINK_INACTIVE (403): Palm payment link is not active [fallback: card]" in result.output
    spoof = run("pay", "--template-ref", REF, "--amount", "5", "--terminal", "T1", "--no-liveness")
    assert spoof.exit_code == 1 and "PALM_PAY_SPOOF_DETECTED" in spoof.output


def test_missing_option_is_a_usage_error(run):
    assert run("link", "--user", "u1").exit_code == 2


def test_erase_revoked_pii_runs_from_the_cli_and_reports_a_count(run):
    result = run("erase-revoked-pii")
    assert result.exit_code == 0 and "erased the PII of 0 revoked link(s)" in result.output
