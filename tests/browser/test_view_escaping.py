"""
The HappyHorse view renders what users typed as text, never as HTML: the page (``ui/index.html``) in headless
Chromium, against a stand-in for the view's JSON API on loopback (no Airflow: the page is a static file that
only reads ``api/...``), serving one clip whose prompt and review mark carry markup.

A review mark (``ui.clips.review_marks``) is what the publishing task pushed: its ``outcome`` and ``by`` (who
answered the HITL form) come from a run, and the prompt from a DAG's author or a reviewer's edited prompt. The
page builds every node with ``el()`` (``textContent`` for text, ``setAttribute`` for attributes); were any of
these strings parsed as HTML (``innerHTML``, ``insertAdjacentHTML``, a template into markup), the hostile values
below would create elements and run their handlers, which the test looks for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PROMPT = '<img src="x" onerror="window.__injected = \'prompt\'">a horse'
REVIEWER = '<img src="x" onerror="window.__injected = \'by\'"><b>eve</b>'
OUTCOME = 'rejected"><script>window.__injected = "outcome"</script><i>x</i>'
CLIP: dict[str, Any] = {
    "dag_id": "daily",
    "run_id": "manual__1",
    "task_id": "render",
    "map_index": 0,
    "job_id": "job-1",
    "availability": "expired",  # no player: nothing else is fetched
    "expires_at": None,
    "has_poster": False,
    "prompt": PROMPT,
    "mode": "std",
    "duration": 5,
    "sound": True,
    "cost_estimate": 300,
    "cost_unit": "credits",
    "verified": True,
    "made_at": "2026-12-06T10:00:00+00:00",
    "review": {"outcome": OUTCOME, "by": REVIEWER, "new_prompt": PROMPT},
}
ANSWERS: dict[str, Any] = {
    "/happyhorse/api/clips": {"total": 1, "clips": [CLIP]},
    "/happyhorse/api/clip": CLIP,
    "/happyhorse/api/spend": {"by_unit": {}, "unknown_estimates": 0},
    "/happyhorse/api/in-flight": {"renders": []},
}


class ViewStandIn(BaseHTTPRequestHandler):
    """``/happyhorse/`` and ``/happyhorse/clip`` answer the page as the provider ships it; ``api/...`` the JSON."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/happyhorse/", "/happyhorse/clip"):
            page = resources.files("airflow_provider_happyhorse.ui").joinpath("index.html").read_bytes()
            self._send(page, "text/html; charset=utf-8")
        elif path in ANSWERS:
            self._send(json.dumps(ANSWERS[path]).encode(), "application/json")
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def view_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ViewStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/happyhorse/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("page", ["", "clip?dag_id=daily&run_id=manual__1&task_id=render&map_index=0"])
def test_a_review_mark_and_a_prompt_are_shown_as_text_never_as_html(
    browser: WebDriver, view_url: str, page: str
) -> None:
    browser.get(view_url + page)
    badge = WebDriverWait(browser, 30).until(lambda driver: driver.find_element(By.CSS_SELECTOR, ".card .review"))
    # The typed strings, character for character, as text.
    assert badge.text == f"review: {OUTCOME} by {REVIEWER}"
    assert badge.get_attribute("data-review") == OUTCOME
    card = browser.find_element(By.CSS_SELECTOR, ".card")
    assert browser.find_element(By.CSS_SELECTOR, ".card .prompt").text == PROMPT
    # Nothing of the markup became an element, and no handler ran.
    assert card.find_elements(By.CSS_SELECTOR, "img, b, i, script") == []
    assert browser.execute_script("return window.__injected === undefined") is True
