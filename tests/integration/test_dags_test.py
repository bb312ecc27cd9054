"""`airflow dags test` (real Airflow, triggers run inline) against the emulator: real MP4s at the result
URLs, a stored clip, and exactly one paid submission per video."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
from collections import defaultdict
from pathlib import Path

import av
import httpx

from happyhorse_emulator import EmulatorServer
from support.airflow_cli import airflow, airflow_env, key_leaks

DAGS = Path(__file__).parent / "dags"


def video_facts(url: str) -> tuple[float, int, int]:
    data = httpx.get(url).raise_for_status().content
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0].codec_context
        return float(container.duration or 0) / av.time_base, video.width, video.height


def test_dags_test_renders_every_video_once(airflow_home: Path, emulator: EmulatorServer, tmp_path: Path) -> None:
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    env = airflow_env(
        airflow_home,
        DAGS,
        AIRFLOW_CONN_HAPPYHORSE_DEFAULT=json.dumps(connection),
        HAPPYHORSE_IT_OUTPUT=f"file://{tmp_path}",
    )
    run = airflow("dags", "test", "happyhorse_it_videos", "2026-03-01", env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log
    assert key_leaks(log, emulator.api_key) == []

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


class StatsdListener:
    """A StatsD server on a free 127.0.0.1 UDP port that keeps every line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.lines


def happyhorse_metrics(lines: list[str]) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, str]]]:
    """The provider's metrics by (name, tags): each value with its StatsD type (c, ms, g)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, str]]] = defaultdict(list)
    for line in lines:
        if not line.startswith("airflow.happyhorse."):
            continue
        # InfluxDB-style tags (statsd_influxdb_enabled): name,tag=value,...:value|type
        key, _, rest = line.partition(":")
        name, *tags = key.split(",")
        value, kind = rest.split("|")[:2]
        found[(name.removeprefix("airflow."), frozenset(tuple(tag.split("=", 1)) for tag in tags))].append(
            (float(value), kind)
        )
    return found


def test_a_render_with_statsd_on_sends_the_providers_metrics(
    airflow_home: Path, emulator: EmulatorServer, tmp_path: Path
) -> None:
    listener = StatsdListener()
    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    env = airflow_env(
        airflow_home,
        DAGS,
        AIRFLOW_CONN_HAPPYHORSE_DEFAULT=json.dumps(connection),
        HAPPYHORSE_IT_OUTPUT=f"file://{tmp_path}",
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(listener.port),
        AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED="True",  # tags in the line, so the test can read them
    )
    try:
        run = airflow("dags", "test", "happyhorse_it_videos", "2026-03-02", env=env)
    finally:
        lines = listener.close()
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    got = happyhorse_metrics(lines)
    assert got, f"no happyhorse metric among {len(lines)} StatsD lines: {lines[:20]}"

    def total(name: str, **tags: str) -> float:
        return sum(
            value
            for (called, given), values in got.items()
            if called == name and set(tags.items()) <= given
            for value, _ in values
        )

    conn = {"conn_id": "happyhorse_default"}
    # Three mapped videos without sound (3 + 4 + 5 s at 40 credits/s) and one stored, with sound (3 s at 60).
    assert total("happyhorse.submissions", outcome="accepted", mode="std", **conn) == 4
    assert total("happyhorse.submissions") == 4
    assert total("happyhorse.credits_estimated", mode="std", **conn) == 40 * (3 + 4 + 5) + 60 * 3
    assert total("happyhorse.waits_started", where="triggerer", **conn) == 4
    assert total("happyhorse.polls", outcome="final", **conn) == 4
    # Every poll is a status request (`dags test` also reads each job once more after its trigger ended it).
    assert 4 <= total("happyhorse.polls", **conn) <= emulator.stats()["status_calls"]["total"]
    assert total("happyhorse.clips.verified", outcome="match") == 1
    assert total("happyhorse.clips.stored", verify_clip="strict") == 1
    assert total("happyhorse.download.bytes") == (tmp_path / "2026-03-02.mp4").stat().st_size > 0
    [(duration, kind)] = got[("happyhorse.download.duration", frozenset())]
    assert kind == "ms"
    assert duration > 0
    assert total("happyhorse.refusals") == total("happyhorse.rate_limited") == total("happyhorse.reattaches") == 0
    # Every metric of ours came with the type its table gives, and no tag carries the key or a prompt.
    assert {kind for values in got.values() for _, kind in values} == {"c", "ms"}
    assert not [line for line in lines if emulator.api_key in line or "a horse" in line]
