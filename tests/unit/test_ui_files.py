"""
The view serves only the provider's own files (``ui.files``): a clip stored the way the operator stores it
(the clip, its poster, its record beside it) is served; each rule failing alone gives 404 naming that rule,
a FIFO never blocks, a symlink cannot reach a secret, and ``[happyhorse] view_roots`` fences the files in.
Real files in a temporary folder; the route's response through a tiny FastAPI app around ``serve_stored``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.storage import (
    RECORD_SUFFIX,
    as_storage_path,
    poster_path_for,
    read_clip_record,
    store_clip,
)
from airflow_provider_happyhorse.ui import files
from airflow_provider_happyhorse.ui.clips import ClipKey
from airflow_provider_happyhorse.ui.files import POSTER, VIDEO, NotServed, open_stored_file, safe_filename
from support.service import CLIP, CONN_JSON, FakeService, resolve

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
SECRET = b"[api_auth]\njwt_secret = do-not-serve-me-4f1c\n[core]\nfernet_key = do-not-serve-me-9b2e\n"
KEY = ClipKey("happyhorse_daily", "manual__2026-03-01", "render", 2)
WHERE = "dag_id=happyhorse_daily run_id=manual__2026-03-01 task_id=render map_index=2"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", raising=False)
    files.SHA_CACHE.clear()
    yield
    files.SHA_CACHE.clear()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_record(clip: Path, job_id: str, body: bytes, poster: bytes | None, result: dict[str, Any]) -> None:
    """The record beside ``clip`` as ``storage.store_clip`` writes it on a filesystem without object metadata."""
    told = RenderRecord.from_result(result)
    assert told.stored is not None
    stored = told.stored.model_copy(
        update={
            "size": len(body),
            "sha256": sha(body),
            "poster_size": None if poster is None else len(poster),
            "poster_sha256": None if poster is None else sha(poster),
        }
    )
    record = told.model_copy(update={"job_id": job_id}).with_stored(stored)
    clip.with_name(clip.name + RECORD_SUFFIX).write_text(record.model_dump_json(exclude={"request"}))


def result_for(clip: Path, job_id: str, body: bytes, poster: bool = True) -> dict[str, Any]:
    final = as_storage_path(clip)
    return {
        "job_id": job_id,
        "status": "SUCCESS",
        "video_url": "http://cdn.test/files/clip.mp4",
        "stored_path": str(final),
        "stored_size": len(body),
        "stored_sha256": sha(body),
        "media": None,
        "verified": True,
        "poster_path": str(poster_path_for(final)) if poster else None,
    }


def stored(folder: Path, name: str = "2026-03-01.mp4", job_id: str = "n92stored01", body: bytes = CLIP) -> dict:
    """A clip, its poster and its record, as the operator leaves them; returns the task's result."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / name
    clip.write_bytes(body)
    Path(poster_path_for(as_storage_path(clip)).path).write_bytes(JPEG)
    result = result_for(clip, job_id, body)
    write_record(clip, job_id, body, JPEG, result)
    return result


def forged(path: Path, body: bytes | None = None, job_id: str = "n92forged01") -> dict[str, Any]:
    """A result and a record beside ``path`` that agree with each other (``body``: what they say it holds)."""
    body = path.read_bytes() if body is None else body
    result = result_for(path, job_id, body)
    write_record(path, job_id, body, None, result)
    return result


def read_all(servable: files.Servable) -> bytes:
    return b"".join(servable.chunks(0, servable.size - 1, 1000))


def refused(result: dict[str, Any], kind: str = VIDEO) -> str:
    with pytest.raises(NotServed) as refusal:
        open_stored_file(result, kind, WHERE)
    return refusal.value.rule


# -- what is served -----------------------------------------------------------------------------------------


def test_a_clip_the_provider_stored_and_its_poster_are_served(tmp_path: Path) -> None:
    result = stored(tmp_path / "daily")
    video = open_stored_file(result, VIDEO, WHERE)
    assert (video.size, video.media_type, video.filename) == (len(CLIP), "video/mp4", "2026-03-01.mp4")
    assert read_all(video) == CLIP
    poster = open_stored_file(result, POSTER, WHERE)
    assert (poster.size, poster.media_type, poster.filename) == (len(JPEG), "image/jpeg", "2026-03-01.poster.jpg")
    assert read_all(poster) == JPEG
    assert poster.headers == {
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": 'inline; filename="2026-03-01.poster.jpg"',
        "Content-Security-Policy": "sandbox",
    }


def test_a_bare_absolute_stored_path_is_served_too(tmp_path: Path) -> None:
    result = stored(tmp_path)
    result["stored_path"] = str(tmp_path / "2026-03-01.mp4")
    assert read_all(open_stored_file(result, VIDEO, WHERE)) == CLIP


def test_what_store_clip_stores_is_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    hook = HappyHorseHook(transport=FakeService().transport(), resolve=resolve, sleep=lambda s: None, rng=lambda: 0.5)
    clip, _ = store_clip(
        hook, job_id="n92real01", url="http://cdn.test/files/n92real01.mp4", destination=tmp_path / "a.mp4"
    )
    record = read_clip_record(tmp_path / "a.mp4")
    assert record is not None
    result = record.result()
    assert read_all(open_stored_file(result, VIDEO, WHERE)) == (tmp_path / "a.mp4").read_bytes()
    assert read_all(open_stored_file(result, POSTER, WHERE))[:3] == b"\xff\xd8\xff"
    assert clip.poster_path == result["poster_path"]


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("2026-03-01.mp4", "2026-03-01.mp4"),
        ('a "quoted"; name\r\n.mp4', "aquotedname.mp4"),
        ("clé vidéo.mp4", "clvido.mp4"),
        ("..", "clip.mp4"),
        ("ü.", "clip.mp4"),
        ("", "clip.mp4"),
    ],
)
def test_the_served_name_is_reduced_to_safe_characters(name: str, safe: str) -> None:
    assert safe_filename(f"file:///data/clips/{name}", VIDEO) == safe


def test_the_poster_name_falls_back_to_poster_jpg() -> None:
    assert safe_filename("s3://bucket/x/€", POSTER) == "poster.jpg"


# -- each rule failing alone --------------------------------------------------------------------------------


def test_no_record_beside_the_clip(tmp_path: Path) -> None:
    result = stored(tmp_path)
    (tmp_path / f"2026-03-01.mp4{RECORD_SUFFIX}").unlink()
    assert refused(result) == "the clip's record beside it is missing"
    assert refused(result, POSTER) == "the clip's record beside it is missing"


def test_an_unreadable_record_is_no_record(tmp_path: Path) -> None:
    result = stored(tmp_path)
    (tmp_path / f"2026-03-01.mp4{RECORD_SUFFIX}").write_text("{not json")
    assert refused(result) == files.NO_RECORD


def test_a_record_of_another_job(tmp_path: Path) -> None:
    result = stored(tmp_path)
    assert refused({**result, "job_id": "n92someoneelse"}) == "the clip's record is of another job"


def test_a_result_that_disagrees_with_the_record(tmp_path: Path) -> None:
    result = stored(tmp_path)
    assert refused({**result, "stored_size": len(CLIP) + 1}) == files.RECORD_DISAGREES
    assert refused({**result, "stored_sha256": sha(b"another")}) == files.RECORD_DISAGREES


def test_the_size_changed_after_recording(tmp_path: Path) -> None:
    result = stored(tmp_path)
    with (tmp_path / "2026-03-01.mp4").open("ab") as clip:
        clip.write(b"more")
    assert refused(result) == "the clip's size is not the size recorded"


def test_the_content_changed_with_the_same_size(tmp_path: Path) -> None:
    result = stored(tmp_path)
    clip = tmp_path / "2026-03-01.mp4"
    body = bytearray(clip.read_bytes())
    body[1000] ^= 0xFF
    clip.write_bytes(bytes(body))
    assert refused(result) == "the clip's SHA-256 is not the one recorded"


def test_a_symlink_to_a_secret_with_a_record_beside_the_link_only(tmp_path: Path) -> None:
    secret = tmp_path / "etc" / "airflow.cfg"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    link = tmp_path / "clips" / "evil.mp4"
    link.parent.mkdir()
    link.symlink_to(secret)
    result = forged(link, SECRET)  # the record is beside the link; the one that counts is beside the target
    assert refused(result) == files.NO_RECORD


def test_a_symlink_to_a_stored_clip_is_read_at_its_target(tmp_path: Path) -> None:
    result = stored(tmp_path / "real")
    link = tmp_path / "elsewhere.mp4"
    link.symlink_to(tmp_path / "real" / "2026-03-01.mp4")
    assert read_all(open_stored_file({**result, "stored_path": f"file://{link}"}, VIDEO, WHERE)) == CLIP


def test_a_fifo_is_refused_at_once_and_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    result = forged(fifo, CLIP)
    outcome: list[BaseException | files.Servable] = []

    def request() -> None:
        try:
            outcome.append(open_stored_file(result, VIDEO, WHERE))
        except BaseException as error:  # handed to the test below
            outcome.append(error)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():  # unblock the thread before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO blocked")
    [error] = outcome
    assert isinstance(error, NotServed)
    assert error.rule == "the clip is not a regular file"


def test_a_folder_is_not_a_regular_file(tmp_path: Path) -> None:
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    assert refused(forged(folder, CLIP)) == files.NOT_REGULAR.format(what="the clip")


def test_a_file_that_is_not_an_mp4_even_with_a_matching_record(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_bytes(SECRET)
    assert refused(forged(text)) == "the clip does not begin like an MP4/MOV video"


@pytest.mark.parametrize("box", [b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"])
def test_every_iso_bmff_first_box_passes(tmp_path: Path, box: bytes) -> None:
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"\x00\x00\x00\x10" + box + b"\x00" * 100)
    assert open_stored_file(forged(clip), VIDEO, WHERE).size == 108


def test_a_poster_path_that_is_not_the_one_beside_the_clip(tmp_path: Path) -> None:
    result = stored(tmp_path)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(JPEG)
    assert refused({**result, "poster_path": f"file://{secret}"}, POSTER) == (
        "the poster path is not the poster beside the stored clip"
    )


def test_a_poster_the_record_does_not_know(tmp_path: Path) -> None:
    result = stored(tmp_path)
    write_record(tmp_path / "2026-03-01.mp4", result["job_id"], CLIP, None, result)  # a record from before posters
    assert refused(result, POSTER) == "the clip's record has no poster"
    assert read_all(open_stored_file(result, VIDEO, WHERE)) == CLIP


def test_a_changed_poster(tmp_path: Path) -> None:
    result = stored(tmp_path)
    poster = tmp_path / "2026-03-01.poster.jpg"
    poster.write_bytes(JPEG[:-1] + b"\x00")
    assert refused(result, POSTER) == "the poster's SHA-256 is not the one recorded"
    poster.write_bytes(JPEG + b"!")
    assert refused(result, POSTER) == "the poster's size is not the size recorded"
    poster.unlink()
    assert refused(result, POSTER) == "the poster is gone from its storage"


def test_a_poster_that_is_not_a_jpeg_even_with_a_matching_record(tmp_path: Path) -> None:
    result = stored(tmp_path)
    (tmp_path / "2026-03-01.poster.jpg").write_bytes(SECRET)
    write_record(tmp_path / "2026-03-01.mp4", result["job_id"], CLIP, SECRET, result)
    assert refused(result, POSTER) == "the poster does not begin like a JPEG"


def test_a_gone_clip(tmp_path: Path) -> None:
    result = stored(tmp_path)
    (tmp_path / "2026-03-01.mp4").unlink()
    assert refused(result) == "the clip is gone from its storage"


@pytest.mark.parametrize("field", ["job_id", "stored_path", "stored_size", "stored_sha256"])
def test_a_result_without_a_field_the_rule_needs(tmp_path: Path, field: str) -> None:
    result = stored(tmp_path)
    assert refused({name: value for name, value in result.items() if name != field}) == f"the result has no {field}"


def test_a_poster_route_without_a_poster_path(tmp_path: Path) -> None:
    result = stored(tmp_path)
    assert refused({**result, "poster_path": None}, POSTER) == "the result has no poster_path"


@pytest.mark.parametrize("path", ["etc/passwd", "file://somehost/etc/passwd", "passwd", "http//x"])
def test_a_path_that_is_no_location(tmp_path: Path, path: str) -> None:
    result = stored(tmp_path)
    assert refused({**result, "stored_path": path}) == files.NOT_A_LOCATION


def test_etc_passwd_is_refused_for_want_of_a_record() -> None:
    passwd = Path("/etc/passwd")
    body = passwd.read_bytes()
    result = {"job_id": "x", "stored_path": str(passwd), "stored_size": len(body), "stored_sha256": sha(body)}
    assert refused(result) == files.NO_RECORD


# -- the roots ----------------------------------------------------------------------------------------------


def test_outside_the_view_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = stored(tmp_path / "clips")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", f"{tmp_path / 'elsewhere'}, s3://bucket/clips")
    assert refused(result) == "the clip is outside [happyhorse] view_roots"
    assert refused(result, POSTER) == "the clip is outside [happyhorse] view_roots"
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", f"s3://bucket/clips,file://{tmp_path / 'clips'}")
    assert read_all(open_stored_file(result, VIDEO, WHERE)) == CLIP
    assert read_all(open_stored_file(result, POSTER, WHERE)) == JPEG


def test_a_root_is_compared_on_whole_path_components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = stored(tmp_path / "clips2")
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", str(tmp_path / "clips"))
    assert refused(result) == files.OUTSIDE_ROOTS.format(what="the clip")
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", str(tmp_path / "clips2") + "/")
    assert open_stored_file(result, VIDEO, WHERE).size == len(CLIP)


def test_a_root_is_compared_after_resolving_symlinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = stored(tmp_path / "disk" / "clips")
    (tmp_path / "data").symlink_to(tmp_path / "disk")
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", str(tmp_path / "data" / "clips"))
    assert open_stored_file(result, VIDEO, WHERE).size == len(CLIP)
    # A link inside the root to a stored clip outside it is outside.
    outside = stored(tmp_path / "other")
    link = tmp_path / "disk" / "clips" / "link.mp4"
    link.symlink_to(tmp_path / "other" / "2026-03-01.mp4")
    assert refused({**outside, "stored_path": str(link)}) == files.OUTSIDE_ROOTS.format(what="the clip")


def test_a_poster_linked_to_a_file_outside_the_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = stored(tmp_path / "clips")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "private.jpg").write_bytes(JPEG)  # the record's poster size and SHA-256 hold for it
    poster = Path(result["poster_path"].removeprefix("file://"))
    poster.unlink()
    poster.symlink_to(tmp_path / "other" / "private.jpg")
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", str(tmp_path / "clips"))
    assert read_all(open_stored_file(result, VIDEO, WHERE)) == CLIP
    assert refused(result, POSTER) == "the poster is outside [happyhorse] view_roots"


def test_view_roots_is_read_from_airflows_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert files.view_roots() is None
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", " /data/clips , s3://bucket/x ,")
    assert files.view_roots() == ["/data/clips", "s3://bucket/x"]
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", " , ")
    assert files.view_roots() is None


@pytest.mark.parametrize(
    ("url", "roots", "inside"),
    [
        ("s3://aws_default@bucket/x/a.mp4", ["s3://bucket/"], True),
        ("s3://aws_default@bucket/x/a.mp4", ["s3://bucket/x"], True),
        ("s3://bucket/x/a.mp4", ["s3://other@bucket/x/"], True),
        ("s3://aws_default@bucket/xy/a.mp4", ["s3://bucket/x"], False),
        ("s3://aws_default@bucket2/x/a.mp4", ["s3://bucket/"], False),
        ("gs://bucket/x/a.mp4", ["s3://bucket/"], False),
        ("s3a://bucket/x/a.mp4", ["s3://bucket/x"], True),
        ("s3://bucket/x/../y/a.mp4", ["s3://bucket/x"], False),
        ("s3://bucket/x/a.mp4", ["/data/clips"], False),
    ],
)
def test_object_store_roots(url: str, roots: list[str], inside: bool) -> None:
    assert files._inside_objects(url, roots) is inside


# -- the SHA-256 cache --------------------------------------------------------------------------------------


def test_the_sha256_is_computed_once_per_version_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = stored(tmp_path)
    hashed: list[int] = []
    real = files._sha256

    def counting(source: files.Source, size: int) -> str:
        hashed.append(size)
        return real(source, size)

    monkeypatch.setattr(files, "_sha256", counting)
    for _ in range(3):
        open_stored_file(result, VIDEO, WHERE).close()
    assert hashed == [len(CLIP)]
    open_stored_file(result, POSTER, WHERE).close()
    assert hashed == [len(CLIP), len(JPEG)]  # the poster, once; the clip's hash came from the cache
    clip = tmp_path / "2026-03-01.mp4"
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    open_stored_file(result, VIDEO, WHERE).close()
    assert hashed == [len(CLIP), len(JPEG), len(CLIP)]  # a new mtime: hashed again


def test_the_cache_is_bounded() -> None:
    cache = files._ShaCache(3)
    for key in range(5):
        cache.get(key, lambda key=key: str(key))
    assert cache.get(0, lambda: "again") == "again"  # forgotten: computed anew
    assert cache.get(4, lambda: "again") == "4"


# -- the log line -------------------------------------------------------------------------------------------


def test_a_refusal_is_one_warning_naming_the_task_instance_and_the_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_bytes(SECRET)
    result = forged(text)
    with caplog.at_level(logging.WARNING, logger=files.__name__):
        refused(result)
    [line] = [record.getMessage() for record in caplog.records if record.name == files.__name__]
    assert WHERE in line
    assert "does not begin like an MP4/MOV video" in line
    assert "do-not-serve-me" not in caplog.text


# -- through a route ----------------------------------------------------------------------------------------


def client_for(result: dict[str, Any]) -> TestClient:
    from airflow_provider_happyhorse.ui.app import serve_stored

    api = FastAPI()

    @api.get("/{kind}")
    def route(kind: str, request: Request) -> Any:
        return serve_stored(result, kind, KEY, request)

    return TestClient(api)


def test_the_route_streams_a_stored_clip_with_its_headers_and_ranges(tmp_path: Path) -> None:
    client = client_for(stored(tmp_path))
    whole = client.get("/video")
    assert whole.status_code == 200
    assert whole.content == CLIP
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert whole.headers["content-disposition"] == 'inline; filename="2026-03-01.mp4"'
    assert whole.headers["content-security-policy"] == "sandbox"
    part = client.get("/video", headers={"Range": "bytes=100-199"})
    assert (part.status_code, part.content) == (206, CLIP[100:200])
    assert part.headers["content-range"] == f"bytes 100-199/{len(CLIP)}"
    assert client.get("/video", headers={"Range": f"bytes={len(CLIP)}-"}).status_code == 416
    poster = client.get("/poster")
    assert (poster.status_code, poster.content, poster.headers["content-type"]) == (200, JPEG, "image/jpeg")


def test_the_route_answers_404_naming_the_rule_and_nothing_of_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "airflow.cfg"
    secret.write_bytes(SECRET)
    link = tmp_path / "clip.mp4"
    link.symlink_to(secret)
    response = client_for(forged(link, SECRET)).get("/video")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "not served: the clip's record beside it is missing (the HappyHorse view serves only files the provider stored)"
    )
    assert b"do-not-serve-me" not in response.content


# -- object storage (S3 on a loopback moto server) ----------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("moto.server")
    pytest.importorskip("airflow.providers.amazon", reason="s3:// needs apache-airflow-providers-amazon[s3fs]")
    from support.s3 import moto_s3

    with moto_s3(monkeypatch, "clips") as client:
        yield client


def test_a_clip_stored_in_s3_is_served_and_checked_the_same_way(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)
    hook = HappyHorseHook(transport=FakeService().transport(), resolve=resolve, sleep=lambda s: None, rng=lambda: 0.5)
    destination = "s3://aws_moto@clips/daily/a.mp4"
    store_clip(hook, job_id="n92s3clip01", url="http://cdn.test/files/n92s3clip01.mp4", destination=destination)
    record = read_clip_record(destination)
    assert record is not None
    result = record.result()
    body = s3.get_object(Bucket="clips", Key="daily/a.mp4")["Body"].read()
    video = open_stored_file(result, VIDEO, WHERE)
    assert (read_all(video), video.filename) == (body, "a.mp4")
    assert read_all(open_stored_file(result, POSTER, WHERE))[:3] == b"\xff\xd8\xff"
    # The roots: the normalised URL, without the connection id.
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", "s3://clips/daily")
    assert open_stored_file(result, VIDEO, WHERE).size == len(body)
    monkeypatch.setenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS", "s3://clips/weekly,/data/clips")
    assert refused(result) == files.OUTSIDE_ROOTS.format(what="the clip")
    monkeypatch.delenv("AIRFLOW__HAPPYHORSE__VIEW_ROOTS")
    # The same size and record, another content: a new version of the object, hashed again, refused.
    metadata = s3.head_object(Bucket="clips", Key="daily/a.mp4")["Metadata"]
    changed = bytearray(body)
    changed[1000] ^= 0xFF
    s3.put_object(Bucket="clips", Key="daily/a.mp4", Body=bytes(changed), Metadata=metadata)
    assert refused(result) == files.SHA_CHANGED.format(what="the clip")
    # Without the record (an object the provider did not store): refused before its bytes are read.
    s3.put_object(Bucket="clips", Key="daily/a.mp4", Body=body)
    assert refused(result) == files.NO_RECORD
    s3.delete_object(Bucket="clips", Key="daily/a.mp4")
    assert refused(result) == files.NO_RECORD
