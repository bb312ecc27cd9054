"""
Trials on a distributed Airflow (``reliability.run --distributed``): PostgreSQL, Redis, CeleryExecutor with two
workers, two triggerers, a scheduler, a dag-processor and two api-servers, each process a host of its own
(:class:`harness.distributed.DistributedCluster`).

D1. A mapped batch of videos, with a downstream task that receives every result.
D2. One triggerer SIGKILLed mid-render: the other takes its triggers within the health-check threshold.
D8. Every trial's API key, searched in every log and table.

Every row checks what each trial must hold: paid submissions equal videos, no duplicate paid job, every task
succeeds, the downstream task got a dict per video (``collect``), and (D8) the keys are nowhere.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from harness.common import parse_api_time
from reliability.dagkit import EAGER_POLLING
from reliability.lab import ApiSpec, Lab, LogView
from reliability.plan import DistributedPlan
from reliability.report import Row
from reliability.trials.base import (
    TaskView,
    VideoBatchTrial,
    expect_state,
)
from reliability.trials.crashes import CONNECTION, _counts
from reliability.trials.secrets_check import SecretsTrial

COLLECT_TASK = "collect"
# A trigger moved off a dead triggerer must run on the other one within the health-check threshold plus one poll.
ONE_POLL = EAGER_POLLING["max_poll_interval"]
# What the trigger's on_kill says when Airflow stops it here (a move to another triggerer included).
STOPPED_HERE = "Stopped polling HappyHorse job"


class DistributedTrial(VideoBatchTrial):
    """A run of mapped videos on the distributed cluster, with the checks every distributed row makes."""

    plan: DistributedPlan

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(), CONNECTION)

    # -- where things ran --------------------------------------------------------------------------

    def hosts(self, lab: Lab) -> dict[tuple[int, int], str | None]:
        """(map index, try number) -> the worker component that ran that try."""
        cluster = lab.distributed_cluster
        found: dict[tuple[int, int], str | None] = {}
        for table in ("task_instance_history", "task_instance"):
            for row in cluster.db.query(
                f"SELECT map_index, try_number, hostname FROM {table} "  # noqa: S608
                "WHERE dag_id = ? AND run_id = ? AND task_id = ?",
                (self.dag_id, self.run_id, self.task_id),
            ):
                found[(int(row["map_index"]), int(row["try_number"]))] = cluster.component_at(row["hostname"])
        return found

    def trigger_ids(self, lab: Lab) -> dict[int, int]:
        """Map index -> the id of the trigger its task waits on now."""
        rows = lab.cluster.db.query(
            "SELECT map_index, trigger_id FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            (self.dag_id, self.run_id, self.task_id),
        )
        return {int(row["map_index"]): int(row["trigger_id"]) for row in rows if row["trigger_id"] is not None}

    def owners(self, lab: Lab) -> dict[int, str | None]:
        """Map index -> the triggerer its trigger is assigned to now."""
        owners = lab.distributed_cluster.trigger_owners()
        return {index: owners.get(trigger_id) for index, trigger_id in self.trigger_ids(lab).items()}

    def trigger_logs(self, lab: Lab, view: TaskView) -> dict[str, LogView]:
        """The task's trigger logs by the triggerer component that wrote them (one per triggerer job)."""
        jobs = lab.distributed_cluster.triggerer_jobs()
        return {jobs.get(int(job_id), f"job {job_id}"): log for job_id, log in view.triggers().items()}

    def triggers_running(self, lab: Lab) -> bool:
        """Every task deferred, its trigger started in a triggerer (it has a trigger log) and polling."""
        if not self.all_deferred(lab):
            return False
        logs = lab.task_logs(self.dag_id, self.run_id)
        if any(not logs.trigger.get((self.task_id, index)) for index in range(self.count)):
            return False
        return int(lab.apis[self.dag_id].stats()["status_calls"]["total"]) >= self.count

    # -- the checks every row makes ----------------------------------------------------------------

    def check_common(self, row: Row, lab: Lab, views: list[TaskView]) -> dict[int, str | None]:
        """Paid submissions equal videos, no duplicate, every job a task's; the downstream task got dicts."""
        job_ids = self.job_ids(lab, views)
        stats = lab.apis[self.dag_id].stats()
        row.submissions, row.jobs, row.duplicates = _counts(stats)
        row.check_api_counts(stats)
        row.check(row.submissions == self.count, f"{row.submissions} paid submissions for {self.count} videos")
        self.check_jobs_are_the_tasks(row, lab, job_ids)
        results = [lab.xcom(view.key, "return_value") for view in views]
        not_dicts = [
            view.key.map_index for view, result in zip(views, results, strict=True) if not isinstance(result, dict)
        ]
        row.check(not not_dicts, f"videos {not_dicts} have no dict result in XCom")
        collect = next(
            (ti for ti in lab.cluster.task_instances(self.dag_id, self.run_id) if ti.task_id == COLLECT_TASK), None
        )
        received = None
        if collect is None or collect.state != "success":
            row.check(False, f"the downstream task ended {collect.state if collect else 'missing'}")
        else:
            received = lab.xcom(collect.key, "return_value")
            expected = {"videos": self.count, "types": ["dict"], "job_ids": sorted(filter(None, job_ids.values()))}
            row.check(received == expected, f"the downstream task got {received!r}, expected {expected!r}")
        row.facts["downstream got"] = (
            f"{received['videos']} dicts" if isinstance(received, dict) and "videos" in received else "-"
        )
        return job_ids

    def restart_if_down(self, lab: Lab, name: str) -> None:
        """Bring a component back (for the trials after this one)."""
        if not lab.cluster.is_running(name):
            lab.cluster.restart(name, timeout=120)


def _first_time(log: LogView) -> float | None:
    for event in log.events:
        when = parse_api_time(event.get("timestamp"))
        if when is not None:
            return when.timestamp()
    return None


def _times(log: LogView) -> list[float]:
    return [when.timestamp() for event in log.events if (when := parse_api_time(event.get("timestamp"))) is not None]


def _errors(log: LogView) -> list[str]:
    return [
        f"{event.get('level')}: {event.get('event')}"
        for event in log.events
        if str(event.get("level", "")).lower() in ("error", "critical")
    ]


def _spread_of(names: list[str | None]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name or "?"] = counts.get(name or "?", 0) + 1
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "-"


def _component_errors(path: Path, since: float) -> list[str]:
    """Error-level lines a component logged after ``since`` (time.time())."""
    view = LogView.read(path)
    found = []
    for event in view.events:
        when = parse_api_time(event.get("timestamp"))
        if (
            when is not None
            and when.timestamp() >= since
            and str(event.get("level", "")).lower() in ("error", "critical")
        ):
            found.append(str(event.get("event"))[:200])
    return found


class DistributedBatchTrial(DistributedTrial):
    item = "D1"
    title = "Mapped batch on CeleryExecutor (2 workers, 2 triggerers, PostgreSQL, Redis)"
    dag_id = "rel_dist_batch"

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.batch)
        self.title = (
            f"Mapped batch of {plan.batch} videos on CeleryExecutor (2 workers, 2 triggerers, PostgreSQL, Redis)"
        )

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        for view in views:
            # The trigger stores the result (no clip): one worker start per video.
            problems = expect_state(view, "success", try_number=1, starts=1)
            row.count_task(problems, expect_success=True, where=f"video {view.key.map_index}")
        self.check_common(row, lab, views)
        hosts = self.hosts(lab)
        workers = [hosts.get((view.key.map_index, 1)) for view in views]
        triggerers = [name for view in views for name in self.trigger_logs(lab, view)]
        used = {name for name in workers if name}
        row.check(len(used) >= 2, f"every video ran on {sorted(used)}: the batch did not use both workers")
        row.facts["submitted from"] = _spread_of(workers)
        row.facts["triggers ran in"] = _spread_of(triggerers)
        # No fault here: a trigger that ran in both triggerers was moved off one whose heartbeat was late.
        row.facts["triggers moved with no fault"] = sum(len(self.trigger_logs(lab, view)) > 1 for view in views)
        slots = [
            run.duration
            for run in lab.cluster.worker_runs()
            if run.key is not None and (run.key.dag_id, run.key.run_id, run.key.task_id) == self.key_prefix
        ]
        if slots:
            row.facts["worker-slot s per video"] = (
                f"{statistics.mean(slots):.2f} (median {statistics.median(slots):.2f})"
            )
        row.facts["run took"] = f"{row.seconds:.0f} s"
        return row

    @property
    def key_prefix(self) -> tuple[str, str, str]:
        return (self.dag_id, self.run_id, self.task_id)


class TriggererLossTrial(DistributedTrial):
    """Shared by D2 and D3: wait until every trigger polls, then take away the triggerer holding most of them."""

    exclusive_start = True

    def __init__(self, plan: DistributedPlan, count: int) -> None:
        super().__init__(plan, count)
        self.phase = "rendering"
        self.victim = ""
        self.survivor = ""
        self.moved: set[int] = set()
        self.lost_at = 0.0
        self.rendering_at_loss = 0
        self.reassigned_after: float | None = None

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(self.plan.long_render_seconds), CONNECTION)

    def armed(self, lab: Lab) -> bool:
        return self.phase != "rendering"

    def choose_victim(self, lab: Lab) -> None:
        owners = self.owners(lab)
        triggerers = lab.distributed_cluster.triggerers
        held = {name: [index for index, owner in owners.items() if owner == name] for name in triggerers}
        self.victim = max(triggerers, key=lambda name: (len(held[name]), name == triggerers[0]))
        self.survivor = next(name for name in triggerers if name != self.victim)
        self.moved = set(held[self.victim])
        self.lost_at = time.time()
        self.rendering_at_loss = sum(job["finished"] > self.lost_at for job in lab.apis[self.dag_id].jobs().values())

    def all_moved(self, lab: Lab) -> bool:
        owners = self.owners(lab)
        done = all(owners.get(index) == self.survivor for index in self.moved)
        if done and self.reassigned_after is None:
            self.reassigned_after = time.time() - self.lost_at
        return done

    def takeover_times(self, lab: Lab, views: list[TaskView]) -> dict[int, float]:
        """Seconds from the loss to the first line the survivor wrote for each moved trigger."""
        times = {}
        for view in views:
            if view.key.map_index not in self.moved:
                continue
            log = self.trigger_logs(lab, view).get(self.survivor)
            first = _first_time(log) if log is not None else None
            if first is not None:
                times[view.key.map_index] = first - self.lost_at
        return times

    def stuck(self) -> bool:
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"stuck in phase {self.phase} after {self.timeout:.0f} s")
            self.ended = time.monotonic()
            return True
        return False

    def check_moves(self, row: Row, lab: Lab, views: list[TaskView]) -> dict[int, float]:
        row.check(bool(self.moved), f"{self.victim} held none of the triggers")
        row.check(
            self.rendering_at_loss == self.count,
            f"only {self.rendering_at_loss} of {self.count} jobs were still rendering when {self.victim} was lost",
        )
        takeover = self.takeover_times(lab, views)
        missing = sorted(self.moved - set(takeover))
        row.check(not missing, f"videos {missing}: their triggers never ran in {self.survivor}")
        threshold = lab.distributed_cluster.triggerer_health_check_threshold
        allowance = threshold + ONE_POLL
        late = {index: round(seconds, 1) for index, seconds in takeover.items() if seconds > allowance}
        row.check(not late, f"triggers taken over later than the threshold plus one poll ({allowance:g} s): {late}")
        row.facts[f"triggers on {self.victim or 'the lost triggerer'}"] = f"{len(self.moved)}/{self.count}"
        if takeover:
            row.facts[f"running in {self.survivor} after"] = (
                f"{min(takeover.values()):.1f}-{max(takeover.values()):.1f} s "
                f"(allowed: threshold {threshold:g} s + one poll {ONE_POLL:g} s)"
            )
        if self.reassigned_after is not None:
            row.facts["reassigned in the DB after"] = f"<= {self.reassigned_after:.1f} s"
        return takeover


class DistributedTriggererKillTrial(TriggererLossTrial):
    item = "D2"
    title = "One of two triggerers SIGKILLed mid-render; the other takes its triggers"
    dag_id = "rel_dist_triggerer_kill"

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.triggerer_kill)
        self.restart_seconds = 0.0

    def step(self, lab: Lab) -> bool:
        if self.phase == "rendering" and self.triggers_running(lab):
            self.choose_victim(lab)
            lab.cluster.kill(self.victim)
            self.phase = "down"
        elif self.phase == "down" and self.all_moved(lab):
            # Taken over: bring it back for the trials after this one (it finds nothing unassigned to take).
            self.restart_seconds = lab.cluster.restart(self.victim, timeout=120)
            self.phase = "restarted"
        elif self.phase == "restarted":
            return VideoBatchTrial.step(self, lab)
        return self.stuck()

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        for view in views:
            problems = expect_state(view, "success", try_number=1, starts=1)
            logs = self.trigger_logs(lab, view)
            if view.key.map_index in self.moved and set(logs) != {self.victim, self.survivor}:
                problems.append(f"its trigger ran in {sorted(logs)}, expected {self.victim} then {self.survivor}")
            row.count_task(problems, expect_success=True, where=f"video {view.key.map_index}")
        self.check_common(row, lab, views)
        self.check_moves(row, lab, views)
        row.facts["task retries"] = sum(view.try_number > 1 for view in views)
        return row


class DistributedSecretsTrial(SecretsTrial):
    item = "D8"
    title = "Secrets: every distributed trial's API key, searched in all logs (PostgreSQL's too) and DB tables"
    expect_exception_texts = False  # no distributed trial fails a task on purpose: there may be none to read
