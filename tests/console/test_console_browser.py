"""The console in a real browser: headless Chromium driven by Selenium (Debian chromium + chromium-driver).

Skipped with the reason where the browser, its driver or selenium is missing; `.ci/run` installs them.
CONSOLE_SCREENSHOTS=DIR saves the pages the README shows (Now, a decision, an incident) there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import run_agent

from payops.api import create_app
from payops.graph.runner import opened
from payops.settings import Settings
from payops.wiring import agent_services, durable_agent

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra brings it
    webdriver = None

pytestmark = [
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                       reason="chromium / chromedriver missing (apt-get install -y chromium chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    import uvicorn

    state = tmp_path_factory.mktemp("browser") / "state"
    run_agent(state, 25)
    app = create_app(Settings(state_dir=state, webhook_url=None))
    store = app.state.backend.keys
    keys = {"operator": store.create("ops-browser", "operator")[1],
            "viewer": store.create("viewer-browser", "viewer")[1]}
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", keys, state
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.implicitly_wait(2)
    yield driver
    driver.quit()


def _sign_in(browser, base: str, key: str) -> None:
    browser.get(f"{base}/console/sign-in")
    browser.find_element(By.ID, "api_key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "main form button").click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith("/console"))
    assert key not in browser.page_source


def _errors(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _shot(browser, name: str) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / name))


def test_an_operator_signs_in_and_reads_now_a_decision_and_an_incident_with_charts_drawn(served, browser) -> None:
    base, keys, _ = served
    _sign_in(browser, base, keys["operator"])
    assert "Latest decision" in browser.page_source
    _shot(browser, "console-now.png")
    browser.get(f"{base}/console/incidents")
    browser.find_elements(By.CSS_SELECTOR, "main table td a")[-1].click()  # the oldest: the route outage
    canvas = browser.find_element(By.CSS_SELECTOR, ".chart-canvas canvas")
    drawn = browser.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) n++; } return n;", canvas)
    assert drawn > 1000  # lines were drawn, not an empty canvas
    _shot(browser, "console-incident.png")
    browser.find_elements(By.CSS_SELECTOR, "table.decisions td a")[-1].click()
    assert "Proposed action" in browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, ".chart-canvas canvas")
    _shot(browser, "console-decision.png")
    assert _errors(browser) == []


def test_a_viewer_has_no_approve_button(served, browser) -> None:
    base, keys, _ = served
    _sign_in(browser, base, keys["viewer"])
    browser.get(f"{base}/console/approvals")
    assert "Viewers cannot approve" in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "button[value=approve]")
    assert _errors(browser) == []


def test_a_write_without_the_csrf_token_is_refused_in_the_browser(served, browser) -> None:
    base, keys, _ = served
    _sign_in(browser, base, keys["operator"])
    browser.get(f"{base}/console/approvals")
    article = browser.find_element(By.CSS_SELECTOR, "article.approval")
    decision_id = article.get_attribute("id")
    browser.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", article)  # a forged form
    article.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(article))
    assert "CSRF check" in browser.page_source
    browser.get(f"{base}/console/approvals")
    assert decision_id in [a.get_attribute("id") for a in browser.find_elements(By.CSS_SELECTOR, "article.approval")]


def test_the_chat_panel_links_the_decisions_it_cites(served, browser) -> None:
    base, keys, _ = served
    _sign_in(browser, base, keys["viewer"])
    browser.get(f"{base}/console/chat")
    browser.find_element(By.ID, "question").send_keys("what is pending approval?")
    browser.find_element(By.CSS_SELECTOR, "main form button").click()
    link = WebDriverWait(browser, 10).until(lambda b: b.find_element(By.CSS_SELECTOR, ".answer-text a"))
    cited = link.text
    link.click()
    WebDriverWait(browser, 10).until(lambda b: f"/console/decisions/{cited}" in b.current_url)
    assert "Proposed action" in browser.page_source and _errors(browser) == []


def test_an_operator_approves_an_escalation_and_the_next_tick_applies_it(served, browser) -> None:
    base, keys, state = served
    _sign_in(browser, base, keys["operator"])
    browser.get(f"{base}/console/approvals")
    article = browser.find_element(By.CSS_SELECTOR, "article.approval")
    decision_id = article.get_attribute("id")
    article.find_element(By.NAME, "note").send_keys("looked at the retries")
    article.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(article))  # the answer's page replaced this one
    assert decision_id not in [a.get_attribute("id")
                               for a in browser.find_elements(By.CSS_SELECTOR, "article.approval")]

    services = agent_services(Settings(state_dir=state, webhook_url=None), "simulator", "demo", 7)
    with opened(durable_agent(services)) as agent:  # the agent's next tick (payops run / tick)
        agent.tick()
    services.audit.close()
    browser.get(f"{base}/console/approvals")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "table tr") if decision_id[:10] in r.text)
    assert re.search(r"\bapplied\b", row.text), row.text
    assert _errors(browser) == []
