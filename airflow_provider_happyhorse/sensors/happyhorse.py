"""``HappyHorseJobSensor``: wait for a job submitted elsewhere (another DAG, another tool)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.constants import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFERRAL_GRACE,
    PROGRESS_LOG_INTERVAL,
    VERIFY_CLIP_MODES,
)
from airflow_provider_happyhorse.core.responses import is_job_id
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.core.wait import WaitPlan
from airflow_provider_happyhorse.exceptions import (
    ConfigurationError,
    HappyHorseError,
    ResultUnavailableError,
)
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, WaitInSteps
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink
from airflow_provider_happyhorse.models import JobEvent, VideoResult
from airflow_provider_happyhorse.outcomes import clip_failure, log_stored, raise_for_event
from airflow_provider_happyhorse.storage import prepare_destination, store_clip
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class HappyHorseJobSensor(BaseSensorOperator):
    """
    Waits for a HappyHorse job id made elsewhere, deferrable by default, and returns the same result as
    ``GenerateVideoOperator`` (without the request, which it does not know).

    .. seealso::
        How to use it: :doc:`/howto/sensor` in the provider's documentation (``docs/howto/sensor.md``).

    :param job_id: the HappyHorse task id. Templated.
    :param happyhorse_conn_id: the Airflow connection.
    :param deferrable: wait in the triggerer (default) or poke from the worker. Either way the wait is the
        trigger's (``core.wait``); a poke sends a poll only when one is due, so ``poke_interval`` is the
        shortest wait between polls.
    :param max_poll_interval: the longest wait between polls when deferred (``poke_interval`` is the shortest).
    :param output_path: where to store the clip (``ObjectStoragePath`` or URI), with the operator's download,
        probe, poster and record; checked writable before waiting. Templated.
    :param verify_clip: as the operator's; without a request there is nothing to compare, so the clip only
        has to be a whole video.
    :param poster: store the clip's first frame as ``<name>.poster.jpg`` beside it.
    """

    template_fields: Sequence[str] = ("job_id", "output_path")
    operator_extra_links = (HappyHorseVideoLink(),)

    def __init__(
        self,
        *,
        job_id: str,
        happyhorse_conn_id: str = HappyHorseHook.default_conn_name,
        deferrable: bool = True,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        output_path: Any = None,
        verify_clip: str = "strict",
        poster: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.happyhorse_conn_id = happyhorse_conn_id
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval
        self.output_path = output_path
        self.verify_clip = verify_clip
        self.poster = poster
        self._wait: WaitInSteps | None = None  # poke mode: the wait, across pokes

    @cached_property
    def hook(self) -> HappyHorseHook:
        return HappyHorseHook(self.happyhorse_conn_id)

    def _schedule(self) -> PollSchedule:
        return PollSchedule(
            first_poll_after=0.0,
            min_interval=self.poke_interval,
            max_interval=max(self.max_poll_interval, self.poke_interval),
        )

    def _preflight(self) -> None:
        """The job id, the clip's destination and mode, refused before waiting (and so before anything is kept)."""
        if not isinstance(self.job_id, str) or not is_job_id(self.job_id):
            metrics.refused("validation", conn_id=self.happyhorse_conn_id)
            raise AirflowFailException(
                f"job_id: must be a HappyHorse task id (letters, digits and _ . : -, at most 128 characters, "
                f"starting with a letter or digit), got {self.job_id!r:.80}."
            )
        if self.verify_clip not in VERIFY_CLIP_MODES:
            metrics.refused("setting", conn_id=self.happyhorse_conn_id)
            raise AirflowFailException(
                f"verify_clip: must be one of {', '.join(VERIFY_CLIP_MODES)} (got {self.verify_clip!r})."
            )
        if self.output_path is not None:
            try:
                prepare_destination(self.output_path)
            except ConfigurationError as error:
                metrics.refused("destination", conn_id=self.happyhorse_conn_id)
                raise AirflowFailException(str(error)) from None

    def execute(self, context: Context) -> Any:
        self._preflight()
        if not self.deferrable:
            return super().execute(context)
        now = datetime.now(UTC)
        deadline = now + timedelta(seconds=self.timeout)
        schedule = self._schedule()
        self.log.info(
            "Waiting for HappyHorse job %s in the triggerer (polls every %g-%g s, deadline %s)",
            self.job_id,
            schedule.min_interval,
            schedule.max_interval,
            deadline.isoformat(timespec="seconds"),
        )
        self.defer(
            trigger=HappyHorseJobTrigger(
                job_id=self.job_id,
                happyhorse_conn_id=self.happyhorse_conn_id,
                deadline=deadline.isoformat(),
                submitted_at=now.isoformat(),
                first_poll_after=schedule.first_poll_after,
                min_poll_interval=schedule.min_interval,
                max_poll_interval=schedule.max_interval,
                result=None,
                end_task_on_success=self.output_path is None,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )

    def _plan(self, context: Context) -> WaitPlan:
        """
        The wait the trigger would run. In reschedule mode each poke is a new process: it counts from
        the first poke's time (Airflow's record) and polls once.
        """
        started_at = None
        if self.reschedule:
            started_at = context["ti"].get_first_reschedule_date(context)
        started_at = started_at or self.hook.clock()
        return WaitPlan(
            job_id=self.job_id,
            started_at=started_at,
            deadline=started_at + timedelta(seconds=self.timeout),
            schedule=self._schedule(),
            since="the sensor began waiting",
            progress_every=PROGRESS_LOG_INTERVAL,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self._wait is None:
            self.log.info("Polling HappyHorse job %s", self.job_id)
            metrics.wait_started("sensor", conn_id=self.happyhorse_conn_id)
            self._wait = self.hook.wait_in_steps(self._plan(context))
        event = self._wait.step()
        if event is None:
            return False
        if event.status != "success":
            raise_for_event(event, timeout=AirflowSensorTimeout)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, event))

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        if isinstance(event, dict):
            happened = JobEvent.model_validate(event)
        else:  # `airflow dags test`: see GenerateVideoOperator.execute_complete
            happened = JobEvent.from_job(self.hook.get_job(self.job_id), finished_at=datetime.now(UTC).isoformat())
        if happened.status != "success":
            raise_for_event(happened)
        return self._finish(context, happened)

    def _finish(self, context: Context, event: JobEvent) -> dict[str, Any]:
        """The job's result; with ``output_path``, the clip kept on this worker first."""
        context["ti"].xcom_push(key="job_id", value=event.job_id)  # as the operator does (the view finds it)
        result = VideoResult.of_event(event)
        if self.output_path is None:
            return result.payload()
        if not event.video_url:
            raise AirflowException(f"HappyHorse job {event.job_id} succeeded without a result URL")
        try:
            clip, downloaded = store_clip(
                self.hook,
                job_id=event.job_id,
                url=event.video_url,
                destination=self.output_path,
                result=result,
                verify_clip=self.verify_clip,
                poster=self.poster,
            )
        except ResultUnavailableError as error:
            raise AirflowFailException(f"{error} The clip was never stored.") from None
        except HappyHorseError as error:
            metrics.clip_not_kept(error, conn_id=self.happyhorse_conn_id)
            raise clip_failure(error, context["ti"]) from None
        log_stored(self.log, clip, event.job_id, downloaded)
        return result.model_copy(update=clip.result_fields()).payload()
