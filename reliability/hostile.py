"""
A hostile HappyHorse for trial 10: an HTTP server that speaks the API (``POST /api/generate``,
``GET /api/status``, see ``docs/happyhorse-api.md``) and answers each job the way its prompt asks
(``hostile:<case> ...``; any other prompt is a normal render with a real MP4 of the requested duration, aspect
ratio and sound, made by the emulator's clip maker).

It listens twice on one port: on 127.0.0.1 (the API, what the connection's Base URL names) and on 127.0.0.2,
another loopback host that stands for every address a download must not reach; every request either one gets is
recorded, so a fetch the provider should not have made is counted, not just suspected. Every body it serves
from 127.0.0.2, every redirect and error body and the gzip bomb carry ``marker``, a random string: if it shows up
in a log, a body that no one should have read was read.

The cases (``CASES``) and what each job's result is:

=====================  ==========================================================================================
``link_local``         result URL ``http://169.254.169.254/latest/meta-data/`` (cloud metadata; never reached)
``private``            result URL ``http://10.255.255.1/clip.mp4`` (an unroutable private address; never reached)
``loopback_other``     result URL on 127.0.0.2 (the recording listener)
``redirect_*``         result URL on the API host that answers 302 to each of the three above
``gzip_bomb``          the job's first ``BOMB_POLLS`` status answers are ~400 KB of gzip inflating to 400 MiB
                       (``Content-Encoding: gzip`` although the client asks for identity), then a normal render
``endless``            the clip streams without end (chunked), up to a safety stop far past any cap the trial sets
``slow_drip``          the clip declares a small Content-Length and sends one byte every ``DRIP_INTERVAL`` s
``over_cap``           a 3 MiB body with its Content-Length
``hls_playlist``       an HLS playlist (``#EXTM3U``) naming a segment on 127.0.0.2
``huge_frame``         a real 3 s MP4 whose H.264 header (the SPS in ``avcC``, and ``tkhd``/``avc1``) declares
                       16000x16000: decoding its first frame would allocate about 0.75 GB (see ``huge_frame_mp4``)
``bad_job_id``         the submission answers ``task_id`` ``../../etc/x-<token>``
``tampered_*``         normal renders (the trial tampers with what they stored afterwards)
=====================  ==========================================================================================

The 169.254/10.255 URLs are never connected to by anything here: the trial's egress guard
(``reliability.egress_guard``) refuses any non-loopback connect in the cluster's processes and records it.

It runs in daemon threads of the calling process (``ThreadingHTTPServer``), like the fault gateway.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from happyhorse_emulator.video import ASPECT_FRAME_SIZES, render_mp4

API_HOST = "127.0.0.1"
FORBIDDEN_HOST = "127.0.0.2"
LINK_LOCAL_URL = "http://169.254.169.254/latest/meta-data/"
PRIVATE_URL = "http://10.255.255.1/clip.mp4"
CASE_PREFIX = "hostile:"
NORMAL = "normal"
CASES = (
    "link_local",
    "private",
    "loopback_other",
    "redirect_link_local",
    "redirect_private",
    "redirect_loopback",
    "gzip_bomb",
    "endless",
    "slow_drip",
    "over_cap",
    "hls_playlist",
    "huge_frame",
    "bad_job_id",
    "tampered_xcom",
    "tampered_sidecar",
)
RENDER_SECONDS = 6.0
"""A job succeeds this long after its submission (long enough for a deferral)."""
BOMB_POLLS = 2
BOMB_INFLATED_BYTES = 400 * 1024 * 1024
ENDLESS_SAFETY_BYTES = 256 * 1024 * 1024
"""The endless stream stops (mid-chunk, so as a broken body) after this much, should a client never hang up."""
STREAM_SAFETY_SECONDS = 90.0
DRIP_INTERVAL = 1.0
DRIP_DECLARED_BYTES = 200_000
OVER_CAP_BYTES = 3 * 1024 * 1024
HUGE_FRAME = (16000, 16000)
MAX_BODY = 1024 * 1024
_JOB_PATH = re.compile(r"^/(?:files|redirect)/(?P<job>[^/]+?)(?:\.mp4|\.m3u8)?$")


def case_of(prompt: str) -> str:
    """The case a prompt asks for (``hostile:<case> ...``), else ``NORMAL``."""
    if prompt.startswith(CASE_PREFIX):
        name = prompt[len(CASE_PREFIX) :].split(None, 1)[0] if len(prompt) > len(CASE_PREFIX) else ""
        if name in CASES:
            return name
    return NORMAL


def fingerprint(body: dict[str, Any]) -> str:
    """The emulator's fingerprint: SHA-256 of the body's canonical JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- hostile bodies ---------------------------------------------------------------------------------------


def gzip_bomb(marker: str, inflated: int = BOMB_INFLATED_BYTES) -> bytes:
    """A gzip member (about 1/1000 of ``inflated``) whose body starts like an API answer, then zeros; compressed
    1 MiB at a time, never held inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = f'{{"code": 200, "message": "success", "data": {{"padding": "{marker}'.encode()
    parts = [compressor.compress(head)]
    block = bytes(1024 * 1024)
    for _ in range(max(0, inflated - len(head)) // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return b"".join(parts)


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            value = (value << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, bits: int, value: int) -> None:
        self.bits.extend((value >> (bits - 1 - index)) & 1 for index in range(bits))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _unescape(payload: bytes) -> bytes:
    """NAL payload -> RBSP (emulation prevention bytes removed)."""
    out, zeros = bytearray(), 0
    for byte in payload:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def resize_sps(nal: bytes, width: int, height: int) -> bytes:
    """An H.264 sequence parameter set (NAL with its header byte) declaring ``width`` x ``height`` (multiples of
    16), no cropping, every other field as it was."""
    reader, writer = _BitReader(_unescape(nal[1:])), _BitWriter()

    def copy(bits: int) -> int:
        value = reader.u(bits)
        writer.u(bits, value)
        return value

    def copy_ue() -> int:
        value = reader.ue()
        writer.ue(value)
        return value

    def copy_se() -> None:
        writer.se(reader.se())

    profile = copy(8)
    copy(8)  # constraint flags
    copy(8)  # level
    copy_ue()  # seq_parameter_set_id
    if profile in _HIGH_PROFILES:
        if copy_ue() == 3:  # chroma_format_idc
            copy(1)
        copy_ue()  # bit depths
        copy_ue()
        copy(1)
        if copy(1):
            raise ValueError("an SPS with scaling matrices is not supported")
    copy_ue()  # log2_max_frame_num_minus4
    order = copy_ue()
    if order == 0:
        copy_ue()
    elif order == 1:
        copy(1)
        copy_se()
        copy_se()
        for _ in range(copy_ue()):
            copy_se()
    copy_ue()  # max_num_ref_frames
    copy(1)
    reader.ue()  # pic_width_in_mbs_minus1
    reader.ue()  # pic_height_in_map_units_minus1
    frame_mbs_only = reader.u(1)
    writer.ue(width // 16 - 1)
    writer.ue(height // 16 // (2 - frame_mbs_only) - 1)
    writer.u(1, frame_mbs_only)
    if not frame_mbs_only:
        copy(1)
    copy(1)  # direct_8x8_inference_flag
    if reader.u(1):  # frame cropping: dropped
        for _ in range(4):
            reader.ue()
    writer.u(1, 0)
    rbsp = reader.data
    stop = len(rbsp) * 8 - 1
    while not (rbsp[stop >> 3] >> (7 - (stop & 7))) & 1:
        stop -= 1
    while reader.pos < stop:  # the VUI, as it was
        copy(1)
    writer.u(1, 1)
    return nal[:1] + _escape(writer.to_bytes())


_CONTAINER_BOXES = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})


def _boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8:
            raise ValueError(f"an MP4 box of size {size} is not supported")
        yield kind, data[offset + 8 : offset + size]
        offset += size


def _resize_avcc(body: bytes, width: int, height: int) -> bytes:
    count = body[5] & 0x1F
    offset, out = 6, bytearray(body[:5] + bytes([0xE0 | count]))
    for _ in range(count):
        (length,) = struct.unpack_from(">H", body, offset)
        sps = resize_sps(body[offset + 2 : offset + 2 + length], width, height)
        out += struct.pack(">H", len(sps)) + sps
        offset += 2 + length
    return bytes(out) + body[offset:]


def resize_mp4(data: bytes, width: int, height: int) -> bytes:
    """An MP4 (``moov`` after ``mdat``, as PyAV writes it) whose H.264 track declares ``width`` x ``height``
    everywhere a reader looks: the SPS in ``avcC`` (what FFmpeg believes), ``avc1`` and ``tkhd``."""

    def walk(payload: bytes) -> bytes:
        out = b""
        for kind, body in _boxes(payload):
            if kind in _CONTAINER_BOXES:
                body = walk(body)
            elif kind == b"stsd":
                body = body[:8] + walk(body[8:])
            elif kind == b"avc1":
                fixed = bytearray(body[:78])
                struct.pack_into(">HH", fixed, 24, width, height)
                body = bytes(fixed) + walk(body[78:])
            elif kind == b"avcC":
                body = _resize_avcc(body, width, height)
            elif kind == b"tkhd":
                header = bytearray(body)
                struct.pack_into(">II", header, len(header) - 8, width << 16, height << 16)
                body = bytes(header)
            out += struct.pack(">I4s", 8 + len(body), kind) + body
        return out

    return walk(data)


@lru_cache(maxsize=1)
def huge_frame_mp4() -> bytes:
    """A real 3 s, 1:1, silent H.264 MP4 (96x96 frames) whose header declares 16000x16000.

    PyAV cannot encode that size cheaply (one frame is 384 MB before the encoder's own buffers), and patching only
    ``tkhd``/``avc1`` is not enough: FFmpeg takes the size from the SPS. So the SPS is rewritten (exp-Golomb
    fields ``pic_width_in_mbs_minus1``/``pic_height_in_map_units_minus1``, cropping dropped) and the boxes
    around it resized. FFmpeg then reports 16000x16000 and decoding the first frame allocates about 0.75 GB.
    """
    return resize_mp4(render_mp4(3, 96, 96, False), *HUGE_FRAME)


# -- the service ----------------------------------------------------------------------------------------


@dataclass
class Job:
    job_id: str
    case: str
    prompt: str
    fingerprint: str
    created: float
    duration: float
    aspect_ratio: str
    sound: bool
    polls: int = 0
    bombs: int = 0


@dataclass
class Record:
    """One request either listener got."""

    at: float
    listener: str  # "api" or "forbidden"
    method: str
    path: str
    job_id: str | None = None
    status: int | None = None
    sent: int = 0
    authorized: bool = False  # it carried an Authorization header
    note: str = ""


@dataclass
class _State:
    jobs: dict[str, Job] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    submissions: Counter[str] = field(default_factory=Counter)
    served: dict[str, str] = field(default_factory=dict)  # job id -> SHA-256 of the clip served


class HostileService:
    """Start with :meth:`start`, stop with :meth:`stop`; everything it saw is in :meth:`records`, :meth:`jobs`
    and :meth:`submissions` (accepted ``POST /api/generate`` per request fingerprint: the paid calls)."""

    def __init__(self, api_key: str, marker: str, *, render_seconds: float = RENDER_SECONDS) -> None:
        self.api_key = api_key
        self.marker = marker
        self.render_seconds = render_seconds
        self.token = secrets.token_hex(4)
        self.bad_job_id = f"../../etc/x-{self.token}"
        self._state = _State()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._bomb: bytes | None = None
        self._bomb_lock = threading.Lock()
        self.port = 0
        self.forbidden_port = 0

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{API_HOST}:{self.port}"

    @property
    def forbidden_url(self) -> str:
        return f"http://{FORBIDDEN_HOST}:{self.forbidden_port}"

    def start(self) -> HostileService:
        api = self._server(API_HOST, 0, forbidden=False)
        self.port = api.server_address[1]
        try:
            forbidden = self._server(FORBIDDEN_HOST, self.port, forbidden=True)
        except OSError:  # the same port is taken there: any other
            forbidden = self._server(FORBIDDEN_HOST, 0, forbidden=True)
        self.forbidden_port = forbidden.server_address[1]
        for name, server in (("api", api), ("forbidden", forbidden)):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            thread.name = f"hostile-{name}"
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def _server(self, host: str, port: int, *, forbidden: bool) -> ThreadingHTTPServer:
        server = _Server((host, port), _Handler)
        server.service = self
        server.forbidden = forbidden
        return server

    def stop(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> HostileService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it saw ------------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._state.records)

    def jobs(self) -> dict[str, Job]:
        with self._lock:
            return dict(self._state.jobs)

    def submissions(self) -> Counter[str]:
        with self._lock:
            return Counter(self._state.submissions)

    def served_sha256(self, job_id: str) -> str | None:
        with self._lock:
            return self._state.served.get(job_id)

    def _record(self, record: Record) -> Record:
        with self._lock:
            self._state.records.append(record)
        return record

    # -- answers ----------------------------------------------------------------------------------------

    def bomb(self) -> bytes:
        with self._bomb_lock:
            if self._bomb is None:
                self._bomb = gzip_bomb(self.marker)
            return self._bomb

    def submit(self, body: dict[str, Any]) -> Job:
        prompt = str(body.get("prompt") or "")
        case = case_of(prompt)
        with self._lock:
            number = len(self._state.jobs) + 1
            job_id = self.bad_job_id if case == "bad_job_id" else f"hh{number:03d}{self.token}{secrets.token_hex(3)}"
            job = Job(
                job_id=job_id,
                case=case,
                prompt=prompt,
                fingerprint=fingerprint(body),
                created=time.monotonic(),
                duration=float(body.get("duration", 5)),
                aspect_ratio=str(body.get("aspect_ratio", "16:9")),
                sound=bool(body.get("sound", True)),
            )
            self._state.jobs[job_id] = job
            self._state.submissions[job.fingerprint] += 1
        return job

    def result_url(self, job: Job) -> str:
        return {
            "link_local": LINK_LOCAL_URL,
            "private": PRIVATE_URL,
            "loopback_other": f"{self.forbidden_url}/clip-{job.job_id}.mp4",
            "redirect_link_local": f"{self.base_url}/redirect/{job.job_id}",
            "redirect_private": f"{self.base_url}/redirect/{job.job_id}",
            "redirect_loopback": f"{self.base_url}/redirect/{job.job_id}",
            "hls_playlist": f"{self.base_url}/files/{job.job_id}.m3u8",
        }.get(job.case, f"{self.base_url}/files/{job.job_id}.mp4")

    def redirect_target(self, job: Job) -> str | None:
        return {
            "redirect_link_local": LINK_LOCAL_URL,
            "redirect_private": PRIVATE_URL,
            "redirect_loopback": f"{self.forbidden_url}/redirected-{job.job_id}.mp4",
        }.get(job.case)

    def playlist(self, job: Job) -> bytes:
        return (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:3.0,\n{self.forbidden_url}/hls/{job.job_id}/segment0.ts\n#EXT-X-ENDLIST\n"
        ).encode()

    def clip(self, job: Job) -> bytes:
        if job.case == "huge_frame":
            data = huge_frame_mp4()
        else:
            width, height = ASPECT_FRAME_SIZES.get(job.aspect_ratio, ASPECT_FRAME_SIZES["16:9"])
            data = render_mp4(job.duration, width, height, job.sound)
        with self._lock:
            self._state.served[job.job_id] = hashlib.sha256(data).hexdigest()
        return data

    def job(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._state.jobs.get(job_id or "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    service: HostileService
    forbidden: bool

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up between requests (a kept-alive connection closed) is no error here."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: what matters is recorded
        pass

    @property
    def service(self) -> HostileService:
        return self.server.service

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        record = self.service._record(
            Record(
                at=time.time(),
                listener="forbidden" if self.server.forbidden else "api",
                method=self.command,
                path=parts.path,
                authorized=self.headers.get("Authorization") is not None,
            )
        )
        try:
            self._route(record, parts.path, parse_qs(parts.query))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            record.note = record.note or "the client hung up"
            self.close_connection = True

    # -- routing ----------------------------------------------------------------------------------------

    def _route(self, record: Record, path: str, query: dict[str, list[str]]) -> None:
        service = self.service
        if self.server.forbidden:
            match = re.search(r"(hh\w+|x-\w+)", path)
            record.job_id = match.group(1) if match else None
            self._send(record, 200, f"{service.marker}: fetched from the forbidden listener".encode(), "video/mp4")
            return
        if path == "/api/generate" and self.command == "POST":
            self._generate(record)
        elif path == "/api/status" and self.command == "GET":
            self._status(record, (query.get("task_id") or [""])[0])
        elif (match := _JOB_PATH.match(path)) is not None:
            job = service.job(match["job"])
            record.job_id = match["job"]
            if job is None:
                self._error(record, 404, "no such file")
            elif path.startswith("/redirect/"):
                self._redirect(record, job)
            else:
                self._file(record, job, path)
        else:
            self._error(record, 404, "not found")

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.service.api_key}"

    def _generate(self, record: Record) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not self._authorized():
            self._discard(length)
            self._error(record, 401, "invalid api key")
            return
        if length > MAX_BODY:
            self._error(record, 400, "body too large")
            self.close_connection = True
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._error(record, 400, "body is not JSON")
            return
        if not isinstance(body, dict) or body.get("model") != "happyhorse-1.0/video":
            self._error(record, 400, "model: must be happyhorse-1.0/video")
            return
        job = self.service.submit(body)
        record.job_id = job.job_id
        record.note = job.case
        self._json(
            record, 200, {"code": 200, "message": "success", "data": {"task_id": job.job_id, "status": "IN_PROGRESS"}}
        )

    def _status(self, record: Record, job_id: str) -> None:
        service = self.service
        record.job_id = job_id or None
        if not self._authorized():
            self._error(record, 401, "invalid api key")
            return
        job = service.job(job_id)
        if job is None:
            self._error(record, 404, f"task not found: {job_id}")
            return
        job.polls += 1
        if job.case == "gzip_bomb" and job.bombs < BOMB_POLLS:
            job.bombs += 1
            record.note = "gzip bomb"
            bomb = service.bomb()
            self._send(record, 200, bomb, "application/json", {"Content-Encoding": "gzip"})
            return
        data: dict[str, Any] = {"task_id": job.job_id, "status": "IN_PROGRESS", "response": None}
        if time.monotonic() - job.created >= service.render_seconds:
            data.update(status="SUCCESS", response={"resultUrls": [service.result_url(job)]})
        self._json(record, 200, {"code": 200, "message": "success", "data": data})

    def _redirect(self, record: Record, job: Job) -> None:
        target = self.service.redirect_target(job)
        if target is None:
            self._error(record, 404, "no such redirect")
            return
        record.note = f"302 to {target}"
        self._send(record, 302, f"{self.service.marker}: redirected".encode(), "text/plain", {"Location": target})

    def _file(self, record: Record, job: Job, path: str) -> None:
        case = job.case
        record.note = case
        if case == "endless":
            self._endless(record)
        elif case == "slow_drip":
            self._drip(record)
        elif case == "over_cap":
            self._over_cap(record)
        elif case == "hls_playlist" and path.endswith(".m3u8"):
            self._send(record, 200, self.service.playlist(job), "application/vnd.apple.mpegurl")
        elif path.endswith(".mp4"):
            self._send(record, 200, self.service.clip(job), "video/mp4")
        else:
            self._error(record, 404, "no such file")

    # -- hostile bodies -----------------------------------------------------------------------------------

    def _filler(self, size: int) -> bytes:
        marker = self.service.marker.encode()
        return (marker + bytes(max(0, size - len(marker))))[:size]

    def _endless(self, record: Record) -> None:
        """Chunked, without end (until the client hangs up, or the safety stop cuts it mid-chunk)."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = self._filler(64 * 1024)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        began = time.monotonic()
        record.status = 200
        while not self.service._stopping.is_set():
            if record.sent >= ENDLESS_SAFETY_BYTES or time.monotonic() - began > STREAM_SAFETY_SECONDS:
                record.note = "endless: safety stop"
                break
            self.wfile.write(framed)
            record.sent += len(chunk)
        self.close_connection = True

    def _drip(self, record: Record) -> None:
        """A small declared length, one byte per ``DRIP_INTERVAL`` s."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(DRIP_DECLARED_BYTES))
        self.end_headers()
        record.status = 200
        marker = self.service.marker.encode()
        began = time.monotonic()
        while record.sent < DRIP_DECLARED_BYTES and not self.service._stopping.is_set():
            if time.monotonic() - began > STREAM_SAFETY_SECONDS:
                record.note = "slow_drip: safety stop"
                break
            self.wfile.write(marker[record.sent % len(marker) : record.sent % len(marker) + 1])
            self.wfile.flush()
            record.sent += 1
            self.service._stopping.wait(DRIP_INTERVAL)
        self.close_connection = True

    def _over_cap(self, record: Record) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(OVER_CAP_BYTES))
        self.end_headers()
        record.status = 200
        chunk = self._filler(64 * 1024)
        while record.sent < OVER_CAP_BYTES and not self.service._stopping.is_set():
            piece = chunk[: OVER_CAP_BYTES - record.sent]
            self.wfile.write(piece)
            record.sent += len(piece)
        self.close_connection = True

    # -- plumbing ---------------------------------------------------------------------------------------

    def _discard(self, length: int) -> None:
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _json(self, record: Record, status: int, document: dict[str, Any]) -> None:
        self._send(record, status, json.dumps(document).encode(), "application/json")

    def _error(self, record: Record, status: int, message: str) -> None:
        body = {"code": status, "message": f"{message} ({self.service.marker})"}
        self._json(record, status, body)

    def _send(
        self, record: Record, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        record.status = status
        if self.command != "HEAD":
            self.wfile.write(body)
            record.sent = len(body)


def new_marker() -> str:
    """A string nothing else writes: the foreign-body marker."""
    return f"HOSTILE-BODY-{secrets.token_hex(12)}"
