"""
What ``GenerateVideoOperator`` and ``HappyHorseJobSensor`` do alike with a render, once: whether to wait
in the triggerer (``deferrable``), the deferral on a :class:`RenderRecord`, reading the trigger's event
back on a worker, and the finish (the clip kept when there is a destination). The shape of the
Databricks provider's ``_handle_deferrable_databricks_operator_execution``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.constants import DEFERRAL_GRACE
from airflow_provider_happyhorse.exceptions import HappyHorseError, ResultUnavailableError
from airflow_provider_happyhorse.models import JobEvent
from airflow_provider_happyhorse.outcomes import clip_failure, log_stored, raise_for_event
from airflow_provider_happyhorse.storage import store_clip
from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator
    from airflow.sdk import Context

    from airflow_provider_happyhorse.core.record import RenderRecord
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_deferrable() -> bool:
    """
    ``deferrable=None``: as the deployment says. ``[operators] default_deferrable`` when the deployment set
    it (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``, or ``airflow.cfg`` with a value other than Airflow's
    built-in ``False``: Airflow writes every default into the ``airflow.cfg`` it generates, so a ``False``
    there cannot be told from one nobody chose); otherwise True, this provider's promise that a render
    never holds a worker slot while it waits.
    """
    from airflow.providers.common.compat.sdk import conf

    section, key = "operators", "default_deferrable"
    sources = conf.as_dict(display_source=True, display_sensitive=True, include_cmds=False, include_secret=False)
    value, source = sources.get(section, {}).get(key, (None, "default"))
    if source == "default":
        return True
    chosen = conf.getboolean(section, key)
    if source == "airflow.cfg" and str(value).strip().lower() == str(conf.get_default_value(section, key)).lower():
        return True
    return bool(chosen)


def defer_on(task: BaseOperator, record: RenderRecord, happyhorse_conn_id: str) -> NoReturn:
    """Wait for ``record``'s job in the triggerer; ``execute_complete`` runs on its event (unless it ends the task)."""
    assert record.deadline is not None
    task.defer(
        trigger=HappyHorseJobTrigger(record=record, happyhorse_conn_id=happyhorse_conn_id),
        method_name="execute_complete",
        timeout=(record.deadline - utcnow()) + DEFERRAL_GRACE,
    )
    raise AssertionError("defer() returned")  # pragma: no cover - it always raises TaskDeferred


def event_of(
    hook: HappyHorseHook, event: dict[str, Any] | str, job_id: Callable[[], str], *, cancel_at_deadline: bool = False
) -> JobEvent:
    """
    A trigger's event back on a worker, raising what a non-success means. ``airflow dags test`` runs
    triggers inline and hands a task-ending event's bare payload (a string) back to the task instead of
    ending it: the job (``job_id()``) is read once more. With ``cancel_at_deadline`` (the operator, which
    bought the job), a job still queued at its deadline is cancelled where the service allows it.
    """
    if isinstance(event, dict):
        happened = JobEvent.model_validate(event)
    else:
        happened = JobEvent.from_job(hook.get_job(job_id()), finished_at=utcnow().isoformat())
    if happened.status != "success":
        cancelled = deadline_cancel(hook, happened) if cancel_at_deadline else None
        raise_for_event(happened, cancelled=cancelled)
    return happened


def deadline_cancel(hook: HappyHorseHook, event: JobEvent) -> str | None:
    """What cancelling a timed-out job did, where the connection's service can cancel; else None."""
    if event.status != "timeout" or not hook.settings.dialect.offers_cancel:
        return None
    cancellation = hook.cancel_job(event.job_id)
    if cancellation is None:
        return None
    if cancellation.outcome == "cancelled":
        return f"{cancellation.message} {RETRY_AFTER_CANCEL}"
    return cancellation.message


# What a new try does after its job was cancelled while queued (the operator's re-attach reads CANCELED).
RETRY_AFTER_CANCEL = "A retry of this task submits the request again, paid once (the cancelled job was not billed)."


def finish(
    task: BaseOperator,
    context: Context,
    hook: HappyHorseHook,
    record: RenderRecord,
    event: JobEvent,
    *,
    output_path: Any,
    verify_clip: str,
    poster: bool,
    conn_id: str,
    keep: Callable[[RenderRecord], None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> RenderRecord:
    """
    A successful job's record; with ``output_path``, its clip downloaded on this worker (never in the
    triggerer) and kept (``keep`` is told the record once it is). A result that can no longer be fetched
    raises ``ResultUnavailableError`` for the task to decide on; a clip that was not kept raises what
    ``outcomes.clip_failure`` says.
    """
    record = record.succeeded(event)
    if record.started_at is not None and record.finished_at is not None:
        task.log.info(
            "Job %s is %s, seen %.0f s after %s (the service finished it at or before then): %s",
            event.job_id,
            event.job_status,
            (record.finished_at - record.started_at).total_seconds(),
            record.since.value,
            event.video_url,
        )
    if output_path is None:
        return record
    if not event.video_url:
        raise ResultUnavailableError(event.job_id, "(none)", "the job has no result URL")
    try:
        clip, downloaded = store_clip(
            hook,
            job_id=event.job_id,
            url=event.video_url,
            destination=output_path,
            record=record,
            verify_clip=verify_clip,
            poster=poster,
            known=record.stored,
            on_chunk=on_chunk,
        )
    except ResultUnavailableError:
        raise
    except HappyHorseError as error:
        metrics.clip_not_kept(error, conn_id=conn_id)
        raise clip_failure(error, context["ti"]) from None
    record = record.with_stored(clip)
    if keep is not None:
        keep(record)
    log_stored(task.log, clip, event.job_id, downloaded)
    return record
