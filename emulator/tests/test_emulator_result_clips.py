"""``result_clips_dir``: a job whose duration and sound have a pre-made clip gets that file, byte for byte."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from happyhorse_emulator import EmulatorConfig, EmulatorServer
from happyhorse_emulator.video import render_mp4

BODY = {"model": "happyhorse-1.0/video", "prompt": "a horse galloping on a beach at dawn"}


def _result(http: httpx.Client, **fields: object) -> bytes:
    created = http.post("/api/generate", json={**BODY, **fields})
    assert created.status_code == 200, created.text
    task_id = created.json()["data"]["task_id"]
    for _ in range(500):
        data = http.get("/api/status", params={"task_id": task_id}).json()["data"]
        if data["status"] == "SUCCESS":
            answer = http.get(data["response"]["resultUrls"][0])
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "video/mp4"
            assert int(answer.headers["content-length"]) == len(answer.content)
            return answer.content
    raise AssertionError(f"{task_id} did not succeed")


def test_premade_clips_are_served_by_duration_and_sound(tmp_path: Path) -> None:
    # Any bytes will do for the emulator, which serves them as they are; a real MP4 of another frame size here.
    premade = render_mp4(4, 320, 180, True)
    (tmp_path / "4s-sound.mp4").write_bytes(premade)
    (tmp_path / "7.5s.mp4").write_bytes(b"seven and a half, silent")
    config = EmulatorConfig(speed=0.001, jitter=0.0, result_clips_dir=str(tmp_path))
    with (
        EmulatorServer(config) as server,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=5.0
        ) as http,
    ):
        assert _result(http, duration=4, sound=True) == premade
        assert _result(http, duration=7.5, sound=False) == b"seven and a half, silent"
        # No file for this duration and sound: the usual render.
        assert _result(http, duration=4, sound=False) == render_mp4(4, 160, 90, False)
        assert server.stats()["file_downloads"] == 3


def test_result_clips_dir_is_fixed_for_the_emulators_life(tmp_path: Path) -> None:
    with EmulatorServer(EmulatorConfig(speed=0.01, result_clips_dir=str(tmp_path))) as server:
        with pytest.raises(ValueError, match="result_clips_dir cannot be changed at runtime"):
            server.configure(result_clips_dir="/")
        assert server.configure(seed=3).result_clips_dir == str(tmp_path)
    with (
        EmulatorServer(EmulatorConfig(speed=0.01)) as server,
        pytest.raises(ValueError, match="result_clips_dir cannot be changed at runtime"),
    ):
        server.configure(result_clips_dir=str(tmp_path))
