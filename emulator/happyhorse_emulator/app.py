"""The emulator's ASGI application: the HappyHorse contract, fault injection, admin routes, result files.

Two layers:

- :class:`Emulator` holds the state (config, jobs, counters, rate-limit buckets, seeded random sources) and makes
  every decision; it does no network I/O.
- :class:`EmulatorApp` is the ASGI callable. ``/api/generate`` and ``/api/status`` are served by hand-written ASGI
  code (the status route is the hot path of every benchmark, and dropping a connection mid-response needs raw
  ASGI); the admin, image and file routes go through a small Starlette router.

Request order on the API routes: injected gateway faults (5xx, 429 storm, drop before create), then the key
(401), the per-key rate limit (429), the account (403, 402, generate only), the payload (400/422), the task;
then the faults that strike after a task exists (drop after create, malformed body, slow response).

Local safety (the emulator runs on laptops, next to a browser):

- every request whose Host header is neither a loopback name/address, nor the address the server was bound to,
  nor one of ``allowed_hosts`` gets 421 (a DNS-rebinding page cannot reach it);
- the admin routes (``/_emulator/stats``, ``jobs``, ``reset``, ``config``; not ``health`` nor the test images)
  want ``X-Emulator-Token: <admin_token>`` (401 otherwise) and take JSON bodies only (415 otherwise);
- a presented API key is never kept nor shown: from :meth:`Emulator.authenticate` on, the emulator (counters,
  rate-limit buckets, jobs, the state file, the stats and jobs documents) only knows its :func:`key_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .config import ADMIN_TOKEN_ENV, ADMIN_TOKEN_HEADER, EmulatorConfig, key_id
from .jobs import (
    FAILURE_REASONS,
    STANDARD_SPELLING,
    UNKNOWN_STATUSES,
    GenerateRequest,
    Job,
    JobStore,
    Phase,
    Refusal,
    Spelling,
    new_task_id,
    peak_concurrency,
    request_fingerprint,
    validate_generate_body,
)
from .video import frame_size, image_size_from_url_path, probe_image_size, render_mp4, render_png

logger = logging.getLogger(__name__)

FAULT_KINDS: Final = (
    "server_error",
    "server_error_after_create",
    "rate_limit_storm",
    "slow_response",
    "drop_after_create",
    "drop_before_create",
    "malformed_body",
    "status_variant",
    "unknown_status",
    "result_redirect",
    "signed_url_refused",
    "cut_body",
    "clip_mismatch",
)
MAX_BODY_BYTES = 1 << 20
IMAGE_FETCH_TIMEOUT = 2.0
MAX_IMAGE_BYTES = 20 << 20
_NO_KEY = "(none)"
"""The key id of requests that presented no (well-formed) key."""
_JSON = (b"content-type", b"application/json")
_HTML = (b"content-type", b"text/html; charset=utf-8")
_MALFORMED_BODIES: Final = (
    (_JSON, b'{"code": 200, "message": "success", "data": {"task_id": "n'),
    (_HTML, b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
    (_JSON, b'{"code": 200, "message": "success"}'),
    (_JSON, b'{"code": 200, "message": "success", "data": null}'),
    (_JSON, b""),
)


class InjectedConnectionDrop(Exception):
    """Raised after a partial response so that uvicorn closes the connection (an injected fault, not a bug)."""


class _QuietInjectedDrops(logging.Filter):
    """Keeps uvicorn's "Exception in ASGI application" traceback out of the log for injected drops only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedConnectionDrop))


def _install_log_filter() -> None:
    uvicorn_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _QuietInjectedDrops) for existing in uvicorn_logger.filters):
        uvicorn_logger.addFilter(_QuietInjectedDrops())


# --------------------------------------------------------------------------------------------------------------
# State and decisions


@dataclass(slots=True)
class _KeyCounts:
    total: int = 0
    accepted: int = 0
    refused: int = 0
    faulted: int = 0


@dataclass(slots=True)
class Counters:
    """Request counters; jobs and fingerprints are counted from the job store instead."""

    submissions: _KeyCounts = field(default_factory=_KeyCounts)
    submissions_by_key: dict[str, _KeyCounts] = field(default_factory=dict)
    refused_by_status: Counter[int] = field(default_factory=Counter)
    status_calls: int = 0
    status_calls_by_key: Counter[str] = field(default_factory=Counter)
    status_not_found: int = 0
    rate_limited: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    file_downloads: int = 0
    files_expired: int = 0

    def submission(self, api_key: str) -> _KeyCounts:
        counts = self.submissions_by_key.get(api_key)
        if counts is None:
            counts = self.submissions_by_key[api_key] = _KeyCounts()
        return counts


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer decided by :class:`Emulator`, before it is written to the wire."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = (_JSON,)


@dataclass(frozen=True, slots=True)
class GatewayFault:
    """An injected 5xx/429 and whether, on POST, the task is created before it is answered."""

    reply: Reply
    after_create: bool = False


def _json_reply(status: int, payload: object, *extra: tuple[bytes, bytes]) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), (_JSON, *extra))


def _error(status: int, message: str, *extra: tuple[bytes, bytes]) -> Reply:
    return _json_reply(status, {"code": status, "message": message}, *extra)


def _retry_after(seconds: float) -> tuple[bytes, bytes]:
    return (b"retry-after", str(max(1, math.ceil(seconds))).encode())


_WORKFLOW_NOT_ENABLED = _json_reply(
    403,
    {"error": {"code": "workflow_not_enabled", "message": "video generation is not enabled for this account"}},
)
_NO_CREDITS = _error(402, "insufficient credits")


class Emulator:
    """One emulator's state and decisions. Owned by one event loop; it is not thread-safe."""

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EmulatorConfig()
        self.admin_token = self.config.admin_token
        """Fixed for the emulator's life (see :meth:`_apply`)."""
        self.result_clips_dir = self.config.result_clips_dir
        """Fixed for the emulator's life: a runtime change could point the file route at any folder."""
        self.dialect = self.config.dialect
        """Fixed for the emulator's life: its jobs and routes are the dialect's."""
        self._clock = clock
        self.store = JobStore(self.config.state_file)
        self.counters = Counters()
        self.started_at = clock()
        self._buckets: dict[str, _Bucket] = {}
        self._ids = random.SystemRandom()  # ids must not repeat after a restart with the same seed
        self._key_kinds: dict[str, tuple[str, str]] = {}
        self._fault_rng = random.Random()
        self._job_rng = random.Random()
        self._apply(self.config, reseed=True)

    # -- configuration ------------------------------------------------------------------------------------------

    def _apply(self, config: EmulatorConfig, *, reseed: bool) -> None:
        if config.state_file != self.store.state_file:
            raise ValueError("state_file cannot be changed at runtime")
        if config.result_clips_dir != self.result_clips_dir:
            raise ValueError("result_clips_dir cannot be changed at runtime")
        if config.dialect != self.dialect:
            raise ValueError("dialect cannot be changed at runtime (start another emulator)")
        if config.admin_token != self.admin_token:
            # The admin token is the one the emulator started with, whatever a runtime change brings.
            config = config.model_copy(update={"admin_token": self.config.admin_token})
        self.config = config
        kinds = {key: (key_id(key), "ok") for key in config.api_keys}
        kinds.update({key: (key_id(key), "no_credit") for key in config.no_credit_keys})
        kinds.update({key: (key_id(key), "forbidden") for key in config.forbidden_keys})
        self._key_kinds = kinds
        if reseed:
            self._fault_rng.seed(f"faults:{config.seed}")
            self._job_rng.seed(f"jobs:{config.seed}")

    def configure(self, partial: dict[str, Any]) -> EmulatorConfig:
        """Apply a partial update (nested ``faults`` may be partial too); a new ``seed`` re-seeds."""
        if "admin_token" in partial and partial["admin_token"] != self.config.admin_token:
            raise ValueError("admin_token cannot be changed at runtime")
        self._apply(self.config.merged(partial), reseed="seed" in partial)
        return self.config

    def replace_config(self, config: EmulatorConfig) -> None:
        self._apply(config, reseed=True)

    def reset(self) -> None:
        """Forget jobs (truncating the state file), counters and rate-limit buckets; re-seed."""
        self.store.clear()
        self.counters = Counters()
        self._buckets.clear()
        self._apply(self.config, reseed=True)

    def close(self) -> None:
        self.store.close()

    # -- decisions ----------------------------------------------------------------------------------------------

    def now(self) -> float:
        return float(self._clock())

    def _roll(self, rate: float) -> bool:
        return rate > 0.0 and self._fault_rng.random() < rate

    def count_fault(self, kind: str) -> None:
        self.counters.faults[kind] += 1

    def faults_apply(self, endpoint: str) -> bool:
        return endpoint in self.config.faults.faults_on

    def gateway_fault(self) -> GatewayFault | None:
        """A 5xx or a 429 storm, decided before anything else happens.

        A 429, and a 503 with ``Retry-After``, mean the request surely created nothing (the contract's
        submission rule). Any other 5xx comes, half of the time, after the task was created: a gateway that
        timed out on a slow backend. Only POST acts on ``after_create``.
        """
        faults = self.config.faults
        if self._roll(faults.server_error_rate):
            self.count_fault("server_error")
            reply = self._server_error()
            retryable = reply.status == 503 and any(name == b"retry-after" for name, _ in reply.headers)
            return GatewayFault(reply, after_create=not retryable and self._fault_rng.random() < 0.5)
        if self._roll(faults.rate_limit_storm_rate):
            self.count_fault("rate_limit_storm")
            if self._fault_rng.random() < 0.5:
                retry_after = (b"retry-after", str(self._fault_rng.choice((1, 2))).encode())
            else:
                retry_after = (b"retry-after", formatdate(time.time() + 2, usegmt=True).encode())
            return GatewayFault(_error(429, "too many requests", retry_after))
        return None

    def _server_error(self) -> Reply:
        status = self._fault_rng.choice((500, 502, 503, 504))
        if status == 500:
            return _error(500, "internal server error")
        if status == 503:
            extra = (_retry_after(1),) if self._fault_rng.random() < 0.5 else ()
            return _error(503, "service temporarily unavailable", *extra)
        phrase = "Bad Gateway" if status == 502 else "Gateway Timeout"
        page = f"<html><head><title>{status} {phrase}</title></head><body><h1>{status} {phrase}</h1></body></html>"
        return Reply(status, page.encode(), (_HTML,))

    def redirects_result(self) -> bool:
        """Whether this download of a result URL is redirected to a signed URL (counted when it is)."""
        if self.config.redirect_results or self._roll(self.config.faults.result_redirect_rate):
            self.count_fault("result_redirect")
            return True
        return False

    def result_fault(self, kind: str, rate: float) -> bool:
        """Whether this result download gets fault ``kind`` (counted when it does)."""
        if self._roll(rate):
            self.count_fault(kind)
            return True
        return False

    def roll_drop_before_create(self) -> bool:
        if self._roll(self.config.faults.drop_before_create_rate):
            self.count_fault("drop_before_create")
            return True
        return False

    def after_create_fault(self, endpoint: str) -> str | None:
        """``drop_after_create`` (POST only), ``malformed_body`` or ``slow_response``, or None."""
        faults = self.config.faults
        if endpoint == "generate" and self._roll(faults.drop_after_create_rate):
            kind = "drop_after_create"
        elif self._roll(faults.malformed_body_rate):
            kind = "malformed_body"
        elif self._roll(faults.slow_response_rate):
            kind = "slow_response"
        else:
            return None
        self.count_fault(kind)
        return kind

    def malformed_reply(self) -> Reply:
        header, body = self._fault_rng.choice(_MALFORMED_BODIES)
        return Reply(200, body, (header,))

    def authenticate(self, authorization: str | None) -> tuple[str, str | None]:
        """``(key id, kind)``; kind is ``ok``/``no_credit``/``forbidden``, or None when refused.

        The key itself goes no further: everything after this (counters, buckets, jobs) is keyed by its id."""
        if authorization is None:
            return _NO_KEY, None
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return _NO_KEY, None
        known = self._key_kinds.get(key)
        if known is None:
            return key_id(key), None
        return known

    def rate_limit(self, api_key: str) -> Reply | None:
        """The per-key token bucket; a 429 with ``Retry-After`` in whole seconds when it is empty."""
        rate = self.config.rate_limit_per_second
        if rate is None:
            return None
        burst = float(self.config.rate_limit_burst)
        now = time.monotonic()
        bucket = self._buckets.get(api_key)
        if bucket is None:
            bucket = self._buckets[api_key] = _Bucket(tokens=burst, updated=now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        self.counters.rate_limited += 1
        return _error(429, "rate limit exceeded", _retry_after((1.0 - bucket.tokens) / rate))

    def render_seconds(self, request: GenerateRequest) -> float:
        config = self.config
        seconds = config.base_seconds + config.per_video_second * request.duration
        if request.mode == "pro":
            seconds *= config.pro_factor
        if request.sound:
            seconds *= config.audio_factor
        if config.jitter:
            seconds *= 1.0 + self._job_rng.uniform(-config.jitter, config.jitter)
        return max(0.0, seconds * config.speed)

    def create_job(
        self,
        api_key: str,
        request: GenerateRequest,
        fingerprint: str,
        image_size: tuple[int, int] | None,
        *,
        frame: tuple[int, int] | None = None,
        new_id: Callable[[random.Random], str] = new_task_id,
        dialect_data: dict[str, Any] | None = None,
        failure_reason: str | None = None,
    ) -> Job:
        """Schedule, decide and record a new job (one state-file line). ``api_key`` is the owner's key id.

        Other dialects give the output ``frame`` (else it follows the aspect ratio or the image), their task ids
        (``new_id``), what they keep for their answers (``dialect_data``) and a ``failure_reason`` the job must
        end with (else the configured failure rate decides)."""
        config = self.config
        now = self.now()
        started, finished = self.store.schedule(
            api_key, now, self.render_seconds(request), config.max_concurrent_per_key
        )
        rng = self._job_rng
        drawn_failure = rng.choice(FAILURE_REASONS) if rng.random() < config.job_failure_rate else None
        failure_reason = failure_reason or drawn_failure
        spelling = STANDARD_SPELLING
        if rng.random() < config.faults.status_variant_rate:
            self.count_fault("status_variant")
            spelling = Spelling(
                queued=rng.choice(("NOT_START", "PENDING")),
                success="COMPLETED",
                failure=rng.choice(("FAILURE", "CANCELLED")),
                reason_field=rng.choice(("error", "fail_reason", "message")),
            )
        unknown_status = None
        if rng.random() < config.faults.unknown_status_rate:
            self.count_fault("unknown_status")
            unknown_status = rng.choice(UNKNOWN_STATUSES)
        mismatch = None
        # Drawn only when asked for, so the other decisions of a seed stay what they were.
        if config.faults.clip_mismatch_rate > 0 and rng.random() < config.faults.clip_mismatch_rate:
            self.count_fault("clip_mismatch")
            mismatch = "audio" if request.sound and rng.random() < 0.5 else "duration"
        task_id = new_id(self._ids)
        while task_id in self.store:
            task_id = new_id(self._ids)
        width, height = frame or frame_size(request.aspect_ratio, image_size)
        job = Job(
            task_id=task_id,
            api_key=api_key,
            created=now,
            started=started,
            finished=finished,
            mode=request.mode,
            duration=request.duration,
            sound=request.sound,
            width=width,
            height=height,
            fingerprint=fingerprint,
            failure_reason=failure_reason,
            spelling=spelling,
            unknown_status=unknown_status,
            mismatch=mismatch,
            dialect_data=dialect_data,
        )
        self.store.add(job)
        return job

    def result_bytes(self, duration: float, width: int, height: int, sound: bool) -> bytes:
        """A result file: the pre-made clip ``result_clips_dir`` holds for this duration and sound, else the render.

        Reads only a fixed attribute, so it may run in a worker thread."""
        if self.result_clips_dir is not None:
            premade = Path(self.result_clips_dir) / f"{duration:g}s{'-sound' if sound else ''}.mp4"
            if premade.is_file():
                return premade.read_bytes()
        return render_mp4(duration, width, height, sound)

    def status_payload(self, job: Job, base_url: str) -> dict[str, Any]:
        now = self.now()
        data: dict[str, Any] = {"task_id": job.task_id, "status": job.reported_status(now), "response": None}
        payload: dict[str, Any] = {"code": 200, "message": "success", "data": data}
        phase = job.phase(now)
        if phase is Phase.SUCCESS:
            data["response"] = {"resultUrls": [f"{base_url}/files/{job.task_id}.mp4"]}
        elif phase is Phase.FAILED:
            if job.spelling.reason_field == "message":
                payload["message"] = job.failure_reason
            else:
                data[job.spelling.reason_field] = job.failure_reason
        return payload

    # -- observability ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The ``GET /_emulator/stats`` document (see the module docstring of ``server.py`` for its shape)."""
        now = self.now()
        counters = self.counters
        jobs = list(self.store)
        by_state = {phase.value: 0 for phase in Phase}
        jobs_by_key: Counter[str] = Counter()
        per_key_jobs: dict[str, list[Job]] = {}
        for job in jobs:
            by_state[job.phase(now).value] += 1
            jobs_by_key[job.api_key] += 1
            per_key_jobs.setdefault(job.api_key, []).append(job)
        repeated = [(key, count) for key, count in sorted(self.store.fingerprint_counts().items()) if count > 1]
        duplicated = [
            {"key_id": owner, "fingerprint": fingerprint, "count": count} for (owner, fingerprint), count in repeated
        ]
        faults = {kind: counters.faults.get(kind, 0) for kind in FAULT_KINDS}
        return {
            "uptime_seconds": round(now - self.started_at, 3),
            "submissions": {
                "total": counters.submissions.total,
                "accepted": counters.submissions.accepted,
                "refused": counters.submissions.refused,
                "faulted": counters.submissions.faulted,
                "refused_by_status": {str(code): n for code, n in sorted(counters.refused_by_status.items())},
                "by_key": {
                    key: {"total": c.total, "accepted": c.accepted, "refused": c.refused, "faulted": c.faulted}
                    for key, c in sorted(counters.submissions_by_key.items())
                },
            },
            "status_calls": {
                "total": counters.status_calls,
                "not_found": counters.status_not_found,
                "by_key": dict(sorted(counters.status_calls_by_key.items())),
            },
            "jobs": {"total": len(jobs), "by_state": by_state, "by_key": dict(sorted(jobs_by_key.items()))},
            "duplicate_submissions": sum(count - 1 for _, count in repeated),
            "duplicated_fingerprints": duplicated,
            "peak_concurrent_renders": peak_concurrency(jobs, now),
            "peak_concurrent_renders_by_key": {
                key: peak_concurrency(key_jobs, now) for key, key_jobs in sorted(per_key_jobs.items())
            },
            "rate_limited": counters.rate_limited,
            # server_error_after_create is a subset of server_error, not a fault of its own.
            "faults": {"total": sum(faults.values()) - faults["server_error_after_create"], "by_kind": faults},
            "file_downloads": counters.file_downloads,
            "files_expired": counters.files_expired,
        }

    def job_timelines(self) -> dict[str, dict[str, Any]]:
        """The ``GET /_emulator/jobs`` document: per task id, its created/started/finished wall-clock times
        (epoch seconds, fixed at creation) and the phase it ends in, so a benchmark can time detection."""
        return {
            job.task_id: {
                "created": job.created,
                "started": job.started,
                "finished": job.finished,
                "final_phase": job.phase(math.inf).value,
            }
            for job in self.store
        }


# --------------------------------------------------------------------------------------------------------------
# HTTP


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _base_url(scope: Scope) -> str:
    """The base URL as the client reached it (Host header), so result URLs work behind any port."""
    host = _header(scope, b"host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


async def _send(send: Send, reply: Reply) -> None:
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _drop_connection(send: Send) -> None:
    """Promise a body, send part of it, then make the server close the connection."""
    await send({"type": "http.response.start", "status": 200, "headers": [_JSON, (b"content-length", b"512")]})
    await send({"type": "http.response.body", "body": b'{"code": 200, "mess', "more_body": True})
    raise InjectedConnectionDrop("connection dropped by fault injection")


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY_BYTES or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def is_loopback_host(host: str | None) -> bool:
    """True for literal loopback addresses and ``localhost`` (never resolved through DNS)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str | None:
    """The name in a Host header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), lowercase; None if malformed."""
    value = host_header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[1:end], value[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    else:
        name, colon, port = value.partition(":")
        if colon and not port.isdigit():
            return None
    return name.removesuffix(".") or None


def _normalised_host(host: str) -> str:
    return host.strip().lower().removeprefix("[").removesuffix("]").removesuffix(".")


async def fetch_loopback(url: str, limit: int) -> bytes | None:
    """The body at ``url`` (a 200 of at most ``limit`` bytes; None otherwise), without redirects or proxies."""
    async with (
        httpx.AsyncClient(timeout=IMAGE_FETCH_TIMEOUT, trust_env=False, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            return None
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit:
                return None
    return bytes(data)


async def _fetch_image_size(url: str) -> tuple[int, int] | None:
    """The size of the image at ``url``: parsed from our own image route, fetched only from loopback."""
    parts = urlsplit(url)
    size = image_size_from_url_path(parts.path)
    if size is not None or not is_loopback_host(parts.hostname):
        return size
    try:
        data = await fetch_loopback(url, MAX_IMAGE_BYTES)
        return None if data is None else await anyio.to_thread.run_sync(probe_image_size, data)
    except Exception:  # any failure means "size unknown": fall back to the requested aspect ratio
        logger.debug("could not read image %s", url, exc_info=True)
        return None


_NOT_FOUND = _error(404, "not found")
_METHOD_NOT_ALLOWED = _error(405, "method not allowed")
_ADMIN_TOKEN_REFUSED = {
    "error": {
        "code": "admin_token",
        "message": (
            f"the emulator's admin routes want the header {ADMIN_TOKEN_HEADER}: <admin token>; the token is printed "
            f"by happyhorse-emulator at start (set it with --admin-token or ${ADMIN_TOKEN_ENV}; in Python: the "
            "handle's admin_token, or EmulatorConfig.admin_token)"
        ),
    }
}
_JSON_ONLY = {
    "error": {"code": "unsupported_media_type", "message": "the admin routes take JSON bodies only (application/json)"}
}
_HOST_CACHE_SIZE = 256


class EmulatorApp:
    """The ASGI application. ``create_app`` builds one; ``.emulator`` is its state.

    ``bind_host`` is the address the server listens on: besides loopback names and ``config.allowed_hosts``, the
    only name accepted in the Host header."""

    def __init__(self, emulator: Emulator, *, bind_host: str | None = None) -> None:
        self.emulator = emulator
        self.bind_host = bind_host
        self._host_verdicts: dict[bytes, bool] = {}
        self._verdicts_for: EmulatorConfig | None = None
        _install_log_filter()
        from .dashscope import DashScopeApi  # it builds on this module's helpers

        self._dashscope = DashScopeApi(self) if emulator.dialect == "dashscope" else None
        self._router = Starlette(
            routes=[
                Route("/_emulator/health", self._health, methods=["GET"]),
                Route("/_emulator/stats", self._stats, methods=["GET"]),
                Route("/_emulator/jobs", self._jobs, methods=["GET"]),
                Route("/_emulator/reset", self._reset, methods=["POST"]),
                Route("/_emulator/config", self._config, methods=["GET", "POST"]),
                Route("/_emulator/images/{name}", self._image, methods=["GET"]),
                Route("/files/{name}", self._file, methods=["GET"]),
            ],
            exception_handlers={404: self._http_error, 405: self._http_error},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if not self._host_allowed(scope):
                await _send(send, self._misdirected(scope))
            elif self._dashscope is not None and path.startswith("/api/"):
                await self._dashscope(scope, receive, send)
            elif path == "/api/status":
                await self._status(scope, send)
            elif path == "/api/generate":
                await self._generate(scope, receive, send)
            elif path.startswith(("/_emulator/", "/files/")):
                await self._router(scope, receive, send)
            else:
                await _send(send, _NOT_FOUND)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.emulator.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- Host header --------------------------------------------------------------------------------------------

    def _host_allowed(self, scope: Scope) -> bool:
        """Whether the Host header names this server: a loopback name or address, the bound address or one of
        ``allowed_hosts``. No Host header (HTTP/1.0) is allowed: browsers, hence rebinding pages, always send one."""
        raw = None
        for name, value in scope["headers"]:
            if name == b"host":
                raw = value
                break
        if raw is None:
            return True
        config = self.emulator.config
        if self._verdicts_for is not config or len(self._host_verdicts) >= _HOST_CACHE_SIZE:
            self._host_verdicts = {}
            self._verdicts_for = config
        verdict = self._host_verdicts.get(raw)
        if verdict is None:
            verdict = self._host_verdicts[raw] = self._judge_host(raw.decode("latin-1"), config)
        return verdict

    def _judge_host(self, header: str, config: EmulatorConfig) -> bool:
        name = host_name(header)
        if name is None:
            return False
        if is_loopback_host(name):
            return True
        allowed = {_normalised_host(host) for host in config.allowed_hosts}
        if self.bind_host:
            allowed.add(_normalised_host(self.bind_host))
        return name in allowed

    @staticmethod
    def _misdirected(scope: Scope) -> Reply:
        shown = (_header(scope, b"host") or "")[:100]
        message = (
            f"Host {shown!r} is not this emulator: it answers to localhost, loopback addresses and the address it "
            "was bound to (add others with --allowed-host / EmulatorConfig.allowed_hosts)"
        )
        return _json_reply(421, {"error": {"code": "misdirected_request", "message": message}})

    # -- API ----------------------------------------------------------------------------------------------------

    async def _status(self, scope: Scope, send: Send) -> None:
        emulator = self.emulator
        if scope["method"] != "GET":
            await _send(send, _METHOD_NOT_ALLOWED)
            return
        counters = emulator.counters
        counters.status_calls += 1
        faulty = emulator.faults_apply("status")
        if faulty:
            gateway_fault = emulator.gateway_fault()
            if gateway_fault is not None:
                await _send(send, gateway_fault.reply)
                return
        api_key, kind = emulator.authenticate(_header(scope, b"authorization"))
        counters.status_calls_by_key[api_key] += 1
        reply = self._status_reply(scope, api_key, kind)
        if faulty and reply.status == 200:
            fault = emulator.after_create_fault("status")
            if fault == "malformed_body":
                reply = emulator.malformed_reply()
            elif fault == "slow_response":
                await asyncio.sleep(emulator.config.faults.slow_response_seconds)
        await _send(send, reply)

    def _status_reply(self, scope: Scope, api_key: str, kind: str | None) -> Reply:
        emulator = self.emulator
        if kind is None:
            return _error(401, "missing or invalid API key")
        limited = emulator.rate_limit(api_key)
        if limited is not None:
            return limited
        task_id = None
        for name, value in parse_qsl(scope["query_string"].decode("latin-1")):
            if name == "task_id":
                task_id = value
        if not task_id:
            return _error(400, "task_id: required")
        job = emulator.store.get(task_id)
        if job is None or job.api_key != api_key:
            emulator.counters.status_not_found += 1
            return _error(404, f"task not found: {task_id}")
        return _json_reply(200, emulator.status_payload(job, _base_url(scope)))

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        emulator = self.emulator
        if scope["method"] != "POST":
            await _send(send, _METHOD_NOT_ALLOWED)
            return
        raw = await _read_body(receive)
        api_key, kind = emulator.authenticate(_header(scope, b"authorization"))
        counters = emulator.counters
        key_counts = counters.submission(api_key)
        counters.submissions.total += 1
        key_counts.total += 1

        faulty = emulator.faults_apply("generate")
        if faulty:
            gateway_fault = emulator.gateway_fault()
            if gateway_fault is not None and gateway_fault.after_create:
                await self._create_behind_a_failing_gateway(api_key, kind, raw, key_counts)
                await _send(send, gateway_fault.reply)
                return
            if gateway_fault is not None or emulator.roll_drop_before_create():
                counters.submissions.faulted += 1
                key_counts.faulted += 1
                if gateway_fault is None:
                    await _drop_connection(send)
                else:
                    await _send(send, gateway_fault.reply)
                return

        try:
            job = await self._create(api_key, kind, raw)
        except Refusal as refusal:
            counters.submissions.refused += 1
            key_counts.refused += 1
            counters.refused_by_status[refusal.status] += 1
            if refusal.status == 403:
                await _send(send, _WORKFLOW_NOT_ENABLED)
            else:
                await _send(send, _error(refusal.status, refusal.message, *refusal.headers))
            return
        counters.submissions.accepted += 1
        key_counts.accepted += 1

        status = job.reported_status(emulator.now())
        reply = _json_reply(
            200, {"code": 200, "message": "success", "data": {"task_id": job.task_id, "status": status}}
        )
        if faulty:
            fault = emulator.after_create_fault("generate")
            if fault == "drop_after_create":
                await _drop_connection(send)
            elif fault == "malformed_body":
                reply = emulator.malformed_reply()
            elif fault == "slow_response":
                await asyncio.sleep(emulator.config.faults.slow_response_seconds)
        await _send(send, reply)

    async def _create_behind_a_failing_gateway(
        self, api_key: str, kind: str | None, raw: bytes | None, key_counts: _KeyCounts
    ) -> None:
        """The service handles the request (a valid one creates its task) but the client only gets a 5xx."""
        counters = self.emulator.counters
        try:
            await self._create(api_key, kind, raw)
        except Refusal:
            counters.submissions.faulted += 1
            key_counts.faulted += 1
            return
        self.emulator.count_fault("server_error_after_create")
        counters.submissions.accepted += 1
        key_counts.accepted += 1

    async def _create(self, api_key: str, kind: str | None, raw: bytes | None) -> Job:
        """Check key, limits, account and payload (raising :class:`Refusal`), then create the job."""
        emulator = self.emulator
        if kind is None:
            raise Refusal(401, "missing or invalid API key")
        limited = emulator.rate_limit(api_key)
        if limited is not None:
            raise Refusal(429, "rate limit exceeded", tuple(h for h in limited.headers if h[0] == b"retry-after"))
        if kind == "forbidden":
            raise Refusal(403, "workflow_not_enabled")
        if kind == "no_credit":
            raise Refusal(402, "insufficient credits")
        if raw is None:
            raise Refusal(400, "body: too large or incomplete")
        try:
            body = json.loads(raw, parse_constant=_refuse_constant)
        except ValueError:
            raise Refusal(400, "body: invalid JSON") from None
        request = validate_generate_body(body)
        image_size = await _fetch_image_size(request.image_urls[0]) if request.image_urls else None
        return emulator.create_job(api_key, request, request_fingerprint(body), image_size)

    # -- admin, images and files --------------------------------------------------------------------------------

    @staticmethod
    async def _http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return JSONResponse({"code": status, "message": "not found" if status == 404 else "method not allowed"}, status)

    def _admin_off(self) -> Response | None:
        if self.emulator.config.admin_routes:
            return None
        return JSONResponse({"code": 404, "message": "not found"}, status_code=404)

    async def _admin_refusal(self, request: Request) -> Response | None:
        """404 when the admin routes are off, 401 without the right token, 415 for a POST body that is not JSON."""
        off = self._admin_off()
        if off is not None:
            return off
        token = self.emulator.admin_token
        if token is not None:
            presented = None
            for name, value in request.scope["headers"]:
                if name == b"x-emulator-token":
                    presented = value
                    break
            # The presented token is never echoed nor logged.
            if presented is None or not hmac.compare_digest(presented, token.encode("ascii")):
                return JSONResponse(_ADMIN_TOKEN_REFUSED, status_code=401)
        if request.method == "POST":
            content_type = request.headers.get("content-type")
            if content_type is None:
                if await request.body():
                    return JSONResponse(_JSON_ONLY, status_code=415)
            elif content_type.partition(";")[0].strip().lower() != "application/json":
                return JSONResponse(_JSON_ONLY, status_code=415)
        return None

    async def _health(self, request: Request) -> Response:
        return self._admin_off() or JSONResponse({"status": "ok", "jobs": len(self.emulator.store)})

    async def _stats(self, request: Request) -> Response:
        return await self._admin_refusal(request) or JSONResponse(self.emulator.stats())

    async def _jobs(self, request: Request) -> Response:
        return await self._admin_refusal(request) or JSONResponse(self.emulator.job_timelines())

    async def _reset(self, request: Request) -> Response:
        refused = await self._admin_refusal(request)
        if refused is not None:
            return refused
        self.emulator.reset()
        return JSONResponse({"status": "reset"})

    async def _config(self, request: Request) -> Response:
        refused = await self._admin_refusal(request)
        if refused is not None:
            return refused
        if request.method == "POST":
            try:
                partial = json.loads(await request.body())
                if not isinstance(partial, dict):
                    raise ValueError("the body must be a JSON object")
                self.emulator.configure(partial)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                return JSONResponse({"code": 400, "message": str(exc)}, status_code=400)
        # The token is not shown: whoever may read this already has it.
        return JSONResponse(self.emulator.config.model_dump(mode="json", exclude={"admin_token"}))

    async def _image(self, request: Request) -> Response:
        size = image_size_from_url_path(request.url.path)
        if size is None:
            return JSONResponse({"code": 404, "message": "not found"}, status_code=404)
        content = await anyio.to_thread.run_sync(render_png, *size)
        return Response(content, media_type="image/png")

    async def _file(self, request: Request) -> Response:
        emulator = self.emulator
        name = request.path_params["name"]
        job = emulator.store.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
        now = emulator.now()
        if job is None or job.phase(now) is not Phase.SUCCESS:
            return JSONResponse({"code": 404, "message": "not found"}, status_code=404)
        if now > job.finished + emulator.config.result_ttl_seconds:
            emulator.counters.files_expired += 1
            return JSONResponse({"code": 410, "message": "result expired"}, status_code=410)
        faults = emulator.config.faults
        if "sig" not in request.query_params and emulator.redirects_result():
            # A signed CDN URL, as services behind a CDN hand out: it serves the same file.
            expires = int(job.finished + emulator.config.result_ttl_seconds)
            signature = hashlib.sha256(f"{name}:{expires}".encode()).hexdigest()[:32]
            signed = f"{_base_url(request.scope)}/files/{name}?expires={expires}&sig={signature}"
            return RedirectResponse(signed, status_code=302)
        if emulator.result_fault("signed_url_refused", faults.signed_url_refused_rate):
            return Response(_REFUSED_PAGE, status_code=200, media_type="text/html")
        duration, sound = job.duration, job.sound
        if job.mismatch == "duration":
            duration = max(1.0, duration - 2.0)
        elif job.mismatch == "audio":
            sound = False
        content = await anyio.to_thread.run_sync(emulator.result_bytes, duration, job.width, job.height, sound)
        if emulator.result_fault("cut_body", faults.cut_body_rate):
            content = content[: len(content) // 2]
        if request.method == "GET":
            emulator.counters.file_downloads += 1
        return Response(content, media_type="video/mp4", headers={"cache-control": "private, max-age=86400"})


_REFUSED_PAGE = (
    b"<html><head><title>403 Forbidden</title></head><body><h1>AccessDenied</h1>"
    b"<p>Request has expired</p></body></html>"
)


def create_app(config: EmulatorConfig | None = None, *, bind_host: str | None = None) -> EmulatorApp:
    """A new emulator application (with its own state) for ``config`` (defaults: the demo's); ``bind_host``: the
    address it will listen on (accepted in the Host header besides loopback names)."""
    return EmulatorApp(Emulator(config or EmulatorConfig()), bind_host=bind_host)
