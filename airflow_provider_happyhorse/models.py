"""Typed models at the API's edges: the request body, a job's status, and the credit estimate."""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from airflow_provider_happyhorse.constants import (
    HAPPYHORSE_PROMPT_CHARS,
    MAX_DURATION,
    MAX_PROMPT_CHARS,
    MIN_DURATION,
)
from airflow_provider_happyhorse.core.retries import is_permanent
from airflow_provider_happyhorse.exceptions import InvalidRequestError

MODEL_ID: Literal["happyhorse-1.0/video"] = "happyhorse-1.0/video"

Mode = Literal["std", "pro"]
# Every ratio either dialect takes; each dialect refuses the ones it does not offer (``core.dialects``):
# happyhorse.app takes the first three, DashScope all five for text and reference tasks.
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
# What the clip is made from (``VideoRequest.task``); ``mode`` stays the std/pro quality tier.
Task = Literal["text", "first_frame", "first_last_frame", "reference", "edit"]
Resolution = Literal["720P", "1080P"]
AudioSetting = Literal["auto", "origin"]
DEFAULT_DURATION = 5
MAX_SEED = 2_147_483_647
MAX_REFERENCE_IMAGES = 9
MAX_EDIT_REFERENCE_IMAGES = 5
# How many images each task takes (inclusive).
TASK_IMAGES: dict[str, tuple[int, int]] = {
    "text": (0, 0),
    "first_frame": (1, 1),
    "first_last_frame": (2, 2),
    "reference": (1, MAX_REFERENCE_IMAGES),
    "edit": (0, MAX_EDIT_REFERENCE_IMAGES),
}


def _refuse_bool(value: Any) -> Any:
    # pydantic would read True as 1.0; a boolean where a number belongs is a mistake, not a number.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


Number = Annotated[float, BeforeValidator(_refuse_bool)]


class Shot(BaseModel):
    """One shot of a multi-shot video."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Only happyhorse.app takes shots (DashScope refuses multi-shot), so its length is the one a shot can have.
    prompt: str = Field(min_length=1, max_length=HAPPYHORSE_PROMPT_CHARS)
    duration: Number | None = Field(default=None, gt=0)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class VideoRequest(BaseModel):
    """
    A render request: what either dialect takes, with every rule both share checked here. The rules that differ
    by service (prompt length, ratios, the fields and tasks one of them lacks) are the connection's dialect's
    (``core.dialects.Dialect.refusal``), checked before anything is sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["happyhorse-1.0/video"] = MODEL_ID
    # The longest prompt any dialect takes; the connection's dialect holds it to its own rule before sending.
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    mode: Mode = "std"
    duration: Number = Field(default=DEFAULT_DURATION, ge=MIN_DURATION, le=MAX_DURATION)
    aspect_ratio: AspectRatio = "16:9"
    image_urls: list[str] | None = None
    sound: bool = True
    cfg_scale: Number = Field(default=0.5, ge=0, le=1)
    multi_shots: bool = False
    multi_prompt: list[Shot] | None = None
    happyhorse_elements: list[Any] | None = None
    # The family's fields (issue 23). Each is left out of the body while unset, so a request that does not
    # use them has the body and the fingerprint it always had; the connection's dialect refuses the ones it
    # does not offer before anything is sent (``core.dialects``).
    task: Task | None = None
    resolution: Resolution | None = None
    seed: StrictInt | None = Field(default=None, ge=0, le=MAX_SEED)
    watermark: bool | None = None
    source_video: str | None = None
    audio_setting: AudioSetting | None = None
    # Fields only a reseller takes, sent as given (unchecked, logged at submit): never a field of this model.
    extra_fields: dict[str, Any] | None = None

    @field_validator("image_urls")
    @classmethod
    def _urls_are_http(cls, urls: list[str] | None) -> list[str] | None:
        for index, url in enumerate(urls or ()):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"item {index} must be an http(s) URL, got {url!r}")
        return urls

    @field_validator("source_video")
    @classmethod
    def _video_is_http(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"must be an http(s) URL, got {url!r}")
        return url

    @field_validator("extra_fields")
    @classmethod
    def _extra_fields_are_new(cls, fields: dict[str, Any] | None) -> dict[str, Any] | None:
        clashing = sorted(set(fields or ()) & (set(cls.model_fields) | {"ratio", "input", "parameters", "media"}))
        if clashing:
            raise ValueError(
                f"{', '.join(clashing)} must be set as the request's own field, not through extra_fields "
                "(extra_fields is for fields only a reseller takes)"
            )
        return fields

    @property
    def effective_task(self) -> Task:
        """``task``, or what the request is without it: an edit with a source video, else by its image count."""
        if self.task is not None:
            return self.task
        if self.source_video is not None:
            return "edit"
        count = len(self.image_urls or ())
        return "text" if count == 0 else "first_frame" if count == 1 else "first_last_frame"

    @model_validator(mode="after")
    def _cross_field_rules(self) -> VideoRequest:
        images = self.image_urls
        if self.multi_shots:
            if not self.multi_prompt:
                raise ValueError("multi_prompt: required (at least one shot) when multi_shots is true")
            if images is not None and len(images) != 1:
                raise ValueError("image_urls: multi-shot takes exactly 1 image (the first frame)")
        else:
            if self.prompt is None or not self.prompt.strip():
                raise ValueError("prompt: required unless multi_shots is true")
            if self.task is None and images is not None and len(images) > 2:
                raise ValueError("image_urls: single-shot takes at most 2 images (first and last frame)")
        self._task_rules()
        # Shots are checked whenever they are given, as the service checks them.
        durations = [shot.duration for shot in self.multi_prompt or ()]
        given = [d for d in durations if d is not None]
        if given and len(given) != len(durations):
            raise ValueError("multi_prompt: give a duration for every shot or for none")
        if given and abs(sum(given) - self.duration) > 1e-6:
            raise ValueError(f"multi_prompt: shot durations add up to {sum(given):g}, not duration {self.duration:g}")
        return self

    def _task_rules(self) -> None:
        """What each task takes, whichever service renders it (the dialects add their own refusals)."""
        task = self.effective_task
        count = len(self.image_urls or ())
        least, most = TASK_IMAGES[task]
        if self.task is not None and not least <= count <= most:
            takes = f"exactly {least}" if least == most else f"{least} to {most}"
            raise ValueError(f"image_urls: task {task!r} takes {takes} images (got {count})")
        if self.multi_shots and task in ("reference", "edit"):
            raise ValueError(f"multi_shots: task {task!r} is single-shot")
        if task == "edit":
            if self.source_video is None:
                raise ValueError("source_video: required for task 'edit' (the video to edit)")
            if self.duration != DEFAULT_DURATION:
                raise ValueError("duration: task 'edit' lasts as long as its source_video (at most 15 s); leave it out")
        else:
            if self.source_video is not None:
                raise ValueError(f"source_video: only task 'edit' takes a source video (task is {task!r})")
            if self.audio_setting is not None:
                raise ValueError(f"audio_setting: only task 'edit' takes it (task is {task!r})")

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> VideoRequest:
        """Validate user input, turning pydantic's report into one error that names each field and rule."""
        try:
            return cls.model_validate(fields)
        except ValidationError as err:
            raise InvalidRequestError(_describe_validation_error(err)) from None

    def to_body(self) -> dict[str, Any]:
        """The exact documented JSON body: every set field, nothing null, whole numbers as ints."""
        body = self.model_dump(mode="json", exclude_none=True)
        for key in ("duration", "cfg_scale"):
            body[key] = _compact_number(body[key])
        if self.effective_task == "edit":
            del body["duration"]  # an edit lasts as long as its source video
        for shot in body.get("multi_prompt", ()):
            if "duration" in shot:
                shot["duration"] = _compact_number(shot["duration"])
        return body

    def fingerprint(self) -> str:
        """A stable digest of the body: the same clip asked for twice has the same fingerprint."""
        canonical = json.dumps(self.to_body(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def estimate_credits(self) -> float:
        return estimate_credits(self.mode, self.duration, self.sound)

    def prompt_digest(self) -> str:
        """SHA-256 of the prompt (and shots): lets an asset event name its prompt without carrying it."""
        shots = [shot.prompt for shot in self.multi_prompt or ()]
        text = json.dumps({"prompt": self.prompt, "shots": shots}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _compact_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _describe_validation_error(err: ValidationError) -> str:
    problems = []
    for item in err.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not location:
            # Cross-field rules already start with the field they are about.
            problems.append(message)
            continue
        given = item.get("input")
        # A rule's own message may already show the value (e.g. one bad item of a list).
        suffix = "" if item["type"] == "missing" or "got " in message else f" (got {_shown(given)})"
        if item["type"] == "list_type" and isinstance(given, str):
            suffix += ": a Jinja template renders to text unless the DAG sets render_template_as_native_obj=True"
        problems.append(f"{location}: {message}{suffix}")
    return "Invalid HappyHorse request: " + "; ".join(problems)


def _shown(value: Any) -> str:
    """What the user gave, short enough for one error line."""
    if isinstance(value, str) and len(value) > 60:
        return f"{len(value):,} characters"  # long text is not echoed: the count is what matters
    if isinstance(value, (list, tuple, dict)) and len(repr(value)) > 80:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


# Credits per second of video, from the service's public price list (see docs/howto/operator.md, "Credits").
CREDITS_PER_SECOND: dict[tuple[Mode, bool], int] = {
    ("std", False): 40,
    ("std", True): 60,
    ("pro", False): 54,
    ("pro", True): 80,
}


def estimate_credits(mode: Mode, duration: float, sound: bool) -> float:
    """An estimate from the price list; the service's own bill is what counts."""
    return _compact_number(CREDITS_PER_SECOND[(mode, sound)] * duration)


class JobState(str, enum.Enum):  # noqa: UP042 - str() and format() keep their 3.10 forms
    """The one classification every part of the provider uses."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


SUCCESS_STATUSES = frozenset({"SUCCESS", "COMPLETED", "SUCCEEDED"})
FAILURE_STATUSES = frozenset({"FAILED", "FAILURE", "CANCELLED", "CANCELED", "ERROR"})
QUEUED_STATUSES = frozenset({"NOT_START", "QUEUED", "PENDING"})
KNOWN_PENDING_STATUSES = QUEUED_STATUSES | {"IN_PROGRESS", "PROCESSING", "RUNNING"}


class Usage(BaseModel):
    """
    What the service says it rendered (DashScope's ``usage``, on success only): seconds of output and of the
    source video, the clip count, its resolution (``SR``: the frame's short side, 720 or 1080) and ratio.
    Forward compatible: fields the service adds are kept.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    duration: float | None = None
    input_video_duration: float | None = None
    output_video_duration: float | None = None
    video_count: int | None = None
    SR: int | None = None  # the service's own key
    ratio: str | None = None


class JobStatus(BaseModel):
    """A job as ``GET /api/status`` (or ``POST /api/generate``) describes it."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    status: str
    state: JobState
    video_url: str | None = None
    error_message: str | None = None
    usage: Usage | None = None

    @property
    def is_queued(self) -> bool:
        """Waiting at the service, not yet rendering: it cannot finish sooner than a whole render."""
        return self.status.strip().upper() in QUEUED_STATUSES

    @property
    def is_known_status(self) -> bool:
        upper = self.status.strip().upper()  # the same reading as classify_status
        return upper in SUCCESS_STATUSES or upper in FAILURE_STATUSES or upper in KNOWN_PENDING_STATUSES


def classify_status(status: str) -> JobState:
    upper = status.strip().upper()
    if upper in SUCCESS_STATUSES:
        return JobState.SUCCEEDED
    if upper in FAILURE_STATUSES:
        return JobState.FAILED
    # Unknown statuses are treated as still running: the deadline decides, not a guess.
    return JobState.PENDING


EventStatus = Literal["success", "failed", "timeout", "error"]


class JobEvent(BaseModel):
    """
    The one event a ``HappyHorseJobTrigger`` fires (its payload is :meth:`payload`), and what a worker
    makes of a job it read itself. It always carries the job id.
    """

    model_config = ConfigDict(frozen=True)

    status: EventStatus
    job_id: str
    finished_at: str
    polls: int = 0
    transient_errors: int = 0
    job_status: str | None = None
    video_url: str | None = None
    message: str | None = None
    deadline: str | None = None
    error_type: str | None = None
    # No retry of the task can mend this error (``core.retries.is_permanent``, decided as the event is made).
    permanent: bool = False
    usage: Usage | None = None  # a success's, when the service reports it (DashScope)

    @classmethod
    def from_job(cls, job: JobStatus, *, finished_at: str, polls: int = 0, transient_errors: int = 0) -> JobEvent:
        """A job's last known status: success, failed, or (still running) an error."""
        counts = {"polls": polls, "transient_errors": transient_errors, "finished_at": finished_at}
        if job.state is JobState.SUCCEEDED:
            return cls(
                status="success",
                job_id=job.job_id,
                job_status=job.status,
                video_url=job.video_url,
                usage=job.usage,
                **counts,
            )
        if job.state is JobState.FAILED:
            return cls(status="failed", job_id=job.job_id, job_status=job.status, message=job.error_message, **counts)
        message = f"job is still {job.status} after its trigger ended"
        return cls(status="error", job_id=job.job_id, job_status=job.status, message=message, **counts)

    @classmethod
    def timed_out(
        cls, job_id: str, *, deadline: str, detail: str, finished_at: str, polls: int = 0, transient_errors: int = 0
    ) -> JobEvent:
        return cls(
            status="timeout",
            job_id=job_id,
            deadline=deadline,
            message=detail,
            finished_at=finished_at,
            polls=polls,
            transient_errors=transient_errors,
        )

    @classmethod
    def from_error(
        cls, job_id: str, error: Exception, *, finished_at: str, polls: int = 0, transient_errors: int = 0
    ) -> JobEvent:
        return cls(
            status="error",
            job_id=job_id,
            error_type=type(error).__name__,
            permanent=is_permanent(error),
            message=str(error),
            finished_at=finished_at,
            polls=polls,
            transient_errors=transient_errors,
        )

    def payload(self) -> dict[str, Any]:
        """The trigger event's JSON payload (``permanent`` only when true: events stay small)."""
        return self.model_dump(mode="json", exclude_none=True, exclude=None if self.permanent else {"permanent"})


class MediaInfo(BaseModel):
    """What a stored clip is, read by a demuxer: ``duration`` from its frames, ``declared_duration`` from its header."""

    model_config = ConfigDict(frozen=True)

    duration: float
    declared_duration: float | None = None
    width: int
    height: int
    frame_rate: float | None = None
    video_codec: str
    audio_codec: str | None = None
    has_audio: bool


class VideoResult(BaseModel):
    """
    The schema of what a finished video task returns (its XCom ``return_value``): JSON, no secrets. Made
    only by ``RenderRecord.result()`` and read back only by ``RenderRecord.from_result()``; its keys are
    stable for downstream tasks. A stored clip has its path, size and SHA-256 together (a result anyone
    with XCom access could have written is held to that before the view serves anything).
    """

    model_config = ConfigDict(frozen=True)

    job_id: StrictStr = Field(min_length=1)
    status: str | None = None
    video_url: str | None = None
    request: dict[str, Any] | None = None
    credits_estimate: float | None = None  # happyhorse.app's estimate (None on a dialect billed in money)
    # The estimate in its unit, ``cost_unit``: "credits" or a currency (DashScope); results of earlier
    # releases have neither (their unit was credits).
    cost_estimate: float | None = None
    cost_unit: str | None = None
    usage: Usage | None = None  # what the service says it rendered (DashScope); absent when it says nothing
    submitted_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    stored_path: Annotated[StrictStr, Field(min_length=1)] | None = None
    stored_size: StrictInt | None = Field(default=None, validate_default=True)
    stored_sha256: Annotated[StrictStr, Field(min_length=1)] | None = Field(default=None, validate_default=True)
    media: MediaInfo | None = None
    verified: bool | None = None  # the clip matched its request (False: it did not, kept with verify_clip="warn")
    poster_path: Annotated[StrictStr, Field(min_length=1)] | None = None

    @field_validator("stored_size", "stored_sha256")
    @classmethod
    def _with_the_path(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("stored_path") is not None:
            raise ValueError("required with stored_path")
        return value

    @field_serializer("submitted_at", "finished_at")
    def _as_iso(self, value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()
