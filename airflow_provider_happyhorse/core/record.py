"""
One render, as a task knows it: :class:`RenderRecord`, with no I/O.

The same frozen model is, unchanged:

- the task state record that lets a later try re-attach to a paid job (``job_store``);
- the trigger's kwargs (``HappyHorseJobTrigger(record=..., happyhorse_conn_id=...)``);
- the record kept beside a stored clip (its JSON sidecar or object metadata, ``storage``);
- through :meth:`RenderRecord.result` the task's XCom result (its flat keys are ``VideoResult``'s, kept
  stable for downstream tasks), read back by the view, the extra link and the CLI through
  :meth:`RenderRecord.from_result`.

Times are aware datetimes, parsed only here (by pydantic) and written as ``datetime.isoformat()``.
Records written by earlier releases (a flat trigger kwargs dict, a task state record with
``submitted_at``, a ``ClipRecord`` sidecar) still read: :meth:`RenderRecord.from_trigger_kwargs` and the
``before`` validator turn them into this shape.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_serializer,
    model_validator,
)

from airflow_provider_happyhorse.core.cost import CREDITS, CostEstimate
from airflow_provider_happyhorse.core.progress import RenderEstimate
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.models import JobEvent, MediaInfo, Usage, VideoRequest, VideoResult

# An aware time, written as ``isoformat()`` (``+00:00``, as every earlier release wrote it).
Instant = Annotated[AwareDatetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


class Since(str, enum.Enum):  # noqa: UP042 - str() and format() keep their 3.10 forms
    """What a record's ``started_at`` is: the job's submission, or when a sensor began waiting for it."""

    SUBMISSION = "submission"
    SENSOR_BEGAN_WAITING = "the sensor began waiting"


class StoredClip(BaseModel):
    """A clip kept at ``path``: its bytes (size, SHA-256), what it is, and its poster's path and bytes."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str
    media: MediaInfo | None = None
    verified: bool | None = None  # matched its request (None: not compared)
    poster_path: str | None = None
    # The poster's bytes as written with the clip (None: no poster, or a record from before they were recorded).
    poster_size: int | None = None
    poster_sha256: str | None = None


class RenderRecord(BaseModel):
    """
    What a task knows about its render. ``job_id`` is None between sending a submission and learning its
    id; ``fingerprint`` and ``request`` are None for a sensor (a job made elsewhere); ``deadline`` and
    ``schedule`` are set when a wait begins; ``status``, ``video_url`` and ``finished_at`` once the job
    succeeded; ``stored`` once its clip is kept.
    """

    model_config = ConfigDict(frozen=True)

    fingerprint: str | None = None
    request: VideoRequest | None = None
    # The estimate in the connection's unit, made at submission (None: a sensor's, or an earlier release's
    # record, whose unit was credits: ``credits_estimate`` works it out from the request).
    cost: CostEstimate | None = None
    job_id: str | None = None
    started_at: Instant | None = None  # what ``since`` says (None: unknown, a record of an early sensor's clip)
    since: Since = Since.SUBMISSION
    deadline: Instant | None = None
    schedule: PollSchedule | None = None
    end_task_on_success: bool = False  # nothing is left for a worker after the job succeeds
    status: str | None = None
    video_url: str | None = None
    finished_at: Instant | None = None
    usage: Usage | None = None  # what the service says it rendered, from the success event (DashScope)
    stored: StoredClip | None = None

    @model_serializer(mode="wrap")
    def _without_credits_cost(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A record without an estimate in money or a usage is written as earlier releases wrote it."""
        data: dict[str, Any] = handler(self)
        for key in ("cost", "usage"):
            if data.get(key, ...) is None:
                del data[key]
        return data

    @field_serializer("request")
    def _request_body(self, request: VideoRequest | None) -> dict[str, Any] | None:
        """The request as its documented body (what its fingerprint digests), never its unset fields."""
        return None if request is None else request.to_body()

    # -- making and changing one ---------------------------------------------------------------------

    @classmethod
    def submitting(cls, request: VideoRequest, now: datetime, *, cost: CostEstimate | None = None) -> RenderRecord:
        """A submission about to be sent (kept before sending: its outcome may never come back)."""
        # An estimate in credits is the request's own (``credits_estimate``): kept only when it is money.
        kept = None if cost is None or cost.unit == CREDITS else cost
        return cls(fingerprint=request.fingerprint(), request=request, started_at=now, cost=kept)

    @classmethod
    def awaited(cls, job_id: str, now: datetime) -> RenderRecord:
        """A job made elsewhere, that a sensor begins waiting for now."""
        return cls(job_id=job_id, started_at=now, since=Since.SENSOR_BEGAN_WAITING)

    def waiting(self, *, deadline: datetime, schedule: PollSchedule, end_task_on_success: bool = False) -> RenderRecord:
        return self.model_copy(
            update={"deadline": deadline, "schedule": schedule, "end_task_on_success": end_task_on_success}
        )

    def succeeded(self, event: JobEvent) -> RenderRecord:
        """The record with a success event's outcome (its job id wins: the event is what happened)."""
        return type(self).model_validate(
            {
                **self.model_dump(),
                "job_id": event.job_id,
                "status": event.job_status,
                "video_url": event.video_url,
                "finished_at": event.finished_at,
                "usage": event.usage,
            }
        )

    def with_stored(self, stored: StoredClip) -> RenderRecord:
        return self.model_copy(update={"stored": stored})

    # -- what it says --------------------------------------------------------------------------------

    @property
    def submitted_at(self) -> datetime | None:
        return self.started_at if self.since is Since.SUBMISSION else None

    @property
    def credits_estimate(self) -> float | None:
        """The estimate in credits (happyhorse.app); None for a render billed in money, or a sensor's."""
        if self.cost is not None:
            return self.cost.amount if self.cost.unit == CREDITS else None
        return None if self.request is None else self.request.estimate_credits()

    @property
    def cost_estimate(self) -> CostEstimate | None:
        """The estimate with its unit (an earlier release's record: its request's credits); None: a sensor's."""
        if self.cost is not None or self.request is None:
            return self.cost
        return CostEstimate(amount=self.request.estimate_credits(), unit=CREDITS)

    def plan(self, progress_every: timedelta | None = None) -> WaitPlan:
        """
        The wait this record asks for (it must have a job id, a start, a deadline and a schedule), with the
        render-time model's estimate when the request is known (``progress_every``: for a job whose request
        is not, a sensor's, say how it is doing at most this often).
        """
        if self.job_id is None or self.started_at is None or self.deadline is None or self.schedule is None:
            raise ValueError(f"a record without a job id, start, deadline or schedule has no wait: {self!r}")
        return WaitPlan(
            job_id=self.job_id,
            started_at=self.started_at,
            deadline=self.deadline,
            schedule=self.schedule,
            since=self.since.value,
            progress_every=progress_every,
            estimate=None if self.request is None else RenderEstimate.of_request(self.request, self.started_at),
        )

    # -- the XCom result -----------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        """
        The task's XCom ``return_value``: ``VideoResult``'s flat JSON keys, no secrets. An estimate in credits
        is ``credits_estimate`` (the keys of earlier releases, unchanged); one in money is ``cost_estimate``
        (None: unknown) in ``cost_unit``, with ``credits_estimate`` None.
        """
        stored = self.stored
        money = self.cost if self.cost is not None and self.cost.unit != CREDITS else None
        result = VideoResult(
            job_id=self.job_id or "",
            status=self.status or "IN_PROGRESS",
            video_url=self.video_url,
            request=None if self.request is None else self.request.to_body(),
            credits_estimate=self.credits_estimate,
            cost_estimate=None if money is None else money.amount,
            cost_unit=None if money is None else money.unit,
            submitted_at=self.submitted_at,
            finished_at=self.finished_at,
            stored_path=None if stored is None else stored.path,
            stored_size=None if stored is None else stored.size,
            stored_sha256=None if stored is None else stored.sha256,
            media=None if stored is None else stored.media,
            verified=None if stored is None else stored.verified,
            poster_path=None if stored is None else stored.poster_path,
            usage=self.usage,
        ).model_dump(mode="json")
        if money is None:  # a result in credits keeps the earlier releases' keys exactly
            del result["cost_estimate"], result["cost_unit"]
        if self.usage is None:
            del result["usage"]
        return result

    @classmethod
    def from_result(cls, value: Mapping[str, Any]) -> RenderRecord:
        """
        A task's XCom result read back (``ValueError``, a pydantic ``ValidationError`` naming the result's
        own key, when it is not one). A result without a request is a sensor's.
        """
        result = VideoResult.model_validate(value)
        stored = None
        if result.stored_path is not None:
            stored = StoredClip(
                path=result.stored_path,
                size=result.stored_size,
                sha256=result.stored_sha256,
                media=result.media,
                verified=result.verified,
                poster_path=result.poster_path,
            )
        cost = None if result.cost_unit is None else {"amount": result.cost_estimate, "unit": result.cost_unit}
        # Validated as the record's field, so that a bad request is named as the result's "request".
        record = cls.model_validate(
            {
                "request": result.request,
                "cost": cost,
                "job_id": result.job_id,
                "started_at": result.submitted_at,
                "since": Since.SUBMISSION if result.request is not None else Since.SENSOR_BEGAN_WAITING,
                "status": result.status,
                "video_url": result.video_url,
                "finished_at": result.finished_at,
                "usage": result.usage,
                "stored": stored,
            }
        )
        if record.request is None:
            return record
        return record.model_copy(update={"fingerprint": record.request.fingerprint()})

    # -- records of earlier releases -----------------------------------------------------------------

    @classmethod
    def from_trigger_kwargs(cls, kwargs: Mapping[str, Any]) -> RenderRecord:
        """The record in a trigger row's kwargs: this release's ``record``, or an earlier one's flat kwargs."""
        record = kwargs.get("record")
        if record is not None:
            return record if isinstance(record, RenderRecord) else cls.model_validate(record)
        known = kwargs.get("result")  # an earlier operator's known result; None: an earlier sensor
        request = None if known is None or known.get("request") is None else known["request"]
        return cls.model_validate(
            {
                "fingerprint": None if request is None else VideoRequest.model_validate(request).fingerprint(),
                "request": request,
                "job_id": kwargs["job_id"],
                "started_at": kwargs["submitted_at"],
                "since": Since.SUBMISSION if known is not None else Since.SENSOR_BEGAN_WAITING,
                "deadline": kwargs["deadline"],
                "schedule": {
                    "first_poll_after": kwargs["first_poll_after"],
                    "min_interval": kwargs["min_poll_interval"],
                    "max_interval": kwargs["max_poll_interval"],
                },
                "end_task_on_success": kwargs.get("end_task_on_success", False),
            }
        )

    @model_validator(mode="before")
    @classmethod
    def _earlier_shapes(cls, data: Any) -> Any:
        """
        A task state record of an earlier release (``submitted_at``, ``stored`` with ``path``...) or a clip
        record kept beside a clip (``ClipRecord``: ``size``, ``sha256``, ``result`` and the poster's bytes).
        """
        if not isinstance(data, dict) or "started_at" in data:
            return data
        data = dict(data)
        if "result" in data and "sha256" in data:  # a ClipRecord sidecar
            result = data.pop("result") or {}
            data["stored"] = {
                "path": result.get("stored_path") or "",
                "size": data.pop("size"),
                "sha256": data.pop("sha256"),
                "media": result.get("media"),
                "verified": result.get("verified"),
                "poster_path": result.get("poster_path"),
                "poster_size": data.pop("poster_size", None),
                "poster_sha256": data.pop("poster_sha256", None),
            }
            data["started_at"] = result.get("submitted_at")
            data["since"] = Since.SUBMISSION if data.get("fingerprint") is not None else Since.SENSOR_BEGAN_WAITING
            for key in ("status", "video_url", "finished_at"):
                data[key] = result.get(key)
        elif "submitted_at" in data:  # a task state record
            data["started_at"] = data.pop("submitted_at")
        return data
