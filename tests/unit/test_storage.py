"""Keeping the clip: streamed, verified, atomic storage into real files (file://), and the asset event."""

from __future__ import annotations

import hashlib
import posixpath
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, Asset, AssetAlias, TaskDeferred

from airflow_provider_happyhorse import storage
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.exceptions import ResultUnavailableError, TransportError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.storage import as_storage_path, local_path, poster_path_for, store_clip
from support.clock import FakeClock
from support.context import DictStore, make_context
from support.service import API_KEY, CLIP, CONN_JSON, FakeService, reply, resolve, serve_clip

URL = "http://cdn.test/files/n92abc123hh10.mp4"


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def file_hook(service: FakeService) -> HappyHorseHook:
    return HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=lambda s: None, rng=lambda: 0.5)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


def test_stores_streamed_clip_with_size_and_checksum(tmp_path: Path) -> None:
    server = FakeService()
    destination = tmp_path / "out" / "clip.mp4"
    clip, downloaded = store_clip(file_hook(server), job_id="j1", url=URL, destination=str(destination))
    assert downloaded
    assert destination.read_bytes() == CLIP
    assert (clip.path, clip.size, clip.sha256) == (f"file://{destination}", len(CLIP), hashlib.sha256(CLIP).hexdigest())
    assert clip.media is not None
    assert (clip.media.width, clip.media.height, clip.media.has_audio) == (160, 90, True)
    assert clip.verified is True  # nothing to compare without a request: a whole video is all it must be
    assert clip.poster_path == f"file://{destination.parent}/clip.poster.jpg"
    assert leftovers(destination.parent) == []
    # The result URL is not the API: the key is not sent there.
    assert "authorization" not in server.requests[0].headers


def test_a_local_clip_is_on_disk_before_its_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename persisted before the clip's data would leave a power loss an empty or partial final file."""
    destination = tmp_path / "out" / "clip.mp4"
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = storage.os.fsync, storage.os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", storage.os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        events.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    monkeypatch.setattr(storage.os, "replace", replace)
    store_clip(file_hook(FakeService()), job_id="j1", url=URL, destination=str(destination))
    into_place = events.index(("replace", str(destination)))
    synced_before = {path for kind, path in events[:into_place] if kind == "fsync"}
    assert any(Path(path).name.startswith(".clip.mp4.") for path in synced_before), events
    assert ("fsync", str(destination.parent)) in events[into_place:], events


def test_truncated_download_never_reaches_the_final_path(tmp_path: Path) -> None:
    server = FakeService()
    server.file_faults.extend([serve_clip(CLIP[:1000], length=len(CLIP))] * 5)
    destination = tmp_path / "clip.mp4"
    with pytest.raises(TransportError, match="stopped at 1000 of"):
        store_clip(file_hook(server), job_id="j1", url=URL, destination=destination)
    assert not destination.exists()
    assert leftovers(tmp_path) == []
    assert server.downloads == 5  # the connection's retry limit


def test_connection_drop_mid_stream_is_retried(tmp_path: Path) -> None:
    server = FakeService()
    server.file_faults.append(serve_clip(fail_after=3))
    destination = tmp_path / "clip.mp4"
    clip, _ = store_clip(file_hook(server), job_id="j1", url=URL, destination=destination)
    assert destination.read_bytes() == CLIP
    assert clip.size == len(CLIP)
    assert server.downloads == 2


@pytest.mark.parametrize("status", [404, 410])
def test_expired_result_url_names_the_job(tmp_path: Path, status: int) -> None:
    server = FakeService()
    server.file_faults.append(reply(status, "gone"))
    destination = tmp_path / "clip.mp4"
    with pytest.raises(ResultUnavailableError, match=rf"job n92dead cannot be fetched .* HTTP {status}"):
        store_clip(file_hook(server), job_id="n92dead", url=URL, destination=destination)
    assert not destination.exists()
    assert server.downloads == 1


def test_same_complete_file_is_not_downloaded_again(tmp_path: Path) -> None:
    server = FakeService()
    destination = tmp_path / "clip.mp4"
    first, _ = store_clip(file_hook(server), job_id="j1", url=URL, destination=destination)
    again, downloaded = store_clip(file_hook(server), job_id="j1", url=URL, destination=destination, known=first)
    assert (again, downloaded) == (first, False)
    assert server.downloads == 1


def test_damaged_file_is_downloaded_again(tmp_path: Path) -> None:
    server = FakeService()
    destination = tmp_path / "clip.mp4"
    first, _ = store_clip(file_hook(server), job_id="j1", url=URL, destination=destination)
    destination.write_bytes(CLIP[:-1] + b"x")
    again, downloaded = store_clip(file_hook(server), job_id="j1", url=URL, destination=destination, known=first)
    assert downloaded
    assert again == first
    assert destination.read_bytes() == CLIP


def test_partial_left_by_a_killed_try_is_removed(tmp_path: Path) -> None:
    (tmp_path / ".clip.mp4.j1.deadbeef.partial").write_bytes(b"half a video")
    (tmp_path / ".clip.mp4.0badf00d.happyhorse-write-check").write_bytes(b"")  # a check killed midway
    (tmp_path / ".other.mp4.j2.cafe.partial").write_bytes(b"someone else's")
    store_clip(file_hook(FakeService()), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert leftovers(tmp_path) == [".other.mp4.j2.cafe.partial"]
    assert not (tmp_path / ".clip.mp4.0badf00d.happyhorse-write-check").exists()


# -- through the operator --------------------------------------------------------------------------------


def finished_event(service: FakeService) -> dict[str, Any]:
    return {
        "status": "success",
        "job_id": service.job_id,
        "job_status": "SUCCESS",
        "video_url": URL,
        "finished_at": service.clock.now.isoformat(),
    }


def operator_with_files(service: FakeService, **kwargs: Any) -> GenerateVideoOperator:
    """An operator whose hook talks to ``service``, which also serves the clip."""
    operator = GenerateVideoOperator(task_id="video", prompt="a horse", **kwargs)
    operator.hook = HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=service.clock.sleep)  # type: ignore[misc]
    return operator


def test_operator_stores_clip_emits_asset_event_and_skips_on_retry(tmp_path: Path) -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    service = FakeService(FakeClock())
    destination = tmp_path / "daily" / "2026-01-01.mp4"
    alias = AssetAlias("happyhorse_clips")
    named = Asset("happyhorse://daily")
    store = DictStore()
    results = []
    for _ in range(2):  # a first try, then a retry of the same task instance
        operator = operator_with_files(service, output_path=str(destination), outlets=[alias, named])
        context = make_context(store)
        context["outlet_events"] = OutletEventAccessors()
        results.append(operator.execute_complete(context, finished_event(service)))
    first, second = results
    digest = hashlib.sha256(CLIP).hexdigest()
    assert first["stored_path"] == f"file://{destination}"
    assert (first["stored_size"], first["stored_sha256"]) == (len(CLIP), digest)
    assert second["stored_sha256"] == digest
    assert service.downloads == 1  # the retry found the same complete file
    events = context["outlet_events"]
    [alias_event] = events[alias].asset_alias_events
    assert alias_event.dest_asset_key.uri == f"file://{destination}"
    assert alias_event.extra["job_id"] == service.job_id
    assert alias_event.extra["sha256"] == digest
    assert len(alias_event.extra["prompt_sha256"]) == 64
    assert events[named].extra["sha256"] == digest
    assert API_KEY not in repr(results)


def test_operator_fails_clearly_when_the_url_expired(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    service.file_faults.append(reply(410, b""))
    operator = operator_with_files(service, output_path=str(tmp_path / "x.mp4"))
    # No retry: a retry re-attaches to the same job and its same expired URL.
    with pytest.raises(AirflowFailException) as failed:
        operator.execute_complete(make_context(DictStore()), finished_event(service))
    message = str(failed.value)
    assert f"job {service.job_id} cannot be fetched from {URL}: HTTP 410" in message
    assert "clearing the task would only re-attach to this job" in message
    assert "set on_expired='regenerate' on the task, or delete the task state store key 'happyhorse_job'" in message
    assert list(tmp_path.iterdir()) == []
    assert service.posts == 0


def test_on_expired_regenerate_pays_once_more_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(FakeClock())
    service.file_faults.append(reply(410, b""))
    store = DictStore()
    operator = operator_with_files(service, output_path=str(tmp_path / "x.mp4"), on_expired="regenerate")
    with pytest.raises(TaskDeferred):
        operator.execute_complete(make_context(store), finished_event(service))
    assert service.posts == 1
    assert store.values["happyhorse_job"]["job_id"] == service.job_id
    assert "on_expired='regenerate': submitting the request again, which is paid anew (estimated 300" in (
        capsys.readouterr().out
    )
    assert list(tmp_path.iterdir()) == []


def test_openlineage_facets_name_the_stored_clip_and_job(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    operator = operator_with_files(service, output_path=f"s3://videos/daily/{service.job_id}.mp4")
    operator._result = None
    assert operator.get_openlineage_facets_on_complete(None) is None
    destination = tmp_path / "clip.mp4"
    operator = operator_with_files(service, output_path=str(destination))
    operator.execute_complete(make_context(DictStore()), finished_event(service))
    lineage = operator.get_openlineage_facets_on_complete(None)
    [output] = lineage.outputs
    assert (output.namespace, output.name) == ("file", str(destination))
    assert lineage.run_facets["externalQuery"].externalQueryId == service.job_id
    assert lineage.run_facets["happyhorse"].model == "happyhorse-1.0/video"
    assert lineage.run_facets["happyhorse"].credits_estimate == 300


def test_a_file_uri_naming_localhost_is_the_same_absolute_path() -> None:
    from airflow_provider_happyhorse.storage import as_storage_path

    assert str(as_storage_path("file://localhost/data/clips/a.mp4")) == "file:///data/clips/a.mp4"
    assert str(as_storage_path("/data/clips/a.mp4")) == "file:///data/clips/a.mp4"


def test_the_run_facet_is_one_class_with_its_schema_url() -> None:
    from openlineage.client.serde import Serde

    from airflow_provider_happyhorse.lineage import FACET_SCHEMA_URL, run_facet_class, run_facets

    assert run_facet_class() is run_facet_class()
    request = VideoRequest(prompt="a horse", mode="pro", duration=5)
    record = RenderRecord.submitting(request, datetime(2026, 1, 1, tzinfo=UTC)).model_copy(
        update={"job_id": "n92abc123hh10"}
    )
    facet = Serde.to_dict(run_facets(record)["happyhorse"])
    assert facet.pop("_producer").startswith("https://")
    assert facet == {
        "_schemaURL": FACET_SCHEMA_URL,
        "job_id": "n92abc123hh10",
        "model": "happyhorse-1.0/video",
        "mode": "pro",
        "duration": 5,
        "credits_estimate": 400,  # 5 s at 80 credits a second in pro, with sound (HAPPYHORSE_API.md)
    }


@pytest.mark.parametrize(
    "destination",
    [
        "/data/clips/a.mp4",
        "file:///data/clips/a.mp4",
        "file://localhost/data/clips/a.mp4",
        "/data//clips/./b/../a%20b.mp4",
        "local:///data/a.mp4",
        Path("/data/clips/a.mp4"),
    ],
)
def test_a_local_destination_is_the_path_object_storage_would_name(destination: Any) -> None:
    # The store writes local clips through os alone; its path and URI must be the ones ObjectStoragePath reads.
    final = as_storage_path(destination)
    # The same file: ObjectStoragePath collapses "//" and "/./" on Airflow 3.0 (universal-pathlib 0.2) and keeps
    # them on 3.3; neither resolves "..", so neither may the store.
    assert posixpath.normpath(local_path(destination) or "") == posixpath.normpath(final.path)
    assert local_path(final) == final.path


@pytest.mark.parametrize("destination", ["s3://aws_default@bucket/a.mp4", "gs://bucket/a.mp4", "file://host/a.mp4"])
def test_an_object_store_destination_has_no_local_path(destination: str) -> None:
    assert local_path(destination) is None


@pytest.mark.parametrize("prefix", ["file://localhost", "local://", ""])
def test_the_stored_local_clip_is_named_as_object_storage_names_it(tmp_path: Path, prefix: str) -> None:
    destination = tmp_path / "x" / "c.d.mp4"
    clip, _ = store_clip(file_hook(FakeService()), job_id="j1", url=URL, destination=f"{prefix}{destination}")
    final = as_storage_path(f"{prefix}{destination}")
    assert (clip.path, clip.poster_path) == (str(final), str(poster_path_for(final)))
    assert destination.read_bytes() == CLIP
    assert (tmp_path / "x" / "c.d.poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_download_files_of_dead_tries_are_removed_and_a_running_try_s_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / "happyhorse-download-abc.j0.deadbeef.partial"
    dead.write_bytes(b"half a video")  # no process holds its lock
    unrelated = tmp_path / "someone-else.partial"
    unrelated.write_bytes(b"not ours")
    running = storage._local_download_file("j1.cafe.partial")  # this process holds its lock
    try:
        storage._remove_stale_downloads()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(running).name, unrelated.name])
    finally:
        storage._remove_local(running)
    assert sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name]
