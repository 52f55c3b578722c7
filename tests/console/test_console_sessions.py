"""Console sign-in, sessions, CSRF and roles (no browser: the HTTP contract the pages rely on)."""

from __future__ import annotations

import re

from console_helpers import csrf_of, sign_in

from payops.api.console.sessions import SessionStore


def test_an_operator_key_is_exchanged_for_a_strict_httponly_session_cookie(console) -> None:
    client, keys = console
    response = sign_in(client, keys["operator"])
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert "payops_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    page = client.get("/console")
    assert page.status_code == 200
    assert keys["operator"] not in page.text  # the key is never shown again
    assert "Content-Security-Policy" in page.headers and "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_a_terminal_key_or_a_wrong_key_cannot_sign_in(console) -> None:
    client, keys = console
    assert sign_in(client, keys["terminal"]).status_code == 401
    assert sign_in(client, "payops_0000_not-a-key").status_code == 401
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"


def test_sign_ins_are_rate_limited_per_address(console) -> None:
    client, _ = console
    codes = [sign_in(client, "payops_nope_nope").status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]


def test_a_write_without_the_csrf_token_is_refused_and_changes_nothing(console) -> None:
    client, keys = console
    sign_in(client, keys["operator"])
    pending = re.findall(r'action="/console/approvals/(d-[0-9a-f]+)"', client.get("/console/approvals").text)
    assert pending
    refused = client.post(f"/console/approvals/{pending[0]}", data={"answer": "approve"})
    assert refused.status_code == 403
    assert f'action="/console/approvals/{pending[0]}"' in client.get("/console/approvals").text  # still waiting


def test_a_viewer_sees_approvals_but_cannot_answer_them(console) -> None:
    client, keys = console
    sign_in(client, keys["viewer"])
    page = client.get("/console/approvals").text
    assert "Viewers cannot approve" in page and "Approve</button>" not in page
    pending = re.search(r'<article class="approval" id="(d-[0-9a-f]+)"', page).group(1)
    csrf = csrf_of(page)  # the sign-out form's token: a valid token, the wrong role
    assert client.post(f"/console/approvals/{pending}", data={"answer": "approve", "csrf": csrf}).status_code == 403


def test_an_operator_approves_with_a_note_recorded_under_the_key_identity(console) -> None:
    client, keys = console
    sign_in(client, keys["operator"])
    page = client.get("/console/approvals").text
    pending = re.search(r'action="/console/approvals/(d-[0-9a-f]+)"', page).group(1)
    done = client.post(f"/console/approvals/{pending}",
                       data={"answer": "approve", "note": "checked", "csrf": csrf_of(page)}, follow_redirects=False)
    assert done.status_code == 303
    book = client.app.state.backend.services.approvals
    approval = book.get(pending)
    assert approval.status == "approved" and approval.note == "checked"
    key_id = next(k.key_id for k in client.app.state.backend.keys.list() if k.name == "operator-person")
    assert approval.approver == f"operator:{key_id}"  # the key's principal, as over HTTP and `payops approve`


def test_revoking_the_key_ends_its_sessions(console) -> None:
    client, keys = console
    sign_in(client, keys["operator"])
    assert client.get("/console").status_code == 200
    store = client.app.state.backend.keys
    key_id = next(k.key_id for k in store.list() if k.name == "operator-person")
    store.revoke(key_id)
    assert client.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"


def test_sign_in_and_sign_out_are_audited(console) -> None:
    client, keys = console
    sign_in(client, keys["viewer"])
    page = client.get("/console").text
    client.post("/console/sign-out", data={"csrf": csrf_of(page)})
    kinds = [e.kind for e in client.app.state.backend.services.audit.tail(5)]
    assert kinds[-2:] == ["console_sign_in", "console_sign_out"]
    assert client.get("/console", follow_redirects=False).status_code == 303  # signed out


def test_an_idle_session_and_an_old_one_expire() -> None:
    now = [1000.0]
    store = SessionStore(idle_seconds=60, absolute_seconds=300, clock=lambda: now[0])
    token, _ = store.create("k1", "ops", "operator")
    now[0] += 59
    assert store.get(token) is not None
    now[0] += 61
    assert store.get(token) is None  # idle too long
    token, _ = store.create("k1", "ops", "operator")
    for _ in range(6):
        now[0] += 55
        store.get(token)
    assert store.get(token) is None  # kept busy, still past its absolute expiry


def test_an_operator_rollback_request_is_applied_by_the_next_tick_under_the_operator_identity(
        console, state_dir) -> None:
    from payops.graph.runner import opened
    from payops.settings import Settings
    from payops.wiring import agent_services, durable_agent

    client, keys = console
    sign_in(client, keys["operator"])
    page = client.get("/console").text
    action_id = re.search(r'action="/console/rollback/([^"]+)"', page).group(1)
    filed = client.post(f"/console/rollback/{action_id}", data={"csrf": csrf_of(page), "note": "psp_a is back"},
                        follow_redirects=False)
    assert filed.status_code == 303
    assert client.post(f"/console/rollback/{action_id}", data={"note": "no token"}).status_code == 403
    again = client.post(f"/console/rollback/{action_id}", data={"csrf": csrf_of(page), "note": "double click"})
    assert again.status_code == 409 and "already filed" in again.text  # one rollback request, one approver

    services = agent_services(Settings(state_dir=state_dir, webhook_url=None), "simulator", "demo", 7)
    with opened(durable_agent(services)) as agent:
        state = agent.tick().state
    assert all(a["action_id"] != action_id for a in state["in_force"])  # rolled back
    applied = [e for e in services.audit.tail(20) if e.kind == "approved_action" and e.decision_id.startswith("rb-")]
    key_id = next(k.key_id for k in client.app.state.backend.keys.list() if k.name == "operator-person")
    assert applied and applied[-1].record["approver"] == f"operator:{key_id}"
    assert applied[-1].record["execution"]["status"] == "executed"
    services.audit.close()


def test_a_viewer_gets_no_rollback_button(console) -> None:
    client, keys = console
    sign_in(client, keys["viewer"])
    assert "/console/rollback/" not in client.get("/console").text


def test_the_session_cookie_is_secure_when_the_console_is_served_over_tls(state_dir) -> None:
    from fastapi.testclient import TestClient

    from payops.api import create_app
    from payops.api.settings import ApiSettings
    from payops.settings import Settings

    app = create_app(Settings(state_dir=state_dir, webhook_url=None),
                     api_settings=ApiSettings(console_secure_cookies=True))
    with TestClient(app, base_url="https://testserver") as client:
        key = app.state.backend.keys.create("tls-operator", "operator")[1]
        assert "Secure" in sign_in(client, key).headers["set-cookie"]
