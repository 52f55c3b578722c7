"""Who may call what: the role of every operation, 401/403 without detail, keys stored hashed."""

from __future__ import annotations

import pytest
from api_helpers import Api, bearer
from typer.testing import CliRunner

from payops.api.keys import ApiKeyStore
from payops.cli import _register_subcommands
from payops.cli import app as cli_app

T, OP, V = "terminal", "operator", "viewer"
READ = {OP, V}
# Every operation of the schema and the roles that may call it. A new route must be added here.
EXPECTED_ROLES: dict[tuple[str, str], set[str]] = {
    ("post", "/v1/palm/links"): {T},
    ("get", "/v1/palm/links/{palm_pay_id}"): {T, OP, V},
    ("post", "/v1/palm/links/{palm_pay_id}/verify"): {T},
    ("post", "/v1/palm/links/{palm_pay_id}/resend-otp"): {T},
    # Administration left the terminal role (issue 15): a terminal key revoked any customer's link.
    ("post", "/v1/palm/links/{palm_pay_id}/revoke"): {OP},
    ("post", "/v1/palm/links/{palm_pay_id}/suspend"): {OP},
    ("post", "/v1/palm/links/{palm_pay_id}/reactivate"): {OP},
    ("post", "/v1/palm/links/{palm_pay_id}/limits"): {OP},
    ("post", "/v1/palm/key-rotations"): {OP},
    ("post", "/v1/palm/index-root-rotations"): {OP},
    ("get", "/v1/palm/requests"): {OP},
    ("post", "/v1/palm/requests/{request_id}/approve"): {OP},
    ("post", "/v1/palm/requests/{request_id}/reject"): {OP},
    ("post", "/v1/palm/payments"): {T},
    ("get", "/v1/palm/terminals"): READ,
    ("put", "/v1/palm/terminals/{terminal_id}/key"): {OP},
    ("delete", "/v1/palm/terminals/{terminal_id}/key"): {OP},
    ("get", "/v1/decisions"): READ,
    ("get", "/v1/decisions/{decision_id}"): READ,
    ("get", "/v1/decisions/{decision_id}/why"): READ,
    ("get", "/v1/approvals"): READ,
    ("post", "/v1/approvals/{decision_id}/approve"): {OP},
    ("post", "/v1/approvals/{decision_id}/reject"): {OP},
    ("get", "/v1/lessons"): READ,
    ("get", "/v1/lessons/{decision_id}"): READ,
    ("post", "/v1/chat"): READ,
    ("get", "/v1/audit/verify"): READ,
    ("get", "/metrics"): READ,
    ("get", "/healthz"): {T, OP, V, "anonymous"},
}
BODIES = {
    "/v1/palm/links": {"user_id": "u", "palm_template_ref": "tmpl-12345678", "payshap_proxy": "0821234567",
                       "proxy_type": "phone"},
    "/v1/palm/links/{palm_pay_id}/verify": {"otp": "123456"},
    "/v1/palm/links/{palm_pay_id}/revoke": {"reason": "test"},
    "/v1/palm/links/{palm_pay_id}/suspend": {"reason": "test"},
    "/v1/palm/links/{palm_pay_id}/reactivate": {"reason": "test"},
    "/v1/palm/links/{palm_pay_id}/limits": {"daily_limit": "10"},
    "/v1/palm/payments": {"palm_template_ref": "tmpl-12345678", "amount": "1.00", "terminal_id": "T1",
                          "liveness_passed": True, "match_score": 0.99, "idempotency_key": "auth-test-0001"},
    "/v1/chat": {"question": "what happened?"},
    "/v1/palm/terminals/{terminal_id}/key": {"public_key": "MCowBQYDK2VwAyEA" + "A" * 44},
}


def _call(api: Api, method: str, path: str, headers: dict[str, str]):
    url = path.replace("{palm_pay_id}", "pp_000000000000000000000000").replace("{decision_id}", "d-0000000000000000")
    url = url.replace("{request_id}", "cr_0000000000000000").replace("{terminal_id}", "T1")
    body = BODIES.get(path) if method != "delete" else None
    return api.client.request(method.upper(), url, headers=headers, **({"json": body} if body is not None else {}))


def test_the_matrix_covers_every_operation(api: Api) -> None:
    schema = api.app.openapi()
    operations = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert operations == set(EXPECTED_ROLES)
    for (method, path) in operations:
        secured = bool(schema["paths"][path][method].get("security"))
        assert secured == (path != "/healthz"), (method, path)


@pytest.mark.parametrize("operation", sorted(EXPECTED_ROLES), ids=lambda o: f"{o[0]} {o[1]}")
def test_roles(api: Api, operation: tuple[str, str]) -> None:
    method, path = operation
    allowed = EXPECTED_ROLES[operation]
    for role in (T, OP, V):
        status = _call(api, method, path, api.as_(role)).status_code
        if role in allowed:
            assert status not in (401, 403), (role, status)
        else:
            assert status == 403, (role, status)
    anonymous = _call(api, method, path, {})
    if "anonymous" in allowed:
        assert anonymous.status_code == 200
    else:
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


def test_failed_auth_says_nothing_about_why(api: Api) -> None:
    store: ApiKeyStore = api.app.state.backend.keys
    record, revoked_key = store.create("gone", "viewer")
    store.revoke(record.key_id)
    good = api.keys[V]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    attempts = {
        "none": {},
        "not bearer": {"Authorization": f"Basic {good}"},
        "garbage": bearer("letmein"),
        "unknown id": bearer("payops_000000000000_" + "A" * 43),
        "wrong secret": bearer(wrong_secret),
        "revoked": bearer(revoked_key),
    }
    bodies = set()
    for why, headers in attempts.items():
        r = api.client.get("/v1/decisions", headers=headers)
        assert r.status_code == 401, why
        bodies.add(r.text)
    assert bodies == {'{"code":"UNAUTHORIZED","status":401,"message":"Unauthorized"}'}
    forbidden = api.client.get("/v1/decisions", headers=api.as_(T))
    assert forbidden.json() == {"code": "FORBIDDEN", "status": 403, "message": "Forbidden"}


def test_auth_comes_before_validation(api: Api) -> None:
    # An unauthenticated caller learns nothing, not even what a valid body looks like.
    r = api.client.post("/v1/palm/payments", json={"nonsense": True})
    assert r.status_code == 401 and "fields" not in r.json()


def test_keys_are_stored_hashed(api: Api) -> None:
    path = api.settings.state_dir / "api_keys.db"
    raw = b"".join(p.read_bytes() for p in path.parent.glob("api_keys.db*"))
    for key in api.keys.values():
        secret = key.split("_", 2)[2]  # payops_<key id>_<secret>: the secret itself may hold "_"
        assert key.encode() not in raw and secret.encode() not in raw
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_keys_cli_create_list_revoke(api: Api) -> None:
    _register_subcommands()
    runner = CliRunner()
    state = ["--state-dir", str(api.settings.state_dir)]
    created = runner.invoke(cli_app, ["keys", "create", "--name", "dash-1", "--role", "viewer", *state])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("payops_")
    assert api.client.get("/v1/audit/verify", headers=bearer(key)).status_code == 200

    listed = runner.invoke(cli_app, ["keys", "list", *state])
    assert "dash-1" in listed.stdout and "viewer" in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    key_id = key.split("_")[1]
    revoked = runner.invoke(cli_app, ["keys", "revoke", key_id, *state])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert api.client.get("/v1/audit/verify", headers=bearer(key)).status_code == 401

    bad_role = runner.invoke(cli_app, ["keys", "create", "--name", "x", "--role", "admin", *state])
    assert bad_role.exit_code == 2 and "role must be one of" in bad_role.output
    unknown = runner.invoke(cli_app, ["keys", "revoke", "ffffffffffff", *state])
    assert unknown.exit_code == 2
