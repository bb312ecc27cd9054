"""``GenerateVideoOperator``: validate, submit once, wait in the triggerer, return (and keep) the clip."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.constants import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_MIN_POLL_INTERVAL,
    DEFAULT_RENDER_TIMEOUT,
    GENERATE_PATH,
    IF_EXISTS_MODES,
    ON_EXPIRED_MODES,
    VERIFY_CLIP_MODES,
    XCOM_JOB_ID_KEY,
)
from airflow_provider_happyhorse.core.cost import (
    CREDITS,
    PRICE_EXTRA,
    PRICE_EXTRA_EXAMPLE,
    CostEstimate,
    estimate_cost,
)
from airflow_provider_happyhorse.core.progress import RenderEstimate
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.core.retries import is_permanent
from airflow_provider_happyhorse.core.schedule import PollSchedule, expected_render_seconds, first_poll_for
from airflow_provider_happyhorse.core.settings import ConnectionSettings
from airflow_provider_happyhorse.exceptions import (
    AuthenticationError,
    ConfigurationError,
    HappyHorseError,
    InvalidRequestError,
    NotFoundError,
    ResultUnavailableError,
    SubmissionOutcomeUnknownError,
    TransportError,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.job_store import JobRecordStore, forget_instructions
from airflow_provider_happyhorse.lineage import operator_lineage
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink
from airflow_provider_happyhorse.models import JobEvent, JobState, VideoRequest
from airflow_provider_happyhorse.outcomes import raise_for_event
from airflow_provider_happyhorse.render import (
    RETRY_AFTER_CANCEL,
    deadline_cancel,
    default_deferrable,
    defer_on,
    event_of,
    finish,
    utcnow,
)
from airflow_provider_happyhorse.storage import as_storage_path, prepare_destination, prove_kept_clip
from airflow_provider_happyhorse.triggers.happyhorse import triggerer_calls_on_kill

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pydantic import JsonValue


def _shown_time(value: datetime | None) -> str:
    return "an unknown time" if value is None else value.isoformat()


class GenerateVideoOperator(BaseOperator):
    """
    Generate one HappyHorse video. Deferrable by default: after submitting, the task waits in the
    triggerer and holds no worker slot; on success with nothing left to do on a worker, the triggerer
    ends the task itself.

    .. seealso::
        How to use it: :doc:`/howto/operator` in the provider's documentation (``docs/howto/operator.md``).

    A paid job is never bought twice for the same request: the job id is kept in the task state store
    (Airflow 3.3+) the moment it is known, and a later try of the same task instance re-attaches to it.

    :param prompt: the text prompt (required unless ``multi_shots``): at most 2500 characters on happyhorse.app,
        5000 on Alibaba Cloud Model Studio (a CJK character counting two). Templated.
    :param mode: ``std`` or ``pro``.
    :param duration: seconds of video, 3 to 15.
    :param aspect_ratio: ``16:9``, ``9:16`` or ``1:1``; Alibaba Cloud Model Studio also takes ``4:3`` and ``3:4``
        (text and reference tasks only).
    :param image_urls: image-to-video frames (first, last). Templated.
    :param sound: generate native audio.
    :param cfg_scale: prompt adherence, 0 to 1.
    :param multi_shots: multi-shot generation.
    :param multi_prompt: the shots, each ``{"prompt": ..., "duration": ...}``. Templated.
    :param elements: ``happyhorse_elements``, passed through untouched. Templated.
    :param task: what the clip is made from: ``text``, ``first_frame``, ``first_last_frame``, ``reference``
        (1-9 reference images, ``character1``... in the prompt) or ``edit`` (``source_video`` plus an
        instruction). Default: from ``source_video`` and the number of ``image_urls``. ``reference`` and
        ``edit`` are offered by Alibaba Cloud Model Studio (the ``dashscope`` dialect) only.
    :param resolution: ``720P`` or ``1080P`` (``dashscope`` dialect).
    :param seed: 0 to 2147483647 (``dashscope`` dialect).
    :param watermark: the service's watermark on or off (``dashscope`` dialect).
    :param source_video: the video an ``edit`` changes (http(s) URL). Templated.
    :param audio_setting: an edit's sound: ``auto`` or ``origin`` (keep the source's).
    :param extra_fields: fields only a reseller takes, sent as given (logged, never checked). Templated.
    :param happyhorse_conn_id: the Airflow connection.
    :param deferrable: wait in the triggerer (True) or poll from the worker (False). The default, None,
        is as the deployment says: ``[operators] default_deferrable`` when the deployment set it (the
        ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` variable, or ``airflow.cfg`` with a value other than
        Airflow's built-in false, which Airflow writes into every ``airflow.cfg`` it generates), else
        True: a render never holds a worker slot while it waits.
    :param poll_interval: the shortest wait between polls, in seconds.
    :param max_poll_interval: the longest wait between polls, in seconds.
    :param first_poll_after: seconds after submission of the first poll; default: from the expected
        render time for this request's mode, duration and sound (``core.schedule.first_poll_for``).
    :param timeout: how long to wait for the render (a ``timedelta`` or seconds). The task's
        ``execution_timeout``, when shorter, wins. Both hold while deferred.
    :param max_credits: refuse before submitting when the credit estimate is higher (happyhorse.app, which
        bills credits; refused on a DashScope connection, which bills money: use ``max_cost`` there).
    :param max_cost: refuse before submitting when the estimate is higher, in the connection's dialect's
        unit: credits on happyhorse.app, the currency of the connection's ``price_per_second`` table on
        DashScope (refused there when the connection sets no table: the estimate is unknown).
    :param output_path: where to store the clip (``ObjectStoragePath`` or URI). Templated.
    :param verify_clip: with ``output_path``, how the stored clip is held to its request (it must always be
        a whole video): ``"strict"`` (default) fails the task on a wrong duration, aspect ratio or sound and
        stores nothing; ``"warn"`` stores it, logs and records the mismatch; ``"off"`` compares nothing.
    :param poster: with ``output_path``, store the clip's first frame as ``<name>.poster.jpg`` beside it.
    :param if_exists: when ``output_path`` already holds a clip: ``"skip"`` (default) returns the recorded
        result without paying when that clip was made for the same request (and renders a changed
        request); ``"replace"`` renders anew; ``"fail"`` refuses before paying.
    :param on_expired: when the job's result URL can no longer be fetched and the clip was never stored:
        ``"fail"`` (the default: fail, saying how to pay for a new render) or ``"regenerate"`` (submit the
        request again, paying for it, logged with the estimate).
    """

    template_fields: Sequence[str] = (
        "prompt",
        "image_urls",
        "multi_prompt",
        "elements",
        "source_video",
        "extra_fields",
        "output_path",
    )
    template_fields_renderers = {"multi_prompt": "json", "elements": "json", "extra_fields": "json"}
    operator_extra_links = (HappyHorseVideoLink(),)
    ui_color = "#f7d9a8"

    def __init__(
        self,
        *,
        prompt: str | None = None,
        mode: str = "std",
        duration: float = 5,
        aspect_ratio: str = "16:9",
        image_urls: list[str] | None = None,
        sound: bool = True,
        cfg_scale: float = 0.5,
        multi_shots: bool = False,
        multi_prompt: list[dict[str, Any]] | None = None,
        elements: list[Any] | None = None,
        task: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        watermark: bool | None = None,
        source_video: str | None = None,
        audio_setting: str | None = None,
        extra_fields: dict[str, Any] | None = None,
        happyhorse_conn_id: str = HappyHorseHook.default_conn_name,
        deferrable: bool | None = None,
        poll_interval: float = DEFAULT_MIN_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        first_poll_after: float | None = None,
        timeout: timedelta | float = DEFAULT_RENDER_TIMEOUT,
        max_credits: float | None = None,
        max_cost: float | None = None,
        output_path: Any = None,
        on_expired: str = "fail",
        verify_clip: str = "strict",
        poster: bool = True,
        if_exists: str = "skip",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.mode = mode
        self.duration = duration
        self.aspect_ratio = aspect_ratio
        self.image_urls = image_urls
        self.sound = sound
        self.cfg_scale = cfg_scale
        self.multi_shots = multi_shots
        self.multi_prompt = multi_prompt
        self.elements = elements
        self.task = task
        self.resolution = resolution
        self.seed = seed
        self.watermark = watermark
        self.source_video = source_video
        self.audio_setting = audio_setting
        self.extra_fields = extra_fields
        self.happyhorse_conn_id = happyhorse_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.first_poll_after = first_poll_after
        self.timeout = timeout
        self.max_credits = max_credits
        self.max_cost = max_cost
        self.output_path = output_path
        self.on_expired = on_expired
        self.verify_clip = verify_clip
        self.poster = poster
        self.if_exists = if_exists
        self._record: RenderRecord | None = None  # the finished render, for OpenLineage
        self._waiting_on: str | None = None  # the job a blocking wait is on, for on_kill

    @cached_property
    def hook(self) -> HappyHorseHook:
        return HappyHorseHook(self.happyhorse_conn_id)

    # -- building the request -------------------------------------------------------------------

    def video_request(self) -> VideoRequest:
        """The validated request; a bad value raises ``InvalidRequestError`` naming field and rule."""
        fields: dict[str, Any] = {
            "prompt": self.prompt,
            "mode": self.mode,
            "duration": self.duration,
            "aspect_ratio": self.aspect_ratio,
            "image_urls": self.image_urls,
            "sound": self.sound,
            "cfg_scale": self.cfg_scale,
            "multi_shots": self.multi_shots,
            "multi_prompt": self.multi_prompt,
            "happyhorse_elements": self.elements,
            "task": self.task,
            "resolution": self.resolution,
            "seed": self.seed,
            "watermark": self.watermark,
            "source_video": self.source_video,
            "audio_setting": self.audio_setting,
            "extra_fields": self.extra_fields,
        }
        return VideoRequest.parse({key: value for key, value in fields.items() if value is not None})

    def _timeout(self) -> timedelta:
        timeout = self.timeout if isinstance(self.timeout, timedelta) else timedelta(seconds=self.timeout)
        if self.execution_timeout is not None:
            timeout = min(timeout, self.execution_timeout)
        return timeout

    def _schedule(self, request: VideoRequest) -> PollSchedule:
        first = self.first_poll_after
        if first is None:
            first = first_poll_for(expected_render_seconds(request.mode, request.duration, request.sound))
        return PollSchedule(
            first_poll_after=first, min_interval=self.poll_interval, max_interval=self.max_poll_interval
        )

    # -- execution ------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        request = self._preflight()
        kept = self._already_kept(request)
        if kept is not None:
            context["ti"].xcom_push(key=XCOM_JOB_ID_KEY, value=kept.job_id)
            self._record = kept
            return kept.result()
        store = JobRecordStore.from_context(context, self.log)
        record = self._reattach(store, request, context)
        if record is None:
            record = self._submit(store, request, context)
        return self._wait_and_finish(context, store, record)

    def _preflight(self) -> VideoRequest:
        """
        Everything that can be refused for free, in order, before anything is written or sent: the
        request and its budget, the connection (exists, has a key), the output destination (writable).
        """
        for name, allowed in (
            ("on_expired", ON_EXPIRED_MODES),
            ("verify_clip", VERIFY_CLIP_MODES),
            ("if_exists", IF_EXISTS_MODES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                metrics.refused("setting", conn_id=self.happyhorse_conn_id)
                raise AirflowFailException(
                    f"{name}: must be one of {', '.join(allowed)} (got {value!r}). Nothing was submitted."
                )
        try:
            request = self.video_request()
        except InvalidRequestError as error:
            metrics.refused("validation", conn_id=self.happyhorse_conn_id)
            raise AirflowFailException(f"{error}. Nothing was submitted.") from None
        base_url = None
        try:
            settings = self.hook.settings
            base_url = settings.base_url
            # The connection's service's own rules (prompt length, ratios, what it lacks), as submit would apply them.
            if (refused := settings.dialect.refusal(request)) is not None:
                metrics.refused("validation", conn_id=self.happyhorse_conn_id)
                raise AirflowFailException(f"{refused}. Nothing was submitted.") from None
            cost = self._checked_cost(request, settings)
            destination = None if self.output_path is None else prepare_destination(self.output_path)
        except ConfigurationError as error:
            metrics.refused("connection" if base_url is None else "destination", conn_id=self.happyhorse_conn_id)
            raise AirflowFailException(f"{error} Nothing was submitted.") from None
        self.log.info(
            "Validated request: mode=%s duration=%gs sound=%s aspect=%s, estimated %s",
            request.mode,
            request.duration,
            request.sound,
            request.aspect_ratio,
            cost,
        )
        self.log.info(
            "Connection %r (%s) is usable%s",
            self.happyhorse_conn_id,
            base_url,
            "" if destination is None else f"; {destination} is writable",
        )
        return request

    def _already_kept(self, request: VideoRequest) -> RenderRecord | None:
        """With ``output_path`` under ``if_exists``: the record of a clip already kept for this request."""
        if self.output_path is None or self.if_exists == "replace":
            return None
        final = as_storage_path(self.output_path)
        if self.if_exists == "fail":
            if final.exists():
                metrics.refused("if_exists", conn_id=self.happyhorse_conn_id)
                raise AirflowFailException(
                    f"if_exists='fail': output_path {str(final)!r} already holds a file. Nothing was submitted. "
                    "Remove it, or set if_exists='skip' (keep a clip made for the same request) or 'replace'."
                )
            return None
        kept, found = prove_kept_clip(final, request.fingerprint())
        if kept is None:
            if final.exists():
                self.log.warning(
                    "%s %s: rendering anew; it is replaced only once the new clip is verified", final, found
                )
            return None
        self.log.info(
            "%s %s: returning its result. Nothing was submitted (if_exists='skip'; 'replace' renders anew).",
            final,
            found,
        )
        return kept.model_copy(update={"request": request})

    def _wait_and_finish(self, context: Context, store: JobRecordStore, record: RenderRecord) -> Any:
        assert record.job_id is not None
        context["ti"].xcom_push(key=XCOM_JOB_ID_KEY, value=record.job_id)
        if record.finished_at is not None:
            return self._finish(context, store, record, self._finished_event(record))
        record = record.waiting(
            deadline=utcnow() + self._timeout(),
            schedule=self._schedule(record.request or self.video_request()),
            end_task_on_success=not self._needs_worker_after_success(),
        )
        if self._deferrable():
            self._log_deferral(record)
            defer_on(self, record, self.happyhorse_conn_id)
        return self._finish(context, store, record, self._wait_blocking(record))

    def _deferrable(self) -> bool:
        return default_deferrable() if self.deferrable is None else bool(self.deferrable)

    @staticmethod
    def _finished_event(record: RenderRecord) -> JobEvent:
        """The success a re-attach found (the record of a job that had already succeeded)."""
        assert record.job_id is not None
        assert record.finished_at is not None
        return JobEvent(
            status="success",
            job_id=record.job_id,
            job_status=record.status,
            video_url=record.video_url,
            finished_at=record.finished_at.isoformat(),
        )

    def _reattach(self, store: JobRecordStore, request: VideoRequest, context: Context) -> RenderRecord | None:
        """A job an earlier try of this task instance submitted for the same request, if it is usable."""
        record = store.load()
        if record is None or record.fingerprint != request.fingerprint():
            return None
        if record.job_id is None:
            # The earlier try was killed, or lost its answer, between sending and learning the job id.
            metrics.refused("pending", conn_id=self.happyhorse_conn_id)
            raise AirflowFailException(
                "An earlier try submitted this request at "
                f"{_shown_time(record.started_at)} and its outcome is unknown: a job may exist and be billed. "
                "Look for it in the HappyHorse dashboard. Nothing was submitted now. To submit again, "
                f"{forget_instructions(context['ti'])} (or change the request)."
            )
        try:
            job = self.hook.get_job(record.job_id)
        except NotFoundError:
            self.log.warning("Job %s from an earlier try is unknown to HappyHorse; submitting anew", record.job_id)
            return None
        except HappyHorseError as error:
            if not is_permanent(error):
                raise
            raise AirflowFailException(str(error)) from None
        if job.state is JobState.FAILED and job.status.strip().upper() == "CANCELED" and self._offers_cancel():
            # Cancelled while queued (at a deadline or a kill): the service cancels only jobs it has not
            # started, and bills none of them, so paying for this request again pays for it once.
            self.log.warning(
                "Job %s from an earlier try was cancelled (CANCELED) while it was queued, so it was not billed: "
                "submitting the request again, which is paid once",
                job.job_id,
            )
            return None
        if job.state is JobState.FAILED:
            self.log.warning(
                "Job %s from an earlier try ended %s (%s); submitting anew",
                job.job_id,
                job.status,
                job.error_message,
            )
            return None
        self.log.info(
            "Re-attached to job %s submitted at %s by an earlier try (now %s); not submitting again",
            job.job_id,
            _shown_time(record.started_at),
            job.status,
        )
        metrics.reattached(job.state.value, mode=request.mode, conn_id=self.happyhorse_conn_id)
        record = record.model_copy(update={"request": request})
        if job.state is JobState.SUCCEEDED:
            return record.succeeded(JobEvent.from_job(job, finished_at=utcnow().isoformat()))
        return record

    def _cost_of(self, request: VideoRequest) -> CostEstimate:
        settings = self.hook.settings
        return estimate_cost(request, settings.dialect_name, settings.prices)

    def _checked_cost(self, request: VideoRequest, settings: ConnectionSettings) -> CostEstimate:
        """The request's estimate in the connection's unit, held to ``max_credits`` and ``max_cost``."""
        cost = estimate_cost(request, settings.dialect_name, settings.prices)
        refusal = None
        if self.max_credits is not None and cost.unit != CREDITS:
            refusal = (
                f"max_credits: the connection {self.happyhorse_conn_id!r} speaks {settings.dialect.title}, which bills "
                f"money, not credits; set max_cost instead (in the currency of the connection's {PRICE_EXTRA} "
                f"extra, e.g. {PRICE_EXTRA_EXAMPLE})."
            )
        elif self.max_cost is not None and cost.amount is None:
            refusal = f"max_cost: the estimate for this video is {cost}, so no limit can be held to it."
        else:
            for name, limit in (("max_credits", self.max_credits), ("max_cost", self.max_cost)):
                if limit is not None and cost.amount is not None and cost.amount > limit:
                    refusal = f"{name}: the estimate for this video is {cost}, above the limit {limit:g} {cost.unit}."
                    break
        if refusal is not None:
            metrics.refused("budget", conn_id=self.happyhorse_conn_id)
            raise AirflowFailException(f"{refusal} Nothing was submitted.")
        return cost

    def _submit(self, store: JobRecordStore, request: VideoRequest, context: Context) -> RenderRecord:
        cost = self._cost_of(request)
        pending = RenderRecord.submitting(request, utcnow(), cost=cost)
        # Written before sending: if this try dies before the job id is known, the next one refuses.
        store.save(pending)
        try:
            job = self.hook.submit_job(request)
        except SubmissionOutcomeUnknownError as error:
            metrics.submitted("unknown", mode=request.mode, conn_id=self.happyhorse_conn_id)
            raise AirflowException(str(error)) from None
        except HappyHorseError as error:
            store.delete()  # surely nothing was created
            metrics.submitted("refused", mode=request.mode, conn_id=self.happyhorse_conn_id)
            raise self._not_submitted(error) from None
        metrics.submitted(
            "accepted", mode=request.mode, conn_id=self.happyhorse_conn_id, cost=cost.amount, unit=cost.unit
        )
        record = pending.model_copy(update={"job_id": job.job_id})
        store.save(record)
        self.log.info("Submitted job %s (estimated %s)", job.job_id, cost)
        return record

    def _not_submitted(self, error: HappyHorseError) -> AirflowException:
        """A submission that surely created nothing: where it went, and whether a retry can help."""
        where = f"HappyHorse at {self.hook.settings.base_url} (connection {self.happyhorse_conn_id!r})"
        if isinstance(error, NotFoundError):
            return AirflowFailException(
                f"{where} has no {GENERATE_PATH} ({error}): the connection's Base URL or its path "
                "prefix is wrong. Nothing was created; fix the connection, then clear the task."
            )
        if isinstance(error, AuthenticationError):
            return AirflowFailException(
                f"{where} refused the API key ({error}). Nothing was created; put the key from the HappyHorse "
                "dashboard in the connection's API key field, then clear the task."
            )
        if isinstance(error, TransportError):
            return AirflowException(
                f"Could not reach {where}: {error}. Nothing was created; check the connection's Base URL and "
                "that workers can reach it."
            )
        if is_permanent(error):
            return AirflowFailException(f"{where} refused the submission: {error}. Nothing was created.")
        return AirflowException(f"{where} did not take the submission: {error}. Nothing was created.")

    def _log_deferral(self, record: RenderRecord) -> None:
        assert record.started_at is not None
        assert record.request is not None
        assert record.deadline is not None
        estimate = RenderEstimate.of_request(record.request, record.started_at)
        self.log.info(
            "Deferring on job %s: expected to finish around %s (the usual render time), deadline %s",
            record.job_id,
            estimate.expected_finish.isoformat(timespec="seconds"),
            record.deadline.isoformat(timespec="seconds"),
        )
        if self._offers_cancel() and not triggerer_calls_on_kill():
            self.log.warning(
                "This Airflow's triggerer calls no on_kill for a trigger: if this deferred task is killed, job %s is "
                "not cancelled, and runs on (billed if it renders). To have a kill cancel it while it is queued, "
                "run the task with deferrable=False, or use Airflow 3.3+.",
                record.job_id,
            )

    def _needs_worker_after_success(self) -> bool:
        return self.output_path is not None

    def _wait_blocking(self, record: RenderRecord) -> JobEvent:
        """The trigger's wait, on this worker (blocking mode, for installs without a triggerer)."""
        metrics.wait_started("worker", conn_id=self.happyhorse_conn_id)
        self._waiting_on = record.job_id
        try:
            event = self.hook.wait_for_job(record.plan())
        finally:
            self._waiting_on = None
        if event.status != "success":
            raise_for_event(event, cancelled=deadline_cancel(self.hook, event))
        return event

    def _offers_cancel(self) -> bool:
        try:
            return self.hook.settings.dialect.offers_cancel
        except HappyHorseError:
            return False

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        """Back on a worker after the trigger's event: finish, or raise so the task's retries apply."""
        store = JobRecordStore.from_context(context, self.log)
        record = store.load()
        happened = event_of(
            self.hook,
            event,
            lambda: record.job_id if record and record.job_id else self._pushed_job_id(context),
            cancel_at_deadline=True,
        )
        if record is None or record.job_id != happened.job_id:
            request = self.video_request()
            record = RenderRecord(
                fingerprint=request.fingerprint(),
                request=request,
                job_id=happened.job_id,
                started_at=happened.finished_at,
            )
        elif record.request is None:  # kept by an earlier release, without its request
            record = record.model_copy(update={"request": self.video_request()})
        return self._finish(context, store, record, happened)

    def _pushed_job_id(self, context: Context) -> str:
        ti = context["ti"]
        return str(ti.xcom_pull(task_ids=self.task_id, key=XCOM_JOB_ID_KEY, map_indexes=ti.map_index))

    def _finish(self, context: Context, store: JobRecordStore, record: RenderRecord, event: JobEvent) -> Any:
        """A successful job: its result, with the clip stored when ``output_path`` is set."""
        try:
            record = finish(
                self,
                context,
                self.hook,
                record,
                event,
                output_path=self.output_path,
                verify_clip=self.verify_clip,
                poster=self.poster,
                keep=store.save,
                conn_id=self.happyhorse_conn_id,
                on_chunk=self._downloaded,
            )
        except ResultUnavailableError as error:
            assert record.request is not None
            return self._result_unavailable(context, store, record.request, error)
        if record.stored is not None:
            self._emit_asset_events(context, record)
        self._record = record
        return record.result()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Used by the OpenLineage provider, when installed, after the task ran on a worker."""
        return operator_lineage(self._record)

    def _result_unavailable(
        self, context: Context, store: JobRecordStore, request: VideoRequest, error: ResultUnavailableError
    ) -> Any:
        """The clip can no longer be fetched and was never stored: fail saying how to pay again, or pay again."""
        if self.on_expired != "regenerate":
            raise AirflowFailException(
                f"{error} The clip was never stored, and clearing the task would only re-attach to this job. "
                "To pay for a new render, set on_expired='regenerate' on the task, or "
                f"{forget_instructions(context['ti'])}."
            )
        self.log.warning(
            "%s on_expired='regenerate': submitting the request again, which is paid anew (estimated %s).",
            error,
            self._cost_of(request),
        )
        store.delete()
        record = self._submit(store, request, context)
        return self._wait_and_finish(context, store, record)

    def _downloaded(self, size: int) -> None:
        """
        Called after each chunk of the clip is written (``size`` bytes so far); a subclass may watch. It runs
        in the download's worker thread (the task's thread reads the clip meanwhile), always the same one.
        """

    def _emit_asset_events(self, context: Context, record: RenderRecord) -> None:
        """An asset event for the stored clip on every asset (alias) outlet, for downstream DAGs."""
        from airflow.providers.common.compat.sdk import Asset, AssetAlias

        clip, request = record.stored, record.request
        assert clip is not None
        assert request is not None
        extra: dict[str, JsonValue] = {
            "job_id": record.job_id,
            "prompt_sha256": request.prompt_digest(),
            "sha256": clip.sha256,
            "size": clip.size,
            "video_url": record.video_url,
        }
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                context["outlet_events"][outlet].add(Asset(clip.path), extra=extra)
            elif isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)

    def on_kill(self) -> None:
        job_id = self._waiting_on
        if job_id is not None and self._offers_cancel():
            cancellation = self.hook.cancel_job(job_id)
            if cancellation is not None:
                cancelled = cancellation.outcome == "cancelled"
                again = f" {RETRY_AFTER_CANCEL}" if cancelled else " A new try of this task re-attaches to it."
                self.log.warning("%s%s", cancellation.message, again)
                return
        self.log.warning(
            "HappyHorse has no cancel endpoint: a submitted job keeps running on the service and will be "
            "billed; a new try of this task re-attaches to it instead of paying again."
        )
