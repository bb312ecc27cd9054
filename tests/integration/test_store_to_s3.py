"""A clip rendered by the emulator and stored to s3:// on a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.storage import store_clip
from happyhorse_emulator import EmulatorServer
from support.context import DictStore, make_context
from support.s3 import moto_s3
from support.service import CLIP, CONN_JSON, FakeService, resolve

BUCKET = "happyhorse-clips"
URL = "http://cdn.test/files/n92abc123hh10.mp4"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    with moto_s3(monkeypatch, BUCKET) as client:
        yield client


def test_blocking_run_stores_the_clip_in_s3(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, s3: object
) -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))
    operator = GenerateVideoOperator(
        task_id="to_s3",
        prompt="a horse in the clouds",
        duration=4,
        deferrable=False,
        first_poll_after=0.3,
        poll_interval=0.2,
        output_path=f"s3://aws_moto@{BUCKET}/daily/clip.mp4",
    )
    context = make_context(DictStore())
    context["outlet_events"] = OutletEventAccessors()
    result = operator.execute(context)

    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]  # type: ignore[attr-defined]
    # The clip and its poster; the temporary objects are gone, and S3 keeps the record as metadata (no sidecar).
    assert [item["Key"] for item in listed] == ["daily/clip.mp4", "daily/clip.poster.jpg"]
    body = s3.get_object(Bucket=BUCKET, Key="daily/clip.mp4")["Body"].read()  # type: ignore[attr-defined]
    assert result["stored_path"].endswith(f"{BUCKET}/daily/clip.mp4")
    assert result["stored_size"] == len(body)
    assert result["stored_sha256"] == hashlib.sha256(body).hexdigest()
    assert body[4:8] == b"ftyp"  # an MP4
    assert result["verified"] is True
    assert (result["media"]["duration"], result["media"]["has_audio"]) == (4.0, True)
    poster = s3.get_object(Bucket=BUCKET, Key="daily/clip.poster.jpg")["Body"].read()  # type: ignore[attr-defined]
    assert poster[:3] == b"\xff\xd8\xff"
    metadata = s3.head_object(Bucket=BUCKET, Key="daily/clip.mp4")["Metadata"]  # type: ignore[attr-defined]
    record = json.loads(metadata["happyhorse"])
    assert record["job_id"] == result["job_id"]
    assert record["fingerprint"] == operator.video_request().fingerprint()
    assert record["stored"]["sha256"] == result["stored_sha256"]
    assert emulator.stats()["submissions"]["accepted"] == 1

    # Another run of the same request (a backfill, a clear): the recorded result, and nothing paid.
    again = GenerateVideoOperator(
        task_id="to_s3",
        prompt="a horse in the clouds",
        duration=4,
        deferrable=False,
        output_path=f"s3://aws_moto@{BUCKET}/daily/clip.mp4",
    ).execute(make_context(DictStore()))
    assert again == result
    assert emulator.stats()["submissions"]["total"] == 1


def test_a_missing_bucket_is_refused_before_paying(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, s3: object
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    connection = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", json.dumps(connection))
    before = emulator.stats()["submissions"]["total"]
    operator = GenerateVideoOperator(
        task_id="to_s3", prompt="a horse", deferrable=False, output_path="s3://aws_moto@no-such-bucket/clip.mp4"
    )
    with pytest.raises(AirflowFailException) as refused:
        operator.execute(make_context(DictStore()))
    assert "output_path 's3://aws_moto@no-such-bucket/clip.mp4' cannot be " in str(refused.value)
    assert str(refused.value).endswith("Nothing was submitted.")
    assert emulator.stats()["submissions"]["total"] == before


# -- the store itself, against a scripted result URL -------------------------------------------------------


def _recorded_s3_calls(
    monkeypatch: pytest.MonkeyPatch, fail_on: tuple[str, str] | None = None
) -> list[tuple[str, str]]:
    """Every S3 call s3fs makes, as (operation, key); ``fail_on`` (operation, key) raises instead of calling."""
    import s3fs

    calls: list[tuple[str, str]] = []
    original = s3fs.S3FileSystem._call_s3

    async def recording(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((method, str(kwargs.get("Key", ""))))
        if fail_on == (method, kwargs.get("Key")):
            raise ConnectionResetError(f"{method} {kwargs.get('Key')} cut off by the test")
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", recording)
    return calls


def _scripted_hook(monkeypatch: pytest.MonkeyPatch) -> HappyHorseHook:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    return HappyHorseHook(transport=FakeService().transport(), resolve=resolve, sleep=lambda s: None, rng=lambda: 0.5)


WRITES_AND_READS = {
    "put_object",
    "create_multipart_upload",
    "upload_part",
    "copy_object",
    "get_object",
    "delete_object",
}


def test_the_clip_goes_up_once_to_its_final_key_with_its_record_after_its_poster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3: Any
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the clip waits on the worker
    calls = _recorded_s3_calls(monkeypatch)
    clip, downloaded = store_clip(
        _scripted_hook(monkeypatch), job_id="n92once", url=URL, destination=f"s3://aws_moto@{BUCKET}/once/clip.mp4"
    )
    # One PUT each, the poster first; nothing copied, moved or read back.
    assert [call for call in calls if call[0] in WRITES_AND_READS] == [
        ("put_object", "once/clip.poster.jpg"),
        ("put_object", "once/clip.mp4"),
    ]
    assert downloaded
    body = s3.get_object(Bucket=BUCKET, Key="once/clip.mp4")["Body"].read()
    assert (body, clip.size, clip.sha256) == (CLIP, len(CLIP), hashlib.sha256(CLIP).hexdigest())
    record = json.loads(s3.head_object(Bucket=BUCKET, Key="once/clip.mp4")["Metadata"]["happyhorse"])
    assert (record["job_id"], record["stored"]["sha256"]) == ("n92once", hashlib.sha256(CLIP).hexdigest())
    assert list(tmp_path.iterdir()) == []  # the local copy is gone


def test_an_upload_cut_off_leaves_nothing_at_the_final_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3: Any
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _recorded_s3_calls(monkeypatch, fail_on=("put_object", "cut/clip.mp4"))
    with pytest.raises(Exception, match="cut off by the test"):
        store_clip(
            _scripted_hook(monkeypatch), job_id="n92cut", url=URL, destination=f"s3://aws_moto@{BUCKET}/cut/clip.mp4"
        )
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert "cut/clip.mp4" not in keys
    assert list(tmp_path.iterdir()) == []
