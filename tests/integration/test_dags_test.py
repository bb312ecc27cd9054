"""`airflow dags test` (real Airflow, triggers run inline) against the emulator: real MP4s at the result
URLs, a stored clip, and exactly one paid submission per video."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import httpx
import pytest

from airflow_provider_happyhorse.emulator import EmulatorServer

DAGS = Path(__file__).parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow_home")
    subprocess.run([AIRFLOW, "db", "migrate"], env=base_env(home), check=True, capture_output=True, timeout=300)
    return home


def base_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def video_facts(url: str) -> tuple[float, int, int]:
    data = httpx.get(url).raise_for_status().content
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0].codec_context
        return float(container.duration or 0) / av.time_base, video.width, video.height


def test_dags_test_renders_every_video_once(airflow_home: Path, emulator: EmulatorServer, tmp_path: Path) -> None:
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    env = {
        **base_env(airflow_home),
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
        "HAPPYHORSE_IT_OUTPUT": f"file://{tmp_path}",
    }
    run = subprocess.run(
        [AIRFLOW, "dags", "test", "happyhorse_it_videos", "2026-03-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log
    # Airflow 3.0's `dags test` prints its own request to mask the key (`MaskSecret(value=...)`, at debug level)
    # before the masker knows the key; later Airflows mask first. Any other appearance is a leak.
    leaks = [line for line in log.splitlines() if emulator.api_key in line and "msg=MaskSecret(value=" not in line]
    assert leaks == []

    stats = emulator.stats()
    assert stats["submissions"]["accepted"] == 4
    assert stats["duplicate_submissions"] == 0
    assert stats["jobs"]["by_state"]["SUCCESS"] == 4

    stored = tmp_path / "2026-03-01.mp4"
    with av.open(str(stored)) as container:
        assert abs(float(container.duration or 0) / av.time_base - 3) < 0.15
    # The clip, its poster and its record; no partial files left.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-03-01.mp4",
        "2026-03-01.mp4.happyhorse.json",
        "2026-03-01.poster.jpg",
    ]

    urls = sorted(set(re.findall(r"Job \S+ is \S+, seen by poll [^\n]*?: (http\S+\.mp4)", log)))
    assert len(urls) == 4
    durations = sorted(round(video_facts(url)[0]) for url in urls)
    assert durations == [3, 3, 4, 5]
