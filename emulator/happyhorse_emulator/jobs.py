"""Jobs without I/O beyond the state file: request validation, scheduling, lifecycle and persistence.

A job's whole life is fixed when it is created: the scheduler picks its start (the moment a render slot of its
key frees up) and its finish, and the creation decides its outcome and spellings. Its state at any moment is a
comparison of ``now`` with those timestamps, so a status call costs O(1) and a restart only has to replay the
log to answer exactly as before::

    created ---- queued ---- started ---- in progress ---- finished ---- success | failed
                                          (first half may report an unlisted status)

The state file is an append-only JSON-lines log, one line per created job (written and flushed at creation,
so a SIGKILL loses nothing acknowledged); a torn last line from a crash is skipped on replay.

Request validation here is an independent reading of the contract (``docs/happyhorse-api.md``), deliberately not
shared with the client's models so the two can be compared.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import random
import string
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import IO, Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MODEL_ID = "happyhorse-1.0/video"
MAX_PROMPT_CHARS = 2500
MIN_DURATION = 3.0
MAX_DURATION = 15.0
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
MODES = ("std", "pro")
DEFAULT_DURATION = 5.0
DEFAULT_ASPECT_RATIO = "16:9"
DEFAULT_CFG_SCALE = 0.5
_SHOT_SUM_TOLERANCE = 1e-6

UNKNOWN_STATUSES = ("RENDERING_PREVIEW", "POST_PROCESSING", "UPSCALING")
FAILURE_REASONS = (
    "content policy violation: the prompt was flagged",
    "render node lost during generation",
    "internal error: out of GPU memory",
)
_ID_ALPHABET = string.ascii_lowercase + string.digits
_STATE_FILE_VERSION = 1


class Refusal(Exception):
    """A request the service refuses: HTTP ``status`` with body ``{"code": status, "message": message}``."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# --------------------------------------------------------------------------------------------------------------
# Request validation


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A request that passed every rule, with the contract's defaults filled in."""

    prompt: str | None
    mode: str
    duration: float
    aspect_ratio: str
    image_urls: tuple[str, ...]
    sound: bool
    cfg_scale: float
    multi_shots: bool
    shot_count: int


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `true` is not a number in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format_number(value: float) -> str:
    return f"{value:g}"


def _string(body: Mapping[str, Any], name: str) -> str | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str):
        raise Refusal(422, f"{name}: must be a string")
    return value


def _boolean(body: Mapping[str, Any], name: str, default: bool) -> bool:
    if name not in body:
        return default
    value = body[name]
    if not isinstance(value, bool):
        raise Refusal(422, f"{name}: must be a boolean")
    return value


def _number(body: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    if name not in body:
        return default
    value = body[name]
    if not _is_number(value):
        raise Refusal(422, f"{name}: must be a number")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise Refusal(400, f"{name}: must be between {_format_number(low)} and {_format_number(high)}")
    return number


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _image_urls(body: Mapping[str, Any], multi_shots: bool) -> tuple[str, ...]:
    if "image_urls" not in body:
        return ()
    value = body["image_urls"]
    if not isinstance(value, list):
        raise Refusal(422, "image_urls: must be a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise Refusal(422, f"image_urls[{index}]: must be a string")
        if not _is_http_url(item):
            raise Refusal(400, f"image_urls[{index}]: must be an http(s) URL")
    if multi_shots and len(value) != 1:
        raise Refusal(400, "image_urls: multi-shot generation takes exactly 1 image (the first frame)")
    if not multi_shots and len(value) > 2:
        raise Refusal(400, "image_urls: single-shot generation takes at most 2 images (first and last frame)")
    return tuple(value)


def _multi_prompt(body: Mapping[str, Any], multi_shots: bool, duration: float) -> int:
    """Validate the shots; return how many there are."""
    value = body.get("multi_prompt")
    if "multi_prompt" in body and not isinstance(value, list):
        raise Refusal(422, "multi_prompt: must be a list of objects")
    shots: list[Any] = value if isinstance(value, list) else []
    if multi_shots and not shots:
        raise Refusal(400, "multi_prompt: required (at least one shot) when multi_shots is true")
    durations: list[float] = []
    for index, shot in enumerate(shots):
        where = f"multi_prompt[{index}]"
        if not isinstance(shot, dict):
            raise Refusal(422, f"{where}: must be an object")
        prompt = shot.get("prompt")
        if "prompt" in shot and not isinstance(prompt, str):
            raise Refusal(422, f"{where}.prompt: must be a string")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Refusal(400, f"{where}.prompt: required")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Refusal(400, f"{where}.prompt: must be at most {MAX_PROMPT_CHARS} characters")
        if "duration" in shot:
            shot_duration = shot["duration"]
            if not _is_number(shot_duration):
                raise Refusal(422, f"{where}.duration: must be a number")
            if not (math.isfinite(shot_duration) and shot_duration > 0):
                raise Refusal(400, f"{where}.duration: must be greater than 0")
            durations.append(float(shot_duration))
    if durations:
        if len(durations) != len(shots):
            raise Refusal(400, "multi_prompt: give a duration for every shot or for none")
        total = sum(durations)
        if abs(total - duration) > _SHOT_SUM_TOLERANCE:
            raise Refusal(
                400,
                f"multi_prompt: shot durations sum to {_format_number(total)}, "
                f"must equal duration ({_format_number(duration)})",
            )
    return len(shots)


def validate_generate_body(body: object) -> GenerateRequest:
    """Check a decoded ``POST /api/generate`` body against every rule of the contract, in table order.

    Wrong JSON types are 422, broken rules 400; the message is ``"<field>: <rule>"``. Unknown fields are
    ignored; ``happyhorse_elements`` is passed through unchecked beyond being a list. ``null`` is a type error
    for every field (the contract never allows it).
    """
    if not isinstance(body, dict):
        raise Refusal(400, "body: must be a JSON object")
    model = _string(body, "model")
    if model is None:
        raise Refusal(400, "model: required")
    if model != MODEL_ID:
        raise Refusal(400, f"model: must be {MODEL_ID!r}")
    multi_shots = _boolean(body, "multi_shots", False)
    prompt = _string(body, "prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise Refusal(400, f"prompt: must be at most {MAX_PROMPT_CHARS} characters")
    if not multi_shots and (prompt is None or not prompt.strip()):
        raise Refusal(400, "prompt: required unless multi_shots is true")
    mode = _string(body, "mode")
    if mode is not None and mode not in MODES:
        raise Refusal(400, "mode: must be 'std' or 'pro'")
    duration = _number(body, "duration", DEFAULT_DURATION, MIN_DURATION, MAX_DURATION)
    aspect_ratio = _string(body, "aspect_ratio")
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise Refusal(400, "aspect_ratio: must be '16:9', '9:16' or '1:1'")
    image_urls = _image_urls(body, multi_shots)
    sound = _boolean(body, "sound", True)
    cfg_scale = _number(body, "cfg_scale", DEFAULT_CFG_SCALE, 0.0, 1.0)
    shot_count = _multi_prompt(body, multi_shots, duration)
    if "happyhorse_elements" in body and not isinstance(body["happyhorse_elements"], list):
        raise Refusal(422, "happyhorse_elements: must be a list")
    return GenerateRequest(
        prompt=prompt,
        mode=mode or "std",
        duration=duration,
        aspect_ratio=aspect_ratio or DEFAULT_ASPECT_RATIO,
        image_urls=image_urls,
        sound=sound,
        cfg_scale=cfg_scale,
        multi_shots=multi_shots,
        shot_count=shot_count if multi_shots else 1,
    )


def request_fingerprint(body: object) -> str:
    """sha256 (hex) of the canonical JSON of a request body: sorted keys, no spaces, UTF-8."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Jobs


class Phase(str, Enum):  # noqa: UP042 - str() and format() keep their 3.10 forms
    """Where a job is in its life; the value is the canonical spelling used in stats."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Spelling:
    """How a job words its states: the contract's main spelling or one of the variants seen in the wild."""

    queued: str = "QUEUED"
    success: str = "SUCCESS"
    failure: str = "FAILED"
    reason_field: str = "error_message"
    """``error_message``/``error``/``fail_reason`` inside ``data``, or ``message`` at the top level."""


STANDARD_SPELLING = Spelling()


@dataclass(slots=True)
class Job:
    """Everything needed to answer for one task at any time; one line of the state file."""

    task_id: str
    api_key: str
    created: float
    started: float
    finished: float
    mode: str
    duration: float
    sound: bool
    width: int
    height: int
    fingerprint: str
    failure_reason: str | None = None
    spelling: Spelling = STANDARD_SPELLING
    unknown_status: str | None = None
    """Reported instead of IN_PROGRESS during the first half of the render."""
    mismatch: str | None = None
    """``duration`` (2 s short) or ``audio`` (none though asked for): its clip does not match its request."""
    dialect_data: dict[str, Any] | None = None
    """What a dialect other than happyhorse.app needs to answer for the job (DashScope: model, resolution, usage...)."""
    canceled: float | None = None
    """When it was cancelled while still queued (DashScope's cancel); it then never starts and ends FAILED."""

    def phase(self, now: float) -> Phase:
        if self.canceled is not None and now >= self.canceled:
            return Phase.FAILED
        if now < self.started:
            return Phase.QUEUED
        if now < self.finished:
            return Phase.IN_PROGRESS
        return Phase.SUCCESS if self.failure_reason is None else Phase.FAILED

    def reported_status(self, now: float) -> str:
        """The status string the API shows at ``now``."""
        if now < self.started:
            return self.spelling.queued
        if now < self.finished:
            if self.unknown_status is not None and now < (self.started + self.finished) / 2:
                return self.unknown_status
            return "IN_PROGRESS"
        return self.spelling.success if self.failure_reason is None else self.spelling.failure

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        for name in ("dialect_data", "canceled"):  # happyhorse.app jobs keep their former lines
            if record[name] is None:
                del record[name]
        record["v"] = _STATE_FILE_VERSION
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Job:
        fields = dict(record)
        fields.pop("v", None)
        fields["spelling"] = Spelling(**fields["spelling"])
        return cls(**fields)


def new_task_id(rng: random.Random) -> str:
    """An id shaped like the contract's ``n92abc123hh10``: lowercase letters and digits."""
    middle = "".join(rng.choices(_ID_ALPHABET, k=8))
    return f"n{middle}hh{rng.randrange(100):02d}"


@dataclass(slots=True)
class _Lane:
    """One key's render slots: finish times of its unfinished jobs (a min-heap) and its latest start."""

    finishes: list[float] = field(default_factory=list)
    last_start: float = 0.0

    def prune(self, now: float) -> None:
        while self.finishes and self.finishes[0] <= now:
            heapq.heappop(self.finishes)

    def add(self, started: float, finished: float) -> None:
        heapq.heappush(self.finishes, finished)
        self.last_start = max(self.last_start, started)


class JobStore:
    """All jobs, the per-key scheduler and the state file. Not thread-safe: one event loop owns it."""

    def __init__(self, state_file: str | None = None) -> None:
        self.state_file = state_file
        self._jobs: dict[str, Job] = {}
        self._lanes: dict[str, _Lane] = {}
        self._fingerprints: dict[tuple[str, str], int] = {}
        self._log: IO[str] | None = None
        if state_file is not None:
            self._replay(state_file)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._jobs

    def get(self, task_id: str) -> Job | None:
        return self._jobs.get(task_id)

    def schedule(self, api_key: str, now: float, render_seconds: float, limit: int | None) -> tuple[float, float]:
        """Start and finish for a new job of ``api_key``: first in, first out over ``limit`` slots.

        It starts at the earliest moment at or after ``now`` (and after the key's previous start) when fewer
        than ``limit`` of the key's jobs are still rendering: the ``limit``-th largest pending finish time.
        """
        lane = self._lanes.setdefault(api_key, _Lane())
        lane.prune(now)
        started = max(now, lane.last_start)
        if limit is not None and len(lane.finishes) >= limit:
            started = max(started, heapq.nlargest(limit, lane.finishes)[-1])
        return started, started + render_seconds

    def add(self, job: Job) -> None:
        """Register a new job and append it to the state file (one line, flushed)."""
        self._insert(job)
        self._append(job.to_record())

    def cancel(self, job: Job, now: float) -> None:
        """Mark a queued job cancelled at ``now`` and append that to the state file (one line, flushed).

        Its render slot is not handed to the jobs queued behind it: their start times were fixed when they were
        created."""
        job.canceled = now
        self._append({"v": _STATE_FILE_VERSION, "canceled": job.task_id, "at": now})

    def _append(self, record: Mapping[str, Any]) -> None:
        log = self._open_log()
        if log is not None:
            log.write(json.dumps(record, separators=(",", ":")) + "\n")
            log.flush()

    def _open_log(self) -> IO[str] | None:
        """The state file, opened for appending on first use (and again after :meth:`close`)."""
        if self._log is None and self.state_file is not None:
            self._log = open(self.state_file, "a", encoding="utf-8")  # noqa: SIM115 - held until close()
        return self._log

    def _insert(self, job: Job) -> None:
        self._jobs[job.task_id] = job
        self._lanes.setdefault(job.api_key, _Lane()).add(job.started, job.finished)
        key = (job.api_key, job.fingerprint)
        self._fingerprints[key] = self._fingerprints.get(key, 0) + 1

    def fingerprint_counts(self) -> dict[tuple[str, str], int]:
        """Accepted submissions per (API key, request fingerprint)."""
        return dict(self._fingerprints)

    def clear(self) -> None:
        """Forget every job, and truncate the state file so a restart does not bring them back."""
        self._jobs.clear()
        self._lanes.clear()
        self._fingerprints.clear()
        log = self._open_log()
        if log is not None:
            log.seek(0)
            log.truncate()
            log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _replay(self, path: str) -> None:
        if not os.path.exists(path):
            return
        skipped = 0
        with open(path, encoding="utf-8") as log:
            for line in log:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if "canceled" in record and "task_id" not in record:
                        self._jobs[record["canceled"]].canceled = float(record["at"])
                        continue
                    job = Job.from_record(record)
                except (ValueError, TypeError, KeyError):
                    skipped += 1  # a torn last line after a crash, or a line from another version
                    continue
                self._insert(job)
        if skipped:
            logger.warning("state file %s: skipped %d unreadable line(s)", path, skipped)
        logger.info("state file %s: replayed %d job(s)", path, len(self._jobs))


def peak_concurrency(jobs: Iterator[Job] | list[Job], now: float) -> int:
    """Most jobs rendering at the same moment, up to ``now`` (a sweep over start/finish events)."""
    events: list[tuple[float, int]] = []
    for job in jobs:
        if job.canceled is not None:
            continue  # cancelled while queued: it never rendered
        if job.started <= now:
            events.append((job.started, 1))
            if job.finished <= now:
                events.append((job.finished, -1))
    # At equal times the finish (-1) sorts first: a slot freed at t is reused by a job starting at t.
    events.sort()
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak
