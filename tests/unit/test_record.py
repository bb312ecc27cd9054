"""
The render record: what the release before it (533297c) wrote still reads, as a task state record, as the
record kept beside a clip, and as the XCom result downstream tasks read (its keys and values unchanged).

The literal JSON below was written by 533297c's own code: ``GenerateVideoOperator`` deferring, then
finishing with ``output_path`` (its task state store's value, its sidecar and its result), against the fake
service of ``tests/support`` (job ``n92abc123hh10``, the clip ``support.service.CLIP``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_provider_happyhorse.core.record import RenderRecord, Since
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.job_store import JobRecordStore
from airflow_provider_happyhorse.models import JobEvent, MediaInfo, VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.storage import RECORD_SUFFIX
from support.clock import FakeClock
from support.context import DictStore, make_context
from support.service import CLIP, CONN_JSON, FakeService, resolve

EARLIER_PENDING_STATE = json.loads(
    """{"fingerprint": "a1d24b8510ea8fca21bcdbd274970f222991a8c03414ddc11535e1e6134aade0",
    "submitted_at": "2026-12-06T07:23:20.037194+00:00", "job_id": "n92abc123hh10"}"""
)
EARLIER_STORED_STATE = json.loads(
    """{"fingerprint": "a1d24b8510ea8fca21bcdbd274970f222991a8c03414ddc11535e1e6134aade0",
    "submitted_at": "2026-12-06T07:23:20.037194+00:00", "job_id": "n92abc123hh10", "stored": {"path":
    "file:///tmp/rec-old/out/daily/a.mp4", "size": 39648, "sha256":
    "021ca37c9583a856b84ffa1b728432537852db249cac7642daeb10bdd0a3320b", "media": {"duration": 5.0,
    "declared_duration": 5.0, "width": 160, "height": 90, "frame_rate": 8.0, "video_codec": "h264", "audio_codec":
    "aac", "has_audio": true}, "verified": true, "poster_path": "file:///tmp/rec-old/out/daily/a.poster.jpg"}}"""
)
EARLIER_SIDECAR = """{"fingerprint":"a1d24b8510ea8fca21bcdbd274970f222991a8c03414ddc11535e1e6134aade0","job_id":\
"n92abc123hh10","size":39648,"sha256":"021ca37c9583a856b84ffa1b728432537852db249cac7642daeb10bdd0a3320b","result":\
{"job_id":"n92abc123hh10","status":"SUCCESS","video_url":"http://hh.test/files/n92abc123hh10.mp4",\
"credits_estimate":300.0,"submitted_at":"2026-12-06T07:23:20.037194+00:00","finished_at":"2026-12-06T07:24:03+00:00",\
"stored_path":"file:///tmp/rec-old/out/daily/a.mp4","stored_size":39648,"stored_sha256":\
"021ca37c9583a856b84ffa1b728432537852db249cac7642daeb10bdd0a3320b","media":{"duration":5.0,"declared_duration":5.0,\
"width":160,"height":90,"frame_rate":8.0,"video_codec":"h264","audio_codec":"aac","has_audio":true},"verified":true,\
"poster_path":"file:///tmp/rec-old/out/daily/a.poster.jpg"},"poster_size":1424,"poster_sha256":\
"6446ecdae9339bad8c1b12eb5c82587a11c27ef687b4ea2b05252c911199d27c"}"""
EARLIER_RESULT = json.loads(
    """{"job_id": "n92abc123hh10", "status": "SUCCESS", "video_url": "http://hh.test/files/n92abc123hh10.mp4",
    "request": {"model": "happyhorse-1.0/video", "prompt": "a horse", "mode": "std", "duration": 5,
    "aspect_ratio": "16:9", "sound": true, "cfg_scale": 0.5, "multi_shots": false}, "credits_estimate": 300.0,
    "submitted_at": "2026-12-06T07:23:20.037194+00:00", "finished_at": "2026-12-06T07:24:03+00:00",
    "stored_path": "file:///tmp/rec-old/out/daily/a.mp4", "stored_size": 39648, "stored_sha256":
    "021ca37c9583a856b84ffa1b728432537852db249cac7642daeb10bdd0a3320b", "media": {"duration": 5.0,
    "declared_duration": 5.0, "width": 160, "height": 90, "frame_rate": 8.0, "video_codec": "h264", "audio_codec":
    "aac", "has_audio": true}, "verified": true, "poster_path": "file:///tmp/rec-old/out/daily/a.poster.jpg"}"""
)
FINGERPRINT = "a1d24b8510ea8fca21bcdbd274970f222991a8c03414ddc11535e1e6134aade0"
# The clip the records above were captured with (Python 3.11, the lock's PyAV), and this interpreter's.
CAPTURED_SIZE, CAPTURED_SHA256 = 39648, "021ca37c9583a856b84ffa1b728432537852db249cac7642daeb10bdd0a3320b"
CLIP_SHA256 = hashlib.sha256(CLIP).hexdigest()
SUBMITTED = datetime(2026, 12, 6, 7, 23, 20, 37194, tzinfo=UTC)
MEDIA = MediaInfo(
    duration=5.0,
    declared_duration=5.0,
    width=160,
    height=90,
    frame_rate=8.0,
    video_codec="h264",
    audio_codec="aac",
    has_audio=True,
)


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def operator(service: FakeService, **kwargs: Any) -> GenerateVideoOperator:
    task = GenerateVideoOperator(task_id="video", prompt="a horse", deferrable=False, **kwargs)
    clock = service.clock
    task.hook = HappyHorseHook(  # type: ignore[misc]
        transport=service.transport(), resolve=resolve, sleep=clock.sleep, rng=lambda: 0.5, clock=clock
    )
    return task


def stored_in(store: DictStore, value: dict[str, Any]) -> DictStore:
    store.values[JobRecordStore.key] = value
    return store


def test_the_fingerprint_in_the_earlier_records_is_this_releases_for_the_same_request() -> None:
    # Else none of the checks below would mean anything: the request here is the one 533297c was given.
    assert VideoRequest(prompt="a horse").fingerprint() == FINGERPRINT


def test_an_earlier_task_state_record_reads() -> None:
    pending = JobRecordStore(stored_in(DictStore(), EARLIER_PENDING_STATE)).load()
    assert pending == RenderRecord(fingerprint=FINGERPRINT, job_id="n92abc123hh10", started_at=SUBMITTED)
    assert pending.submitted_at == SUBMITTED
    stored = JobRecordStore(stored_in(DictStore(), EARLIER_STORED_STATE)).load()
    assert stored is not None
    assert stored.stored is not None
    assert (stored.stored.path, stored.stored.size, stored.stored.sha256) == (
        "file:///tmp/rec-old/out/daily/a.mp4",
        39648,
        "021ca37c9583a856b84ffa1b728432537852db249cac7642daeb10bdd0a3320b",
    )
    assert (stored.stored.media, stored.stored.verified) == (MEDIA, True)
    assert stored.stored.poster_path == "file:///tmp/rec-old/out/daily/a.poster.jpg"


def test_a_retry_re_attaches_to_the_job_an_earlier_release_recorded() -> None:
    service = FakeService(FakeClock())
    service.submitted_at = service.clock.now  # the job exists on the service, submitted by the earlier try
    store = stored_in(DictStore(), EARLIER_PENDING_STATE)
    result = operator(service).execute(make_context(store))
    assert service.posts == 0  # not paid again
    assert (result["job_id"], result["status"]) == ("n92abc123hh10", "SUCCESS")
    assert result["submitted_at"] == "2026-12-06T07:23:20.037194+00:00"  # the earlier try's submission


def test_an_earlier_clip_record_reads_and_a_rerun_pays_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(CLIP)
    # The earlier record's shape as it was written; its clip digest is this interpreter's CLIP (PyAV's encoder
    # output differs by version, so the bytes captured with the record cannot be remade everywhere).
    sidecar = EARLIER_SIDECAR.replace(str(CAPTURED_SIZE), str(len(CLIP))).replace(CAPTURED_SHA256, CLIP_SHA256)
    (folder / f"a.mp4{RECORD_SUFFIX}").write_text(sidecar)
    record = RenderRecord.model_validate_json(sidecar)
    assert record.stored is not None
    assert (record.fingerprint, record.job_id, record.stored.size, record.stored.poster_size) == (
        FINGERPRINT,
        "n92abc123hh10",
        len(CLIP),
        1424,
    )
    assert (record.started_at, record.since, record.status) == (SUBMITTED, Since.SUBMISSION, "SUCCESS")
    service = FakeService(FakeClock())
    result = operator(service, output_path=str(folder / "a.mp4")).execute(make_context(DictStore()))
    assert service.requests == []  # if_exists='skip': the kept clip proved itself, nothing was paid
    assert result["stored_path"] == f"file://{folder}/a.mp4"  # the destination's, never the record's
    assert (result["stored_size"], result["credits_estimate"], result["finished_at"]) == (
        len(CLIP),
        300,
        "2026-12-06T07:24:03+00:00",
    )
    assert result["poster_path"] is None  # no poster beside it with the recorded bytes


def test_the_xcom_result_keeps_its_keys_and_values() -> None:
    record = RenderRecord.from_result(EARLIER_RESULT)
    assert record.result() == EARLIER_RESULT
    assert list(record.result()) == list(EARLIER_RESULT)
    assert record.request == VideoRequest(prompt="a horse")
    assert record.stored is not None
    assert record.stored.path == "file:///tmp/rec-old/out/daily/a.mp4"


def test_this_release_writes_the_same_result_as_the_earlier_one(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    result = operator(service, output_path=str(tmp_path / "a.mp4")).execute(make_context(DictStore()))
    assert list(result) == list(EARLIER_RESULT)
    assert result["request"] == EARLIER_RESULT["request"]
    assert (result["stored_size"], result["stored_sha256"], result["media"]) == (
        len(CLIP),
        CLIP_SHA256,
        EARLIER_RESULT["media"],
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"job_id": ""}, "job_id"),
        ({"stored_size": None}, "stored_size"),
        ({"stored_size": True}, "stored_size"),
        ({"stored_sha256": None}, "stored_sha256"),
        ({"finished_at": "2026-12-06T07:24:03"}, "finished_at"),  # a time without its zone
        ({"request": {"prompt": "a horse", "duration": 99}}, "request"),
    ],
)
def test_a_result_that_is_not_one_is_refused_naming_its_key(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RenderRecord.from_result({**EARLIER_RESULT, **change})
    assert refused.value.errors()[0]["loc"][0] == field


def test_a_success_completes_the_record_and_times_are_parsed_once() -> None:
    record = RenderRecord.submitting(VideoRequest(prompt="a horse"), SUBMITTED).model_copy(update={"job_id": "j1"})
    event = JobEvent(status="success", job_id="j1", finished_at="2026-12-06T07:24:03+00:00", job_status="SUCCESS")
    done = record.succeeded(event)
    assert done.finished_at == datetime(2026, 12, 6, 7, 24, 3, tzinfo=UTC)
    assert (done.finished_at - SUBMITTED).total_seconds() == pytest.approx(42.962806)
    assert RenderRecord.model_validate(done.model_dump(mode="json")) == done  # the kwargs round trip
