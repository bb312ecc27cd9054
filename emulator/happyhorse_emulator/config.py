"""Every knob of the emulator in one immutable object.

``EmulatorConfig`` is what the CLI flags, the ``--config`` JSON file, ``POST /_emulator/config`` and the test
handles all produce. It is a frozen pydantic model: a runtime change builds a new object with
:meth:`EmulatorConfig.merged`, so a request never sees half of an update.

Times are in seconds. ``speed`` multiplies the render time model only (``speed=0.01`` turns a 40 s render into
0.4 s); the result TTL, the slow-response delay and ``Retry-After`` values are not scaled, so tests set those
directly.

The admin routes (``/_emulator/stats``, ``jobs``, ``reset``, ``config``) want the header
``X-Emulator-Token: <admin_token>``; each config built without one gets a random token. Documents and logs never
show a presented API key, only its :func:`key_id`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Endpoint = Literal["generate", "status"]
Dialect = Literal["happyhorse", "dashscope"]
"""The API the emulator speaks: happyhorse.app's (``/api/generate``, ``/api/status``) or Alibaba Cloud Model Studio's
(DashScope: ``/api/v1/services/aigc/video-generation/video-synthesis``, ``/api/v1/tasks/{task_id}``)."""

DEFAULT_API_KEY = "emulator-demo-key"
ADMIN_TOKEN_HEADER = "X-Emulator-Token"  # noqa: S105 - a header name
"""The header that carries the admin token on the ``/_emulator/*`` admin routes."""
ADMIN_TOKEN_ENV = "HAPPYHORSE_EMULATOR_ADMIN_TOKEN"  # noqa: S105 - a variable name
"""The CLI's admin token when ``--admin-token`` is not given."""


def key_id(api_key: str) -> str:
    """What the emulator shows instead of an API key (stats, jobs, logs): ``key-`` and 12 hex digits of its sha256.

    Callers that look a key up in the stats document's ``by_key`` maps compute it with this function."""
    return "key-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


def new_admin_token() -> str:
    """A fresh random admin token (each config built without one gets its own)."""
    return secrets.token_urlsafe(24)


Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class FaultConfig(BaseModel):
    """Injected faults, each with the probability that one request (or one job) gets it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_error_rate: Rate = 0.0
    """5xx on an endpoint, chosen among 500/502/503/504 (503 sometimes carries ``Retry-After``).

    On POST, a 503 with ``Retry-After`` never created the task; any other 5xx did, half of the time (a gateway
    that gave up on a slow backend), so a client that resubmits after it may pay twice."""
    rate_limit_storm_rate: Rate = 0.0
    """429 with ``Retry-After`` in seconds or as an HTTP date, regardless of the per-key limit."""
    slow_response_rate: Rate = 0.0
    """Answer only after ``slow_response_seconds``; on POST the task is created before the delay."""
    slow_response_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    drop_after_create_rate: Rate = 0.0
    """POST: create the task, then drop the connection mid-response (the double-submit trap)."""
    drop_before_create_rate: Rate = 0.0
    """POST: drop the connection mid-response without creating a task."""
    malformed_body_rate: Rate = 0.0
    """HTTP 200 whose body is not JSON or has no ``data`` (on POST the task exists)."""
    status_variant_rate: Rate = 0.0
    """Per job: use the alternative spellings (COMPLETED, FAILURE/CANCELLED, error/fail_reason/message...)."""
    unknown_status_rate: Rate = 0.0
    """Per job: report an unlisted status (e.g. RENDERING_PREVIEW) during the first half of the render."""
    faults_on: tuple[Endpoint, ...] = ("generate", "status")
    """Endpoints the per-request faults above apply to. Admin routes never get faults; result files get theirs below."""
    result_redirect_rate: Rate = 0.0
    """Result file: answer 302 to a signed URL (``?expires=...&sig=...``) serving it (also: ``redirect_results``)."""
    signed_url_refused_rate: Rate = 0.0
    """Result file: answer 200 with an HTML "AccessDenied / Request has expired" page instead of the video, as a
    CDN does for a refused or expired signed URL."""
    cut_body_rate: Rate = 0.0
    """Result file: answer 200 with the first half of the MP4, its Content-Length saying so (only a demuxer sees it)."""
    clip_mismatch_rate: Rate = 0.0
    """Per job: its clip does not match its request (2 s short, or without the audio it asked for)."""


class EmulatorConfig(BaseModel):
    """All settings of one emulator instance; the defaults suit the demo (real-time renders)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    """Bearer keys accepted with credits."""
    no_credit_keys: tuple[str, ...] = ()
    """Valid keys whose submissions get 402 ``{"code": 402, "message": "insufficient credits"}``."""
    forbidden_keys: tuple[str, ...] = ()
    """Valid keys whose submissions get 403 ``{"error": {"code": "workflow_not_enabled", ...}}``."""

    base_seconds: float = Field(default=20.0, ge=0.0)
    per_video_second: float = Field(default=3.0, ge=0.0)
    pro_factor: float = Field(default=1.5, ge=0.0)
    audio_factor: float = Field(default=1.2, ge=0.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    """Render times vary uniformly by +/- this fraction."""
    speed: float = Field(default=1.0, gt=0.0)
    """Multiplies every render time."""

    max_concurrent_per_key: int | None = Field(default=4, ge=1)
    """Renders running at once per key; later jobs stay queued. None: no limit."""
    rate_limit_per_second: float | None = Field(default=None, gt=0.0)
    """Token-bucket refill per key for both API endpoints. None: no limit."""
    rate_limit_burst: int = Field(default=10, ge=1)

    dialect: Dialect = "happyhorse"
    """The API spoken: ``happyhorse`` (happyhorse.app) or ``dashscope`` (Alibaba Cloud Model Studio). Each answers
    only its own API routes (the other's answer 404); job lifecycle, faults, result files and admin routes are
    shared. Fixed for an emulator's life."""
    query_limit_per_second: float | None = Field(default=20.0, gt=0.0)
    """DashScope dialect: task queries (``GET /api/v1/tasks/{id}``) per second for the whole account (every key
    together), the documented 20 QPS; beyond it 429 ``Throttling.RateQuota``. Task cancels have a limit of the same
    size of their own. None: no limit. Not used by the happyhorse dialect."""

    redirect_results: bool = False
    """Every result URL redirects to a signed URL (as CDN-backed services do); ``faults.result_redirect_rate``
    makes only a share of them do so."""
    result_ttl_seconds: float = Field(default=86_400.0, ge=0.0)
    """After a job finishes, its file route answers for this long, then 410."""
    job_failure_rate: Rate = 0.0
    """Share of jobs that end FAILED with a reason."""

    seed: int = 0
    """Seeds the fault and job decisions (and re-seeds on reset) so runs are reproducible."""
    admin_routes: bool = True
    """Serve the admin routes (``/_emulator/stats``, ``jobs``, ``reset``, ``config``, ``health``); else they answer 404.

    The test image route ``/_emulator/images/<W>x<H>.png`` stays on either way. The former name
    ``admin_enabled`` is still accepted as input."""
    admin_token: str | None = Field(
        default_factory=new_admin_token, min_length=1, max_length=256, pattern=r"^[!-~]+$", repr=False
    )
    """What the admin routes (all but ``health``) want in the ``X-Emulator-Token`` header. Default: a random
    token made when the config is built. None: they need no token (in-process use only; the CLI always has one).
    It is fixed for an emulator's life: runtime configuration changes keep the one it started with."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header names accepted besides loopback ones (``localhost``, ``127.x.x.x``, ``[::1]``) and the bound
    address; any other Host is refused (421), which stops DNS rebinding."""
    state_file: str | None = None
    """Append-only JSON-lines job log replayed at start-up, so jobs survive a restart."""
    result_clips_dir: str | None = None
    """A folder of pre-made result MP4s, served instead of the tiny render for a job of that duration and sound:
    ``<duration>s.mp4`` (no audio track) or ``<duration>s-sound.mp4``, the duration as ``f"{seconds:g}"`` (``5s.mp4``,
    ``7.5s-sound.mp4``). A job with no such file gets the usual render. The files are served as they are (their frame
    size is not the aspect ratio's), so benchmarks can download realistic clips (1080p, tens of MB). Fixed for an
    emulator's life, like ``state_file``."""

    faults: FaultConfig = FaultConfig()

    @model_validator(mode="before")
    @classmethod
    def _former_names(cls, data: Any) -> Any:
        """``admin_enabled`` is the former name of ``admin_routes``."""
        if isinstance(data, Mapping) and "admin_enabled" in data:
            data = dict(data)
            value = data.pop("admin_enabled")
            if "admin_routes" in data and data["admin_routes"] != value:
                raise ValueError("admin_enabled (the former name of admin_routes) contradicts admin_routes")
            data["admin_routes"] = value
        return data

    @model_validator(mode="after")
    def _hosts_are_names(self) -> EmulatorConfig:
        for host in self.allowed_hosts:
            if not host or any(char in host for char in " /@"):
                raise ValueError(f"allowed_hosts: {host!r} is not a host name or address")
        return self

    @model_validator(mode="after")
    def _keys_are_disjoint(self) -> EmulatorConfig:
        groups = (self.api_keys, self.no_credit_keys, self.forbidden_keys)
        seen: set[str] = set()
        for group in groups:
            for key in group:
                if not key:
                    raise ValueError("API keys must not be empty")
                if key in seen:
                    raise ValueError(f"key {key!r} is listed twice")
                seen.add(key)
        return self

    @property
    def primary_api_key(self) -> str:
        """The first accepted key with credits (what tests and the demo use)."""
        if not self.api_keys:
            raise ValueError("no API key is configured")
        return self.api_keys[0]

    def merged(self, partial: Mapping[str, Any]) -> EmulatorConfig:
        """Return a validated copy with ``partial`` applied; ``faults`` may itself be partial."""
        data = self.model_dump()
        for name, value in partial.items():
            if name == "admin_enabled":  # the former name
                name = "admin_routes"
            if name == "faults" and isinstance(value, Mapping):
                data["faults"] = {**data["faults"], **value}
            else:
                data[name] = value
        return EmulatorConfig.model_validate(data)
