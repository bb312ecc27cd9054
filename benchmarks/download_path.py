"""The download path: what storing a finished clip costs, phase by phase, against a plain download (issue 25, item 2).

    flock /tmp/happyhorse-bench.lock .venv/bin/python benchmarks/download_path.py [--durations 5 15] [--repeats 5]
        [--targets local s3] [--link-mb-s MB_PER_S] [--workdir DIR] [--output JSON]

Realistic clips: H.264 1920x1080 at 24 fps and about 20 Mbit/s with a stereo AAC track (a 15 s clip is about 37 MB),
moov first (``faststart``, as services serving clips over HTTP write them). They are made once and cached in
``<workdir>/clips``: two seconds of noisy frames (so the encoder needs the whole bitrate) are encoded, and the
packets of the second one (the rate control settled) are muxed once per second of the clip (each second starts with
a keyframe, no B-frames), so a 15 s clip takes seconds to make rather than minutes of 1080p encoding. The
emulator (``EmulatorProcess``, its own process, renders at 2% of real time) serves them for jobs of that duration
through ``EmulatorConfig.result_clips_dir``; S3 is moto's server (``moto_server``, its own process), reached through
``AIRFLOW_CONN_AWS_DEFAULT`` (``s3://aws_default@...``). Downloads run over loopback, where moving bytes costs almost
nothing and any fixed work weighs most; ``--link-mb-s`` puts a throttling TCP proxy (in the parent process) between
the workers and the emulator, so ours and the plain download both get a link of that speed (uploads to S3 are not
throttled).

For each target (a local path; S3) and each clip, a fresh child process imports Airflow and the provider, stores
one 3 s clip and downloads it plainly (the warm-up: modules, PyAV's codecs, the S3 session), then ``--repeats``
times, alternating which goes first:

- ours: ``GenerateVideoOperator(output_path=..., deferrable=False).execute()`` with a fake context (no Airflow
  cluster: the task's work is the same, and a cluster's start and supervisor would be noise on this 2-core
  machine), the clip checked against the file's size and SHA-256. Its wall time is the worker-slot time the task
  held (submit, the render's wait, the store). ``store_clip``'s phases are timed from outside by wrapping what it
  calls, without changing what it does: ``storage._download`` (the streamed transfer; the SHA-256 ``update`` calls
  inside it, through a timing stand-in for ``storage.hashlib``, are the hash), "read left" (the second read's
  cost: what of ``storage.read_clip`` ran after the download's end; the read, in the calling thread while the download
  runs in a worker thread, one open and one demux of the local file as it arrives, the first frame decoded and encoded
  as JPEG, runs during the transfer, and its own wall time is shown apart as "reader", in no sum), locally
  ``_LocalTarget.publish`` ("move": the poster's and the record's writes and the renames into place), on S3
  ``S3FileSystem._pipe_file`` (the poster's PUT, "writes") and ``S3FileSystem._put_file`` (the clip's one upload to its
  final key with its record as metadata, "upload"); "other" is the rest of ``store_clip`` (stale partials, the folder,
  the result).
- plain: the same URL (the one ours downloaded) streamed with httpx (``iter_raw``, as ours) into a file in the same
  place, with nothing else: ``open(path, "wb")`` locally, the same fsspec filesystem's ``open("wb")`` on S3.

The parent samples the child's RSS (psutil, every 10 ms). The memory figure is the highest RSS while ``store_clip``
ran, over the RSS of the ready process (after the warm-up), the highest of the repeats (the first run grows the heap,
later ones reuse it); the JSON has it per phase too, and each run's growth over its own start. Prints a markdown
table (medians over the repeats) and the targets: ours at least 80% of the plain download's throughput; the memory
figure of a 15 s clip within ``MEMORY_TOLERANCE_MB`` of a 5 s clip's; the second read (what is left of the probe and the
poster after the transfer) under 5% of the store. Writes ``benchmarks/results/download_path.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from _airflow import (
    RESULTS,
    LoadSampler,
    command_line,
    exit_on_sigterm,
    fmt,
    happyhorse_connection,
    machine,
    markdown_table,
    write_json,
)

from harness.processes import free_ports

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))
OUTPUT = RESULTS / "download_path.json"
MB = 1_000_000
MIB = 2**20

# The clips.
WIDTH, HEIGHT, FPS = 1920, 1080, 24
VIDEO_BITRATE = 20_000_000
AUDIO_RATE = 48_000
# Noise amplitudes (levels out of 256): enough detail that the encoder spends the whole bitrate.
LUMA_NOISE, CHROMA_NOISE = 48, 32
CLIP_VERSION = 1  # bump when the way clips are made changes: the cache folder is named after it
WARM_UP_DURATION = 3  # no pre-made clip of this duration: the emulator's tiny render

# The runs.
BUCKET = "happyhorse-bench"
SPEED = 0.02  # emulator render times: 2% of real (a 15 s clip with sound renders in about 1.6 s)
FIRST_POLL_AFTER = 0.3
POLL_INTERVAL = 0.2
SAMPLE_EVERY = 0.01

# Targets (issue 25, item 2).
TARGET_THROUGHPUT = 0.80  # ours at least this share of the plain download's throughput
TARGET_SECOND_READ = 0.05  # the second read at most this share of the store
MEMORY_TOLERANCE_MB = 8.0  # a 15 s clip's peak RSS (over the ready process's) within this of a 5 s clip's


# -- the clips ---------------------------------------------------------------------------------------------------


def clip_name(duration: int) -> str:
    """What ``EmulatorConfig.result_clips_dir`` serves for a job of ``duration`` s with sound."""
    return f"{duration:g}s-sound.mp4"


def clips_dir(workdir: Path) -> Path:
    return workdir / "clips" / f"{WIDTH}x{HEIGHT}-{FPS}fps-{VIDEO_BITRATE // 1000}k-v{CLIP_VERSION}"


def _noisy_frame(av: Any, index: int, chance: random.Random) -> Any:
    """Luma: bands of noise around a level that moves with the frame; chroma: fainter noise. No numpy needed."""
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    frame.pts = index
    bands = 8
    tables = [
        bytes(min(235, 16 + 24 * ((band + index) % bands) + (value * LUMA_NOISE >> 8)) for value in range(256))
        for band in range(bands)
    ]
    luma = chance.randbytes(WIDTH * HEIGHT)
    band_rows = HEIGHT // bands
    rows = b"".join(
        luma[band * band_rows * WIDTH : (band + 1) * band_rows * WIDTH].translate(tables[band]) for band in range(bands)
    )
    faint = bytes(128 - CHROMA_NOISE // 2 + (value * CHROMA_NOISE >> 8) for value in range(256))
    planes = frame.planes
    _fill(planes[0], rows, WIDTH, HEIGHT)
    for plane in planes[1:]:
        _fill(plane, chance.randbytes((WIDTH // 2) * (HEIGHT // 2)).translate(faint), WIDTH // 2, HEIGHT // 2)
    return frame


def _fill(plane: Any, data: bytes, width: int, height: int) -> None:
    if plane.line_size != width:
        padding = bytes(plane.line_size - width)
        data = b"".join(data[row * width : (row + 1) * width] + padding for row in range(height))
    plane.update(data + bytes(plane.buffer_size - len(data)))


def _two_seconds() -> bytes:
    """Two seconds of 1080p H.264 as an MP4, a keyframe each second, no B-frames: the second second is at about
    ``VIDEO_BITRATE`` (the first is over it while the rate control settles)."""
    import av

    output = io.BytesIO()
    chance = random.Random(CLIP_VERSION)
    kbits = VIDEO_BITRATE // 1000
    with av.open(output, mode="w", format="mp4") as container:
        params = f"keyint={FPS}:min-keyint={FPS}:scenecut=0:bframes=0:vbv-maxrate={kbits}:vbv-bufsize={kbits}"
        video: Any = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "x264-params": params})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = VIDEO_BITRATE
        for index in range(2 * FPS):
            for packet in video.encode(_noisy_frame(av, index, chance)):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return output.getvalue()


def make_clip(path: Path, duration: int, encoded: bytes) -> None:
    """``duration`` s: the packets of the second second of ``encoded`` once per second, and a tone on a stereo AAC
    track."""
    import av

    partial = path.with_name(f".{path.name}.partial")
    with av.open(str(partial), mode="w", format="mp4", options={"movflags": "faststart"}) as output:
        with av.open(io.BytesIO(encoded), mode="r") as source:
            video: Any = output.add_stream_from_template(source.streams.video[0])
        audio: Any = output.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        samples_done = 0
        for index in range(duration):
            with av.open(io.BytesIO(encoded), mode="r") as source:
                stream = source.streams.video[0]
                assert stream.time_base is not None
                one_second = int(1 / stream.time_base)
                shift = index * one_second - one_second
                for packet in source.demux(stream):
                    # Not the demuxer's closing empty packet, nor the first second's.
                    if packet.dts is None or packet.pts is None or packet.pts < one_second:
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = video
                    output.mux(packet)
            while samples_done < (index + 1) * AUDIO_RATE:
                count = min(1024, (index + 1) * AUDIO_RATE - samples_done)
                frame = av.AudioFrame(format="fltp", layout="stereo", samples=count)
                frame.sample_rate = AUDIO_RATE
                frame.pts = samples_done
                frame.time_base = Fraction(1, AUDIO_RATE)
                tone = _tone(samples_done, count)
                for plane in frame.planes:
                    plane.update(tone + bytes(plane.buffer_size - len(tone)))
                for packet in audio.encode(frame):
                    output.mux(packet)
                samples_done += count
        for packet in audio.encode():
            output.mux(packet)
    partial.replace(path)


def _tone(first: int, count: int) -> bytes:
    import array
    import math

    step = 2 * math.pi * 440 / AUDIO_RATE
    return array.array("f", (0.2 * math.sin(step * (first + i)) for i in range(count))).tobytes()


def ensure_clips(workdir: Path, durations: list[int]) -> dict[int, dict[str, Any]]:
    """The clips, made on first use; per duration its path, size and SHA-256."""
    folder = clips_dir(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    encoded: bytes | None = None
    clips = {}
    for duration in durations:
        path = folder / clip_name(duration)
        if not path.exists():
            began = time.monotonic()
            if encoded is None:
                encoded = _two_seconds()
            make_clip(path, duration, encoded)
            print(f"made {path} ({path.stat().st_size / MB:.1f} MB) in {time.monotonic() - began:.1f} s", flush=True)
        data = path.read_bytes()
        clips[duration] = {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return clips


# -- S3 (moto's server, its own process) ----------------------------------------------------------------------------


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    import boto3

    port = free_ports(1)[0]
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)], stdout=handle, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {log}") from None
                time.sleep(0.2)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        )
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# -- a link slower than loopback (--link-mb-s) ----------------------------------------------------------------------


class LinkProxy:
    """A TCP proxy on loopback to the emulator whose answers flow at most ``rate`` bytes/s per connection (a token
    bucket with a 256 KiB burst), in a thread with its own event loop. Requests pass unchanged: the emulator builds
    result URLs from the Host header, so they name the proxy too, and ours and the plain download share the link."""

    BURST = 256 * 1024
    CHUNK = 64 * 1024

    def __init__(self, upstream_port: int, rate: float) -> None:
        self.upstream_port, self.rate = upstream_port, rate
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-proxy", daemon=True)

    def __enter__(self) -> LinkProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the link proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, None), self._pipe(upstream_reader, client_writer, self.rate)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float | None) -> None:
        loop = asyncio.get_running_loop()
        tokens, last = float(self.BURST), loop.time()
        try:
            while data := await reader.read(self.CHUNK):
                if rate is not None:
                    now = loop.time()
                    tokens = min(float(self.BURST), tokens + (now - last) * rate) - len(data)
                    last = now
                    if tokens < 0:
                        await asyncio.sleep(-tokens / rate)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def aws_connection(endpoint: str) -> str:
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


# -- the child: one target, one clip --------------------------------------------------------------------------------


@dataclass
class Phases:
    """Seconds per phase of the current ``store_clip`` call, timed by wrapping what it calls."""

    seconds: dict[str, float] = field(default_factory=dict)
    intervals: list[tuple[str, float, float]] = field(default_factory=list)  # (phase, began, ended), monotonic
    window: tuple[float, float] = (0.0, 0.0)
    fetched: dict[str, int] = field(default_factory=dict)  # bytes read back from S3, by phase
    current: str = "other"  # the outermost timed phase running
    active: bool = False
    depth: int = 0  # a timed call inside another (write_text through write_bytes, say) counts once

    def add(self, name: str, seconds: float) -> None:
        if self.active:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            outermost = self.depth == 0
            self.depth += 1
            if outermost:
                self.current = name
            began = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                if outermost:
                    self.current = "other"
                if outermost and self.active:
                    ended = time.monotonic()
                    self.add(name, ended - began)
                    self.intervals.append((name, began, ended))

        return wrapper

    def timed_async(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """:meth:`timed` for a coroutine function (fsspec's ``_put_file``, run on its event loop's thread while
        the caller waits). Wrapping its sync ``put_file`` instead would change what runs: fsspec makes the sync
        method from the async one only where the class still has ``AbstractFileSystem``'s, so a wrapper there
        turns the one upload into a buffered ``open("wb")`` write."""

        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            outermost = self.depth == 0
            self.depth += 1
            if outermost:
                self.current = name
            began = time.monotonic()
            try:
                return await function(*args, **kwargs)
            finally:
                self.depth -= 1
                if outermost:
                    self.current = "other"
                if outermost and self.active:
                    ended = time.monotonic()
                    self.add(name, ended - began)
                    self.intervals.append((name, began, ended))

        return wrapper

    def store(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.seconds, self.intervals, self.fetched, self.active, self.depth = {}, [], {}, True, 0
            began = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                ended = time.monotonic()
                self.active = False
                self.window = (began, ended)
                self.seconds["total"] = ended - began

        return wrapper


class _TimedSha256:
    """``hashlib.sha256()`` whose ``update`` calls (the download's, chunk by chunk) count as the hash phase."""

    def __init__(self, phases: Phases, data: bytes) -> None:
        self._phases = phases
        self._inner = hashlib.sha256(data)

    def update(self, data: bytes) -> None:
        began = time.perf_counter()
        self._inner.update(data)
        self._phases.add("hash", time.perf_counter() - began)

    def hexdigest(self) -> str:
        return self._inner.hexdigest()


class _TimedHashlib:
    """Stands in for ``storage.hashlib``: ``sha256`` as :class:`_TimedSha256` (a poster's one-shot hash is record)."""

    def __init__(self, phases: Phases) -> None:
        self._phases = phases

    def sha256(self, data: bytes = b"") -> _TimedSha256:
        began = time.perf_counter()
        digest = _TimedSha256(self._phases, data)
        if data:
            self._phases.add("record", time.perf_counter() - began)
        return digest


def install_timers(phases: Phases, target: str) -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_happyhorse import render, storage

    def wrap(owner: object, name: str, phase: str) -> None:
        setattr(owner, name, phases.timed(phase, getattr(owner, name)))

    wrap(storage, "_download", "download")  # in the download's worker thread
    read_clip = storage.read_clip

    @functools.wraps(read_clip)
    def reader(*args: Any, **kwargs: Any) -> Any:  # in the calling thread, overlapping the download: not a phase
        began = time.monotonic()
        try:
            return read_clip(*args, **kwargs)
        finally:
            ended = time.monotonic()
            phases.add("reader", ended - began)
            # "read left": what of it ran after the last byte was in (the download's end, once it has ended).
            downloads = [end for name, _, end in phases.intervals if name == "download"]
            if phases.active and downloads and ended > downloads[-1]:
                phases.add("read", ended - max(began, downloads[-1]))
                phases.intervals.append(("read", max(began, downloads[-1]), ended))

    storage.read_clip = reader
    wrap(storage._LocalTarget, "publish", "move")
    wrap(ObjectStoragePath, "write_bytes", "writes")
    wrap(ObjectStoragePath, "write_text", "writes")
    wrap(ObjectStoragePath, "move", "move")
    if target == "s3":
        import s3fs

        s3fs.S3FileSystem._pipe_file = phases.timed_async("writes", s3fs.S3FileSystem._pipe_file)
        s3fs.S3FileSystem._put_file = phases.timed_async("upload", s3fs.S3FileSystem._put_file)
        fetch_range = s3fs.core.S3File._fetch_range

        def counted(self: Any, start: int, end: int) -> bytes:
            data: bytes = fetch_range(self, start, end)
            if phases.active:
                phases.fetched[phases.current] = phases.fetched.get(phases.current, 0) + len(data)
            return data

        s3fs.core.S3File._fetch_range = counted
    for owner, name, value in (
        (render, "store_clip", phases.store(storage.store_clip)),  # the operator's finish calls it there
        (storage, "hashlib", _TimedHashlib(phases)),
    ):
        setattr(owner, name, value)


def own_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def child_main(options: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from airflow_provider_happyhorse.storage import as_storage_path
    from support.context import DictStore, make_context

    def emit(**fields: Any) -> None:
        with Path(options.report).open("a", encoding="utf-8") as report:
            report.write(json.dumps(fields) + "\n")

    duration, target = options.duration, options.target
    place = (
        f"s3://aws_default@{BUCKET}/download-path/{duration}s"
        if target == "s3"
        else str(Path(options.workdir) / "store" / f"{duration}s")
    )
    phases = Phases()
    install_timers(phases, target)
    if target == "local":
        Path(place).mkdir(parents=True, exist_ok=True)

    def clean() -> None:
        folder = as_storage_path(place)
        for leftover in folder.iterdir() if folder.exists() else ():
            leftover.unlink()

    def ours(run: str, seconds: int) -> dict[str, Any]:
        operator = GenerateVideoOperator(
            task_id="download_path",
            prompt=f"download path benchmark, {seconds} s clip, {run}",
            duration=seconds,
            sound=True,
            aspect_ratio="16:9",
            deferrable=False,
            first_poll_after=FIRST_POLL_AFTER,
            poll_interval=POLL_INTERVAL,
            output_path=f"{place}/{run}.mp4",
        )
        context = make_context(DictStore())
        context["outlet_events"] = OutletEventAccessors()
        rss, began = own_rss(), time.monotonic()
        result = operator.execute(context)
        ended = time.monotonic()
        return {
            "began": began,
            "ended": ended,
            "rss_before": rss,
            "slot_seconds": ended - began,
            "store_window": phases.window,
            "phases": dict(phases.seconds),
            "intervals": list(phases.intervals),
            "fetched_from_s3": dict(phases.fetched),
            "size": result["stored_size"],
            "sha256": result["stored_sha256"],
            "url": result["video_url"],
            "media": result["media"],
        }

    def sink(destination: str) -> IO[bytes]:
        """The file a plain download writes: a local file, or the same fsspec filesystem's file on S3."""
        if target == "local":
            return open(destination, "wb")
        handle: IO[bytes] = as_storage_path(destination).open("wb")
        return handle

    def plain(run: str, url: str) -> dict[str, Any]:
        destination = f"{place}/{run}.mp4"
        rss, began = own_rss(), time.monotonic()
        size = 0
        with (
            httpx.Client(trust_env=False, timeout=120) as client,
            client.stream("GET", url) as response,
            sink(destination) as handle,
        ):
            response.raise_for_status()
            for chunk in response.iter_raw():
                handle.write(chunk)
                size += len(chunk)
        ended = time.monotonic()
        return {"began": began, "ended": ended, "rss_before": rss, "seconds": ended - began, "size": size}

    clean()
    warm = ours("warm-up", WARM_UP_DURATION)
    plain("warm-up-plain", warm["url"])
    clean()
    emit(event="ready", rss=own_rss())
    url = None
    for repeat in range(options.repeats):
        order = ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours")
        for what in order:
            if what == "ours":
                run = ours(f"run-{repeat}", duration)
                if (run["size"], run["sha256"]) != (options.size, options.sha256):
                    raise RuntimeError(f"stored {run['size']} B, sha256 {run['sha256']}: not the clip served")
                url = run["url"]
            else:
                assert url is not None  # the first repeat stores first
                run = plain(f"plain-{repeat}", url)
                if run["size"] != options.size:
                    raise RuntimeError(f"plain download got {run['size']} of {options.size} B")
            emit(event=what, repeat=repeat, **run)
            clean()
    emit(event="done", max_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return 0


# -- the parent -------------------------------------------------------------------------------------------------------


class RssSampler:
    """A process's RSS every ``SAMPLE_EVERY`` s, in a thread: (monotonic time, bytes)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self.process.memory_info().rss))
            self._stop.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peak(self, began: float, ended: float) -> int | None:
        """The highest RSS sampled in the window (None: no sample fell in it)."""
        return max((rss for at, rss in self.samples if began <= at <= ended), default=None)


def run_child(
    target: str, duration: int, clip: dict[str, Any], options: argparse.Namespace, env: dict[str, str], logs: Path
) -> dict[str, Any]:
    report = logs / f"{target}-{duration}s.jsonl"
    report.unlink(missing_ok=True)
    command = [PYTHON, __file__, "--child", "--target", target, "--duration", str(duration)]
    command += ["--repeats", str(options.repeats), "--workdir", str(options.workdir), "--report", str(report)]
    command += ["--size", str(clip["size"]), "--sha256", clip["sha256"]]
    with (logs / f"{target}-{duration}s.log").open("wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        sampler = RssSampler(child.pid)
        try:
            code = child.wait(timeout=900)
        finally:
            sampler.stop()
            if child.poll() is None:
                child.kill()
                child.wait()
    if code != 0:
        raise RuntimeError(f"the {target} {duration}s child exited {code}; see {logs / f'{target}-{duration}s.log'}")
    events = [json.loads(line) for line in report.read_text().splitlines()]
    ready = next(event for event in events if event["event"] == "ready")
    done = next(event for event in events if event["event"] == "done")
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}

    def over(peak: int | None, base: int) -> float:
        if peak is None:
            raise RuntimeError(f"no RSS sample in a run's window; see {report}")
        return round((peak - base) / MIB, 1)

    for event in events:
        if event["event"] in runs:
            event["peak_rss"] = sampler.peak(event["began"], event["ended"])
            event["growth_mb"] = over(event["peak_rss"], event["rss_before"])  # over the run's own start
            if event["event"] == "ours":
                store_peak = sampler.peak(*event["store_window"])
                event["store_growth_mb"] = over(store_peak, event["rss_before"])
                # Over the ready process (after the warm-up): what storing this clip holds at its peak, even when
                # an earlier run already grew the heap that this one reuses.
                event["store_peak_over_ready_mb"] = over(store_peak, ready["rss"])
                by_phase: dict[str, float] = {}
                for name, phase_began, phase_ended in event["intervals"]:
                    peak = sampler.peak(phase_began, phase_ended)
                    if peak is not None:  # a phase shorter than the sampling interval may have no sample
                        by_phase[name] = max(by_phase.get(name, -1e9), over(peak, ready["rss"]))
                event["phase_peak_over_ready_mb"] = by_phase
            runs[event["event"]].append(event)
    return {
        "target": target,
        "duration": duration,
        "size": clip["size"],
        "rss_ready_mb": round(ready["rss"] / MIB, 1),
        "max_rss_mb": round(done["max_rss"] / MIB, 1),
        "ours": runs["ours"],
        "plain": runs["plain"],
        "figures": figures(clip["size"], runs["ours"], runs["plain"]),
    }


PHASES = ("download", "hash", "read", "writes", "record", "move", "upload")


def figures(size: int, ours: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats."""

    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    store = median([run["phases"]["total"] for run in ours])
    phase = {name: median([run["phases"].get(name, 0.0) for run in ours]) for name in PHASES}
    phase["transfer"] = median([run["phases"].get("download", 0.0) - run["phases"].get("hash", 0.0) for run in ours])
    counted = [name for name in PHASES if name != "hash"]  # the hash is inside the download
    phase["reader"] = median([run["phases"].get("reader", 0.0) for run in ours])  # overlapped: in no sum
    phase["other"] = median([run["phases"]["total"] - sum(run["phases"].get(n, 0.0) for n in counted) for run in ours])
    second_read = [run["phases"].get("read", 0.0) / run["phases"]["total"] for run in ours]
    plain_seconds = median([run["seconds"] for run in plain])
    return {
        "size_mb": round(size / MB, 1),
        "store_seconds": round(store, 3),
        "phase_seconds": {name: round(value, 3) for name, value in phase.items()},
        "plain_seconds": round(plain_seconds, 3),
        "ours_mb_per_s": round(size / MB / store, 1),
        "plain_mb_per_s": round(size / MB / plain_seconds, 1),
        "throughput_ratio": round(plain_seconds / store, 3),
        "transfer_ratio": round(plain_seconds / phase["transfer"], 3) if phase["transfer"] else None,
        "second_read_share": round(median(second_read), 4),
        "second_read_shares": [round(share, 4) for share in second_read],
        "ours_peak_over_ready_mb": max(run["store_peak_over_ready_mb"] for run in ours),
        "ours_peak_over_ready_mb_each": [run["store_peak_over_ready_mb"] for run in ours],
        "phase_peak_over_ready_mb": {
            name: max(run["phase_peak_over_ready_mb"][name] for run in sampled)
            for name in ("download", "read", "writes", "record", "move", "upload")
            if (sampled := [run for run in ours if name in run["phase_peak_over_ready_mb"]])
        },
        "first_run_phase_peak_over_ready_mb": ours[0]["phase_peak_over_ready_mb"],
        "fetched_from_s3_mb": {
            name: round(median([run["fetched_from_s3"].get(name, 0) for run in ours]) / MB, 1)
            for name in sorted({name for run in ours for name in run["fetched_from_s3"]})
        },
        "ours_growth_mb": max(run["store_growth_mb"] for run in ours),
        "ours_growth_mb_each": [run["store_growth_mb"] for run in ours],
        "plain_growth_mb": max(run["growth_mb"] for run in plain),
        "plain_growth_mb_each": [run["growth_mb"] for run in plain],
        "slot_seconds": round(median([run["slot_seconds"] for run in ours]), 3),
        "slot_outside_store_seconds": round(median([run["slot_seconds"] - run["phases"]["total"] for run in ours]), 3),
        "slot_seconds_each": [round(run["slot_seconds"], 3) for run in ours],
        "store_seconds_each": [round(run["phases"]["total"], 3) for run in ours],
        "plain_seconds_each": [round(run["seconds"], 3) for run in plain],
    }


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for row in rows:
        f = row["figures"]
        checks.append(
            {
                "target": row["target"],
                "clip": f"{row['duration']} s",
                "check": f"throughput at least {TARGET_THROUGHPUT:.0%} of the plain download's",
                "measured": f"{f['throughput_ratio']:.0%}",
                "met": f["throughput_ratio"] >= TARGET_THROUGHPUT,
            }
        )
        checks.append(
            {
                "target": row["target"],
                "clip": f"{row['duration']} s",
                "check": f"second read (probe + poster left after the transfer) under {TARGET_SECOND_READ:.0%} of the "
                "store",
                "measured": f"{f['second_read_share']:.1%}",
                "met": f["second_read_share"] < TARGET_SECOND_READ,
            }
        )
    for target in sorted({row["target"] for row in rows}):
        mine = sorted((row for row in rows if row["target"] == target), key=lambda row: row["duration"])
        if len(mine) < 2:
            continue
        short, long = mine[0], mine[-1]
        difference = long["figures"]["ours_peak_over_ready_mb"] - short["figures"]["ours_peak_over_ready_mb"]
        checks.append(
            {
                "target": target,
                "clip": f"{short['duration']} s vs {long['duration']} s",
                "check": f"peak RSS while storing constant in clip size (within {MEMORY_TOLERANCE_MB:g} MiB)",
                "measured": f"{short['figures']['ours_peak_over_ready_mb']:.1f} vs "
                f"{long['figures']['ours_peak_over_ready_mb']:.1f} MiB over ready "
                f"({difference:+.1f})",
                "met": abs(difference) <= MEMORY_TOLERANCE_MB,
            }
        )
    return checks


def tables(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    headers = [
        "target",
        "clip",
        "MB",
        "store s",
        "transfer",
        "hash",
        "read left (probe + poster)",
        "reader (overlapped)",
        "poster + record writes",
        "move / upload",
        "other",
        "plain s",
        "ours / plain",
        "2nd read",
        "peak RSS MiB over ready",
        "slot s",
    ]
    body = []
    for row in rows:
        f, p = row["figures"], row["figures"]["phase_seconds"]
        body.append(
            [
                row["target"],
                f"{row['duration']} s",
                fmt(f["size_mb"]),
                fmt(f["store_seconds"], 2),
                fmt(p["transfer"], 2),
                fmt(p["hash"], 2),
                fmt(p["read"], 2),
                fmt(p["reader"], 2),
                fmt(p["writes"] + p["record"], 2),
                fmt(p["move"] + p["upload"], 2),
                fmt(p["other"], 2),
                fmt(f["plain_seconds"], 2),
                f"{f['throughput_ratio']:.0%} ({f['ours_mb_per_s']:.0f} / {f['plain_mb_per_s']:.0f} MB/s)",
                f"{f['second_read_share']:.1%}",
                fmt(f["ours_peak_over_ready_mb"]),
                fmt(f["slot_seconds"], 2),
            ]
        )
    check_rows = [[c["target"], c["clip"], c["check"], c["measured"], "yes" if c["met"] else "NO"] for c in checks]
    return (
        markdown_table(headers, body)
        + "\n\n"
        + markdown_table(["target", "clip", "target", "measured", "met"], check_rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--durations", type=int, nargs="+", default=[5, 15], help="clip seconds (default 5 15)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, ours and plain (default 5)")
    parser.add_argument("--targets", nargs="+", choices=("local", "s3"), default=["local", "s3"])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "happyhorse-download-path",
        help="clips (kept, made once), stored files and logs (default: %(default)s)",
    )
    parser.add_argument(
        "--link-mb-s",
        type=float,
        help="download over a link of this many MB/s (a throttling proxy before the emulator; default: loopback)",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        return child_main(options)

    exit_on_sigterm()
    started, began = machine(), time.monotonic()
    workdir: Path = options.workdir
    logs = workdir / "logs"
    shutil.rmtree(workdir / "store", ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    clips = ensure_clips(workdir, sorted(set(options.durations)))

    from happyhorse_emulator import EmulatorConfig, EmulatorProcess

    config = EmulatorConfig(
        speed=SPEED, jitter=0.0, max_concurrent_per_key=None, result_clips_dir=str(clips_dir(workdir))
    )
    rows = []
    with (
        EmulatorProcess(config, log_file=logs / "emulator.log") as emulator,
        moto_server(logs / "moto.log") as endpoint,
        contextlib.ExitStack() as stack,
        LoadSampler() as load,
    ):
        base_url = emulator.base_url
        if options.link_mb_s:
            link = stack.enter_context(LinkProxy(emulator.port, options.link_mb_s * MB))
            base_url = f"http://127.0.0.1:{link.port}"
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(workdir / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": happyhorse_connection(base_url, emulator.api_key),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        via = f" through a {options.link_mb_s:g} MB/s link at {base_url}" if options.link_mb_s else ""
        print(f"emulator {emulator.base_url}{via}, moto {endpoint}; logs in {logs}", flush=True)
        for target in options.targets:
            for duration in sorted(set(options.durations)):
                row = run_child(target, duration, clips[duration], options, env, logs)
                rows.append(row)
                f = row["figures"]
                print(
                    f"  {target} {duration} s ({f['size_mb']} MB): store {f['store_seconds']:.2f} s, "
                    f"plain {f['plain_seconds']:.2f} s ({f['throughput_ratio']:.0%}), second read "
                    f"{f['second_read_share']:.1%}, peak RSS +{f['ours_peak_over_ready_mb']:.1f} MiB, "
                    f"slot {f['slot_seconds']:.2f} s",
                    flush=True,
                )
    checks = targets(rows)
    table = tables(rows, checks)
    seconds = time.monotonic() - began
    print(f"\n{table}\n")
    write_json(
        options.output,
        {
            "benchmark": "download path: store_clip's phases against a plain streamed download",
            "command": command_line(),
            "machine": started,
            "load": load.summary(),
            "clip": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "video_bitrate": VIDEO_BITRATE, "audio": "aac"},
            "emulator_speed": SPEED,
            "link_mb_s": options.link_mb_s,
            "repeats": options.repeats,
            "slot_time_through": "GenerateVideoOperator.execute() with a fake context, deferrable=False (no cluster)",
            "rows": [{key: value for key, value in row.items()} for row in rows],
            "targets": checks,
            "all_targets_met": all(check["met"] for check in checks),
            "table_markdown": table,
            "total_seconds": round(seconds, 1),
        },
    )
    print(f"wrote {options.output} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
