"""
The stored clip is the video that was asked for (issue 14): redirects followed safely, a real probe
before the move into place, the comparison with the request, a poster, the record kept with the clip,
and ``if_exists`` so that a clip already kept is never paid for again. Real files (``file://``), real
MP4s (tests/support/media.py), scripted transports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_happyhorse.exceptions import ClipMismatchError, InvalidClipError, ResultRedirectError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
from airflow_provider_happyhorse.storage import read_clip_record, store_clip
from support.clock import FakeClock
from support.context import DictStore, make_context
from support.media import render_mp4
from support.service import API_KEY, CLIP, CONN_JSON, HOST, PUBLIC_ADDRESS, FakeService, reply, resolve, serve_clip

URL = "http://cdn.test/files/n92abc123hh10.mp4"
API_HOST_URL = f"{HOST}/files/n92abc123hh10.mp4"  # on the connection's own host: its bodies may be shown


@pytest.fixture(autouse=True)
def _connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HAPPYHORSE_DEFAULT", CONN_JSON)


def file_hook(service: FakeService) -> HappyHorseHook:
    return HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=lambda s: None, rng=lambda: 0.5)


def everything_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def asked_for(request: httpx.Request) -> str:
    """The URL a pinned request stands for: its Host header (and TLS server name) with its path."""
    host = request.headers["host"]
    if request.url.scheme == "https":
        assert request.extensions["sni_hostname"] == host.split(":")[0]
    return f"{request.url.scheme}://{host}{request.url.raw_path.decode()}"


def redirect(location: str, status: int = 302) -> Any:
    return reply(status, b"", {"Location": location})


# -- redirects ----------------------------------------------------------------------------------------


def test_a_redirect_to_a_signed_url_is_followed_without_the_key(tmp_path: Path) -> None:
    service = FakeService()
    service.file_faults.extend(
        [redirect("https://signed.cdn.test/files/clip.mp4?sig=abc", 302), redirect("/files/clip.mp4?sig=def", 307)]
    )
    clip, _ = store_clip(file_hook(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == CLIP
    assert clip.verified is True
    # Each hop is connected to the address the egress check passed, asking for the URL's own host.
    assert {request.url.host for request in service.requests} == {PUBLIC_ADDRESS}
    assert [asked_for(request) for request in service.requests] == [
        URL,
        "https://signed.cdn.test/files/clip.mp4?sig=abc",
        "https://signed.cdn.test/files/clip.mp4?sig=def",
    ]
    for request in service.requests:
        assert "authorization" not in request.headers
        assert API_KEY not in str(request.url)


@pytest.mark.parametrize(
    ("hops", "problem"),
    [
        ([redirect("http://cdn.test/files/b.mp4"), redirect(URL)], "redirects in a loop"),
        ([redirect(f"http://cdn.test/files/{n}.mp4") for n in range(6)], "redirects more than 5 times"),
        ([redirect("ftp://cdn.test/files/clip.mp4")], "redirects to a ftp URL"),
        ([reply(302, b"")], "redirects without a Location header"),
    ],
    ids=["loop", "too many hops", "another scheme", "no location"],
)
def test_a_redirect_that_cannot_be_followed_names_the_job_and_the_chain(
    tmp_path: Path, hops: list[Any], problem: str
) -> None:
    service = FakeService()
    service.file_faults.extend(hops)
    with pytest.raises(ResultRedirectError) as raised:
        store_clip(file_hook(service), job_id="n92loop", url=URL, destination=tmp_path / "clip.mp4")
    message = str(raised.value)
    assert "job n92loop" in message
    assert problem in message
    assert f"({URL}" in message
    assert everything_in(tmp_path) == []


# -- the probe ----------------------------------------------------------------------------------------

HTML = b"<html><head><title>403 Forbidden</title></head><body>Request has expired</body></html>"
XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
)


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (HTML, "text/html", f"text/html, {len(HTML)} bytes, beginning '<html><head><title>403 Forbidden"),
        (XML, "application/xml", f'application/xml, {len(XML)} bytes, beginning \'<?xml version="1.0"'),
        (CLIP[: len(CLIP) // 2], "video/mp4", f"video/mp4, {len(CLIP) // 2} bytes, beginning with bytes"),
        (b"", "video/mp4", "video/mp4, 0 bytes (an empty body)"),
    ],
    ids=["an HTML error page", "an XML error page", "half a video", "nothing"],
)
def test_a_body_that_is_not_a_video_is_never_stored(tmp_path: Path, body: bytes, content_type: str, said: str) -> None:
    service = FakeService()
    service.file_faults.extend([reply(200, body, {"Content-Type": content_type})] * 5)
    with pytest.raises(InvalidClipError) as raised:
        store_clip(file_hook(service), job_id="n92html", url=API_HOST_URL, destination=tmp_path / "clip.mp4")
    message = str(raised.value)
    assert message.startswith(f"The result of HappyHorse job n92html from {API_HOST_URL} is not a video: {said}")
    assert "a retry of the task downloads again" in message
    assert everything_in(tmp_path) == []  # nothing at the final path or beside it
    assert service.downloads == 5  # downloaded again up to the connection's max_retries (4)


def test_a_body_from_another_host_than_the_apis_is_never_echoed(tmp_path: Path) -> None:
    service = FakeService()
    service.file_faults.extend([reply(200, HTML, {"Content-Type": "text/html"})] * 5)
    with pytest.raises(InvalidClipError) as raised:
        store_clip(file_hook(service), job_id="n92html", url=URL, destination=tmp_path / "clip.mp4")
    message = str(raised.value)
    assert f"text/html, {len(HTML)} bytes from cdn.test (not the API's host: its bytes are not shown)" in message
    assert "Request has expired" not in message
    assert "403" not in message


def test_an_error_page_once_is_downloaded_again(tmp_path: Path) -> None:
    service = FakeService()
    service.file_faults.append(reply(200, HTML, {"Content-Type": "text/html"}))
    clip, _ = store_clip(file_hook(service), job_id="n92html", url=URL, destination=tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == CLIP
    assert clip.verified is True
    assert service.downloads == 2


# -- the comparison with the request --------------------------------------------------------------------


def operator(service: FakeService, tmp_path: Path, **kwargs: Any) -> GenerateVideoOperator:
    """Blocking mode on the fake clock: submit, wait, download, probe, store, in one execute()."""
    task = GenerateVideoOperator(
        task_id="video", prompt="a horse", deferrable=False, output_path=str(tmp_path / "daily" / "a.mp4"), **kwargs
    )
    clock = service.clock
    task.hook = HappyHorseHook(  # type: ignore[misc]
        transport=service.transport(), resolve=resolve, sleep=clock.sleep, rng=lambda: 0.5, clock=clock
    )
    return task


MISMATCHED = {
    "duration": (render_mp4(3, 160, 90, True), "duration: wanted 5 s (within 0.5 s), got 3 s"),
    "aspect": (render_mp4(5, 90, 160, True), "aspect ratio: wanted 16:9, got 90x160"),
    "sound": (render_mp4(5, 160, 90, False), "sound: wanted an audio track, got none"),
}


@pytest.mark.parametrize("kind", list(MISMATCHED))
def test_strict_fails_on_a_mismatch_naming_it_and_stores_nothing(tmp_path: Path, kind: str) -> None:
    body, said = MISMATCHED[kind]
    service = FakeService(FakeClock(), clip=body)
    with pytest.raises(AirflowFailException) as raised:
        operator(service, tmp_path).execute(make_context(DictStore()))
    message = str(raised.value)
    assert f"The clip of HappyHorse job {service.job_id} does not match its request: {said}" in message
    assert "Nothing was stored" in message
    assert "verify_clip='warn'" in message
    assert "happyhorse-jobs forget" in message
    assert everything_in(tmp_path / "daily") == []
    assert service.posts == 1


def test_several_mismatches_are_each_named() -> None:
    from airflow_provider_happyhorse.core.results import mismatches
    from airflow_provider_happyhorse.models import MediaInfo, VideoRequest

    media = MediaInfo(duration=8.0, width=96, height=96, video_codec="h264", has_audio=False)
    found = mismatches(media, VideoRequest.parse({"prompt": "a horse", "duration": 5, "sound": True}))
    assert found == [
        "duration: wanted 5 s (within 0.5 s), got 8 s",
        "aspect ratio: wanted 16:9, got 96x96",
        "sound: wanted an audio track, got none",
    ]
    # Image-to-video: the images' aspect wins, so it is recorded, not compared.
    i2v = VideoRequest.parse({"prompt": "a horse", "duration": 8, "sound": False, "image_urls": ["https://x/a.png"]})
    assert mismatches(media, i2v) == []


def test_warn_keeps_the_clip_and_records_the_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(FakeClock(), clip=MISMATCHED["sound"][0])
    result = operator(service, tmp_path, verify_clip="warn").execute(make_context(DictStore()))
    assert result["verified"] is False
    assert result["media"]["has_audio"] is False
    assert (tmp_path / "daily" / "a.mp4").read_bytes() == MISMATCHED["sound"][0]
    assert "sound: wanted an audio track, got none; kept, as verify_clip='warn' asks" in capsys.readouterr().out


def test_off_compares_nothing_but_still_wants_a_video(tmp_path: Path) -> None:
    service = FakeService(FakeClock(), clip=MISMATCHED["duration"][0])
    result = operator(service, tmp_path, verify_clip="off").execute(make_context(DictStore()))
    assert result["verified"] is None
    assert result["media"]["duration"] == 3.0
    service = FakeService(FakeClock(), clip=HTML)
    with pytest.raises(AirflowException, match="is not a video"):
        operator(service, tmp_path / "again", verify_clip="off").execute(make_context(DictStore()))


# -- the poster and the record ---------------------------------------------------------------------------


def test_a_verified_clip_is_stored_with_its_poster_and_record(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    result = operator(service, tmp_path).execute(make_context(DictStore()))
    folder = tmp_path / "daily"
    assert everything_in(folder) == ["a.mp4", "a.mp4.happyhorse.json", "a.poster.jpg"]
    assert result["verified"] is True
    assert result["media"] == {
        "duration": 5.0,
        "declared_duration": 5.0,
        "width": 160,
        "height": 90,
        "frame_rate": 8.0,
        "video_codec": "h264",
        "audio_codec": "aac",
        "has_audio": True,
    }
    assert result["poster_path"] == f"file://{folder}/a.poster.jpg"
    assert (folder / "a.poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    record = json.loads((folder / "a.mp4.happyhorse.json").read_text())
    assert record["job_id"] == service.job_id
    assert record["stored"]["sha256"] == result["stored_sha256"]
    assert record["fingerprint"] == VideoRequest(prompt="a horse").fingerprint()
    assert "request" not in record  # its fingerprint stands for it
    assert API_KEY not in json.dumps(record)


def test_no_poster_when_turned_off(tmp_path: Path) -> None:
    result = operator(FakeService(FakeClock()), tmp_path, poster=False).execute(make_context(DictStore()))
    assert result["poster_path"] is None
    assert everything_in(tmp_path / "daily") == ["a.mp4", "a.mp4.happyhorse.json"]


# -- never paying again for a clip already kept ----------------------------------------------------------


def test_a_rerun_of_the_same_request_pays_nothing_and_returns_the_recorded_result(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    first = operator(service, tmp_path).execute(make_context(DictStore()))
    # A new run (a backfill, a clear of another run): a fresh task state store, the same destination.
    again = operator(service, tmp_path).execute(make_context(DictStore()))
    assert service.posts == 1
    assert again == first


def test_a_tampered_clip_or_record_is_named_and_rendered_as_if_none_were_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = FakeService(FakeClock())
    operator(service, tmp_path).execute(make_context(DictStore()))
    final = tmp_path / "daily" / "a.mp4"
    sidecar = tmp_path / "daily" / "a.mp4.happyhorse.json"
    # Someone with write access to the folder: a record naming another file, and a clip edited in place.
    record = json.loads(sidecar.read_text())
    record["stored"]["path"] = "/etc/passwd"
    sidecar.write_text(json.dumps(record))
    clip = bytearray(final.read_bytes())
    clip[100] ^= 0xFF
    final.write_bytes(bytes(clip))
    result = operator(service, tmp_path).execute(make_context(DictStore()))
    assert service.posts == 2  # rendered again: the kept clip did not prove itself
    assert "is not the one its record names" in capsys.readouterr().out
    assert result["stored_path"] == f"file://{final}"
    assert final.read_bytes() == CLIP


def test_a_kept_clip_result_names_the_destination_never_the_record(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    operator(service, tmp_path).execute(make_context(DictStore()))
    sidecar = tmp_path / "daily" / "a.mp4.happyhorse.json"
    record = json.loads(sidecar.read_text())
    record["stored"].update(path="/etc/passwd", poster_path="/etc/shadow")
    sidecar.write_text(json.dumps(record))
    result = operator(service, tmp_path).execute(make_context(DictStore()))
    assert service.posts == 1
    assert result["stored_path"] == f"file://{tmp_path}/daily/a.mp4"
    assert result["poster_path"] == f"file://{tmp_path}/daily/a.poster.jpg"


def test_a_changed_request_is_rendered_and_replaces_the_clip(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    operator(service, tmp_path).execute(make_context(DictStore()))
    changed = GenerateVideoOperator(
        task_id="video", prompt="a horse at dawn", deferrable=False, output_path=str(tmp_path / "daily" / "a.mp4")
    )
    changed.hook = HappyHorseHook(  # type: ignore[misc]
        transport=service.transport(), resolve=resolve, sleep=service.clock.sleep, rng=lambda: 0.5, clock=service.clock
    )
    result = changed.execute(make_context(DictStore()))
    assert service.posts == 2
    assert result["request"]["prompt"] == "a horse at dawn"
    record = read_clip_record(tmp_path / "daily" / "a.mp4")
    assert record is not None
    assert record.fingerprint == changed.video_request().fingerprint()


def test_replace_renders_anew_and_fail_refuses_before_paying(tmp_path: Path) -> None:
    service = FakeService(FakeClock())
    operator(service, tmp_path).execute(make_context(DictStore()))
    operator(service, tmp_path, if_exists="replace").execute(make_context(DictStore()))
    assert service.posts == 2
    with pytest.raises(AirflowFailException) as raised:
        operator(service, tmp_path, if_exists="fail").execute(make_context(DictStore()))
    assert "already holds a file. Nothing was submitted." in str(raised.value)
    assert service.posts == 2


def test_a_file_we_did_not_make_is_rendered_over_only_once_the_new_clip_is_verified(tmp_path: Path) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"someone's file")
    service = FakeService(FakeClock(), clip=HTML)
    with pytest.raises(AirflowException, match="is not a video"):
        operator(service, tmp_path).execute(make_context(DictStore()))
    assert (folder / "a.mp4").read_bytes() == b"someone's file"  # a failed clip never replaces it
    assert service.posts == 1


@pytest.mark.parametrize(("name", "value"), [("verify_clip", "loose"), ("if_exists", "overwrite")])
def test_a_bad_mode_is_refused_before_paying(tmp_path: Path, name: str, value: str) -> None:
    service = FakeService(FakeClock())
    with pytest.raises(AirflowFailException) as raised:
        operator(service, tmp_path, **{name: value}).execute(make_context(DictStore()))
    assert str(raised.value).startswith(f"{name}: must be one of ")
    assert f"(got {value!r}). Nothing was submitted." in str(raised.value)
    assert service.requests == []


def test_serve_clip_helper_is_a_whole_video() -> None:
    # The fake service's clip is what a default request asks for, so a default operator verifies it.
    response = serve_clip()(httpx.Request("GET", URL))
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(CLIP)


def test_a_mismatch_error_lists_every_property() -> None:
    error = ClipMismatchError("n92x", ["duration: wanted 5 s, got 3 s", "sound: wanted an audio track, got none"])
    assert str(error) == (
        "The clip of HappyHorse job n92x does not match its request: duration: wanted 5 s, got 3 s; "
        "sound: wanted an audio track, got none"
    )
