"""``HappyHorseJobSensor``: wait for a job submitted elsewhere (another DAG, another tool)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_provider_happyhorse.exceptions import HappyHorseError, JobFailedError
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink
from airflow_provider_happyhorse.models import JobEvent, JobState, VideoResult
from airflow_provider_happyhorse.outcomes import PERMANENT_ERRORS, raise_for_event
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class HappyHorseJobSensor(BaseSensorOperator):
    """
    Waits for a HappyHorse job id made elsewhere, deferrable by default, and returns the same result as
    ``GenerateVideoOperator`` (without the request, which it does not know).

    :param job_id: the HappyHorse task id. Templated.
    :param happyhorse_conn_id: the Airflow connection.
    :param deferrable: wait in the triggerer (default) or poke from the worker.
    :param max_poll_interval: the longest wait between polls when deferred (``poke_interval`` is the shortest).
    """

    template_fields: Sequence[str] = ("job_id",)
    operator_extra_links = (HappyHorseVideoLink(),)

    def __init__(
        self,
        *,
        job_id: str,
        happyhorse_conn_id: str = HappyHorseHook.default_conn_name,
        deferrable: bool = True,
        max_poll_interval: float = 120.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.happyhorse_conn_id = happyhorse_conn_id
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval

    @cached_property
    def hook(self) -> HappyHorseHook:
        return HappyHorseHook(self.happyhorse_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        now = datetime.now(timezone.utc)
        deadline = now + timedelta(seconds=self.timeout)
        self.log.info(
            "Waiting for HappyHorse job %s in the triggerer (polls every %g-%g s, deadline %s)",
            self.job_id,
            self.poke_interval,
            max(self.max_poll_interval, self.poke_interval),
            deadline.isoformat(timespec="seconds"),
        )
        self.defer(
            trigger=HappyHorseJobTrigger(
                job_id=self.job_id,
                happyhorse_conn_id=self.happyhorse_conn_id,
                deadline=deadline.isoformat(),
                submitted_at=now.isoformat(),
                first_poll_after=0.0,
                min_poll_interval=self.poke_interval,
                max_poll_interval=max(self.max_poll_interval, self.poke_interval),
                result=None,
                end_task_on_success=True,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + timedelta(minutes=5),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        self.log.info("Polling HappyHorse job %s", self.job_id)
        try:
            job = self.hook.get_job(self.job_id)
        except PERMANENT_ERRORS as error:
            raise AirflowFailException(str(error)) from None
        except HappyHorseError as error:
            self.log.warning("Status of job %s unavailable: %s", self.job_id, error)
            return False
        if job.state is JobState.PENDING:
            return False
        if job.state is JobState.FAILED:
            raise AirflowException(str(JobFailedError(job.job_id, job.error_message, job.status)))
        event = JobEvent.from_job(job, finished_at=datetime.now(timezone.utc).isoformat())
        return PokeReturnValue(is_done=True, xcom_value=VideoResult.of_event(event).payload())

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        if isinstance(event, dict):
            happened = JobEvent.model_validate(event)
        else:  # `airflow dags test`: see GenerateVideoOperator.execute_complete
            happened = JobEvent.from_job(
                self.hook.get_job(self.job_id), finished_at=datetime.now(timezone.utc).isoformat()
            )
        if happened.status != "success":
            raise_for_event(happened)
        return VideoResult.of_event(happened).payload()
