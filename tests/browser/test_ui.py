"""
The provider in Airflow's own web UI (the React UI of Airflow 3.3.2), in headless Chromium, against a real
cluster (scheduler, triggerer, dag-processor, api-servers) whose users must log in, and the emulator.

The tests run in order and build on one another: log in; create ``happyhorse_default`` through
Admin -> Connections (the form the provider declares: "Base URL" and "API key", no Login/Port/Schema); press
the Test button; trigger the daily example DAG from its Trigger dialog and watch ``daily_clip`` go Deferred,
then Success; follow the task's "HappyHorse video" extra link to the emulator's MP4.

What Airflow 3.3.2's UI does with the Test button (seen with Chrome's network log; the tests assert it):

* The Add and Edit Connection forms have no Test button. The only one is the icon button "Test Connection" in the
  connection's row of the list, and it posts the row as the list returned it: the password as the mask ``"***"`` and the
  port as ``Number(port)``, which is ``0`` for a connection without a port. Every HappyHorse connection made
  in the form has none (the provider hides the Port field), so ``POST /api/v2/connections/test`` sees a port
  (0) that differs from the stored one (NULL) and, as the request carries no real password, answers 400
  "The host or port to test differs from the stored connection..." -- the toast says "Test Connection
  Failed / Bad Request". Re-typing the key in the Edit form does not help: the form has no Test button and
  the row still posts ``"***"``.
* The API accepts the same body with the real key in ``password`` (checked below through the REST API): that is
  what a form would have to send. No UI path sends it.
* Once the stored port equals what the row posts (0; set through the REST API here, since the form hides
  the field), the row's Test reaches the hook and the toast shows its message: working key, wrong key,
  unreachable host.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import av
import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "examples"
DAG_ID = "happyhorse_daily_content"
TASK_ID = "daily_clip"
RUN_ID = "browser_ui_run"
CONN_ID = "happyhorse_default"
ADMIN = "admin"
TEST_URL = "/api/v2/connections/test"
TOAST_ROOT = "[data-scope=toast][data-part=root]"
T = TypeVar("T")

# Keeps the text of every toast the page shows, longest version first seen (a toast loses its description
# while it fades out; a success toast lasts about two seconds).
_TOAST_RECORDER = """
if (!window.__toasts) {
  window.__toasts = [];
  const seen = new Map();
  const scan = () => {
    document.querySelectorAll('[data-scope="toast"][data-part="root"]').forEach((el) => {
      const text = (el.innerText || "").trim();
      if (!text) return;
      if (!seen.has(el)) { seen.set(el, window.__toasts.length); window.__toasts.push(text); }
      else if (text.length > window.__toasts[seen.get(el)].length) { window.__toasts[seen.get(el)] = text; }
    });
  };
  new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, characterData: true});
  scan();
}
"""


@dataclass
class Stack:
    cluster: AirflowCluster
    emulator: EmulatorProcess
    password: str
    output: Path
    exchanges: list[dict[str, Any]] = field(default_factory=list)  # what the Test button sent and got
    run_day: datetime | None = None  # the logical date the Trigger dialog was given

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.cluster.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, artifacts: Any) -> Iterator[Stack]:
    dags = tmp_path_factory.mktemp("dags")
    for name in ("happyhorse_daily_content.py", "happyhorse_publish.py", "happyhorse_example_settings.py"):
        shutil.copy(EXAMPLES / name, dags / name)
    output = tmp_path_factory.mktemp("clips")
    auth = tmp_path_factory.mktemp("auth")
    password = secrets.token_urlsafe(12)
    # SimpleAuthManager's passwords file: {"user": "password"}; users it lists keep their password.
    (auth / "passwords.json").write_text(json.dumps({ADMIN: password}))
    env = {
        # A login page instead of "everybody is admin"; the harness's REST client logs in as the same user.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(auth / "passwords.json"),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        # Nothing runs before the test has made the connection; the Trigger dialog unpauses the DAG.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # The UI refreshes a running task every second instead of three: a short deferral is not missed.
        "AIRFLOW__API__AUTO_REFRESH_INTERVAL": "1",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",  # see the harness docstring: short deferrals
        "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
        "HAPPYHORSE_FIRST_POLL_AFTER": "1.5",
        "HAPPYHORSE_POLL_INTERVAL": "0.5",
    }
    failed_before = request.session.testsfailed
    with EmulatorProcess(EmulatorConfig(speed=0.05, seed=7)) as emulator:
        home = tmp_path_factory.mktemp("airflow-home")
        with AirflowCluster(home, dags, env, parallelism=4, api_login=(ADMIN, password)) as cluster:
            cluster.wait_for_dag(DAG_ID)
            stack = Stack(cluster, emulator, password, output)
            try:
                yield stack
            finally:
                artifacts.write_json("test-button-exchanges.json", stack.exchanges)
                if request.session.testsfailed > failed_before:
                    cluster.copy_logs(artifacts.kept)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str, timeout: float = 30) -> T:
    try:
        return WebDriverWait(
            driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        ).until(condition, f"{what} (waited {timeout:g} s)")
    except TimeoutException as error:
        raise AssertionError(f"{what}: not within {timeout:g} s; now at {driver.current_url}") from error


def closed(element: WebElement) -> bool:
    """A dialog is closed once it is hidden or gone from the page."""
    try:
        return not element.is_displayed()
    except StaleElementReferenceException:
        return True


def unused_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def retype(element: WebElement, text: str) -> None:
    """Replace an input's value the way a user does (React sees every keystroke)."""
    element.click()
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def labels(dialog: WebElement) -> list[str]:
    return [label.text.replace("*", "").strip() for label in dialog.find_elements(By.TAG_NAME, "label")]


def button_names(dialog: WebElement) -> list[str]:
    return [
        (button.text or button.get_attribute("aria-label") or "").strip()
        for button in dialog.find_elements(By.TAG_NAME, "button")
    ]


class UI:
    """The pages and dialogs the tests use, plus what the browser sent and what it showed."""

    def __init__(self, driver: WebDriver, stack: Stack, shoot: Callable[[str], Path]) -> None:
        self.driver = driver
        self.stack = stack
        self.shoot = shoot

    # -- pages -------------------------------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.stack.base + path)
        self.driver.execute_script(_TOAST_RECORDER)

    def dialog(self, heading: str) -> WebElement:
        xpath = f"//*[@role='dialog'][.//h2[starts-with(normalize-space(), '{heading}')]]"
        return wait_for(
            self.driver,
            lambda d: next((e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()), None),
            f"the {heading!r} dialog",
        )

    def connection_row(self, host: str | None = None) -> WebElement:
        """The list's row of ``happyhorse_default`` (showing ``host``, when given)."""

        def row(driver: WebDriver) -> WebElement | None:
            for candidate in driver.find_elements(By.CSS_SELECTOR, "tbody tr"):
                text = candidate.text
                if text.startswith(CONN_ID) and (host is None or host in text.split()):
                    return candidate
            return None

        return wait_for(self.driver, row, f"the {CONN_ID} row" + (f" showing {host}" if host else ""))

    # -- what the browser sent and showed --------------------------------------------------------

    def forget_network(self) -> None:
        self.driver.get_log("performance")

    def network(self, url_part: str) -> list[dict[str, Any]]:
        """Requests to ``url_part`` since the last call (or :meth:`forget_network`), with their answers."""
        sent: dict[str, dict[str, Any]] = {}
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent" and url_part in params["request"]["url"]:
                request = params["request"]
                body = request.get("postData")
                sent[params["requestId"]] = {
                    "method": request["method"],
                    "url": request["url"].removeprefix(self.stack.base),
                    "request_body": json.loads(body) if body else None,
                }
            elif message.get("method") == "Network.responseReceived" and params.get("requestId") in sent:
                exchange = sent[params["requestId"]]
                exchange["status"] = params["response"]["status"]
                with contextlib.suppress(WebDriverException):
                    body = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": params["requestId"]})
                    exchange["response_body"] = json.loads(body["body"]) if body["body"] else None
        return list(sent.values())

    def toast_count(self) -> int:
        return int(self.driver.execute_script("return (window.__toasts || []).length"))

    def wait_toast(self, since: int, title: str, timeout: float = 30) -> str:
        """The first toast after the ``since``-th whose title starts with ``title``, with its description."""

        def toast(driver: WebDriver) -> str | None:
            for text in driver.execute_script("return window.__toasts || []")[since:]:
                if text.startswith(title) and "\n" in text:
                    return str(text)
            return None

        return wait_for(self.driver, toast, f"a toast {title!r}", timeout)

    def wait_toasts_gone(self) -> None:
        """Toasts have no close button here and sit over the bottom right corner until they time out."""
        wait_for(
            self.driver,
            lambda d: not any(t.is_displayed() for t in d.find_elements(By.CSS_SELECTOR, TOAST_ROOT)),
            "the toasts to time out",
        )

    # -- actions -----------------------------------------------------------------------------

    def press_test(self, case: str, host: str | None = None) -> tuple[str, dict[str, Any]]:
        """Press the row's Test button; the toast it brought and the one request it sent (with the answer)."""
        row = self.connection_row(host)
        button = row.find_element(By.CSS_SELECTOR, "button[aria-label='Test Connection']")
        self.forget_network()
        since = self.toast_count()
        button.click()
        toast = self.wait_toast(since, "Test Connection")
        time.sleep(0.3)  # let the toast finish sliding in before the screenshot
        self.shoot(f"test-button-{case}")
        exchanges = self.network(TEST_URL)
        assert len(exchanges) == 1, exchanges
        exchange = {"case": case, **exchanges[0], "toast": toast}
        self.stack.exchanges.append(exchange)
        return toast, exchange

    def edit_connection(self, *, host: str | None = None, api_key: str | None = None) -> dict[str, Any]:
        """Change fields in the Edit Connection dialog and save; returns the request the form sent."""
        row = self.connection_row()
        row.find_element(By.CSS_SELECTOR, "button[aria-label='Edit Connection']").click()
        dialog = self.dialog("Edit Connection")
        wait_for(self.driver, lambda d: dialog.find_element(By.NAME, "host").get_attribute("value"), "the stored host")
        assert "Test" not in " ".join(button_names(dialog)), button_names(dialog)
        if host is not None:
            retype(dialog.find_element(By.NAME, "host"), host)
        if api_key is not None:
            retype(dialog.find_element(By.NAME, "password"), api_key)
        self.forget_network()
        self.wait_toasts_gone()  # the last Test's toast covers the Save button for its 5 s
        dialog.find_element(By.XPATH, ".//button[normalize-space()='Save']").click()
        wait_for(self.driver, lambda d: closed(dialog), "the Edit dialog to close after Save")
        if host is not None:
            self.connection_row(host)  # the list has re-read the connection
        (saved,) = [e for e in self.network(f"/api/v2/connections/{CONN_ID}") if e["method"] == "PATCH"]
        assert saved["status"] == 200, saved
        return saved

    def task_state(self) -> str | None:
        badges = self.driver.find_elements(
            By.XPATH, f"//h2[normalize-space()='{TASK_ID}']/following-sibling::span[@data-testid='state-badge']"
        )
        with contextlib.suppress(StaleElementReferenceException):
            return badges[0].text.strip() if badges else None
        return None


@pytest.fixture(scope="module")
def ui(browser: WebDriver, stack: Stack, artifacts: Any) -> UI:
    return UI(browser, stack, lambda name: artifacts.shoot(browser, name))


# --------------------------------------------------------------------------------------------
# The tests, in order
# --------------------------------------------------------------------------------------------


def test_login_page_signs_the_admin_in(ui: UI) -> None:
    ui.open("/connections")
    wait_for(ui.driver, lambda d: "/auth/login" in d.current_url, "the redirect to the login page")
    username = wait_for(ui.driver, lambda d: d.find_element(By.NAME, "username"), "the username field")
    ui.shoot("01-login-page")
    assert "Sign into Airflow" in ui.driver.find_element(By.TAG_NAME, "body").text

    username.send_keys(ADMIN)
    ui.driver.find_element(By.NAME, "password").send_keys("not-" + ui.stack.password)
    ui.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    time.sleep(1)
    assert "/auth/login" in ui.driver.current_url  # a wrong password does not get in
    assert ui.driver.get_cookie("_token") is None

    ui.open("/connections")
    wait_for(ui.driver, lambda d: d.find_element(By.NAME, "username"), "the username field").send_keys(ADMIN)
    ui.driver.find_element(By.NAME, "password").send_keys(ui.stack.password)
    ui.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(ui.driver, lambda d: d.current_url == ui.stack.base + "/connections", "the connections page after login")
    assert ui.driver.get_cookie("_token") is not None
    wait_for(ui.driver, lambda d: "Add Connection" in d.find_element(By.TAG_NAME, "body").text, "the Connections list")
    ui.driver.execute_script(_TOAST_RECORDER)


def test_add_connection_form_shows_the_fields_the_provider_declares(ui: UI) -> None:
    ui.driver.find_element(By.XPATH, "//button[contains(., 'Add Connection')]").click()
    dialog = ui.dialog("Add Connection")
    dialog.find_element(By.NAME, "connection_id").send_keys(CONN_ID)
    kind = dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]")
    kind.send_keys("HappyHorse")
    wait_for(ui.driver, lambda d: "HappyHorse" in d.find_element(By.CSS_SELECTOR, "[role=listbox]").text, "the type")
    kind.send_keys(Keys.ENTER)
    host = wait_for(ui.driver, lambda d: dialog.find_element(By.NAME, "host"), "the connection type's fields")
    ui.shoot("02-add-connection-form")

    shown = labels(dialog)
    assert {"Base URL", "API key"} <= set(shown), shown
    for hidden in ("Login", "Port", "Schema", "Host", "Password"):
        assert hidden not in shown, shown
    assert not dialog.find_elements(By.CSS_SELECTOR, "input[name=login], input[name=port], input[name=schema]")
    # Airflow 3.3.2: no Test button on the form (only in the list's rows).
    assert "Test" not in " ".join(button_names(dialog)), button_names(dialog)

    host.send_keys(ui.stack.emulator.base_url)
    dialog.find_element(By.NAME, "password").send_keys(ui.stack.emulator.api_key)
    ui.forget_network()
    dialog.find_element(By.XPATH, ".//button[normalize-space()='Save']").click()
    wait_for(ui.driver, lambda d: closed(dialog), "the Add dialog to close after Save")
    row = ui.connection_row(ui.stack.emulator.base_url)
    assert row.text.split()[:3] == [CONN_ID, "happyhorse", ui.stack.emulator.base_url], row.text
    (created,) = [e for e in ui.network("/api/v2/connections") if e["method"] == "POST"]
    ui.stack.exchanges.append({"case": "add-form-save", **created})
    assert created["status"] == 201, created
    assert "port" not in created["request_body"], created  # an empty field is left out: the port stays NULL
    stored = ui.stack.cluster.api("GET", f"/connections/{CONN_ID}")
    assert (stored["conn_type"], stored["host"], stored["port"]) == ("happyhorse", ui.stack.emulator.base_url, None)


def test_test_button_of_a_stored_connection_is_refused_by_airflow_3_3_2(ui: UI) -> None:
    """The known problem: the row posts port 0 and the masked key; the API answers 400 before any hook runs."""
    refused = {
        "detail": "The host or port to test differs from the stored connection. "
        "Include the credentials to test in the request body."
    }
    toast, exchange = ui.press_test("stored-unchanged")
    assert toast == "Test Connection Failed\nBad Request"
    assert exchange["request_body"] == {
        "conn_type": "happyhorse",
        "connection_id": CONN_ID,
        "description": "",
        "extra": '{"dialect": null}',  # the form's Dialect field, left empty: the Base URL's host decides
        "host": ui.stack.emulator.base_url,
        "login": "",
        "password": "***",
        "port": 0,
        "schema": "",
    }
    assert (exchange["status"], exchange["response_body"]) == (400, refused)

    # Re-typing the key in the Edit form saves it, but the form has no Test button and the row still posts "***".
    saved = ui.edit_connection(api_key=ui.stack.emulator.api_key)
    ui.stack.exchanges.append({"case": "edit-form-save-retyped-key", **saved})
    assert saved["url"].endswith("update_mask=password"), saved
    assert saved["request_body"]["password"] == ui.stack.emulator.api_key
    assert saved["request_body"]["port"] is None
    toast, exchange = ui.press_test("stored-after-key-retyped")
    assert toast == "Test Connection Failed\nBad Request"
    assert exchange["request_body"]["password"] == "***"
    assert exchange["request_body"]["port"] == 0
    assert (exchange["status"], exchange["response_body"]) == (400, refused)

    # What the API would accept: the same body with the real key (no UI path sends this).
    body = {**exchange["request_body"], "password": ui.stack.emulator.api_key}
    answer = ui.stack.cluster.api("POST", "/connections/test", json=body)
    ui.stack.exchanges.append(
        {"case": "rest-api-same-body-real-key", "request_body": body, "status": 200, "response_body": answer}
    )
    assert answer["status"] is True, answer
    assert "Connected to" in answer["message"], answer


def test_test_button_shows_the_hooks_messages_once_the_stored_port_matches(ui: UI) -> None:
    """The way that works in 3.3.2: a stored port equal to what the row posts (0), then Test from the list."""
    ui.stack.cluster.api(
        "PATCH",
        f"/connections/{CONN_ID}",
        params={"update_mask": "port"},
        json={"connection_id": CONN_ID, "conn_type": "happyhorse", "port": 0},
    )
    ui.open("/connections")
    row = ui.connection_row(ui.stack.emulator.base_url)
    assert row.text.split()[:4] == [CONN_ID, "happyhorse", ui.stack.emulator.base_url, "0"], row.text

    toast, exchange = ui.press_test("working-key")
    assert toast.startswith("Test Connection Successful\n"), toast
    assert "Connected to" in toast, toast
    assert exchange["status"] == 200, exchange
    assert exchange["response_body"]["status"] is True, exchange
    assert exchange["request_body"]["password"] == "***"  # the stored key was used

    ui.edit_connection(api_key="not-a-happyhorse-key")
    toast, exchange = ui.press_test("wrong-key")
    assert toast.startswith("Test Connection Failed\n"), toast
    assert "refused" in toast, toast
    assert "Could not reach" not in toast, toast  # "refused" alone would also match "Connection refused"
    assert exchange["status"] == 200, exchange
    assert exchange["response_body"]["status"] is False, exchange

    nowhere = f"http://127.0.0.1:{unused_loopback_port()}"
    saved = ui.edit_connection(host=nowhere, api_key=ui.stack.emulator.api_key)
    assert saved["request_body"]["port"] == 0, saved  # the hidden field keeps the stored 0
    toast, exchange = ui.press_test("unreachable-host", nowhere)
    assert toast.startswith("Test Connection Failed\n"), toast
    assert "Could not reach" in toast, toast
    assert exchange["status"] == 200, exchange
    assert exchange["response_body"]["status"] is False, exchange

    ui.edit_connection(host=ui.stack.emulator.base_url)
    toast, exchange = ui.press_test("working-key-again", ui.stack.emulator.base_url)
    assert "Connected to" in toast, toast
    stored = ui.stack.cluster.api("GET", f"/connections/{CONN_ID}")
    assert (stored["host"], stored["port"], stored["password"]) == (ui.stack.emulator.base_url, 0, "***")


def test_trigger_from_the_ui_and_watch_the_task_defer_then_succeed(ui: UI) -> None:
    ui.open(f"/dags/{DAG_ID}")
    wait_for(
        ui.driver, lambda d: d.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']"), "Trigger"
    ).click()
    dialog = ui.dialog("Trigger Dag")
    # A logical date a month back keeps this run apart from the one the scheduler starts when the dialog
    # unpauses the DAG (today's): a different ds, so a different clip path even where the path is by ds only.
    day = (datetime.now(UTC) - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    dialog.find_element(By.CSS_SELECTOR, "[data-testid=datetime-input]").click()
    popover = "[data-scope=popover][data-part=content]"
    picker = wait_for(
        ui.driver,
        # None (not StopIteration, which WebDriverWait does not ignore) until the popover shows: a slow machine
        # opens it a moment after the click.
        lambda d: next((p for p in d.find_elements(By.CSS_SELECTOR, popover) if p.is_displayed()), None),
        "the date picker",
    )
    retype(picker.find_element(By.CSS_SELECTOR, "input[placeholder='YYYY/MM/DD']"), day.strftime("%Y/%m/%d"))
    retype(picker.find_element(By.CSS_SELECTOR, "input[placeholder='HH:mm']"), "00:00")
    dialog.find_element(By.TAG_NAME, "h2").click()  # closes the picker
    shown_date = dialog.find_element(By.CSS_SELECTOR, "[data-testid=datetime-input]").text
    assert shown_date == day.strftime("%b %d, %Y 00:00"), shown_date
    unpause = dialog.find_element(By.CSS_SELECTOR, "input[type=checkbox]")
    assert unpause.is_selected()
    assert f"Unpause {DAG_ID} on trigger" in dialog.text
    dialog.find_element(By.XPATH, ".//button[contains(., 'Advanced Options')]").click()
    wait_for(ui.driver, lambda d: dialog.find_element(By.NAME, "dagRunId"), "the run id field").send_keys(RUN_ID)
    ui.shoot("03-trigger-dialog")

    ui.forget_network()
    since = ui.toast_count()
    dialog.find_element(By.XPATH, ".//button[normalize-space()='Trigger']").click()
    assert ui.wait_toast(since, "Dag Run Triggered") == "Dag Run Triggered\nDag run has been successfully triggered."
    wait_for(ui.driver, lambda d: d.current_url.endswith(f"/dags/{DAG_ID}/runs/{RUN_ID}"), "the new run's page")
    sent = {e["method"]: e for e in ui.network(f"/api/v2/dags/{DAG_ID}") if e["method"] in ("POST", "PATCH")}
    assert sent["POST"]["request_body"]["dag_run_id"] == RUN_ID
    assert sent["POST"]["request_body"]["logical_date"] == day.strftime("%Y-%m-%dT00:00:00.000Z")
    assert sent["PATCH"]["request_body"] == {"is_paused": False}
    ui.stack.run_day = day

    ui.open(f"/dags/{DAG_ID}/runs/{RUN_ID}/tasks/{TASK_ID}")
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    last_change = started
    while time.monotonic() - started < 240:
        state = ui.task_state()
        if state and (not seen or seen[-1][1] != state):
            seen.append((round(time.monotonic() - started, 1), state))
            last_change = time.monotonic()
            if state in ("Deferred", "Success"):
                ui.shoot(f"04-task-{state.lower()}")
        if state == "Success" or state in ("Failed", "Upstream Failed", "Up For Retry"):
            break
        if time.monotonic() - last_change > 15:  # the page stopped refreshing by itself: reload it
            ui.open(f"/dags/{DAG_ID}/runs/{RUN_ID}/tasks/{TASK_ID}")
            last_change = time.monotonic()
        time.sleep(0.2)
    states = [state for _, state in seen]
    log = "\n".join(p.read_text()[-3000:] for p in ui.stack.cluster.task_log_files(DAG_ID, RUN_ID))
    assert states, log
    assert states[-1] == "Success", (seen, log)
    assert "Deferred" in states, seen
    assert states.index("Deferred") < len(states) - 1, seen
    (ti,) = [t for t in ui.stack.cluster.task_instances(DAG_ID, RUN_ID) if t.task_id == TASK_ID]
    assert ti.state == "success"


def token(ui: UI) -> str:
    answer = httpx.post(
        f"{ui.stack.base}/auth/token", json={"username": ADMIN, "password": ui.stack.password}, timeout=30
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


_PLAYS = """
const video = document.querySelector("video");
if (!video) return null;
video.muted = true;
if (video.paused) video.play().catch(() => {});
return {ready: video.readyState, time: video.currentTime, error: video.error && video.error.code,
        width: video.videoWidth, src: video.currentSrc};
"""


def plays(ui: UI, what: str) -> dict[str, Any]:
    """The page's first video element reached a ready state and its time advanced."""
    first = wait_for(ui.driver, lambda d: (state := d.execute_script(_PLAYS)) and state["ready"] >= 2 and state, what)
    assert first["error"] is None, first
    later = wait_for(
        ui.driver,
        lambda d: (state := d.execute_script(_PLAYS)) and state["time"] > first["time"] + 0.3 and state,
        f"{what}: its time to advance",
    )
    return dict(later)


def test_extra_link_opens_the_stored_clip_in_the_happyhorse_view(ui: UI) -> None:
    ui.open(f"/dags/{DAG_ID}/runs/{RUN_ID}/tasks/{TASK_ID}/details")
    link = wait_for(
        ui.driver, lambda d: d.find_element(By.XPATH, "//a[normalize-space()='HappyHorse video']"), "the extra link"
    )
    ui.shoot("05-task-details-extra-link")
    href = link.get_attribute("href")
    result = ui.stack.cluster.xcom(DAG_ID, RUN_ID, TASK_ID)
    # The clip is stored, so the link is its page in the view, which never expires (not the temporary URL).
    query = f"dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index=-1"
    assert href == f"{ui.stack.base}/happyhorse/clip?{query}", (href, result)
    assert httpx.get(href, timeout=30).status_code == 401  # nobody without a login sees it

    assert link.get_attribute("target") != "_blank"  # the same origin: Airflow opens it in the same tab
    link.click()
    wait_for(ui.driver, lambda d: d.current_url == href, f"the clip's page at {href}")
    state = plays(ui, "the clip page's video")
    assert state["src"] == f"{ui.stack.base}/happyhorse/files/video?{query}", state
    assert state["width"] == 160, state
    ui.shoot("06-clip-page")

    assert ui.stack.run_day is not None
    stored_path = result["stored_path"]
    assert stored_path.startswith(f"file://{ui.stack.output}/daily/{ui.stack.run_day:%Y-%m-%d}"), result
    stored = Path(stored_path.removeprefix("file://"))
    response = httpx.get(
        f"{ui.stack.base}/happyhorse/files/video?{query}", headers={"Authorization": f"Bearer {token(ui)}"}, timeout=30
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert stored.read_bytes() == response.content  # the clip the task stored is the one the view serves
    with av.open(BytesIO(response.content)) as container:
        assert abs(float(container.duration or 0) / av.time_base - 5) < 0.15
        assert container.streams.video
        assert container.streams.audio


def test_the_happyhorse_view_in_airflows_navigation_plays_and_filters(ui: UI) -> None:
    ui.open("/")
    entry = wait_for(
        ui.driver, lambda d: d.find_element(By.XPATH, "//a[contains(@href, 'plugin/happyhorse')]"), "the nav entry"
    )
    entry.click()
    frame = wait_for(
        ui.driver, lambda d: d.find_element(By.CSS_SELECTOR, "iframe[src*='/happyhorse/']"), "the view's frame"
    )
    ui.driver.switch_to.frame(frame)
    try:
        cards = wait_for(ui.driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".card"), "a clip card")
        # The run this test triggered, and any the scheduler made since the DAG was unpaused (today's).
        assert ui.stack.run_day is not None
        day = f"{ui.stack.run_day:%A} {ui.stack.run_day:%d %B %Y}"
        (ours,) = [card for card in cards if f"A calm morning news intro for {day}" in card.text]
        assert "stored" in ours.text
        assert "verified" in ours.text
        state = plays(ui, "the gallery's video")
        assert "/happyhorse/files/video?" in state["src"], state
        total = wait_for(ui.driver, lambda d: d.find_element(By.ID, "spend-total").text, "the spend")
        assert total == f"{300 * len(cards)} credits estimated for {len(cards)} clips in this filter", total
        ui.driver.switch_to.default_content()
        ui.shoot("07-happyhorse-view")
        ui.driver.switch_to.frame(frame)
        # Filter: nothing has expired, so the gallery says so; then back to every clip.
        ui.driver.execute_script("document.getElementById('availability').value = 'expired'")
        ui.driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait_for(ui.driver, lambda d: d.find_element(By.ID, "message").text == "No clips match.", "an empty filter")
        ui.driver.execute_script("document.getElementById('availability').value = 'stored'")
        ui.driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait_for(
            ui.driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == len(cards), "the stored clips again"
        )
    finally:
        ui.driver.switch_to.default_content()
