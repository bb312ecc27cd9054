"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver`` driven by selenium.

``scripts/install-test-deps.sh`` installs both (``make test`` runs it first). Screenshots and page sources go to
pytest's temporary directory and to ``test-artifacts/browser/`` in the repository (kept after the run, ignored
by git): one pair per failed test, named after it, and the ones a test takes on purpose with ``artifacts.shoot``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
KEPT_ARTIFACTS = REPO / "test-artifacts" / "browser"
# As root in a container: no sandbox, no GPU, no /dev/shm; and nothing that phones home, which this closed
# network refuses (Chromium then stalls on those connections).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


class Artifacts:
    """Where screenshots and page sources go: pytest's tmp dir, copied to ``test-artifacts/browser/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.kept = KEPT_ARTIFACTS

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        self.kept.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, self.kept / name)
        return path

    def shoot(self, driver: WebDriver, name: str) -> Path:
        """Save ``<name>.png`` and ``<name>.html`` (the DOM as it is now); returns the PNG's path."""
        png = self._write(f"{name}.png", driver.get_screenshot_as_png())
        self._write(f"{name}.html", driver.page_source.encode())
        return png

    def write_json(self, name: str, value: Any) -> Path:
        return self._write(name, json.dumps(value, indent=2).encode())


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    shutil.rmtree(KEPT_ARTIFACTS, ignore_errors=True)  # only this session's files, so none is mistaken for new
    return Artifacts(tmp_path_factory.mktemp("browser-artifacts"))


@pytest.fixture(scope="module")
def browser(artifacts: Artifacts) -> Iterator[WebDriver]:
    """One headless Chromium per module, with its own profile and Chrome's performance (network) log on."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/install-test-deps.sh (as root)", pytrace=False)
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # Network.* events of every request, read back with driver.get_log("performance").
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failed test that used the browser: a screenshot and the page source, named after the test."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    driver, store = funcargs.get("browser"), funcargs.get("artifacts")
    if driver is None or store is None:
        return
    try:
        png = store.shoot(driver, f"FAILED-{item.name}")
    except Exception as error:  # the browser itself may be what broke
        report.sections.append(("browser artifacts", f"could not save a screenshot: {error!r}"))
    else:
        report.sections.append(("browser artifacts", f"{png} (copy in {store.kept})"))
