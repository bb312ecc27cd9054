"""
The clip checks against the emulator's result faults, through the real operator in blocking mode (real
HTTP, real MP4s, real files): a redirect to a signed URL is followed, an HTML page or a cut body is never
stored and a retry downloads again without paying, a clip that does not match its request is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from happyhorse_emulator import EmulatorServer
from support.context import DictStore, make_context


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    connection = {
        "conn_type": "happyhorse",
        "host": emulator.base_url,
        "password": emulator.api_key,
        "extra": {"retry_initial_delay": 0.05, "retry_max_delay": 0.1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))


def render(destination: Path, store: DictStore, **kwargs: Any) -> dict[str, Any]:
    operator = GenerateVideoOperator(
        task_id="clip",
        prompt="a horse on a beach",
        duration=4,
        deferrable=False,
        first_poll_after=0.3,
        poll_interval=0.2,
        output_path=str(destination),
        **kwargs,
    )
    result: dict[str, Any] = operator.execute(make_context(store))
    return result


def test_a_redirect_to_a_signed_url_is_followed(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.configure(redirect_results=True)
    result = render(tmp_path / "a.mp4", DictStore())
    assert result["verified"] is True
    assert (tmp_path / "a.mp4").read_bytes()[4:8] == b"ftyp"
    stats = emulator.stats()
    assert stats["faults"]["by_kind"]["result_redirect"] == 1
    assert stats["file_downloads"] == 1


@pytest.mark.parametrize(
    ("fault", "said"),
    [("signed_url_refused_rate", "is not a video: text/html"), ("cut_body_rate", "is not a video: video/mp4")],
)
def test_a_body_that_is_not_a_video_is_not_kept_and_a_retry_pays_nothing(
    emulator: EmulatorServer, tmp_path: Path, fault: str, said: str
) -> None:
    emulator.configure(faults={fault: 1.0})
    store = DictStore()  # one task instance: its retry re-attaches to the job
    with pytest.raises(AirflowException, match=said):
        render(tmp_path / "a.mp4", store)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing at the final path or beside it
    assert emulator.stats()["faults"]["by_kind"][fault.removesuffix("_rate")] == 5  # 1 + max_retries downloads
    emulator.configure(faults={fault: 0.0})
    result = render(tmp_path / "a.mp4", store)
    assert result["verified"] is True
    assert emulator.stats()["submissions"]["accepted"] == 1  # the task's retry downloaded again, and paid nothing


def test_a_clip_that_does_not_match_its_request_is_refused(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.configure(faults={"clip_mismatch_rate": 1.0})
    with pytest.raises(AirflowFailException) as raised:
        render(tmp_path / "a.mp4", DictStore())
    assert "does not match its request: " in str(raised.value)
    assert any(kind in str(raised.value) for kind in ("duration: wanted 4 s", "sound: wanted an audio track"))
    assert list(tmp_path.iterdir()) == []
    kept = render(tmp_path / "b.mp4", DictStore(), verify_clip="warn")
    assert kept["verified"] is False
