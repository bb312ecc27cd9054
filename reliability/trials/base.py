"""
What a trial is, and the shape most of them share: one DAG run of mapped videos against the trial's own API.

The runner drives trials cooperatively from one thread: ``launch`` triggers the run, ``step`` is called about
once a second (it does the trial's mid-run action, e.g. killing the triggerer, and says when the trial is
over), ``evaluate`` turns what happened into a :class:`~reliability.report.Row`.
"""

from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass
from typing import Any

from harness.airflow_cluster import FINISHED_RUN_STATES, TaskInstanceInfo, TaskKey
from reliability.lab import ApiSpec, Lab, LogView, TaskLogs
from reliability.plan import Plan
from reliability.report import Row

RENDER_TASK = "render"
# What the operator logs at each stage (see docs/behaviour.md, "Logs"). The trials read logs for these.
SUBMITTED = "Submitted job "
DEFERRING = "Deferring on job "
REATTACHED = "Re-attached to job "
STORED = "Stored clip of job "
OUTCOME_UNKNOWN = "The submission's outcome is unknown"
REFUSED = "Nothing was submitted now"
TRANSIENT = "unavailable"  # the trigger's warning for a poll that failed and will be retried


class Trial:
    """One row of the table."""

    item = "?"
    title = "?"
    dag_id = ""
    exclusive_start = False
    """The runner waits until this trial is :meth:`armed` before launching the next one of its phase."""
    optional = False
    """Run only when ``--only`` names it, not in the default run."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.timeout = plan.trial_timeout
        self.problems: list[str] = []
        self.started = 0.0
        self.ended = 0.0

    def api_spec(self) -> ApiSpec | None:
        return None

    def launch(self, lab: Lab) -> None:
        self.started = time.monotonic()

    def armed(self, lab: Lab) -> bool:
        return True

    def step(self, lab: Lab) -> bool:
        return True

    def evaluate(self, lab: Lab) -> Row:
        raise NotImplementedError

    def new_row(self, runs: int) -> Row:
        row = Row(trial=self.title, item=self.item, runs=runs)
        row.problems.extend(self.problems)
        row.seconds = round((self.ended or time.monotonic()) - self.started, 1)
        return row


@dataclass
class TaskView:
    """One mapped task: its instance, how many times a worker started it, its logs."""

    key: TaskKey
    ti: TaskInstanceInfo | None
    starts: int
    logs: TaskLogs

    @property
    def state(self) -> str | None:
        return self.ti.state if self.ti is not None else None

    @property
    def try_number(self) -> int:
        return self.ti.try_number if self.ti is not None else 0

    def attempt(self, number: int) -> LogView:
        return self.logs.attempt(self.key.task_id, self.key.map_index, number)

    def triggers(self) -> dict[str, LogView]:
        return self.logs.triggers(self.key.task_id, self.key.map_index)


class VideoBatchTrial(Trial):
    """``count`` mapped videos in one run of ``dag_id`` (see ``reliability.dagkit.video_batch``)."""

    task_id = RENDER_TASK

    def __init__(self, plan: Plan, count: int) -> None:
        super().__init__(plan)
        self.count = count
        self.run_id = ""
        self.batch = ""
        self.extra_conf: dict[str, Any] = {}

    def launch(self, lab: Lab) -> None:
        super().launch(lab)
        self.batch = self.batch or secrets.token_hex(4)
        conf = {"count": self.count, "batch": self.batch, "clips_dir": str(lab.clips_dir), **self.extra_conf}
        self.run_id = lab.cluster.trigger(self.dag_id, conf=conf, run_id=f"reliability__{self.batch}")

    def run_finished(self, lab: Lab) -> bool:
        if lab.run_state(self.dag_id, self.run_id) in FINISHED_RUN_STATES:
            return True
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"the run did not finish within {self.timeout:.0f} s")
            return True
        return False

    def step(self, lab: Lab) -> bool:
        done = self.run_finished(lab)
        if done:
            self.ended = time.monotonic()
        return done

    def render_states(self, lab: Lab) -> dict[int, TaskInstanceInfo]:
        return lab.task_instances(self.dag_id, self.run_id, self.task_id)

    def all_deferred(self, lab: Lab) -> bool:
        tis = self.render_states(lab)
        return len(tis) == self.count and all(ti.state == "deferred" for ti in tis.values())

    def tasks(self, lab: Lab) -> list[TaskView]:
        tis = self.render_states(lab)
        starts = lab.worker_starts(self.dag_id, self.run_id, self.task_id)
        logs = lab.task_logs(self.dag_id, self.run_id)
        return [
            TaskView(TaskKey(self.dag_id, self.run_id, self.task_id, index), tis.get(index), starts.get(index, 0), logs)
            for index in range(self.count)
        ]

    def job_ids(self, lab: Lab, views: list[TaskView]) -> dict[int, str | None]:
        return {view.key.map_index: lab.xcom(view.key, "job_id") for view in views}

    def check_jobs_are_the_tasks(self, row: Row, lab: Lab, job_ids: dict[int, str | None]) -> None:
        """Every job the API made belongs to exactly one task: no job was paid for and then lost."""
        made = set(lab.apis[self.dag_id].jobs())
        used = [job_id for job_id in job_ids.values() if job_id]
        row.check(len(used) == len(set(used)), f"two tasks report the same job: {sorted(used)}")
        row.check(
            set(used) == made,
            f"jobs made but used by no task: {sorted(made - set(used))}; "
            f"reported but unknown to the API: {sorted(set(used) - made)}",
        )


def expect_state(view: TaskView, state: str, try_number: int | None = None, starts: int | None = None) -> list[str]:
    problems = []
    if view.state != state:
        problems.append(f"ended {view.state}, expected {state}")
    if try_number is not None and view.try_number != try_number:
        problems.append(f"took {view.try_number} tries, expected {try_number}")
    if starts is not None and view.starts != starts:
        problems.append(f"a worker started it {view.starts} times, expected {starts}")
    return problems


def first_line(log: LogView, needle: str) -> str | None:
    found = log.find(needle)
    return found[0] if found else None


def playable(data: bytes, *, expected_seconds: float) -> list[str]:
    import av  # a dependency of the provider

    try:
        with av.open(io.BytesIO(data)) as container:
            seconds = float(container.duration or 0) / av.time_base
            frames = sum(1 for _ in container.decode(video=0))
    except av.error.FFmpegError as error:  # type: ignore[attr-defined]
        return [f"the stored clip does not decode: {error}"]
    if abs(seconds - expected_seconds) > 0.2 or frames == 0:
        return [f"the stored clip lasts {seconds:.2f} s with {frames} frames, expected {expected_seconds:g} s"]
    return []
