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
from airflow_provider_happyhorse.models import JobState
from airflow_provider_happyhorse.operators.happyhorse import PERMANENT_ERRORS, job_event, raise_for_event
from airflow_provider_happyhorse.triggers.happyhorse import EVENT_SUCCESS, HappyHorseJobTrigger, complete_result

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
        self._result: dict[str, Any] | None = None

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
        event = {
            "job_id": job.job_id,
            "job_status": job.status,
            "video_url": job.video_url,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        self._result = complete_result(None, event)
        return PokeReturnValue(is_done=True, xcom_value=self._result)

    def execute_complete(self, context: Context, event: dict[str, Any] | str) -> Any:
        if not isinstance(event, dict):  # `airflow dags test`: see GenerateVideoOperator.execute_complete
            event = job_event(self.hook.get_job(self.job_id))
        if event.get("status") == EVENT_SUCCESS:
            self._result = complete_result(None, event)
            return self._result
        raise_for_event(event)
