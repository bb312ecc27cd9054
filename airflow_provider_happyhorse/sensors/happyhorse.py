"""``HappyHorseJobSensor``: wait for a job submitted elsewhere (another DAG, another tool)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
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
    PROGRESS_LOG_INTERVAL,
    VERIFY_CLIP_MODES,
    XCOM_JOB_ID_KEY,
)
from airflow_provider_happyhorse.core.record import RenderRecord, Since
from airflow_provider_happyhorse.core.responses import is_job_id
from airflow_provider_happyhorse.core.schedule import PollSchedule
from airflow_provider_happyhorse.exceptions import ConfigurationError, ResultUnavailableError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook, WaitInSteps
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink
from airflow_provider_happyhorse.models import JobEvent
from airflow_provider_happyhorse.outcomes import raise_for_event
from airflow_provider_happyhorse.render import default_deferrable, defer_on, event_of, finish, utcnow
from airflow_provider_happyhorse.storage import prepare_destination

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
    :param deferrable: wait in the triggerer (True) or poke from the worker (False). Either way the wait is
        the trigger's (``core.wait``); a poke sends a poll only when one is due, so ``poke_interval`` is the
        shortest wait between polls. The default, None, is as the deployment says, as the operator's
        (``[operators] default_deferrable`` when set, else True).
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
        deferrable: bool | None = None,
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
        self._poked: RenderRecord | None = None  # poke mode: the record the wait is on

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
        if not self._deferrable():
            return super().execute(context)
        now = utcnow()
        record = RenderRecord.awaited(self.job_id, now).waiting(
            deadline=now + timedelta(seconds=self.timeout),
            schedule=self._schedule(),
            end_task_on_success=self.output_path is None,
        )
        self.log.info(
            "Waiting for HappyHorse job %s in the triggerer (polls every %g-%g s, deadline %s)",
            self.job_id,
            self._schedule().min_interval,
            self._schedule().max_interval,
            (now + timedelta(seconds=self.timeout)).isoformat(timespec="seconds"),
        )
        defer_on(self, record, self.happyhorse_conn_id)

    def _deferrable(self) -> bool:
        return default_deferrable() if self.deferrable is None else bool(self.deferrable)

    def _record(self, context: Context) -> RenderRecord:
        """
        The wait the trigger would run. In reschedule mode each poke is a new process: it counts from
        the first poke's time (Airflow's record) and polls once.
        """
        started_at = None
        if self.reschedule:
            started_at = context["ti"].get_first_reschedule_date(context)
        started_at = started_at or self.hook.clock()
        return RenderRecord.awaited(self.job_id, started_at).waiting(
            deadline=started_at + timedelta(seconds=self.timeout), schedule=self._schedule()
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self._wait is None:
            self.log.info("Polling HappyHorse job %s", self.job_id)
            metrics.wait_started("sensor", conn_id=self.happyhorse_conn_id)
            self._poked = self._record(context)
            self._wait = self.hook.wait_in_steps(self._poked.plan(progress_every=PROGRESS_LOG_INTERVAL))
        event = self._wait.step()
        if event is None:
            return False
        if event.status != "success":
            raise_for_event(event, timeout=AirflowSensorTimeout)
        assert self._poked is not None
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, self._poked, event))

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        happened = event_of(self.hook, event, lambda: self.job_id)
        # What the trigger's record would add (when it began waiting, its deadline) no longer matters.
        return self._finish(context, RenderRecord(job_id=self.job_id, since=Since.SENSOR_BEGAN_WAITING), happened)

    def _finish(self, context: Context, record: RenderRecord, event: JobEvent) -> dict[str, Any]:
        """The job's result; with ``output_path``, the clip kept on this worker first."""
        # As the operator does (the view finds a task's clip by it).
        context["ti"].xcom_push(key=XCOM_JOB_ID_KEY, value=event.job_id)
        if self.output_path is not None and not event.video_url:
            raise AirflowException(f"HappyHorse job {event.job_id} succeeded without a result URL")
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
                conn_id=self.happyhorse_conn_id,
            )
        except ResultUnavailableError as error:
            raise AirflowFailException(f"{error} The clip was never stored.") from None
        return record.result()
