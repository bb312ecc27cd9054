"""`airflow dags test` in the DashScope dialect (issue 23): a 720P draft stored and verified, then an edit of
that clip lasting as long as it, one paid submission each, against the emulator speaking DashScope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import av
import pytest

from support.airflow_cli import airflow, airflow_env, key_leaks

if TYPE_CHECKING:
    from happyhorse_emulator import EmulatorServer

DAGS = Path(__file__).parent / "dags_dashscope"


@pytest.fixture(scope="module")
def dashscope_server() -> Iterator[EmulatorServer]:
    from happyhorse_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(speed=0.01, dialect="dashscope")) as server:
        yield server


def test_dags_test_in_the_dashscope_dialect(
    airflow_home: Path, dashscope_server: EmulatorServer, tmp_path: Path
) -> None:
    connection = {
        "conn_type": "happyhorse",
        "host": dashscope_server.base_url,
        "password": dashscope_server.api_key,
        "extra": {"dialect": "dashscope"},
    }
    env = airflow_env(
        airflow_home,
        DAGS,
        AIRFLOW_CONN_HAPPYHORSE_DEFAULT=json.dumps(connection),
        HAPPYHORSE_IT_OUTPUT=f"file://{tmp_path}",
    )
    run = airflow("dags", "test", "happyhorse_it_dashscope", "2026-03-01", env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log
    assert key_leaks(log, dashscope_server.api_key) == []

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
