"""
The TaskFlow and budget examples on real Airflow (one home, SQLite) against the emulator:
``airflow dags test happyhorse_taskflow`` renders the three mapped prompts once each and stores their
clips, and ``airflow dags trigger`` refuses a conf that raises the batch example's budget past its maximum.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from airflow_provider_happyhorse.models import VideoRequest
from happyhorse_emulator import EmulatorServer
from support.airflow_cli import airflow, airflow_env, key_leaks

EXAMPLES = Path(__file__).parents[2] / "dags" / "examples"
DAY = "2026-11-24"


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dags")
    for name in ("happyhorse_taskflow.py", "happyhorse_batch_backfill.py", "happyhorse_example_settings.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    shutil.copy(EXAMPLES / "prompts.csv", folder / "prompts.csv")
    return folder


def test_dags_test_renders_each_mapped_prompt_once(
    airflow_home: Path, dags: Path, emulator: EmulatorServer, tmp_path: Path
) -> None:
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    env = airflow_env(
        airflow_home,
        dags,
        AIRFLOW_CONN_HAPPYHORSE_DEFAULT=json.dumps(connection),
        HAPPYHORSE_OUTPUT_ROOT=f"file://{tmp_path}",
        HAPPYHORSE_FIRST_POLL_AFTER="0.5",
        HAPPYHORSE_POLL_INTERVAL="0.3",
    )
    run = airflow("dags", "test", "happyhorse_taskflow", DAY, env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log
    assert key_leaks(log, emulator.api_key) == []

    stats = emulator.stats()
    assert stats["submissions"]["accepted"] == 3
    assert stats["duplicate_submissions"] == 0
    assert stats["jobs"]["by_state"]["SUCCESS"] == 3

    # One clip per mapped task, each with its poster and its record, made for the function's request.
    folder = tmp_path / "taskflow" / DAY
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted(
        f"clip-{index}{suffix}" for index in range(3) for suffix in (".mp4", ".mp4.happyhorse.json", ".poster.jpg")
    )
    sys.path.insert(0, str(dags))
    try:
        from happyhorse_taskflow import PROMPTS
    finally:
        sys.path.remove(str(dags))
    for index, prompt in enumerate(PROMPTS):
        record = json.loads((folder / f"clip-{index}.mp4.happyhorse.json").read_text())
        asked = VideoRequest(prompt=f"{prompt}; title card: {DAY}", duration=4, sound=False, aspect_ratio="16:9")
        assert record["fingerprint"] == asked.fingerprint()


def test_a_trigger_conf_above_the_budget_maximum_is_refused(airflow_home: Path, dags: Path) -> None:
    env = airflow_env(airflow_home, dags)
    reserialized = airflow("dags", "reserialize", env=env)
    assert reserialized.returncode == 0, reserialized.stderr[-3000:]

    lowered = airflow("dags", "trigger", "happyhorse_batch_backfill", "--conf", '{"max_run_credits": 100}', env=env)
    assert lowered.returncode == 0, (lowered.stdout + lowered.stderr)[-3000:]

    raised = airflow("dags", "trigger", "happyhorse_batch_backfill", "--conf", '{"max_run_credits": 5000}', env=env)
    output = raised.stdout + raised.stderr
    assert raised.returncode != 0, output[-3000:]
    assert "max_run_credits" in output
    assert "5000 is greater than the maximum of 3000" in output

    listed = airflow("dags", "list-runs", "happyhorse_batch_backfill", "--output", "json", env=env)
    runs = json.loads(listed.stdout.splitlines()[-1])  # (a warning line may come first)
    assert len(runs) == 1  # the lowered run only: nothing was created for the raised one
