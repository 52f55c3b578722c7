"""The console's pages over a recorded run: what an operator reads at a glance."""

from __future__ import annotations

import json
import re

from console_helpers import sign_in


def _signed_in(console):
    client, keys = console
    sign_in(client, keys["viewer"])
    return client


def test_now_shows_the_latest_decision_its_age_traffic_and_what_waits(console) -> None:
    client = _signed_in(console)
    page = client.get("/console").text
    assert "Latest decision" in page and "stale" in page  # the recorded run's clock is long past: a stale agent says so
    assert re.search(r"\d+\.\d% <span>success</span>", page)
    assert "Pending approvals" in page and "Last updated" in page and "Africa/Johannesburg" in page


def test_the_timeline_filters_by_category_and_outcome(console) -> None:
    client = _signed_in(console)
    everything = client.get("/console/decisions").text
    network = client.get("/console/decisions", params={"category": "network"}).text
    executed = client.get("/console/decisions", params={"outcome": "executed"}).text
    assert network.count('<span class="cat network">') == network.count('<span class="cat ')
    assert 0 < network.count("<tr>") < everything.count("<tr>")
    assert executed.count('class="tag executed"') == executed.count("<tr>") - 1  # every row but the header


def test_a_decision_page_has_the_strict_cycle_and_the_blamed_segment_figures(console) -> None:
    client = _signed_in(console)
    network = client.get("/console/decisions", params={"category": "network", "segment": "route=psp_a"}).text
    first = re.search(r'href="/console/decisions/(d-[0-9a-f]+)"', network).group(1)
    page = client.get(f"/console/decisions/{first[:8]}").text  # a prefix works
    for heading in ("Diagnosis", "Evidence", "Proposed action", "Risk assessment", "Confidence", "Execution"):
        assert f"<h2>{heading}</h2>" in page
    chart = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page,
                                 re.S).group(1))
    assert chart["segment"] and any(v is not None for v in chart["segment_rate"])  # per-tick figures were recorded
    assert len(chart["x"]) == len(chart["platform_rate"]) == len(chart["segment_volume"])


def test_incidents_group_consecutive_decisions_about_one_segment(console) -> None:
    client = _signed_in(console)
    page = client.get("/console/incidents").text
    ids = re.findall(r'href="/console/incidents/(d-[0-9a-f]+)"', page)
    assert ids
    incident = client.get(f"/console/incidents/{ids[-1]}").text
    assert "First response" in incident and "Failed payments during it" in incident
    assert 'id="chart-data"' in incident


def test_audit_and_lessons_pages_show_the_trail_and_its_state(console) -> None:
    client = _signed_in(console)
    audit = client.get("/console/audit").text
    assert "Intact:" in audit
    assert client.get("/console/lessons").status_code == 200


def test_the_chat_panel_answers_from_the_records(console) -> None:
    client, keys = console
    sign_in(client, keys["viewer"])
    page = client.get("/console/chat").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    answer = client.post("/console/chat", data={"question": "what is pending approval?", "csrf": csrf}).text
    assert "<h2>Answer</h2>" in answer and "pending approval" in answer
    text = answer[answer.index('class="answer-text"'):answer.index("</div>", answer.index('class="answer-text"'))]
    cited = re.findall(r'<a href="/console/decisions/(d-[0-9a-f]{16})">\1</a>', text)
    assert cited, text  # every decision id the answer cites is a link to its page
    assert not re.search(r"(?<![/>\w-])d-[0-9a-f]{16}(?!</a>|\")", text)  # and none is left bare
    assert "Africa/Johannesburg" in answer or "SAST" in text  # read and shown in the display zone


def test_a_chat_answer_is_escaped_and_links_only_the_ids_it_cites() -> None:
    from payops.api.console.views import linked_answer

    html = str(linked_answer("d-00000000000a0002 <b>x</b> d-00000000000a0003", ["d-00000000000a0002"]))
    assert html == ('<a href="/console/decisions/d-00000000000a0002">d-00000000000a0002</a> &lt;b&gt;x&lt;/b&gt; '
                    "d-00000000000a0003")


def test_actions_in_force_survive_many_records_after_the_last_decision(console) -> None:
    client, keys = console
    audit = client.app.state.backend.services.audit
    before = client.get("/console", follow_redirects=False)  # not signed in yet: nothing decoded
    assert before.status_code == 303
    for i in range(30):  # sign-ins, outcomes, approvals: records that are not decisions
        audit.append(f"console:test:{i}", "console_sign_in", 1.0 + i, {"key_id": "x"})
    sign_in(client, keys["operator"])
    page = client.get("/console").text
    assert "Nothing in force." not in page and 'action="/console/rollback/' in page


def test_a_decision_appended_later_appears_without_rereading_the_trail(console) -> None:
    client = _signed_in(console)
    first = client.get("/console/decisions").text.count("<tr>")
    audit = client.app.state.backend.services.audit
    audit.append("d-appended0001", "decision", 2e9, {"decision_id": "d-appended0001", "window_end": 2e9,
                                                     "diagnosis": {"category": "config", "confidence": 0.9},
                                                     "proposal": {"tool": "no_action"},
                                                     "execution": {"status": "skipped"}})
    page = client.get("/console/decisions").text
    assert page.count("<tr>") == first + 1 and "d-appended0001" in page


def test_the_console_and_the_chat_group_incidents_by_one_rule(console, state_dir) -> None:
    from payops.api.console import views
    from payops.chat import ChatTools
    from payops.chat.state import incidents as chat_incidents

    client, _ = console
    rows = views.DecisionIndex().rows(client.app.state.backend.services.audit)
    on_console = [[r.id for r in i.decisions] for i in reversed(views.incidents(rows))]
    in_chat = [i.decisions for i in chat_incidents(ChatTools.open(state_dir).state())]
    assert on_console and on_console == in_chat


def test_an_incident_is_a_run_of_one_segment_that_a_healthy_window_ends() -> None:
    from payops.chat.state import incident_runs

    decisions = [("d1", "network", "route=psp_a"), ("d2", "issuer", "route=psp_a"), ("d3", "healthy", ""),
                 ("d4", "network", "route=psp_a"), ("d5", "issuer", "bank=FNB")]
    runs = incident_runs(decisions, lambda d: d[1], lambda d: d[2])
    assert [[d[0] for d in run] for run in runs] == [["d1", "d2"], ["d4"], ["d5"]]


def test_the_audit_page_shows_the_last_checkpoint_beside_the_verify_status(console) -> None:
    from payops.api.console import views

    client = _signed_in(console)
    checkpoint = views.last_checkpoint(client.app.state.backend.services.audit)
    assert checkpoint is not None and checkpoint.mac_key  # the recorded run sealed its trail when it stopped
    page = client.get("/console/audit").text
    assert "Intact:" in page and "Last checkpoint" in page
    facts = page[page.index('id="last-checkpoint"'):page.index("</dl>", page.index('id="last-checkpoint"'))]
    for shown in (f"<dd>{checkpoint.count}", checkpoint.head[:16], checkpoint.key_id, checkpoint.mac_key):
        assert shown in facts, shown
    assert re.search(r"Signed at</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Africa/Johannesburg", facts)


def test_the_sign_in_page_starts_decoding_the_trail_so_the_first_page_need_not(console) -> None:
    import time

    client, _ = console
    assert client.get("/console/sign-in").status_code == 200
    index = client.app.state.console_index
    deadline = time.monotonic() + 10
    while index.latest_entry is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert index.latest_entry is not None  # decoded in the background while the operator types a key


def test_payops_serve_starts_decoding_the_trail_as_the_server_starts(console) -> None:
    """`payops serve` builds the app with background jobs: the console's trail is decoded from the start,
    before any page is asked for (without them, nothing is decoded until the sign-in page)."""
    import time

    from fastapi.testclient import TestClient

    from payops.api import create_app
    from payops.settings import Settings

    client, _ = console
    state_dir = client.app.state.backend.settings.state_dir  # the recorded run's trail
    assert not getattr(client.app.state, "console_warmed", False)  # no page seen: nothing decoded yet
    app = create_app(Settings(state_dir=state_dir, webhook_url=None), background_jobs=True)
    with TestClient(app):
        index = app.state.console_index
        deadline = time.monotonic() + 10
        while index.latest_entry is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert index.latest_entry is not None
