"""
The store probes the clip and makes its poster while the bytes arrive (the calling thread reading the local file
as the download, in a worker thread, writes it): exactly as strict as reading the finished file, a download that
fails or is cut stops the reader and leaves nothing at the final path, and a read that fails stops the download.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from airflow_provider_happyhorse import media, storage
from airflow_provider_happyhorse.core.results import cut_short
from airflow_provider_happyhorse.exceptions import InvalidClipError, TransportError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.storage import store_clip
from support.media import faststart
from support.service import CLIP, FakeService, resolve

URL = "http://cdn.test/files/n92abc123hh10.mp4"
READER = "happyhorse-clip-download"  # the worker thread's name (the download, while the caller reads)
MOOV_LAST, MOOV_FIRST = CLIP, faststart(CLIP)
BODIES = pytest.mark.parametrize("body", [MOOV_LAST, MOOV_FIRST], ids=["moov-after-the-media", "moov-first"])
# A reader that never stops would hang the test: fail it instead.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _connection(connection: Any) -> None:
    connection(extra={"max_retries": 0})


def readers() -> list[threading.Thread]:
    """The download threads still running (the name is kept from when the thread was the reader)."""
    return [thread for thread in threading.enumerate() if thread.name == READER]


READING = [False]  # the calling thread is inside ``read_clip`` (see ``reading``)


@pytest.fixture
def reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notes in ``READING`` while the store's read of the arriving file runs."""
    read_clip = storage.read_clip

    def noted(*args: Any, **kwargs: Any) -> Any:
        READING[0] = True
        try:
            return read_clip(*args, **kwargs)
        finally:
            READING[0] = False

    monkeypatch.setattr(storage, "read_clip", noted)


def hook_for(service: FakeService) -> HappyHorseHook:
    return HappyHorseHook(transport=service.transport(), resolve=resolve, sleep=lambda s: None, rng=lambda: 0.5)


def served(body: bytes, *, cut_at: int | None = None, length: bool = True, alive: list[bool] | None = None) -> Any:
    """A reply sending ``body`` in 4 KiB chunks; ``cut_at``: the connection drops before that chunk, after
    ``alive`` notes whether the read was still running then (see ``reading``). ``length``: with Content-Length."""
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]

    class Stream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for index, chunk in enumerate(chunks):
                if index == cut_at:
                    if alive is not None:
                        alive.append(READING[0] and threading.current_thread().name == READER)
                    raise httpx.ReadError("connection reset mid-download")
                yield chunk

    headers = {"Content-Type": "video/mp4"} | ({"Content-Length": str(len(body))} if length else {})
    return lambda request: httpx.Response(200, headers=headers, stream=Stream())


def luma(frame: Any) -> bytes:
    """A decoded frame's visible luma pixels, row after row."""
    plane, width = frame.planes[0], frame.width
    data = bytes(plane)
    return b"".join(data[y * plane.line_size : y * plane.line_size + width] for y in range(frame.height))


def decoded(jpeg: bytes) -> tuple[int, int, bytes]:
    """A JPEG's size and its decoded luma."""
    codec = av.CodecContext.create("mjpeg", "r")
    frames = codec.decode(av.Packet(jpeg))
    assert len(frames) == 1
    return frames[0].width, frames[0].height, luma(frames[0])


def first_frame(clip: bytes) -> tuple[int, int, bytes]:
    """The clip's first frame, decoded here on its own: its size and its luma in full range (as a JPEG holds it)."""
    with av.open(io.BytesIO(clip), mode="r") as container:
        frame = next(container.decode(video=0))
        full = frame.reformat(format="yuvj420p")
    return frame.width, frame.height, luma(full)


def distance(one: bytes, other: bytes) -> float:
    """Mean absolute difference per pixel (the first frame and the poster: about 0.4; the second frame: about 13)."""
    return sum(abs(a - b) for a, b in zip(one, other, strict=True)) / len(one)


def test_the_two_bodies_hold_their_index_where_they_say() -> None:
    assert MOOV_LAST.find(b"moov") > MOOV_LAST.find(b"mdat") > 0
    assert 0 < MOOV_FIRST.find(b"moov") < MOOV_FIRST.find(b"mdat")


@BODIES
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-content-length"])
def test_a_clip_read_as_it_arrives_gives_the_finished_files_facts_and_poster(
    tmp_path: Path, body: bytes, length: bool
) -> None:
    destination = tmp_path / "clip.mp4"
    service = FakeService(file_faults=deque([served(body, length=length)]))
    clip, downloaded = store_clip(hook_for(service), job_id="j1", url=URL, destination=destination)
    assert downloaded
    assert destination.read_bytes() == body
    # The old way: the finished file, read after the download.
    whole_media, whole_poster = media.read_clip(destination, poster=True)
    assert whole_poster is not None
    assert clip.media == whole_media
    facts = clip.media
    assert facts is not None
    assert (facts.duration, facts.declared_duration, facts.width, facts.height) == (5.0, 5.0, 160, 90)
    poster = (tmp_path / "clip.poster.jpg").read_bytes()
    assert decoded(poster) == decoded(whole_poster)
    width, height, pixels = first_frame(body)
    poster_width, poster_height, poster_pixels = decoded(poster)
    assert (poster_width, poster_height) == (width, height) == (160, 90)
    assert distance(poster_pixels, pixels) < 3  # the first frame (the bar sweeps: the next one is far)
    assert readers() == []


@BODIES
@pytest.mark.parametrize("cut_at", [1, 5])
@pytest.mark.usefixtures("reading")
def test_a_download_cut_midway_stops_the_reader_and_leaves_no_file(tmp_path: Path, body: bytes, cut_at: int) -> None:
    alive: list[bool] = []
    service = FakeService(file_faults=deque([served(body, cut_at=cut_at, alive=alive)]))
    with pytest.raises(TransportError):
        store_clip(hook_for(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert alive == [True]  # the read was waiting for the rest when the connection dropped, in the download thread
    assert not READING[0]  # the read ended, without the rest
    assert readers() == []  # and the download's thread is gone
    assert list(tmp_path.iterdir()) == []


def test_a_body_over_its_content_length_is_refused_and_stops_the_reader(tmp_path: Path) -> None:
    """The demuxer is told the Content-Length as the file's size: a body of another size never stands."""
    short = MOOV_FIRST[: len(MOOV_FIRST) // 2]
    reply = served(short)

    def lying(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = reply(request)
        response.headers["Content-Length"] = str(len(MOOV_FIRST))
        return response

    service = FakeService(file_faults=deque([lying]))
    with pytest.raises(TransportError, match=f"stopped at {len(short)} of {len(MOOV_FIRST)} bytes"):
        store_clip(hook_for(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert readers() == []
    assert list(tmp_path.iterdir()) == []


def test_a_clip_missing_its_last_packets_fails_the_same_check_as_the_finished_file(tmp_path: Path) -> None:
    cut = MOOV_FIRST[: len(MOOV_FIRST) * 6 // 10]  # the index whole, the media data cut: packets missing
    finished = tmp_path / "finished.mp4"
    finished.write_bytes(cut)
    expected = cut_short(media.read_clip(finished, poster=True)[0])
    assert expected is not None
    assert expected.startswith("a video cut short: its frames end at ")
    destination = tmp_path / "out" / "clip.mp4"
    service = FakeService(file_faults=deque([served(cut)]))
    with pytest.raises(InvalidClipError) as raised:
        store_clip(hook_for(service), job_id="j1", url=URL, destination=destination)
    assert f"({expected})" in str(raised.value)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []
    assert readers() == []


def test_a_body_that_is_not_a_video_is_refused_once_whole_and_the_reader_is_gone(tmp_path: Path) -> None:
    body = b"<html>" + b"x" * 50_000
    service = FakeService(file_faults=deque([served(body)]))
    with pytest.raises(InvalidClipError, match=f"{len(body)} bytes"):
        store_clip(hook_for(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert readers() == []
    assert list(tmp_path.iterdir()) == []


def test_a_read_that_fails_stops_the_download_at_its_next_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the reader refuses (here, after its first bytes) is not downloaded to its end; the thread is gone."""
    body = MOOV_FIRST + bytes(4096 * 100)
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    refused = threading.Event()
    sent: list[int] = []

    def refusing(path: Any, **kwargs: Any) -> Any:
        with path.open("rb") as handle:
            assert handle.read(4096) == body[:4096]
        refused.set()
        raise media.NotAVideo("a frame of 99999x99999")

    monkeypatch.setattr(storage, "read_clip", refusing)

    class Stream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for index, chunk in enumerate(chunks):
                if index == 1:
                    assert refused.wait(timeout=30)
                sent.append(index)
                yield chunk

    def reply(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "video/mp4", "Content-Length": str(len(body))}
        return httpx.Response(200, headers=headers, stream=Stream())

    service = FakeService(file_faults=deque([reply]))
    with pytest.raises(InvalidClipError) as raised:
        store_clip(hook_for(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert "(a frame of 99999x99999; its download was stopped there)" in str(raised.value)
    assert len(sent) <= 3 < len(chunks)  # the chunk in flight when the read failed, at most one more
    assert readers() == []
    assert list(tmp_path.iterdir()) == []


class Interrupted(BaseException):
    """As a signal handler raises (Airflow's execution_timeout raises a BaseException in the task's thread)."""


def test_a_signal_that_interrupts_a_read_is_raised_not_lost_in_the_demuxer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyAV ignores a BaseException raised in a read it made: the store raises it once the demuxer has returned."""
    read_at = storage._Arrival.read_at
    calls: list[int] = []

    def interrupted_once(self: storage._Arrival, position: int, count: int) -> bytes:
        calls.append(position)
        if len(calls) == 2:
            raise Interrupted("the task's time is up")
        return read_at(self, position, count)

    monkeypatch.setattr(storage._Arrival, "read_at", interrupted_once)
    service = FakeService(file_faults=deque([served(MOOV_FIRST)]))
    with pytest.raises(Interrupted, match="time is up"):
        store_clip(hook_for(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert readers() == []
    assert list(tmp_path.iterdir()) == []


def test_an_abandoned_arrival_answers_every_read_at_once(tmp_path: Path) -> None:
    """A reader waiting for bytes that will never come gets the end of the file as soon as the download gives up."""
    arrival = storage._Arrival()
    path = tmp_path / "f"
    fd = storage.os.open(path, storage.os.O_RDWR | storage.os.O_CREAT)
    arrival.begin(fd, expected=100)
    storage.os.write(fd, b"0123456789")
    arrival.wrote(10)
    got: list[bytes] = []
    started = threading.Event()

    def read() -> None:
        with arrival.open("rb") as handle:
            got.append(handle.read(4))
            started.set()
            got.append(handle.read(50))  # waits: only 10 of 100 bytes are there

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(30)
    arrival.abandon()
    reader.join(30)
    assert not reader.is_alive()
    assert got == [b"0123", b""]
    arrival.close()
    storage.os.close(fd)


def test_with_the_index_first_the_poster_is_made_before_the_last_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overlap itself: the sender holds back the last chunk until the poster is made (a store that read the
    file only after the download would never make it, and the wait would run out)."""
    made = threading.Event()
    encode = media._jpeg

    def noting(frame: Any) -> bytes:
        jpeg = encode(frame)
        made.set()
        return jpeg

    monkeypatch.setattr(media, "_jpeg", noting)
    chunks = [MOOV_FIRST[i : i + 4096] for i in range(0, len(MOOV_FIRST), 4096)]
    held_back: list[bool] = []

    class Stream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from chunks[:-1]
            held_back.append(made.wait(timeout=30))
            yield chunks[-1]

    def reply(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "video/mp4", "Content-Length": str(len(MOOV_FIRST))}
        return httpx.Response(200, headers=headers, stream=Stream())

    service = FakeService(file_faults=deque([reply]))
    store_clip(hook_for(service), job_id="j1", url=URL, destination=tmp_path / "clip.mp4")
    assert held_back == [True]
    assert (tmp_path / "clip.poster.jpg").exists()


def test_the_probes_time_limit_is_counted_on_the_clock_it_is_given(tmp_path: Path) -> None:
    """The reader's clock leaves out its waits for bytes; a clock that stands still never runs out."""
    clip = tmp_path / "c.mp4"
    clip.write_bytes(CLIP)
    assert media.read_clip(clip, poster=False, timeout=0, clock=lambda: 0.0)[0].duration == 5.0
    with pytest.raises(media.NotAVideo, match="took longer than 0 s"):
        media.read_clip(clip, poster=False, timeout=0, clock=iter(range(1000)).__next__)
