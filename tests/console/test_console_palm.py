"""The console's palm-pay page: operators only; a two-person request answered by a second operator."""

from __future__ import annotations

import re

from console_helpers import csrf_of, sign_in


def _principal(client, name: str) -> str:
    return next(k.principal for k in client.app.state.backend.keys.list() if k.name == name)


def _link(client) -> str:
    palm = client.app.state.backend.palm
    view, _ = palm.create_link("user-77", "tmpl-0077-7f3a9c2e51b4d8aa", None, "0829000077", "phone", bank="FNB")
    return view.palm_pay_id


def test_a_second_operator_approves_a_revocation_requested_by_the_first(console) -> None:
    client, keys = console
    link = _link(client)
    palm = client.app.state.backend.palm
    request = palm.request_change("revoke", requested_by=_principal(client, "operator-person"), palm_pay_id=link,
                                  reason="customer asked, call 0821234567")
    sign_in(client, keys["operator"])
    page = client.get("/console/palm").text
    assert request.request_id in page and "another operator must answer it" in page  # not the requester's to approve
    assert "0821234567" not in page  # free text was masked before storage
    own = client.post(f"/console/palm/requests/{request.request_id}", data={"answer": "approve", "csrf": csrf_of(page)})
    assert own.status_code == 403  # the service's own status: the requester may not approve
    client.post("/console/sign-out", data={"csrf": csrf_of(page)})

    sign_in(client, keys["operator-2"])
    page = client.get("/console/palm").text
    assert f'action="/console/palm/requests/{request.request_id}"' in page
    done = client.post(f"/console/palm/requests/{request.request_id}",
                       data={"answer": "approve", "csrf": csrf_of(page)}, follow_redirects=False)
    assert done.status_code == 303
    assert palm.show(link).link_status == "revoked"
    assert palm.change_request(request.request_id).decided_by == _principal(client, "second-operator")


def test_viewers_do_not_see_palm_pay_records(console) -> None:
    client, keys = console
    sign_in(client, keys["viewer"])
    assert client.get("/console/palm").status_code == 403
    assert 'href="/console/palm"' not in client.get("/console").text


def test_the_palm_page_lists_links_masked_by_status(console) -> None:
    client, keys = console
    _link(client)
    sign_in(client, keys["operator"])
    page = client.get("/console/palm").text
    assert re.search(r"pending_verification: 1", page)
    assert "0829000077" not in page and "tmpl-0077-7f3a9c2e51b4d8aa" not in page
