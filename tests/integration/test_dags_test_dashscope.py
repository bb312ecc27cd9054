"""`airflow dags test` in the DashScope dialect (issue 23): a 720P draft stored and verified, then an edit of
that clip lasting as long as it, one paid submission each, against the emulator speaking DashScope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import av
import pytest

if TYPE_CHECKING:
    from happyhorse_emulator import EmulatorServer

DAGS = Path(__file__).parent / "dags_dashscope"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def dashscope_server() -> Iterator[EmulatorServer]:
    from happyhorse_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(speed=0.01, dialect="dashscope")) as server:
        yield server


def test_dags_test_in_the_dashscope_dialect(
    dashscope_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    connection = {
        "conn_type": "happyhorse",
        "host": dashscope_server.base_url,
        "password": dashscope_server.api_key,
        "extra": {"dialect": "dashscope"},
    }
    env["AIRFLOW_CONN_HAPPYHORSE_DEFAULT"] = json.dumps(connection)
    env["HAPPYHORSE_IT_OUTPUT"] = f"file://{tmp_path}"
    run = subprocess.run(
        [AIRFLOW, "dags", "test", "happyhorse_it_dashscope", "2026-03-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log
    leaks = [line for line in log.splitlines() if dashscope_server.api_key in line and "MaskSecret(value=" not in line]
    assert leaks == []

    stats = dashscope_server.stats()
    assert stats["submissions"]["accepted"] == 2
    assert stats["duplicate_submissions"] == 0
    with av.open(str(tmp_path / "2026-03-01.mp4")) as container:
        video = container.streams.video[0].codec_context
        assert abs(float(container.duration or 0) / av.time_base - 3) < 0.15
        assert (video.width, video.height) == (1280, 720)
    jobs = dashscope_server.jobs()
    assert len(jobs) == 2
    assert all(job["final_phase"] == "SUCCESS" for job in jobs.values()), jobs
