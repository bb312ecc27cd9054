"""
Human review in Airflow's own UI (Airflow 3.3's Required Actions), in headless Chromium, against a real
cluster and the emulator: a person approves the spend from its cost table, approves one clip and
regenerates the other with an edited prompt typed into the form, then approves the regenerated clip.
Afterwards: what was paid (the emulator's counters: three renders, none twice), what was published (asset
events through the REST API: the two approved clips), and the outcomes on the clips' rows in the
HappyHorse view. Screenshots of each page go to ``test-artifacts/browser/review-*.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from browser.test_ui import wait_for
from e2e.hitl import hitl_path, wait_for_question, wait_until_parked
from e2e.test_review_e2e import DAG_ID, asset_events, finish, start_review_cluster
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from airflow_provider_happyhorse.ui.plugin import view_available
from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness.airflow_cluster import AirflowCluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not view_available(), reason="the HITL operators need Airflow 3.1+"),
]

RUN_ID = "reviewed_in_the_ui"
NEW_PROMPT = "A paper boat sailing down a sunny canal, wide shot."


@dataclass(frozen=True)
class Stack:
    cluster: AirflowCluster
    emulator: EmulatorProcess

    @property
    def base(self) -> str:
        return self.cluster.rest.base_url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    output = tmp_path_factory.mktemp("clips")
    config = EmulatorConfig(speed=0.05, max_concurrent_per_key=None, seed=7)
    with EmulatorProcess(config) as emulator, start_review_cluster(tmp_path_factory, emulator, output) as cluster:
        cluster.trigger(DAG_ID, run_id=RUN_ID)
        yield Stack(cluster, emulator)


def choose(
    driver: WebDriver,
    stack: Stack,
    artifacts: Any,
    task_id: str,
    option: str,
    map_index: int = -1,
    prompt: str | None = None,
) -> dict[str, Any]:
    """Open the task's Required Action page, (type the prompt,) press the option; returns the question."""
    question = wait_for_question(stack.cluster, DAG_ID, RUN_ID, task_id, map_index)
    wait_until_parked(stack.cluster, DAG_ID, RUN_ID, task_id, map_index)
    mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
    driver.get(f"{stack.base}/dags/{DAG_ID}/runs/{RUN_ID}/tasks/{task_id}{mapped}/required_actions")
    button = wait_for(
        driver,
        lambda d: next(
            (b for b in d.find_elements(By.CSS_SELECTOR, f"[data-testid='hitl-option-{option}']") if b.is_enabled()),
            None,
        ),
        f"the enabled {option!r} button of {task_id}[{map_index}]",
    )
    if task_id == "review_clip":  # the clip's poster, served by the view, shown in the form and loaded
        wait_for(
            driver,
            lambda d: d.execute_script(
                "return [...document.images]"
                ".some(i => i.src.includes('/happyhorse/files/poster?') && i.naturalWidth > 0)"
            ),
            f"the poster of {task_id}[{map_index}] to load",
        )
    if prompt is not None:
        field = driver.find_element(By.NAME, "element_prompt")
        field.send_keys(prompt)
    time.sleep(0.5)  # images and fonts settle before the screenshot
    artifacts.shoot(driver, f"review-{task_id}-{max(map_index, 0)}")
    button.click()
    wait_for(
        driver,
        lambda d: stack.cluster.api("GET", hitl_path(DAG_ID, RUN_ID, task_id, map_index))["response_received"],
        f"the answer to {task_id}[{map_index}] to be recorded",
    )
    return question


def test_approve_one_clip_and_regenerate_another_in_the_ui(browser: WebDriver, stack: Stack, artifacts: Any) -> None:
    driver = browser
    spend = choose(driver, stack, artifacts, "approve_spend", "Approve")
    page = driver.find_element(By.TAG_NAME, "body").text
    assert "Pay for 2 HappyHorse renders?" in page
    assert "total: 2 renders" in page
    assert "600" in spend["body"]

    choose(driver, stack, artifacts, "review_clip", "approve", 0)
    choose(driver, stack, artifacts, "review_clip", "regenerate", 1, prompt=NEW_PROMPT)
    choose(driver, stack, artifacts, "review_again", "approve", 0)
    finish(stack.cluster, RUN_ID, timeout=240)

    # What was paid: two renders and one regeneration with the typed prompt, each submitted once.
    stats = stack.emulator.stats()
    assert stats["submissions"]["accepted"] == 3
    assert stats["duplicate_submissions"] == 0
    regenerated = stack.cluster.xcom(DAG_ID, RUN_ID, "regenerate", map_index=0)
    assert regenerated["request"]["prompt"] == NEW_PROMPT
    first = stack.cluster.xcom(DAG_ID, RUN_ID, "render", map_index=0)
    replaced = stack.cluster.xcom(DAG_ID, RUN_ID, "render", map_index=1)

    # What was published: the two approved clips, not the one that was regenerated.
    events = [event for event in asset_events(stack.cluster) if event["source_run_id"] == RUN_ID]
    assert sorted(event["uri"] for event in events) == sorted([first["stored_path"], regenerated["stored_path"]])
    assert replaced["stored_path"] not in {event["uri"] for event in events}

    # The view marks each clip's outcome on its row.
    driver.get(f"{stack.base}/happyhorse/?dag_id={DAG_ID}")
    badges = wait_for(
        driver,
        lambda d: (
            (found := [b.get_attribute("data-review") for b in d.find_elements(By.CSS_SELECTOR, ".badge.review")])
            and len(found) == 3
            and found
        ),
        "three review badges in the HappyHorse view",
    )
    assert sorted(badges) == ["approved", "approved", "regenerated"]
    artifacts.shoot(driver, "review-happyhorse-view")
