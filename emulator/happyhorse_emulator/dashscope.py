"""The DashScope dialect: HappyHorse as Alibaba Cloud Model Studio serves it (``EmulatorConfig(dialect="dashscope")``,
``happyhorse-emulator --dialect dashscope``).

Routes (as the public Model Studio pages "HappyHorse text-to-video / image-to-video / reference-to-video / video
editing API reference" and "Manage asynchronous tasks" give them)::

    POST /api/v1/services/aigc/video-generation/video-synthesis   create a task (header X-DashScope-Async: enable)
    GET  /api/v1/tasks/{task_id}                                   query it
    POST /api/v1/tasks/{task_id}/cancel                            cancel it while it is PENDING

Every answer carries a ``request_id``; errors are ``{"request_id", "code", "message"}`` with the HTTP status
(``401 InvalidApiKey``, ``403 AccessDenied`` without the async header, ``400 InvalidParameter`` / ``Arrearage`` /
``UnsupportedOperation``, ``429 Throttling.RateQuota``, ``500 InternalError``). Statuses: PENDING, RUNNING,
SUCCEEDED, FAILED, CANCELED, and UNKNOWN for a task that does not exist or has expired (``result_ttl_seconds``
after it ended). ``usage`` comes with SUCCEEDED only.

What is shared with the happyhorse.app dialect: keys, the render time model and scheduler (1080P renders with
``pro_factor``; every clip has sound), the job lifecycle and state file, the faults, the result files and the
admin routes. What differs beyond the shapes:

- all keys are one account: any accepted key can query or cancel any task (the service scopes tasks to the
  account, not the key); the account's task queries are limited to ``query_limit_per_second`` (20 by default),
  and so, separately, are its cancels;
- clips have the tier's real frame: short side 720 or 1080, the other from ``ratio`` (t2v, r2v), from the first
  frame (i2v) or from the source video (edit);
- a video edit's output lasts as long as its source video, at most 15 s. The emulator reads the source's length
  from its own result URLs (``/files/<task_id>.mp4``) and from loopback URLs; a source 3-60 s long is required.
  Any other URL cannot be read from here: the task is accepted and ends FAILED (``InvalidParameter``, the message
  says why), as the service fails a task whose media it cannot download;
- a prompt longer than 5000 characters (2500 CJK) is accepted as the service accepts it (it truncates);
  ``orig_prompt`` echoes what was sent;
- the happyhorse.app spelling faults (``status_variant_rate``) do not apply; ``unknown_status_rate`` makes a
  running job report an unlisted status as in the other dialect.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import anyio.to_thread

from .app import (
    _HTML,
    _JSON,
    Reply,
    _base_url,
    _Bucket,
    _drop_connection,
    _fetch_image_size,
    _header,
    _json_reply,
    _read_body,
    _refuse_constant,
    _send,
    fetch_loopback,
    is_loopback_host,
    logger,
)
from .jobs import FAILURE_REASONS, GenerateRequest, Job, Phase, request_fingerprint
from .video import RESOLUTION_SHORT_SIDES, probe_video, tier_frame_size

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .app import EmulatorApp

CREATE_PATH: Final = "/api/v1/services/aigc/video-generation/video-synthesis"
TASKS_PREFIX: Final = "/api/v1/tasks/"
ASYNC_HEADER: Final = b"x-dashscope-async"

MODELS: Final = {
    "happyhorse-1.0-t2v": "t2v",
    "happyhorse-1.1-t2v": "t2v",
    "happyhorse-1.0-i2v": "i2v",
    "happyhorse-1.1-i2v": "i2v",
    "happyhorse-1.0-r2v": "r2v",
    "happyhorse-1.1-r2v": "r2v",
    "happyhorse-1.0-video-edit": "edit",
}
RATIOS: Final = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4)}
RESOLUTIONS: Final = tuple(RESOLUTION_SHORT_SIDES)
DEFAULT_RESOLUTION = "1080P"
DEFAULT_RATIO = "16:9"
DEFAULT_DURATION = 5
MIN_DURATION, MAX_DURATION = 3, 15
MAX_SEED = 2_147_483_647
MAX_REFERENCE_IMAGES = 9
MAX_EDIT_REFERENCE_IMAGES = 5
EDIT_OUTPUT_CAP = 15.0
EDIT_SOURCE_RANGE = (3.0, 60.0)
FIRST_FRAME_MIN_SIDE = 300
REFERENCE_MIN_SHORT_SIDE = 400
EDIT_REFERENCE_MIN_SIDE = 300
MAX_ASPECT = 2.5
MAX_VIDEO_BYTES = 100 << 20
AUDIO_SETTINGS: Final = ("auto", "origin")
_SERVICE_ZONE = timezone(timedelta(hours=8))
"""Time stamps read as the service's (Beijing and Singapore are both UTC+8)."""

# Documented messages (Model Studio "Error codes" and "Manage asynchronous tasks").
MSG_INVALID_KEY: Final = "Invalid API-key provided."
MSG_SYNC_REFUSED: Final = "current user api does not support synchronous calls"
MSG_THROTTLED: Final = "Requests rate limit exceeded, please try again later."
MSG_ARREARAGE: Final = "Access denied, please make sure your account is in good standing."
MSG_CANCEL_REFUSED: Final = "Failed to cancel the task, please confirm if the task is in PENDING status."
MSG_EMPTY_MODEL: Final = 'Required parameter "model" missing from request.'
MSG_EMPTY_INPUT: Final = "Required input parameter missing from request."
MSG_INTERNAL: Final = "An internal error has occured, please try again later or contact service support."
MSG_INSPECTION: Final = "Output data may contain inappropriate content."


class DashScopeRefusal(Exception):
    """A request the service refuses: HTTP ``status`` and ``{"request_id", "code", "message"}``."""

    def __init__(self, status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def new_request_id() -> str:
    return str(uuid.uuid4())


def error_reply(status: int, code: str, message: str, *extra: tuple[bytes, bytes]) -> Reply:
    return _json_reply(status, {"request_id": new_request_id(), "code": code, "message": message}, *extra)


def _invalid(message: str) -> DashScopeRefusal:
    return DashScopeRefusal(400, "InvalidParameter", message)


def new_dashscope_task_id(rng: random.Random) -> str:
    """A task id shaped like the service's (a UUID)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def service_time(epoch: float) -> str:
    """``2026-04-25 15:03:25.848``: the service's time stamp format."""
    return datetime.fromtimestamp(epoch, tz=_SERVICE_ZONE).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --------------------------------------------------------------------------------------------------------------
# Request validation


@dataclass(frozen=True, slots=True)
class DashScopeRequest:
    """A create request that passed every rule, with the documented defaults filled in."""

    model: str
    kind: str
    """``t2v``, ``i2v``, ``r2v`` or ``edit``."""
    prompt: str | None
    resolution: str
    ratio: str | None
    """t2v and r2v only; i2v follows its first frame, edit its source video."""
    duration: int | None
    """None for edit: the output follows the source video."""
    watermark: bool
    seed: int | None
    audio_setting: str | None
    first_frame: str | None
    reference_images: tuple[str, ...]
    video: str | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_media_url(value: str, images: bool) -> bool:
    if images and value.startswith("data:image/"):
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def validate_create_body(body: object) -> DashScopeRequest:
    """Check a decoded create body against the documented rules; raise :class:`DashScopeRefusal` on the first broken
    one (``400 InvalidParameter`` with ``"<field>: <rule>"``, or the documented ``BadRequest.Empty*``)."""
    if not isinstance(body, dict):
        raise _invalid("body: must be a JSON object")
    model = body.get("model")
    if model is None or model == "":
        raise DashScopeRefusal(400, "BadRequest.EmptyModel", MSG_EMPTY_MODEL)
    if not isinstance(model, str) or model not in MODELS:
        raise _invalid(f"Model not exist. (model: {str(model)[:100]!r}; HappyHorse models: {', '.join(MODELS)})")
    kind = MODELS[model]
    payload = body.get("input")
    if payload is None:
        raise DashScopeRefusal(400, "BadRequest.EmptyInput", MSG_EMPTY_INPUT)
    if not isinstance(payload, dict):
        raise _invalid("input: must be an object")
    prompt = payload.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise _invalid("input.prompt: must be a string")
    if kind != "i2v" and (prompt is None or not prompt.strip()):
        raise _invalid(f"input.prompt: required for {model}")
    first_frame, references, video = _media(payload.get("media"), model, kind)
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _invalid("parameters: must be an object")
    resolution = parameters.get("resolution", DEFAULT_RESOLUTION)
    if resolution not in RESOLUTIONS:
        raise _invalid(f"parameters.resolution: must be '720P' or '1080P' (got {str(resolution)[:20]!r})")
    ratio = None
    if kind in ("t2v", "r2v"):
        ratio = parameters.get("ratio", DEFAULT_RATIO)
        if ratio not in RATIOS:
            raise _invalid(f"parameters.ratio: must be one of {', '.join(RATIOS)} (got {str(ratio)[:20]!r})")
    duration = None
    if kind != "edit":
        duration = parameters.get("duration", DEFAULT_DURATION)
        if not _is_int(duration):
            raise _invalid("parameters.duration: must be an integer")
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise _invalid(f"parameters.duration: must be between {MIN_DURATION} and {MAX_DURATION} (got {duration})")
    watermark = parameters.get("watermark", True)
    if not isinstance(watermark, bool):
        raise _invalid("parameters.watermark: must be a boolean")
    seed = parameters.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed <= MAX_SEED):
        raise _invalid(f"parameters.seed: must be an integer between 0 and {MAX_SEED}")
    audio_setting = None
    if kind == "edit":
        audio_setting = parameters.get("audio_setting", "auto")
        if audio_setting not in AUDIO_SETTINGS:
            raise _invalid(f"parameters.audio_setting: must be 'auto' or 'origin' (got {str(audio_setting)[:20]!r})")
    return DashScopeRequest(
        model=model,
        kind=kind,
        prompt=prompt,
        resolution=resolution,
        ratio=ratio,
        duration=duration,
        watermark=watermark,
        seed=seed,
        audio_setting=audio_setting,
        first_frame=first_frame,
        reference_images=references,
        video=video,
    )


def _media(media: object, model: str, kind: str) -> tuple[str | None, tuple[str, ...], str | None]:
    if media is None:
        media = []
    if not isinstance(media, list):
        raise _invalid("input.media: must be a list of {type, url}")
    allowed = {"t2v": (), "i2v": ("first_frame",), "r2v": ("reference_image",), "edit": ("video", "reference_image")}
    by_type: dict[str, list[str]] = {}
    for index, item in enumerate(media):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not isinstance(item.get("url"), str):
            raise _invalid(f"input.media[{index}]: must be an object with a string type and url")
        media_type, url = item["type"], item["url"]
        if media_type not in allowed[kind]:
            takes = ", ".join(allowed[kind]) or "no media"
            raise _invalid(f"input.media[{index}].type: {model} takes {takes} (got {media_type[:30]!r})")
        if not _is_media_url(url, images=media_type != "video"):
            raise _invalid(f"input.media[{index}].url: must be a public http(s) URL")
        by_type.setdefault(media_type, []).append(url)
    frames, videos = by_type.get("first_frame", []), by_type.get("video", [])
    references = by_type.get("reference_image", [])
    if kind == "i2v" and len(frames) != 1:
        raise _invalid(f"input.media: {model} takes exactly 1 first_frame (got {len(frames)})")
    if kind == "r2v" and not 1 <= len(references) <= MAX_REFERENCE_IMAGES:
        count = len(references)
        raise _invalid(f"input.media: {model} takes 1 to {MAX_REFERENCE_IMAGES} reference_image (got {count})")
    if kind == "edit":
        if len(videos) != 1:
            raise _invalid(f"input.media: {model} takes exactly 1 video (got {len(videos)})")
        if len(references) > MAX_EDIT_REFERENCE_IMAGES:
            count = len(references)
            most = MAX_EDIT_REFERENCE_IMAGES
            raise _invalid(f"input.media: {model} takes at most {most} reference_image (got {count})")
    return (frames[0] if frames else None), tuple(references), (videos[0] if videos else None)


def _check_image(size: tuple[int, int] | None, where: str, min_side: int, short_side: bool) -> None:
    """Refuse an image whose size the emulator knows and which breaks the documented size or aspect rule."""
    if size is None:
        return
    width, height = size
    side = min(width, height)
    if side < min_side:
        rule = f"{'its shorter side' if short_side else 'each side'} must be at least {min_side} px"
        raise _invalid(f"{where}: the image is {width}x{height}; {rule}")
    if not short_side and max(width / height, height / width) > MAX_ASPECT:
        raise _invalid(f"{where}: the image is {width}x{height}; its aspect ratio must be between 1:2.5 and 2.5:1")


def _reduced_ratio(width: int, height: int) -> str:
    divisor = math.gcd(width, height) or 1
    return f"{width // divisor}:{height // divisor}"


def _whole(seconds: float) -> float | int:
    """Durations as the service writes them: whole seconds as integers."""
    return round(seconds) if abs(seconds - round(seconds)) < 1e-3 else round(seconds, 3)


# --------------------------------------------------------------------------------------------------------------
# HTTP


_MALFORMED_BODIES: Final = (
    (_JSON, b'{"request_id": "0b1c", "output": {"task_id": "'),
    (_HTML, b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
    (_JSON, b'{"request_id": "0b1c"}'),
    (_JSON, b'{"request_id": "0b1c", "output": null}'),
    (_JSON, b""),
)


class DashScopeApi:
    """The DashScope routes of an :class:`EmulatorApp` (every ``/api/`` path when the dialect is ``dashscope``)."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.emulator = app.emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        rest = path[len(TASKS_PREFIX) :] if path.startswith(TASKS_PREFIX) else None
        if path == CREATE_PATH:
            if method != "POST":
                await _send(send, error_reply(405, "MethodNotAllowed", "method not allowed"))
            else:
                await self._create(scope, receive, send)
        elif rest and "/" not in rest:
            if method != "GET":
                await _send(send, error_reply(405, "MethodNotAllowed", "method not allowed"))
            else:
                await self._query(scope, send, rest)
        elif rest and rest.endswith("/cancel") and rest.count("/") == 1:
            if method != "POST":
                await _send(send, error_reply(405, "MethodNotAllowed", "method not allowed"))
            else:
                await self._cancel(scope, send, rest.removesuffix("/cancel"))
        else:
            await _send(send, error_reply(404, "NotFound", f"no DashScope route {path[:100]}"))

    # -- shared checks ------------------------------------------------------------------------------------------

    def _gateway_fault(self, endpoint: str) -> tuple[Reply, bool] | None:
        """An injected 5xx/429 in this dialect's shape, and whether a create happens behind it."""
        if not self.emulator.faults_apply(endpoint):
            return None
        fault = self.emulator.gateway_fault()
        if fault is None:
            return None
        reply = fault.reply
        if (_JSON in reply.headers) and reply.status >= 429:
            throttled = reply.status == 429
            code, message = ("Throttling.RateQuota", MSG_THROTTLED) if throttled else ("InternalError", MSG_INTERNAL)
            extra = tuple(header for header in reply.headers if header[0] == b"retry-after")
            reply = error_reply(reply.status, code, message, *extra)
        return reply, fault.after_create

    def _account_limit(self, route: str) -> Reply | None:
        """The account's limit on task queries (or, separately, cancels): a token bucket of one second's worth."""
        rate = self.emulator.config.query_limit_per_second
        if rate is None:
            return None
        buckets = self.emulator._buckets  # cleared by reset() with the per-key ones
        now = time.monotonic()
        name = f"account:{route}"  # never a key id (those start with "key-" or are "(none)")
        bucket = buckets.get(name)
        if bucket is None:
            bucket = buckets[name] = _Bucket(tokens=rate, updated=now)
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        self.emulator.counters.rate_limited += 1
        return error_reply(429, "Throttling.RateQuota", MSG_THROTTLED)

    def _key_limit(self, api_key: str) -> Reply | None:
        limited = self.emulator.rate_limit(api_key)
        if limited is None:
            return None
        extra = tuple(header for header in limited.headers if header[0] == b"retry-after")
        return error_reply(429, "Throttling.RateQuota", MSG_THROTTLED, *extra)

    # -- create -------------------------------------------------------------------------------------------------

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> None:
        emulator = self.emulator
        raw = await _read_body(receive)
        api_key, kind = emulator.authenticate(_header(scope, b"authorization"))
        counters = emulator.counters
        key_counts = counters.submission(api_key)
        counters.submissions.total += 1
        key_counts.total += 1

        faulty = emulator.faults_apply("generate")
        gateway = self._gateway_fault("generate")
        if gateway is not None:
            reply, after_create = gateway
            if after_create:
                try:
                    await self._new_job(scope, api_key, kind, raw)
                except DashScopeRefusal:
                    counters.submissions.faulted += 1
                    key_counts.faulted += 1
                else:
                    emulator.count_fault("server_error_after_create")
                    counters.submissions.accepted += 1
                    key_counts.accepted += 1
            else:
                counters.submissions.faulted += 1
                key_counts.faulted += 1
            await _send(send, reply)
            return
        if faulty and emulator.roll_drop_before_create():
            counters.submissions.faulted += 1
            key_counts.faulted += 1
            await _drop_connection(send)
            return

        try:
            job = await self._new_job(scope, api_key, kind, raw)
        except DashScopeRefusal as refusal:
            counters.submissions.refused += 1
            key_counts.refused += 1
            counters.refused_by_status[refusal.status] += 1
            await _send(send, error_reply(refusal.status, refusal.code, refusal.message, *refusal.headers))
            return
        counters.submissions.accepted += 1
        key_counts.accepted += 1
        reply = _json_reply(
            200,
            {
                "request_id": new_request_id(),
                "output": {"task_id": job.task_id, "task_status": "PENDING"},  # as the service always answers
            },
        )
        if faulty:
            fault = emulator.after_create_fault("generate")
            if fault == "drop_after_create":
                await _drop_connection(send)
            elif fault == "malformed_body":
                header, body = emulator._fault_rng.choice(_MALFORMED_BODIES)
                reply = Reply(200, body, (header,))
            elif fault == "slow_response":
                await asyncio.sleep(emulator.config.faults.slow_response_seconds)
        await _send(send, reply)

    async def _new_job(self, scope: Scope, api_key: str, kind: str | None, raw: bytes | None) -> Job:
        """Key, async header, limits, account, payload (raising :class:`DashScopeRefusal`), then the job."""
        if kind is None:
            raise DashScopeRefusal(401, "InvalidApiKey", MSG_INVALID_KEY)
        if (_header(scope, ASYNC_HEADER) or "").strip().lower() != "enable":
            raise DashScopeRefusal(403, "AccessDenied", MSG_SYNC_REFUSED)
        limited = self._key_limit(api_key)
        if limited is not None:
            raise DashScopeRefusal(
                429, "Throttling.RateQuota", MSG_THROTTLED, tuple(h for h in limited.headers if h[0] == b"retry-after")
            )
        if kind == "forbidden":
            raise DashScopeRefusal(403, "AccessDenied", "Access denied.")
        if kind == "no_credit":
            raise DashScopeRefusal(400, "Arrearage", MSG_ARREARAGE)
        if raw is None:
            raise _invalid("body: too large or incomplete")
        try:
            body = json.loads(raw, parse_constant=_refuse_constant)
        except ValueError:
            raise _invalid("body: invalid JSON") from None
        request = validate_create_body(body)
        return await self._schedule(api_key, request, request_fingerprint(body))

    async def _schedule(self, api_key: str, request: DashScopeRequest, fingerprint: str) -> Job:
        sizes = await asyncio.gather(
            *(_fetch_image_size(url) for url in ((request.first_frame,) if request.first_frame else ())),
            *(_fetch_image_size(url) for url in request.reference_images),
        )
        index = 0
        frame_size_known: tuple[int, int] | None = None
        if request.first_frame is not None:
            frame_size_known = sizes[0]
            _check_image(frame_size_known, "input.media[0].url (first_frame)", FIRST_FRAME_MIN_SIDE, short_side=False)
            index = 1
        min_side = REFERENCE_MIN_SHORT_SIDE if request.kind == "r2v" else EDIT_REFERENCE_MIN_SIDE
        for number, size in enumerate(sizes[index:], start=1):
            _check_image(size, f"reference_image {number}", min_side, short_side=request.kind == "r2v")

        failure: str | None = None
        failure_code: str | None = None
        input_seconds = 0.0
        if request.kind == "edit":
            assert request.video is not None
            source = await self._source_video(request.video)
            if source is None:
                failure_code = "InvalidParameter"
                failure = (
                    f"the emulator could not read the source video {request.video[:200]}: it reads the length of its "
                    "own result URLs (/files/<task_id>.mp4) and of loopback URLs only, so this edit fails as the "
                    "service fails a task whose media it cannot download"
                )
                output_seconds, width, height = float(DEFAULT_DURATION), *tier_frame_size(request.resolution, 16, 9)
            else:
                input_seconds, source_width, source_height = source
                low, high = EDIT_SOURCE_RANGE
                if not low <= input_seconds <= high:
                    raise _invalid(
                        f"input.media video: the source video is {input_seconds:g} s long; "
                        f"it must be {low:g}-{high:g} s"
                    )
                input_seconds = min(input_seconds, EDIT_OUTPUT_CAP)  # only the first 15 s are used
                output_seconds = input_seconds
                width, height = tier_frame_size(request.resolution, source_width, source_height)
        elif request.kind == "i2v" and frame_size_known is not None:
            output_seconds = float(request.duration or DEFAULT_DURATION)
            width, height = tier_frame_size(request.resolution, *frame_size_known)
        else:
            output_seconds = float(request.duration or DEFAULT_DURATION)
            width, height = tier_frame_size(request.resolution, *RATIOS[request.ratio or DEFAULT_RATIO])

        usage = {
            "duration": _whole(output_seconds + input_seconds),
            "input_video_duration": _whole(input_seconds),
            "output_video_duration": _whole(output_seconds),
            "video_count": 1,
            "SR": RESOLUTION_SHORT_SIDES[request.resolution],
            "ratio": request.ratio or _reduced_ratio(width, height),
        }
        generate = GenerateRequest(
            prompt=request.prompt,
            mode="pro" if request.resolution == "1080P" else "std",
            duration=output_seconds,
            aspect_ratio=DEFAULT_RATIO,
            image_urls=(),
            sound=True,
            cfg_scale=0.5,
            multi_shots=False,
            shot_count=1,
        )
        data: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "resolution": request.resolution,
            "usage": usage,
        }
        if failure_code is not None:
            data["failure_code"] = failure_code
        return self.emulator.create_job(
            api_key,
            generate,
            fingerprint,
            None,
            frame=(width, height),
            new_id=new_dashscope_task_id,
            dialect_data=data,
            failure_reason=failure,
        )

    async def _source_video(self, url: str) -> tuple[float, int, int] | None:
        """``(seconds, width, height)`` of an edit's source: one of our results, or fetched from loopback."""
        parts = urlsplit(url)
        name = parts.path.rsplit("/", 1)[-1]
        if "/files/" in parts.path and name.endswith(".mp4"):
            job = self.emulator.store.get(name.removesuffix(".mp4"))
            if job is not None:
                return job.duration, job.width, job.height
        if not is_loopback_host(parts.hostname):
            return None
        try:
            data = await fetch_loopback(url, MAX_VIDEO_BYTES)
            return None if data is None else await anyio.to_thread.run_sync(probe_video, data)
        except Exception:  # any failure means "cannot read it"
            logger.debug("could not read video %s", url, exc_info=True)
            return None

    # -- query and cancel ---------------------------------------------------------------------------------------

    def _expired(self, job: Job, now: float) -> bool:
        ended = job.canceled if job.canceled is not None else job.finished
        return job.phase(now) in (Phase.SUCCESS, Phase.FAILED) and now > ended + self.emulator.config.result_ttl_seconds

    def _status(self, job: Job, now: float) -> str:
        if job.canceled is not None:
            return "CANCELED"
        phase = job.phase(now)
        if phase is Phase.QUEUED:
            return "PENDING"
        if phase is Phase.IN_PROGRESS:
            if job.unknown_status is not None and now < (job.started + job.finished) / 2:
                return job.unknown_status
            return "RUNNING"
        return "SUCCEEDED" if phase is Phase.SUCCESS else "FAILED"

    def task_payload(self, job: Job | None, task_id: str, base_url: str) -> dict[str, Any]:
        """The query answer for ``task_id`` now (UNKNOWN when there is no such task or it expired)."""
        now = self.emulator.now()
        if job is None or self._expired(job, now):
            return {"request_id": new_request_id(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}}
        data = job.dialect_data or {}
        status = self._status(job, now)
        output: dict[str, Any] = {"task_id": job.task_id, "task_status": status}
        output["submit_time"] = service_time(job.created)
        payload: dict[str, Any] = {"request_id": new_request_id(), "output": output}
        if status == "CANCELED":
            output["end_time"] = service_time(job.canceled or now)
            return payload
        if now >= job.started:
            output["scheduled_time"] = service_time(job.started)
        if status in ("SUCCEEDED", "FAILED"):
            output["end_time"] = service_time(job.finished)
        if data.get("prompt") is not None:
            output["orig_prompt"] = data["prompt"]
        if status == "SUCCEEDED":
            expires = int(job.finished + self.emulator.config.result_ttl_seconds)
            output["video_url"] = f"{base_url}/files/{job.task_id}.mp4?Expires={expires}"
            payload["usage"] = dict(data.get("usage", {}))
        elif status == "FAILED":
            output["code"], output["message"] = self._failure(job, data)
        return payload

    @staticmethod
    def _failure(job: Job, data: dict[str, Any]) -> tuple[str, str]:
        if "failure_code" in data:
            return str(data["failure_code"]), job.failure_reason or ""
        if job.failure_reason == FAILURE_REASONS[0]:
            return "DataInspectionFailed", MSG_INSPECTION
        return "InternalError", f"{MSG_INTERNAL} ({job.failure_reason})"

    async def _query(self, scope: Scope, send: Send, task_id: str) -> None:
        emulator = self.emulator
        counters = emulator.counters
        counters.status_calls += 1
        gateway = self._gateway_fault("status")
        if gateway is not None:
            await _send(send, gateway[0])
            return
        api_key, kind = emulator.authenticate(_header(scope, b"authorization"))
        counters.status_calls_by_key[api_key] += 1
        if kind is None:
            await _send(send, error_reply(401, "InvalidApiKey", MSG_INVALID_KEY))
            return
        limited = self._key_limit(api_key) or self._account_limit("query")
        if limited is not None:
            await _send(send, limited)
            return
        job = emulator.store.get(task_id)
        payload = self.task_payload(job, task_id, _base_url(scope))
        if payload["output"]["task_status"] == "UNKNOWN":
            counters.status_not_found += 1
        reply = _json_reply(200, payload)
        if emulator.faults_apply("status"):
            fault = emulator.after_create_fault("status")
            if fault == "malformed_body":
                header, body = emulator._fault_rng.choice(_MALFORMED_BODIES)
                reply = Reply(200, body, (header,))
            elif fault == "slow_response":
                await asyncio.sleep(emulator.config.faults.slow_response_seconds)
        await _send(send, reply)

    async def _cancel(self, scope: Scope, send: Send, task_id: str) -> None:
        """Cancel a PENDING task (200 ``{"request_id"}``); any other state: 400 ``UnsupportedOperation``."""
        emulator = self.emulator
        api_key, kind = emulator.authenticate(_header(scope, b"authorization"))
        if kind is None:
            await _send(send, error_reply(401, "InvalidApiKey", MSG_INVALID_KEY))
            return
        limited = self._key_limit(api_key) or self._account_limit("cancel")
        if limited is not None:
            await _send(send, limited)
            return
        job = emulator.store.get(task_id)
        now = emulator.now()
        if job is None or job.canceled is not None or job.phase(now) is not Phase.QUEUED:
            await _send(send, error_reply(400, "UnsupportedOperation", MSG_CANCEL_REFUSED))
            return
        emulator.store.cancel(job, now)
        await _send(send, _json_reply(200, {"request_id": new_request_id()}))
