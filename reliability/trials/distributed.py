"""
Trials on a distributed Airflow (``reliability.run --distributed``): PostgreSQL, Redis, CeleryExecutor with two
workers, two triggerers, a scheduler, a dag-processor and two api-servers, each process a host of its own
(:class:`harness.distributed.DistributedCluster`).

D1. A mapped batch of videos, with a downstream task that receives every result.
D2. One triggerer SIGKILLed mid-render: the other takes its triggers within the health-check threshold.
D3. One triggerer SIGSTOPped past the threshold, then SIGCONTed: both run the same triggers for a while.
D4. A Celery worker SIGKILLed right after its tasks submitted: the retries re-attach from the other worker.
D5. A Celery worker SIGKILLed mid-download: the retries, on the other worker, store every clip whole.
D6. The scheduler SIGKILLed while tasks are queued and running, then restarted.
D7. PostgreSQL restarted mid-run: every component recovers, no task is lost.
D8. Every trial's API key, searched in every log and table.

Every row checks what each trial must hold: paid submissions equal videos, no duplicate paid job, every task
succeeds, the downstream task got a dict per video (``collect``), and (D8) the keys are nowhere.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from harness.common import ClusterError, parse_api_time
from reliability.dagkit import EAGER_POLLING
from reliability.killers import HELD, release_file
from reliability.lab import ApiSpec, Lab, LogView
from reliability.plan import DistributedPlan
from reliability.report import Row
from reliability.trials.base import (
    REATTACHED,
    STORED,
    SUBMITTED,
    TaskView,
    VideoBatchTrial,
    expect_state,
)
from reliability.trials.crashes import CONNECTION, DownloadKillTrial, _counts, _spread
from reliability.trials.secrets_check import SecretsTrial

COLLECT_TASK = "collect"
# A trigger moved off a dead triggerer must run on the other one within the health-check threshold plus one poll.
ONE_POLL = EAGER_POLLING["max_poll_interval"]
# What the trigger's on_kill says when Airflow stops it here (a move to another triggerer included).
STOPPED_HERE = "Stopped polling HappyHorse job"
FIRED = "Trigger fired event"  # Airflow's line when a trigger's event reached its triggerer
# What Airflow 3.3's triggerer logs (as an error) when its trigger runner sent nothing for 30 s: a frozen
# triggerer logs it as it wakes, about its own freeze.
WATCHDOG = "TriggerRunner subprocess event loop appears deadlocked"


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


class DistributedTriggererStopTrial(TriggererLossTrial):
    item = "D3"
    title = "One of two triggerers SIGSTOPped past the threshold, then SIGCONTed (the same triggers run twice at once)"
    dag_id = "rel_dist_triggerer_stop"

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.triggerer_stop)
        self.resumed_at = 0.0
        self.first_render_end: float | None = None

    def step(self, lab: Lab) -> bool:
        if self.phase == "rendering" and self.triggers_running(lab):
            self.choose_victim(lab)
            lab.cluster.kill(self.victim, signal.SIGSTOP)
            self.phase = "stopped"
        elif self.phase == "stopped" and self._resume_due(lab):
            lab.cluster.kill(self.victim, signal.SIGCONT)
            self.resumed_at = time.time()
            self.phase = "resumed"
        elif self.phase == "resumed":
            return VideoBatchTrial.step(self, lab)
        if self.stuck():
            if self.phase == "stopped":
                lab.cluster.kill(self.victim, signal.SIGCONT)
            return True
        return False

    def _resume_due(self, lab: Lab) -> bool:
        """Past the threshold, every moved trigger running in the survivor, and the first of their renders done:
        the stopped triggerer wakes with polls overdue, so both triggerers may see a job end at once."""
        threshold = lab.distributed_cluster.triggerer_health_check_threshold
        if time.time() - self.lost_at <= threshold or not self.all_moved(lab) or not self._running_in_survivor(lab):
            return False
        if self.first_render_end is None:
            jobs = lab.apis[self.dag_id].jobs()
            ids = self.job_ids(lab, [view for view in self.tasks(lab) if view.key.map_index in self.moved])
            finished = [jobs[job_id]["finished"] for job_id in ids.values() if job_id in jobs]
            self.first_render_end = min(finished) if finished else time.time()
        return time.time() >= self.first_render_end

    def _running_in_survivor(self, lab: Lab) -> bool:
        logs = lab.task_logs(self.dag_id, self.run_id)
        jobs = lab.distributed_cluster.triggerer_jobs()
        for index in self.moved:
            owners = {jobs.get(int(job_id)) for job_id in logs.trigger.get((self.task_id, index), {})}
            if self.survivor not in owners:
                return False
        return True

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        twice = stopped_here = fired_twice = 0
        errors: list[str] = []
        for view in views:
            problems = expect_state(view, "success", try_number=1, starts=1)
            logs = self.trigger_logs(lab, view)
            for name, log in logs.items():
                errors += [f"video {view.key.map_index} in {name}: {text}" for text in _errors(log)]
            if view.key.map_index in self.moved:
                old, new = logs.get(self.victim), logs.get(self.survivor)
                if old is None or new is None:
                    problems.append(f"its trigger ran in {sorted(logs)}, expected {self.victim} and {self.survivor}")
                else:
                    new_began = _first_time(new) or float("inf")
                    # The old triggerer wrote for this trigger after it resumed, while the new one ran it too.
                    if any(when >= self.resumed_at for when in _times(old)) and new_began < self.resumed_at:
                        twice += 1
                    stopped_here += old.has(STOPPED_HERE)
                    fired_twice += old.has(FIRED) and new.has(FIRED)
            row.count_task(problems, expect_success=True, where=f"video {view.key.map_index}")
        self.check_common(row, lab, views)
        self.check_moves(row, lab, views)
        watchdog: list[str] = []
        for name in (self.victim, self.survivor):
            if not name:
                continue
            for text in _component_errors(lab.cluster.component_log(name), self.lost_at):
                # Airflow's own watchdog, in the frozen triggerer as it wakes: it measured the freeze itself.
                if name == self.victim and WATCHDOG in text:
                    watchdog.append(text)
                else:
                    errors.append(f"{name}: {text}")
        row.check(not errors, f"errors logged: {errors[:5]}")
        row.check(lab.cluster.is_running(self.victim), f"{self.victim} did not survive SIGSTOP/SIGCONT")
        row.facts["stopped for"] = f"{self.resumed_at - self.lost_at:.0f} s" if self.resumed_at else "-"
        row.facts["ran in both triggerers at once"] = f"{twice}/{len(self.moved)}"
        row.facts[f"stopped in {self.victim} after SIGCONT (on_kill)"] = f"{stopped_here}/{len(self.moved)}"
        row.facts["events fired by both triggerers"] = f"{fired_twice}/{len(self.moved)}"
        row.facts["double completions"] = sum(view.starts > 1 or view.try_number > 1 for view in views)
        row.facts["errors logged"] = len(errors)
        if watchdog:
            row.facts[f"{self.victim}'s watchdog on waking"] = watchdog[0][:120] + "..."
        return row


class WorkerLossTrial(DistributedTrial):
    """Shared by D4 and D5: every first try holds at a moment (``HELD``); the worker holding most is SIGKILLed."""

    exclusive_start = True
    hold_where = ""

    def __init__(self, plan: DistributedPlan, count: int) -> None:
        super().__init__(plan, count)
        self.phase = "holding"
        self.victim = ""
        self.survivor = ""
        self.killed: set[int] = set()
        self.killed_at = 0.0
        self.restart_seconds = 0.0

    def armed(self, lab: Lab) -> bool:
        return self.phase != "holding"

    def held(self, lab: Lab) -> set[int]:
        logs = lab.task_logs(self.dag_id, self.run_id)
        return {
            index for index in range(self.count) if logs.attempt(self.task_id, index, 1).has(f"{HELD}{self.hold_where}")
        }

    def before_kill(self, lab: Lab) -> None:
        """Look at what the held tries left, just before the kill."""

    def step(self, lab: Lab) -> bool:
        if self.phase == "holding" and len(self.held(lab)) == self.count:
            hosts = self.hosts(lab)
            workers = lab.distributed_cluster.workers
            on = {name: {index for index in range(self.count) if hosts.get((index, 1)) == name} for name in workers}
            self.victim = max(workers, key=lambda name: (len(on[name]), name == workers[0]))
            self.survivor = next(name for name in workers if name != self.victim)
            self.killed = on[self.victim]
            self.before_kill(lab)
            lab.cluster.kill(self.victim)
            self.killed_at = time.time()
            release = release_file(lab.clips_dir, self.dag_id, self.batch)
            release.parent.mkdir(parents=True, exist_ok=True)
            release.touch()
            self.phase = "killed"
        elif self.phase == "killed":
            self.watch(lab)
            if VideoBatchTrial.step(self, lab):
                # Back for the trials after this one, once this run no longer needs it gone.
                self.restart_seconds = lab.cluster.restart(self.victim, timeout=120)
                return True
            return False
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"stuck in phase {self.phase} after {self.timeout:.0f} s")
            self.ended = time.monotonic()
            release_file(lab.clips_dir, self.dag_id, self.batch).touch()
            self.restart_if_down(lab, self.victim or lab.distributed_cluster.workers[0])
            return True
        return False

    def watch(self, lab: Lab) -> None:
        """Called every step after the kill."""

    def check_killed(self, row: Row, lab: Lab, views: list[TaskView]) -> dict[int, float]:
        """The killed tries' retries ran on the other worker; returns seconds from the kill to each retry's start."""
        hosts = self.hosts(lab)
        retry_after: dict[int, float] = {}
        for view in views:
            if view.key.map_index not in self.killed:
                continue
            retry_host = hosts.get((view.key.map_index, 2))
            row.check(
                retry_host == self.survivor,
                f"video {view.key.map_index}: the retry ran on {retry_host}, expected {self.survivor}",
            )
            start = _first_time(view.attempt(2))
            if start is not None:
                retry_after[view.key.map_index] = start - self.killed_at
        row.check(bool(self.killed), f"{self.victim} held none of the tasks")
        row.facts[f"tasks on {self.victim or 'the killed worker'} at the kill"] = f"{len(self.killed)}/{self.count}"
        if retry_after:
            row.facts[f"retried on {self.survivor} after"] = (
                f"{min(retry_after.values()):.0f}-{max(retry_after.values()):.0f} s"
            )
        return retry_after


class DistributedWorkerKillTrial(WorkerLossTrial):
    item = "D4"
    title = "A Celery worker SIGKILLed right after its tasks submitted; re-attached from the other worker"
    dag_id = "rel_dist_worker_kill"
    hold_where = "submission"

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.worker_kill)

    def api_spec(self) -> ApiSpec:
        # Renders long enough that most retries find their job still rendering (and defer on it).
        return ApiSpec(self.plan.emulator(4 * self.plan.render_seconds), CONNECTION)

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        job_ids = self.check_common(row, lab, views)
        reattached = 0
        for view in views:
            index = view.key.map_index
            if index not in self.killed:
                row.count_task(
                    expect_state(view, "success", try_number=1, starts=1), expect_success=True, where=f"video {index}"
                )
                continue
            problems = expect_state(view, "success", try_number=2)
            first, retry = view.attempt(1), view.attempt(2)
            if not first.has(SUBMITTED):
                problems.append("the killed try had not submitted")
            if first.has("Deferring on job "):
                problems.append("the killed try deferred before the kill")
            if job_ids.get(index) and retry.has(f"{REATTACHED}{job_ids[index]} "):
                reattached += 1
            else:
                problems.append(f"the retry did not re-attach to job {job_ids.get(index)}")
            if retry.has(SUBMITTED):
                problems.append("the retry submitted again")
            row.count_task(problems, expect_success=True, where=f"video {index}")
        self.check_killed(row, lab, views)
        row.facts["re-attached"] = f"{reattached}/{len(self.killed)}"
        row.facts["worker starts per video"] = _spread(view.starts for view in views)
        return row


class DistributedDownloadKillTrial(WorkerLossTrial):
    item = "D5"
    title = "A Celery worker SIGKILLed mid-download of the clips; stored whole from the other worker"
    dag_id = "rel_dist_download_kill"
    hold_where = "download"

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.download_kill)
        self.at_kill: dict[int, dict[str, Any]] = {}
        self.between_tries: dict[int, dict[str, Any]] = {}
        # Trial 8's clip checks (size, checksum, the job's own bytes, playback), on this trial's paths.
        self._clips = DownloadKillTrial(plan)
        self._clips.dag_id = self.dag_id

    def clip(self, lab: Lab, index: int) -> Path:
        return lab.clips_dir / self.dag_id / self.batch / f"video-{index}.mp4"

    def _folder(self, lab: Lab, index: int) -> dict[str, Any]:
        final = self.clip(lab, index)
        partials = sorted(final.parent.glob(f".{final.name}.*.partial")) if final.parent.exists() else []
        return {"final_exists": final.exists(), "partials": [(path.name, path.stat().st_size) for path in partials]}

    def before_kill(self, lab: Lab) -> None:
        self.at_kill = {index: self._folder(lab, index) for index in range(self.count)}

    def watch(self, lab: Lab) -> None:
        for index, ti in self.render_states(lab).items():
            if ti.state == "up_for_retry" and ti.try_number == 1 and index not in self.between_tries:
                self.between_tries[index] = self._folder(lab, index)

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        job_ids = self.check_common(row, lab, views)
        api = lab.apis[self.dag_id]
        clips_ok = partial_at_kill = 0
        for view in views:
            index = view.key.map_index
            if index in self.killed:
                problems = expect_state(view, "success", try_number=2)
                seen = self.between_tries.get(index)
                if seen is None:
                    problems.append("the folder was not looked at between the killed try and the retry")
                elif seen["final_exists"]:
                    problems.append("a file was at the final path while the task waited for its retry")
                partial_at_kill += bool(self.at_kill.get(index, {}).get("partials"))
                retry = view.attempt(2)
                if not retry.has(REATTACHED):
                    problems.append("the retry did not re-attach to its job")
                if retry.has(SUBMITTED):
                    problems.append("the retry submitted again")
                if not retry.has(STORED):
                    problems.append("the retry did not store the clip")
            else:
                problems = expect_state(view, "success", try_number=1)
            clip_problems = self._check_clip(lab, view, job_ids.get(index))
            clips_ok += not clip_problems
            row.count_task(problems + clip_problems, expect_success=True, where=f"video {index}")
        self.check_killed(row, lab, views)
        stats = api.stats()
        row.facts["hidden .partial at the kill"] = f"{partial_at_kill}/{len(self.killed)}"
        row.facts["final path empty between tries"] = (
            f"{sum(not seen['final_exists'] for seen in self.between_tries.values())}/{len(self.killed)}"
        )
        row.facts["downloads"] = stats["file_downloads"]
        row.facts["complete clip, checksum and playback OK"] = f"{clips_ok}/{self.count}"
        row.details.update(at_kill=self.at_kill, between_tries=self.between_tries)
        return row

    def _check_clip(self, lab: Lab, view: TaskView, job_id: str | None) -> list[str]:
        self._clips.batch = self.batch
        return self._clips._check_clip(lab, view, job_id)


class DistributedSchedulerKillTrial(DistributedTrial):
    item = "D6"
    title = "Scheduler SIGKILLed while tasks are queued and running on the workers, then restarted"
    dag_id = "rel_dist_scheduler_kill"
    exclusive_start = True
    downtime = 5.0

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.scheduler_kill)
        self.phase = "queueing"
        self.states_at_kill: dict[str, int] = {}
        self.restart_seconds = 0.0
        self.killed_at = 0.0

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(self.plan.long_render_seconds), CONNECTION)

    def armed(self, lab: Lab) -> bool:
        return self.phase != "queueing"

    def step(self, lab: Lab) -> bool:
        if self.phase == "queueing":
            tis = self.render_states(lab)
            states = [ti.state or "none" for ti in tis.values()]
            if len(tis) == self.count and any(state in ("queued", "running") for state in states):
                self.states_at_kill = {state: states.count(state) for state in sorted(set(states))}
                lab.cluster.kill("scheduler")
                self.killed_at = time.time()
                self.phase = "down"
        elif self.phase == "down" and time.time() - self.killed_at >= self.downtime:
            self.restart_seconds = lab.cluster.restart("scheduler", timeout=120)
            self.phase = "restarted"
        elif self.phase == "restarted":
            return super().step(lab)
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"stuck in phase {self.phase} after {self.timeout:.0f} s")
            self.ended = time.monotonic()
            self.restart_if_down(lab, "scheduler")
            return True
        return False

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        for view in views:
            row.count_task(expect_state(view, "success"), expect_success=True, where=f"video {view.key.map_index}")
        self.check_common(row, lab, views)
        row.check(bool(self.states_at_kill), "the scheduler was not killed while tasks were queued or running")
        row.facts["render tasks at the kill"] = ", ".join(f"{state} {n}" for state, n in self.states_at_kill.items())
        row.facts["scheduler down for"] = f"{self.downtime:.0f} s, back (healthy) {self.restart_seconds:.0f} s later"
        row.facts["task retries"] = sum(view.try_number > 1 for view in views)
        row.facts["worker starts per video"] = _spread(view.starts for view in views)
        return row


class DistributedPostgresRestartTrial(DistributedTrial):
    item = "D7"
    title = "PostgreSQL (the metadata DB) restarted mid-run"
    dag_id = "rel_dist_postgres_restart"
    exclusive_start = True
    downtime = 5.0

    def __init__(self, plan: DistributedPlan) -> None:
        super().__init__(plan, plan.postgres_restart)
        self.phase = "rendering"
        self.restarted_at = 0.0
        self.down_seconds = 0.0
        self.rendering_at_restart = 0
        self.exited: dict[str, int | None] = {}
        self.restarted: dict[str, float] = {}
        self.unhealthy = ""
        self.failed_steps = 0

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(self.plan.long_render_seconds), CONNECTION)

    def armed(self, lab: Lab) -> bool:
        return self.phase != "rendering"

    def step(self, lab: Lab) -> bool:
        if self.phase == "rendering" and self.triggers_running(lab):
            cluster = lab.distributed_cluster
            now = time.time()
            self.rendering_at_restart = sum(job["finished"] > now for job in lab.apis[self.dag_id].jobs().values())
            # Fast shutdown: every session is ended, every component sees its connections fail.
            self.down_seconds = cluster.postgres.restart(self.downtime, mode="fast")
            self.restarted_at = time.time()
            self.phase = "restarted"
            return False
        if self.phase == "restarted":
            try:
                self.restart_exited(lab)
                done = super().step(lab)
            except (ClusterError, httpx.HTTPError, *lab.cluster.db.errors):
                self.failed_steps += 1  # the cluster is still reconnecting; look again next step
                return False
            if done:
                self.check_components(lab)
            return done
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"stuck in phase {self.phase} after {self.timeout:.0f} s")
            self.ended = time.monotonic()
            return True
        return False

    def restart_exited(self, lab: Lab) -> None:
        """Start again every component that exited, as a service manager (systemd's ``Restart=always``, a
        Kubernetes pod's restart policy) would: Airflow 3.3.2's scheduler, dag-processor and triggerers exit when
        their database connection fails."""
        cluster = lab.cluster
        for name in cluster.components:
            if cluster.is_running(name):
                continue
            self.exited.setdefault(name, cluster.processes.exit_code(name))
            self.restarted[name] = round(cluster.restart(name, timeout=180), 1)

    def check_components(self, lab: Lab) -> None:
        cluster = lab.cluster
        self.restart_exited(lab)
        running = [name for name in cluster.components if cluster.is_running(name)]
        with contextlib.suppress(ClusterError):
            # Healthy again: api-servers answer, every job heartbeats, workers still serve (ready at launch).
            cluster.processes.wait_healthy(running, timeout=60)
            return
        self.unhealthy = "not every component is healthy 60 s after the run ended"

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        for view in views:
            row.count_task(expect_state(view, "success"), expect_success=True, where=f"video {view.key.map_index}")
        self.check_common(row, lab, views)
        row.check(self.restarted_at > 0, "PostgreSQL was not restarted mid-run")
        row.check(
            self.rendering_at_restart == self.count,
            f"only {self.rendering_at_restart} of {self.count} jobs were rendering when PostgreSQL restarted",
        )
        row.check(not self.unhealthy, self.unhealthy)
        components = lab.cluster.components
        stayed = [name for name in components if name not in self.exited]
        row.facts["PostgreSQL not answering for"] = f"{self.down_seconds:.0f} s"
        row.facts["stayed up and reconnected"] = ", ".join(stayed) or "none"
        row.facts["exited (code), restarted by the harness as a service manager would"] = (
            ", ".join(f"{name} ({code})" for name, code in self.exited.items()) or "none"
        )
        row.facts["components running and healthy afterwards"] = (
            f"{len(components)}/{len(components)}" if not self.unhealthy else "not all"
        )
        row.facts["task retries"] = sum(view.try_number > 1 for view in views)
        ends = [view.ti.end_date.timestamp() for view in views if view.ti is not None and view.ti.end_date]
        if ends:
            row.facts["last video done after the restart"] = f"{max(ends) - self.restarted_at:.0f} s"
        return row


class DistributedSecretsTrial(SecretsTrial):
    item = "D8"
    title = "Secrets: every distributed trial's API key, searched in all logs (PostgreSQL's too) and DB tables"
    expect_exception_texts = False  # no distributed trial fails a task on purpose: there may be none to read
