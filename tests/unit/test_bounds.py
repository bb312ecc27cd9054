"""
Bounds on everything read from outside: API answers (size, encoding, job ids), downloads (size, whole-transfer
time), the probe (demuxer, frame size), and kept clips that must prove themselves before a task skips.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse import media
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.core.responses import decode_within, is_job_id
from airflow_provider_happyhorse.exceptions import (
    DownloadLimitError,
    InvalidClipError,
    MalformedResponseError,
    SubmissionOutcomeUnknownError,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.models import VideoRequest
from airflow_provider_happyhorse.storage import RECORD_SUFFIX, as_storage_path, prove_kept_clip, store_clip
from support.clock import FakeClock
from support.loopback import LoopbackServer
from support.service import (
    CLIP,
    HOST,
    JOB_ID,
    ConnectionSetter,
    FakeService,
    envelope,
    job_data,
    reply,
    resolve,
    scripted,
    succeeded_data,
)

URL = f"{HOST}/files/{JOB_ID}.mp4"
MIB = 1024 * 1024


def bomb(inflated: int) -> bytes:
    """A gzip body of ``inflated`` zero bytes (about a thousandth of that on the wire)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * MIB
    return b"".join(compressor.compress(block) for _ in range(inflated // MIB)) + compressor.flush()


def streamed(status: int, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


# -- API answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoding", "limit", "body", "problem"),
    [
        (b"{}", None, 10, b"{}", None),
        (b"{}", "identity", 10, b"{}", None),
        (b"x" * 11, None, 10, b"", "is over the 10-byte limit for an API answer"),
        (gzip.compress(b"{}"), "gzip", 100, b"{}", None),
        (zlib.compress(b"{}"), "deflate", 100, b"{}", None),
        (gzip.compress(b"\0" * 1000), "gzip", 100, b"", "inflates past the 100-byte limit for an API answer (gzip)"),
        (b"not gzip at all", "gzip", 100, b"", "does not decode as gzip"),
        (b"{}", "br", 100, b"", "is encoded as 'br', which was not asked for"),
    ],
    ids=["plain", "identity", "too long", "gzip", "deflate", "gzip past the limit", "broken gzip", "brotli"],
)
def test_an_answer_is_decoded_within_its_limit(
    raw: bytes, encoding: str | None, limit: int, body: bytes, problem: str | None
) -> None:
    assert decode_within(raw, encoding, limit) == (body, problem)


def hook_for(service: FakeService, clock: FakeClock | None = None) -> HappyHorseHook:
    clock = clock or service.clock
    return HappyHorseHook(
        transport=service.transport(),
        async_transport=service.transport(),
        resolve=resolve,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        rng=lambda: 0.5,
        clock=clock,
    )


def test_a_gzip_bomb_of_a_status_answer_is_a_malformed_answer_retried_then_named(connection: ConnectionSetter) -> None:
    body = bomb(64 * MIB)
    assert len(body) < 100_000
    service = scripted(*[lambda request: streamed(200, body, {"Content-Encoding": "gzip"})] * 5)
    with pytest.raises(MalformedResponseError, match="inflates past the 1,048,576-byte limit"):
        hook_for(service).get_job(JOB_ID)
    assert service.status_calls == 5  # the connection's max_retries (4), then named
    assert all(request.headers["accept-encoding"] == "identity" for request in service.requests)


async def test_the_same_on_the_async_path(connection: ConnectionSetter) -> None:
    body = bomb(64 * MIB)
    service = scripted(*[lambda request: streamed(200, body, {"Content-Encoding": "gzip"})] * 5)
    with pytest.raises(MalformedResponseError, match="inflates past"):
        await hook_for(service).aget_job(JOB_ID)
    assert service.status_calls == 5


def test_an_answer_over_the_connection_limit_is_malformed(connection: ConnectionSetter) -> None:
    connection(extra={"max_answer_bytes": 2000, "max_retries": 0})
    padded = envelope({**job_data("IN_PROGRESS"), "padding": "x" * 3000})
    service = scripted(reply(200, padded))
    with pytest.raises(MalformedResponseError, match="is over the 2,000-byte limit"):
        hook_for(service).get_job(JOB_ID)


class LongAnswer(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An answer far past any limit (it ends at 1 MiB, so a reader with no limit ends too), counting what was taken."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < MIB:
            self.sent += 4096
            yield b"x" * 4096

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


def test_a_long_answer_is_read_no_further_than_its_limit(connection: ConnectionSetter) -> None:
    connection(extra={"max_answer_bytes": 10_000, "max_retries": 0})
    long = LongAnswer()
    service = scripted(lambda request: httpx.Response(200, stream=long))
    with pytest.raises(MalformedResponseError, match="is over the 10,000-byte limit"):
        hook_for(service).get_job(JOB_ID)
    assert long.sent <= 12_288  # no further than the read that crossed the limit


async def test_the_same_on_the_async_path_for_a_long_answer(connection: ConnectionSetter) -> None:
    connection(extra={"max_answer_bytes": 10_000, "max_retries": 0})
    long = LongAnswer()
    service = scripted(lambda request: httpx.Response(200, stream=long))
    with pytest.raises(MalformedResponseError, match="is over the 10,000-byte limit"):
        await hook_for(service).aget_job(JOB_ID)
    assert long.sent <= 12_288


def test_a_small_compressed_answer_still_reads(connection: ConnectionSetter) -> None:
    payload = gzip.compress(json.dumps(envelope(succeeded_data())).encode())
    service = scripted(lambda request: streamed(200, payload, {"Content-Encoding": "gzip"}))
    assert hook_for(service).get_job(JOB_ID).video_url == succeeded_data()["response"]["resultUrls"][0]


async def test_the_aiohttp_transport_reads_no_more_than_the_limit(connection: ConnectionSetter, no_proxy: None) -> None:
    body = bomb(400 * MIB)  # about 400 KB on the wire

    def responder(method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, body

    server = LoopbackServer(responder)
    url = await server.start()
    try:
        connection(host=url, extra={"max_retries": 1})
        with pytest.raises(MalformedResponseError, match="inflates past"):
            await HappyHorseHook(async_sleep=FakeClock().async_sleep).aget_job(JOB_ID)
    finally:
        await server.stop()
    assert len(server.requests) == 2  # malformed answers are retried, never fatal


@pytest.mark.parametrize(
    ("job_id", "valid"),
    [
        ("n92abc123hh10", True),
        ("0b3e0c8a-9d1e-4c1b-8f0e-3f3b2a1c9d7e", True),
        ("task:2026.11_a-b", True),
        ("../../etc/passwd", False),
        ("a/b", False),
        (".hidden", False),
        ("a b", False),
        ("a\nb", False),
        ("x" * 129, False),
        ("", False),
    ],
)
def test_job_ids_are_held_to_a_pattern(job_id: str, valid: bool) -> None:
    assert is_job_id(job_id) is valid


def test_a_status_with_a_path_in_its_job_id_is_malformed(connection: ConnectionSetter) -> None:
    connection(extra={"max_retries": 0})
    service = scripted(reply(200, envelope(job_data("SUCCESS", job_id="../../etc/x"))))
    with pytest.raises(MalformedResponseError, match=r"'data.task_id' is not a job id \('../../etc/x'\)"):
        hook_for(service).get_job(JOB_ID)


def test_a_submission_answered_with_a_bad_job_id_has_an_unknown_outcome(connection: ConnectionSetter) -> None:
    service = scripted(reply(200, envelope({"task_id": "../../x", "status": "IN_PROGRESS"})))
    with pytest.raises(SubmissionOutcomeUnknownError):
        hook_for(service).submit_job(VideoRequest(prompt="a horse"))
    assert service.posts == 1  # never sent again


# -- downloads ---------------------------------------------------------------------------------------------


def test_a_content_length_over_the_cap_is_refused_before_reading(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(extra={"max_download_bytes": 1000})
    service = FakeService()
    said = f"job {JOB_ID} from host 'hh.test' was not stored: it is {len(CLIP):,} bytes, over max_download_bytes 1,000"
    with pytest.raises(DownloadLimitError, match=said):
        store_clip(hook_for(service), job_id=JOB_ID, url=URL, destination=tmp_path / "c.mp4")
    assert list(tmp_path.iterdir()) == []


def test_a_body_past_the_cap_without_a_length_is_cut_off(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(extra={"max_download_bytes": 10_000})

    class Endless(httpx.SyncByteStream):
        sent = 0

        def __iter__(self) -> Iterator[bytes]:
            while True:
                self.sent += 4096
                yield b"\0" * 4096

    endless = Endless()
    service = FakeService()
    service.file_faults.append(lambda request: httpx.Response(200, stream=endless))
    with pytest.raises(DownloadLimitError, match="it went past max_download_bytes 10,000"):
        store_clip(hook_for(service), job_id=JOB_ID, url=URL, destination=tmp_path / "c.mp4")
    assert endless.sent <= 12_288  # read no further than the read that crossed the cap
    assert list(tmp_path.iterdir()) == []


def test_a_slow_drip_is_stopped_by_the_whole_transfer_deadline(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(extra={"download_timeout": 60})
    clock = FakeClock()

    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for byte in CLIP:
                clock.sleep(25.0)  # each byte within any per-read timeout
                yield bytes([byte])

    service = FakeService(clock=clock)
    service.file_faults.append(lambda request: httpx.Response(200, stream=Drip()))
    with pytest.raises(DownloadLimitError, match=r"it took longer than download_timeout 60 s \(3 bytes by then\)"):
        store_clip(hook_for(service, clock), job_id=JOB_ID, url=URL, destination=tmp_path / "c.mp4")
    assert list(tmp_path.iterdir()) == []


# -- the probe ----------------------------------------------------------------------------------------------


def test_a_playlist_is_not_a_video_and_nothing_it_names_is_fetched(tmp_path: Path) -> None:
    playlist = tmp_path / "p.mp4"
    playlist.write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\nhttp://127.0.0.2:9/seg.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(media.NotAVideo, match="FFmpeg cannot read it"):
        media.probe(playlist)


def test_frames_over_the_pixel_cap_are_refused_before_any_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = tmp_path / "c.mp4"
    clip.write_bytes(CLIP)  # 160x90
    monkeypatch.setattr(media, "MAX_FRAME_PIXELS", 160 * 90 - 1)
    with pytest.raises(media.NotAVideo, match="frames of 160x90, over the 14,399-pixel limit"):
        media.probe(clip)
    with pytest.raises(media.NotAVideo, match="frames of 160x90"):
        media.poster_jpeg(clip)


def test_the_probe_is_bounded_in_time(tmp_path: Path) -> None:
    clip = tmp_path / "c.mp4"
    clip.write_bytes(CLIP)
    with pytest.raises(media.NotAVideo, match="reading its packets took longer than 0 s"):
        media.probe(clip, timeout=0)


def test_a_huge_frame_fails_the_download_as_not_a_video(
    tmp_path: Path, connection: ConnectionSetter, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection(extra={"max_retries": 0})
    monkeypatch.setattr(media, "MAX_FRAME_PIXELS", 100)
    with pytest.raises(InvalidClipError, match="over the 100-pixel limit"):
        store_clip(hook_for(FakeService()), job_id=JOB_ID, url=URL, destination=tmp_path / "c.mp4")
    assert list(tmp_path.iterdir()) == []


# -- a kept clip proves itself ---------------------------------------------------------------------------------

REQUEST = VideoRequest(prompt="a horse")


def kept(tmp_path: Path) -> Path:
    final = tmp_path / "daily" / "a.mp4"
    record = RenderRecord.submitting(REQUEST, datetime.now(UTC)).model_copy(update={"job_id": JOB_ID})
    store_clip(hook_for(FakeService()), job_id=JOB_ID, url=URL, destination=final, record=record)
    return final


def test_a_kept_clip_that_proves_itself_gives_a_result_from_the_destination(
    tmp_path: Path, connection: ConnectionSetter
) -> None:
    final = kept(tmp_path)
    result, found = prove_kept_clip(final, REQUEST.fingerprint())
    assert result is not None
    assert result.stored is not None
    path = as_storage_path(final)
    assert (result.job_id, result.stored.path, result.stored.size) == (JOB_ID, str(path), len(CLIP))
    assert result.stored.poster_path == str(path.parent / "a.poster.jpg")
    assert found.startswith(f"holds the clip of job {JOB_ID} made for this request (sha256 ")


def test_a_tampered_record_cannot_name_other_files(tmp_path: Path, connection: ConnectionSetter) -> None:
    final = kept(tmp_path)
    sidecar = final.parent / f"{final.name}{RECORD_SUFFIX}"
    record = json.loads(sidecar.read_text())
    record["stored"].update(path="/etc/passwd", poster_path="/etc/shadow")
    sidecar.write_text(json.dumps(record))
    result, _ = prove_kept_clip(final, REQUEST.fingerprint())
    assert result is not None
    assert result.stored is not None
    path = as_storage_path(final)
    assert (result.stored.path, result.stored.poster_path, result.job_id) == (
        str(path),
        str(path.parent / "a.poster.jpg"),
        JOB_ID,
    )


def test_a_clip_whose_bytes_changed_at_the_same_size_does_not_prove_itself(
    tmp_path: Path, connection: ConnectionSetter
) -> None:
    final = kept(tmp_path)
    data = bytearray(final.read_bytes())
    data[-1] ^= 0xFF
    final.write_bytes(bytes(data))
    result, found = prove_kept_clip(final, REQUEST.fingerprint())
    assert result is None
    assert "is not the one its record names" in found


def test_a_changed_poster_is_not_named(tmp_path: Path, connection: ConnectionSetter) -> None:
    final = kept(tmp_path)
    poster = final.parent / "a.poster.jpg"
    poster.write_bytes(b"\xff\xd8\xff" + b"\0" * (poster.stat().st_size - 3))
    result, _ = prove_kept_clip(final, REQUEST.fingerprint())
    assert result is not None
    assert result.stored is not None
    assert result.stored.poster_path is None


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"fingerprint": "0" * 64}, "holds a clip made for another request"),
        ({"job_id": "../../x"}, "holds a clip whose record names no valid job id"),
        ({"stored": {"size": 1}}, "holds a file with no record of ours that matches its size"),
    ],
)
def test_a_record_that_does_not_match_is_named(
    tmp_path: Path, connection: ConnectionSetter, change: dict[str, Any], said: str
) -> None:
    final = kept(tmp_path)
    sidecar = final.parent / f"{final.name}{RECORD_SUFFIX}"
    record = json.loads(sidecar.read_text())
    for key, value in change.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    sidecar.write_text(json.dumps(record))
    assert prove_kept_clip(final, REQUEST.fingerprint()) == (None, said)


def test_no_file_proves_nothing(tmp_path: Path) -> None:
    assert prove_kept_clip(tmp_path / "none.mp4", REQUEST.fingerprint()) == (None, "holds no file")


def test_the_deadline_counts_from_the_download_start(tmp_path: Path, connection: ConnectionSetter) -> None:
    connection(extra={"download_timeout": 60})
    clock = FakeClock()
    service = FakeService(clock=clock)
    clock.sleep(timedelta(hours=1).total_seconds())  # time before the download does not count
    clip, downloaded = store_clip(hook_for(service, clock), job_id=JOB_ID, url=URL, destination=tmp_path / "c.mp4")
    assert downloaded
    assert clip.size == len(CLIP)


def _returns_within(seconds: float, call: object) -> object:
    """``call()``'s answer, failing the test if it has not come within ``seconds`` (a FIFO would block)."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call).result(timeout=seconds)  # type: ignore[arg-type]
    finally:
        pool.shutdown(wait=False)


def test_a_fifo_as_the_record_or_the_clip_never_blocks_the_check(tmp_path: Path, connection: ConnectionSetter) -> None:
    import os

    final = kept(tmp_path)
    sidecar = final.parent / f"{final.name}{RECORD_SUFFIX}"
    sidecar.unlink()
    os.mkfifo(sidecar)
    assert _returns_within(5, lambda: prove_kept_clip(final, REQUEST.fingerprint())) == (
        None,
        "holds a file with no record of ours that matches its size",
    )
    other = tmp_path / "fifo.mp4"
    os.mkfifo(other)
    assert _returns_within(5, lambda: prove_kept_clip(other, REQUEST.fingerprint())) == (
        None,
        "holds something that is not a regular file",
    )


def test_a_record_over_its_limit_is_not_read(tmp_path: Path, connection: ConnectionSetter) -> None:
    final = kept(tmp_path)
    sidecar = final.parent / f"{final.name}{RECORD_SUFFIX}"
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "padding": "x" * (1024 * 1024)}))
    assert prove_kept_clip(final, REQUEST.fingerprint()) == (
        None,
        "holds a file with no record of ours that matches its size",
    )
