"""
What a deferred task's trigger does when the triggerer stops it with ``on_kill`` (issue 23, item 4), with no I/O:
the trigger (``HappyHorseJobTrigger.on_kill``) asks for the task instance's state and drives the cancel; this module
decides from the answer and words the messages.

Airflow 3.3 calls a trigger's ``on_kill`` when a user acts on the deferred task (mark failed, mark success, clear),
and also when it moves the trigger to another triggerer (``TriggererJobRunner.update_triggers`` cancels every
trigger no longer assigned to this one, through the same path), which goes on polling the job. Cancelling on a move
would cancel a job another triggerer still waits for, so the task instance's state tells the two apart:

- still ``deferred``: the trigger was moved (or a new try deferred again on the same job): nothing is cancelled;
- any other state (``failed``, ``success``, cleared to none, ``scheduled``...): a user acted on the task, so
  nobody waits for the job: a job still queued is cancelled, where the service has a cancel;
- no answer (no channel to the supervisor, an error, no answer in time, the task instance not in it): it cannot
  be told, and nothing is cancelled.

Only a job the task submitted (``RenderRecord.since`` is the submission) is ever cancelled: a sensor's trigger
watches a job made elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_happyhorse.core.flows import Cancellation

DEFERRED = "deferred"
# How long the trigger waits for the task instance's state, then for the service (the job's status, then its cancel):
# 25 s together, within Airflow's ``[triggerer] on_kill_timeout`` (30 s by default), so that the message is always said.
STATE_QUERY_TIMEOUT = 15.0
CANCEL_TIMEOUT = 10.0


@dataclass(frozen=True)
class TaskAt:
    """The task instance a trigger waits for, as Airflow's task-state query names it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def query(self) -> dict[str, Any]:
        """The arguments of the task-state query (``GetTaskStates``) for this one task instance."""
        return {
            "dag_id": self.dag_id,
            "task_ids": [self.task_id],
            "run_ids": [self.run_id],
            "map_index": self.map_index,
        }

    @property
    def key(self) -> str:
        """How the answer names it within its run: the task id, with ``_<map_index>`` for a mapped one."""
        return self.task_id if self.map_index < 0 else f"{self.task_id}_{self.map_index}"

    def __str__(self) -> str:
        index = "" if self.map_index < 0 else f"[{self.map_index}]"
        return f"{self.dag_id}.{self.task_id}{index} (run {self.run_id})"


@dataclass(frozen=True)
class KillVerdict:
    """Why the trigger was stopped: ``moved``, ``killed`` (a user acted on the task) or ``undecided``."""

    kind: Literal["moved", "killed", "undecided"]
    detail: str


def verdict(task_states: Mapping[str, Any] | None, at: TaskAt, *, problem: str | None = None) -> KillVerdict:
    """
    What the task-state query's answer (``{run_id: {task key: state}}``) says of ``at``; ``problem`` is why there is
    no answer (then ``task_states`` is None).
    """
    if task_states is None:
        return KillVerdict("undecided", f"its state could not be read: {problem or 'no answer'}")
    run = task_states.get(at.run_id)
    if not isinstance(run, Mapping) or at.key not in run:
        return KillVerdict("undecided", f"Airflow's answer does not hold task instance {at}")
    state = run[at.key]
    shown = "none (cleared)" if state is None else str(state)
    if str(state).strip().lower() == DEFERRED:
        return KillVerdict("moved", f"task instance {at} is still {DEFERRED}")
    return KillVerdict("killed", f"task instance {at} is now {shown}")


def moved_message(job_id: str, verdict: KillVerdict) -> str:
    return (
        f"Stopped polling job {job_id} here: {verdict.detail}, so Airflow moved this trigger to another triggerer, "
        "which goes on polling it. Nothing was cancelled."
    )


def undecided_message(job_id: str, verdict: KillVerdict, where: str) -> str:
    return (
        f"Stopped polling job {job_id} here, and could not tell whether a user killed the task or Airflow moved this "
        f"trigger to another triggerer ({verdict.detail}). Nothing was cancelled, in case another triggerer still "
        f"polls it: the job goes on on {where} and is billed if it renders. If the task was killed and you do not "
        "want the clip, cancel the job on the service while it is still queued (PENDING); a new try of this task "
        "re-attaches to it otherwise."
    )


RETRY_AFTER_KILL_CANCEL = (
    "A new try of this task (after a clear) submits the request again, paid once (the cancelled job was not billed)."
)


def watched_message(job_id: str) -> str:
    """A sensor's trigger: the job was made elsewhere, and is never cancelled from here."""
    return (
        f"Stopped polling job {job_id} here: the task was killed, or Airflow moved this trigger to another "
        "triggerer (which goes on polling it). Nothing was cancelled: a sensor watches a job made elsewhere and "
        "never cancels it."
    )


def killed_message(verdict: KillVerdict, cancellation: Cancellation) -> str:
    """What a user's kill of the deferred task did to its job, given what the cancel (or the look before it) did."""
    if cancellation.outcome == "cancelled":
        tail = RETRY_AFTER_KILL_CANCEL
    elif cancellation.outcome == "ended":
        tail = "A new try of this task re-attaches to it and reads its end."
    else:
        tail = "A new try of this task re-attaches to it instead of paying again."
    return f"The task was stopped by a user ({verdict.detail}). {cancellation.message} {tail}"


def timed_out_cancellation(job_id: str, where: str, seconds: float) -> Cancellation:
    return Cancellation(
        "unknown",
        f"Could not learn whether job {job_id} was still queued, or cancel it, on {where} within {seconds:g} s: it "
        "may run to its end and be billed.",
    )
