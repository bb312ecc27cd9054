"""
Dialects: how one service spells the same calls (no I/O). A connection speaks one dialect: happyhorse.app's
(``/api/generate``, ``/api/status``) or Alibaba Cloud Model Studio's (DashScope: ``/api/v1/...``). A dialect
builds the submit, status and cancel requests, reads their answers into a ``JobStatus``, maps an error answer
onto the provider's error tree, and refuses a request it cannot serve before anything is sent. Everything
above it (the retry rule, the wait, re-attach, storage) is the same for both.
"""

from __future__ import annotations

import unicodedata
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import ValidationError

from airflow_provider_happyhorse.constants import (
    DASHSCOPE_PROMPT_UNITS,
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    GENERATE_PATH,
    HAPPYHORSE_PROMPT_CHARS,
)
from airflow_provider_happyhorse.core.requests import _extensions, _headers, build_status_request
from airflow_provider_happyhorse.core.responses import (
    UNREADABLE,
    _request_id,
    error_for_status,
    is_job_id,
    json_body,
    parse_job_response,
    parse_retry_after,
    parse_submit_response,
)
from airflow_provider_happyhorse.exceptions import (
    AccountError,
    APIStatusError,
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from airflow_provider_happyhorse.models import JobState, JobStatus, Usage, VideoRequest

DialectName = Literal["happyhorse", "dashscope"]
DIALECTS: tuple[DialectName, ...] = ("happyhorse", "dashscope")
# The request extension naming the endpoint an answer came from, for the 429 metric (a path may hold a task id).
ENDPOINT = "happyhorse.endpoint"


def default_dialect(base_url: str) -> DialectName:
    """The dialect a Base URL's host implies: ``dashscope*.aliyuncs.com`` is DashScope, any other host happyhorse."""
    host = (urlsplit(base_url).hostname or "").lower()
    return "dashscope" if host.startswith("dashscope") and host.endswith(".aliyuncs.com") else "happyhorse"


def dialect_named(name: str) -> Dialect:
    if name == "dashscope":
        return DASHSCOPE
    if name == "happyhorse":
        return HAPPYHORSE
    raise ValueError(f"unknown dialect {name!r} (it is one of {', '.join(DIALECTS)})")


class Dialect:
    """One service's spelling of submit, status and cancel; see the module's text."""

    name: ClassVar[DialectName]
    title: ClassVar[str]
    offers_cancel: ClassVar[bool] = False
    # The service's documented limit on status queries per second (``core.pacing``); None: none documented.
    query_limit: ClassVar[float | None] = None

    def refusal(self, request: VideoRequest) -> InvalidRequestError | None:
        """Why this service cannot render ``request`` (names the field, the dialect and where it is offered)."""
        raise NotImplementedError

    def submit_request(
        self, base_url: str, api_key: str, request: VideoRequest, *, timeout: float, max_answer_bytes: int
    ) -> httpx.Request:
        """The paid request; ``InvalidRequestError`` (nothing sent) when this dialect refuses ``request``."""
        raise NotImplementedError

    def status_request(
        self, base_url: str, api_key: str | None, job_id: str, *, timeout: float, max_answer_bytes: int
    ) -> httpx.Request:
        raise NotImplementedError

    def cancel_request(
        self, base_url: str, api_key: str, job_id: str, *, timeout: float, max_answer_bytes: int
    ) -> httpx.Request | None:
        """The request that cancels a queued job, or None where the service has none."""
        return None

    def parse_submit(self, response: httpx.Response) -> JobStatus:
        raise NotImplementedError

    def parse_status(self, response: httpx.Response) -> JobStatus:
        raise NotImplementedError

    def error_of(self, status_code: int, body: Any, response: httpx.Response) -> APIStatusError:
        raise NotImplementedError

    def _refused(self, field: str, what: str, elsewhere: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"Invalid HappyHorse request for this connection: {field}: {what} is not offered by {self.title} "
            f"(the connection's dialect {self.name!r}); {elsewhere}"
        )


_ON_DASHSCOPE = (
    "it is offered by Alibaba Cloud Model Studio (dialect 'dashscope', Base URL https://dashscope-intl.aliyuncs.com "
    "or https://dashscope.aliyuncs.com): use a connection of that dialect, or leave the field out"
)
# happyhorse.app's ratios (HAPPYHORSE_API.md); DashScope's are DASHSCOPE_RATIOS.
HAPPYHORSE_RATIOS = ("16:9", "9:16", "1:1")
_INVALID = "Invalid HappyHorse request for this connection"
_ON_HAPPYHORSE = (
    "it is offered by happyhorse.app (dialect 'happyhorse', Base URL https://happyhorse.app): use a connection of "
    "that dialect, or leave the field out"
)


class HappyHorseApp(Dialect):
    """happyhorse.app's API (``HAPPYHORSE_API.md``): the provider's first dialect, unchanged."""

    name = "happyhorse"
    title = "happyhorse.app"

    def refusal(self, request: VideoRequest) -> InvalidRequestError | None:
        task = request.effective_task
        if task == "reference":
            return self._refused("task", "'reference' (reference-to-video)", _ON_DASHSCOPE)
        if task == "edit":
            return self._refused("task", "'edit' (video edit)", _ON_DASHSCOPE)
        for field in ("resolution", "seed", "watermark", "audio_setting"):
            if getattr(request, field) is not None:
                return self._refused(
                    field,
                    f"{field} {getattr(request, field)!r}",
                    _ON_DASHSCOPE + " (a reseller that takes it: pass it in extra_fields)",
                )
        # Both of happyhorse.app's own limits are reported at once, as the model reports its problems.
        problems = []
        if request.aspect_ratio not in HAPPYHORSE_RATIOS:
            problems.append(
                f"aspect_ratio: {self.title} takes '16:9', '9:16' or '1:1' (got {request.aspect_ratio!r}); "
                f"{request.aspect_ratio} is offered by Alibaba Cloud Model Studio for text and reference tasks "
                "(dialect 'dashscope', Base URL https://dashscope-intl.aliyuncs.com or "
                "https://dashscope.aliyuncs.com): use a connection of that dialect, or choose one of the three"
            )
        if request.prompt is not None and len(request.prompt) > HAPPYHORSE_PROMPT_CHARS:
            problems.append(
                f"prompt: {self.title} takes at most {HAPPYHORSE_PROMPT_CHARS} characters (got "
                f"{len(request.prompt):,} characters): shorten it, or use a connection of dialect 'dashscope' "
                f"(Alibaba Cloud Model Studio takes up to {DASHSCOPE_PROMPT_UNITS} characters, a CJK one counting two)"
            )
        if problems:
            return InvalidRequestError(f"{_INVALID}: {'; '.join(problems)}")
        return None

    def body(self, request: VideoRequest) -> dict[str, Any]:
        """The documented body: the request's fields (``task`` is no API field) and any ``extra_fields``."""
        body = request.to_body()
        body.pop("task", None)
        body.update(body.pop("extra_fields", {}))
        return body

    def submit_request(
        self, base_url: str, api_key: str, request: VideoRequest, *, timeout: float, max_answer_bytes: int
    ) -> httpx.Request:
        if (refused := self.refusal(request)) is not None:
            raise refused
        return httpx.Request(
            "POST",
            base_url + GENERATE_PATH,
            headers=_headers(api_key),
            json=self.body(request),
            extensions=_extensions(timeout, max_answer_bytes),
        )

    def status_request(
        self, base_url: str, api_key: str | None, job_id: str, *, timeout: float, max_answer_bytes: int
    ) -> httpx.Request:
        return build_status_request(base_url, api_key, job_id, timeout=timeout, max_answer_bytes=max_answer_bytes)

    def parse_submit(self, response: httpx.Response) -> JobStatus:
        return parse_submit_response(response)

    def parse_status(self, response: httpx.Response) -> JobStatus:
        return parse_job_response(response)

    def error_of(self, status_code: int, body: Any, response: httpx.Response) -> APIStatusError:
        return error_for_status(status_code, body, response)


# -- DashScope ------------------------------------------------------------------------------------------------

DASHSCOPE_CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
DASHSCOPE_TASKS_PATH = "/api/v1/tasks/"
DASHSCOPE_MODELS: dict[str, str] = {
    "text": "happyhorse-1.0-t2v",
    "first_frame": "happyhorse-1.0-i2v",
    "reference": "happyhorse-1.0-r2v",
    "edit": "happyhorse-1.0-video-edit",
}
MEDIA_TYPES = {"first_frame": "first_frame", "reference": "reference_image", "edit": "reference_image"}
# A prompt's length by script: DASHSCOPE_PROMPT_UNITS (5000) characters, a CJK one counting two (2500 CJK at most).
# The tasks that take a ratio (i2v follows its first frame, edit its source video); they take every ratio of the
# request model (16:9, 9:16, 1:1, 4:3, 3:4).
DASHSCOPE_RATIO_TASKS = ("text", "reference")


def _is_cjk(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def prompt_units(prompt: str) -> int:
    """A prompt's length as DashScope limits it: a CJK (wide) character counts 2, any other 1."""
    return sum(2 if _is_cjk(char) else 1 for char in prompt)


_DASHSCOPE_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.PENDING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELED": JobState.FAILED,
    "UNKNOWN": JobState.FAILED,
}

# Error codes (Model Studio "Error codes") onto the error tree; a code not listed is read by its HTTP status.
_CODE_PREFIXES: tuple[tuple[str, type[APIStatusError]], ...] = (
    ("InvalidApiKey", AuthenticationError),
    ("Arrearage", AccountError),
    ("AccessDenied", AccountError),
    ("Throttling", RateLimitError),
    ("InvalidParameter", InvalidRequestError),
    ("BadRequest", InvalidRequestError),
    ("DataInspectionFailed", InvalidRequestError),
    ("UnsupportedOperation", InvalidRequestError),
    ("InternalError", ServerError),
    ("ServiceUnavailable", ServerError),
)


class DashScope(Dialect):
    """Alibaba Cloud Model Studio's HappyHorse API (``DASHSCOPE_API.md``)."""

    name = "dashscope"
    title = "Alibaba Cloud Model Studio (DashScope)"
    offers_cancel = True
    query_limit = 20.0  # per Alibaba Cloud account, all its keys together (DASHSCOPE_API.md, "Query")

    def refusal(self, request: VideoRequest) -> InvalidRequestError | None:
        task = request.effective_task
        if task == "first_last_frame":
            return self._refused("image_urls", "a first and a last frame (2 images)", _ON_HAPPYHORSE)
        if request.multi_shots or request.multi_prompt:
            return self._refused("multi_shots", "a multi-shot video", _ON_HAPPYHORSE)
        if request.happyhorse_elements:
            return self._refused("elements", "happyhorse_elements", _ON_HAPPYHORSE)
        if request.mode != "std":
            return self._refused("mode", f"mode {request.mode!r}", _ON_HAPPYHORSE + " (here: set resolution)")
        if request.cfg_scale != VideoRequest.model_fields["cfg_scale"].default:
            return self._refused("cfg_scale", f"cfg_scale {request.cfg_scale:g}", _ON_HAPPYHORSE)
        if not request.sound:
            return self._refused("sound", "sound=False (every clip has sound here)", _ON_HAPPYHORSE)
        if task != "edit" and not float(request.duration).is_integer():
            return InvalidRequestError(
                f"Invalid HappyHorse request for this connection: duration: {self.title} takes whole seconds "
                f"(3-15), got {request.duration:g}; round it"
            )
        if task not in DASHSCOPE_RATIO_TASKS and request.aspect_ratio != "16:9":
            follows = "its first frame" if task == "first_frame" else "its source video"
            return InvalidRequestError(
                f"Invalid HappyHorse request for this connection: aspect_ratio: task {task!r} on {self.title} "
                f"follows {follows}, so it takes no aspect_ratio (got {request.aspect_ratio!r}); leave it out"
            )
        if request.prompt is not None and (units := prompt_units(request.prompt)) > DASHSCOPE_PROMPT_UNITS:
            return InvalidRequestError(
                f"{_INVALID}: prompt: {self.title} takes at most {DASHSCOPE_PROMPT_UNITS} characters, a CJK one "
                f"counting two (at most {DASHSCOPE_PROMPT_UNITS // 2} CJK); this one counts {units:,} (got "
                f"{len(request.prompt):,} characters; the service would cut it): shorten it"
            )
        return None

    def body(self, request: VideoRequest) -> dict[str, Any]:
        """The create body: ``model`` by task, ``input`` (prompt, media) and ``parameters``."""
        task = request.effective_task
        media: list[dict[str, str]] = []
        if task == "edit" and request.source_video is not None:
            media.append({"type": "video", "url": request.source_video})
        media += [{"type": MEDIA_TYPES[task], "url": url} for url in request.image_urls or ()]
        payload: dict[str, Any] = {}
        if request.prompt is not None:
            payload["prompt"] = request.prompt
        if media:
            payload["media"] = media
        parameters: dict[str, Any] = {}
        if request.resolution is not None:
            parameters["resolution"] = request.resolution
        if task in DASHSCOPE_RATIO_TASKS:
            parameters["ratio"] = request.aspect_ratio
        if task != "edit":
            parameters["duration"] = int(request.duration)
        if request.watermark is not None:
            parameters["watermark"] = request.watermark
        if request.seed is not None:
            parameters["seed"] = request.seed
        if request.audio_setting is not None:
            parameters["audio_setting"] = request.audio_setting
        parameters.update(request.extra_fields or {})
        return {"model": DASHSCOPE_MODELS[task], "input": payload, "parameters": parameters}

    def _request(
        self,
        method: str,
        url: str,
        api_key: str | None,
        endpoint: str,
        timeout: float,
        max_answer_bytes: int,
        **kw: Any,
    ) -> httpx.Request:
        extensions = {**_extensions(timeout, max_answer_bytes), ENDPOINT: endpoint}
        return httpx.Request(method, url, headers=_headers(api_key), extensions=extensions, **kw)

    def submit_request(
        self, base_url: str, api_key: str, request: VideoRequest, *, timeout: float, max_answer_bytes: int
    ) -> httpx.Request:
        if (refused := self.refusal(request)) is not None:
            raise refused
        built = self._request(
            "POST",
            base_url + DASHSCOPE_CREATE_PATH,
            api_key,
            "video-synthesis",
            timeout,
            max_answer_bytes,
            json=self.body(request),
        )
        built.headers["X-DashScope-Async"] = "enable"  # the API is asynchronous only
        return built

    def status_request(
        self,
        base_url: str,
        api_key: str | None,
        job_id: str,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> httpx.Request:
        url = base_url + DASHSCOPE_TASKS_PATH + quote(job_id, safe="")
        return self._request("GET", url, api_key, "status", timeout, max_answer_bytes)

    def cancel_request(
        self,
        base_url: str,
        api_key: str,
        job_id: str,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> httpx.Request:
        url = base_url + DASHSCOPE_TASKS_PATH + quote(job_id, safe="") + "/cancel"
        return self._request("POST", url, api_key, "cancel", timeout, max_answer_bytes)

    def _output(self, response: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
        body = json_body(response)
        if response.status_code >= 400:
            raise self.error_of(response.status_code, body, response)
        if (problem := response.extensions.get(UNREADABLE)) is not None:
            raise MalformedResponseError(f"the answer {problem}", status_code=response.status_code)
        if not isinstance(body, dict):
            raise MalformedResponseError("body is not a JSON object", status_code=response.status_code)
        output = body.get("output")
        if not isinstance(output, dict):
            raise MalformedResponseError("body has no 'output' object", status_code=response.status_code)
        job_id, status = output.get("task_id"), output.get("task_status")
        if not isinstance(job_id, str) or not job_id or not isinstance(status, str):
            raise MalformedResponseError("'output' lacks task_id or task_status", status_code=response.status_code)
        if not is_job_id(job_id):
            raise MalformedResponseError(f"'output.task_id' is not a job id ({job_id[:60]!r})", status_code=200)
        return output, body

    def parse_submit(self, response: httpx.Response) -> JobStatus:
        output, _ = self._output(response)
        return JobStatus(job_id=output["task_id"], status=output["task_status"], state=JobState.PENDING)

    def parse_status(self, response: httpx.Response) -> JobStatus:
        output, body = self._output(response)
        job_id, status = output["task_id"], output["task_status"]
        state = _DASHSCOPE_STATES.get(status.strip().upper(), JobState.PENDING)  # an unlisted one: still running
        video_url = output.get("video_url") if isinstance(output.get("video_url"), str) else None
        message = None
        upper = status.strip().upper()
        if upper == "FAILED":
            code, text = output.get("code"), output.get("message")
            message = ": ".join(str(part) for part in (code, text) if part) or "the task failed (no reason given)"
        elif upper == "CANCELED":
            message = f"task {job_id} was cancelled (CANCELED) before it rendered: nothing was billed"
        elif upper == "UNKNOWN":
            message = (
                f"{self.title} does not know task {job_id} (UNKNOWN): it expired (tasks and their video_url are "
                "kept 24 hours) or it never existed under this account. Submit the video again."
            )
        if state is JobState.SUCCEEDED and video_url is None:
            raise MalformedResponseError(f"job {job_id} is {status} but has no video_url", status_code=200)
        usage = None
        if state is JobState.SUCCEEDED and isinstance(body.get("usage"), dict):
            try:
                usage = Usage.model_validate(body["usage"])
            except ValidationError:
                usage = None  # informational only: a usage the contract does not describe is not kept
        return JobStatus(
            job_id=job_id, status=status, state=state, video_url=video_url, error_message=message, usage=usage
        )

    def error_of(self, status_code: int, body: Any, response: httpx.Response) -> APIStatusError:
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code:
            return error_for_status(status_code, body, response)
        kind = next((cls for prefix, cls in _CODE_PREFIXES if code.startswith(prefix)), None)
        if kind is None:
            return error_for_status(status_code, body, response)
        return kind(
            str(message or response.reason_phrase or code),
            status_code=status_code,
            error_code=code,
            request_id=_request_id(response, body),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


HAPPYHORSE = HappyHorseApp()
DASHSCOPE = DashScope()

__all__ = [
    "DASHSCOPE",
    "DIALECTS",
    "HAPPYHORSE",
    "DashScope",
    "Dialect",
    "DialectName",
    "HappyHorseApp",
    "default_dialect",
    "dialect_named",
    "prompt_units",
]
