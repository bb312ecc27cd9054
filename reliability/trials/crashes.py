"""
Crash trials: a process dies at the worst moment and the videos must still be made, each paid for once.

1. The worker, right after the submission (before deferring): the retry re-attaches to the job.
2. The triggerer, mid-render, then restarted: the trigger runs again in the new triggerer.
3. The API itself (the emulator, with its state file), mid-render: the trigger polls through the outage.
8. The worker, in the middle of storing the clip: no partial file at the final path, the retry stores it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx

from reliability.lab import ApiSpec, Lab
from reliability.plan import Plan
from reliability.report import Row
from reliability.trials.base import (
    DEFERRING,
    REATTACHED,
    STORED,
    SUBMITTED,
    TRANSIENT,
    TaskView,
    VideoBatchTrial,
    expect_state,
    playable,
)

CONNECTION = {"timeout": 10, "retry_initial_delay": 0.5, "retry_max_delay": 2}


def killed_by_sigkill(view: TaskView, attempt: int) -> bool:
    return any(event.get("signal_name") == "SIGKILL" for event in view.attempt(attempt).events)


class WorkerKillTrial(VideoBatchTrial):
    item = "1"
    title = "Worker SIGKILL right after submitting"
    dag_id = "rel_worker_kill"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, plan.worker_kill)

    def api_spec(self) -> ApiSpec:
        # Renders long enough that most retries find their job still rendering (and defer on it).
        return ApiSpec(self.plan.emulator(2 * self.plan.render_seconds), CONNECTION)

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        job_ids = self.job_ids(lab, views)
        reattached = {"IN_PROGRESS": 0, "SUCCESS": 0}
        for view in views:
            job_id = job_ids[view.key.map_index]
            problems = expect_state(view, "success", try_number=2, starts=2)
            first, retry = view.attempt(1), view.attempt(2)
            if not killed_by_sigkill(view, 1):
                problems.append("the first try was not killed by SIGKILL")
            if first.has(DEFERRING):
                problems.append("the first try deferred before it was killed")
            line = next(iter(retry.find(f"{REATTACHED}{job_id} ")), None) if job_id else None
            if line is None:
                problems.append(f"the retry did not re-attach to job {job_id}")
            else:
                reattached["SUCCESS" if "(now SUCCESS)" in line else "IN_PROGRESS"] += 1
            if retry.has(SUBMITTED):
                problems.append("the retry submitted again")
            row.count_task(problems, expect_success=True, where=f"video {view.key.map_index}")
        stats = lab.apis[self.dag_id].stats()
        row.submissions, row.jobs, row.duplicates = _counts(stats)
        row.check_api_counts(stats)
        row.check(row.submissions == self.count, f"{row.submissions} submissions for {self.count} videos")
        self.check_jobs_are_the_tasks(row, lab, job_ids)
        row.facts["re-attached"] = (
            f"{sum(reattached.values())}/{self.count} ({reattached['IN_PROGRESS']} still rendering, "
            f"{reattached['SUCCESS']} already done)"
        )
        row.facts["worker starts per video"] = _spread(view.starts for view in views)
        return row


class DownloadKillTrial(VideoBatchTrial):
    item = "8"
    title = "Worker SIGKILL mid-download of the clip"
    dag_id = "rel_download_kill"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, plan.download_kill)
        # What the destination folder held while each task waited for its retry.
        self.between_tries: dict[int, dict[str, Any]] = {}

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(), CONNECTION)

    def clip(self, lab: Lab, index: int) -> Path:
        return lab.clips_dir / self.dag_id / self.batch / f"video-{index}.mp4"

    def step(self, lab: Lab) -> bool:
        for index, ti in self.render_states(lab).items():
            if ti.state == "up_for_retry" and ti.try_number == 1 and index not in self.between_tries:
                final = self.clip(lab, index)
                partials = sorted(final.parent.glob(f".{final.name}.*.partial")) if final.parent.exists() else []
                self.between_tries[index] = {
                    "final_exists": final.exists(),
                    "partials": [(path.name, path.stat().st_size) for path in partials],
                }
        return super().step(lab)

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        job_ids = self.job_ids(lab, views)
        api = lab.apis[self.dag_id]
        stats = api.stats()  # before this trial downloads the files itself
        partial_seen = clips_ok = 0
        for view in views:
            index = view.key.map_index
            problems = expect_state(view, "success", try_number=2, starts=3)
            if not killed_by_sigkill(view, 1):
                problems.append("the first try was not killed by SIGKILL")
            seen = self.between_tries.get(index)
            if seen is None:
                problems.append("the folder was not looked at between the killed try and the retry")
            else:
                if seen["final_exists"]:
                    problems.append("a file was at the final path while the task waited for its retry")
                partial_seen += bool(seen["partials"])
            if not view.attempt(2).has(REATTACHED):
                problems.append("the retry did not re-attach to its job")
            if view.attempt(2).has(SUBMITTED):
                problems.append("the retry submitted again")
            if not view.attempt(2).has(STORED):
                problems.append("the retry did not store the clip")
            clip_problems = self._check_clip(lab, view, job_ids[index])
            clips_ok += not clip_problems
            problems += clip_problems
            row.count_task(problems, expect_success=True, where=f"video {index}")
        row.submissions, row.jobs, row.duplicates = _counts(stats)
        row.check_api_counts(stats)
        row.check(row.submissions == self.count, f"{row.submissions} submissions for {self.count} videos")
        self.check_jobs_are_the_tasks(row, lab, job_ids)
        row.facts["final path empty between tries"] = (
            f"{sum(not s['final_exists'] for s in self.between_tries.values())}/{self.count}"
        )
        row.facts["hidden .partial left by the killed try"] = f"{partial_seen}/{self.count}, removed by the retry"
        row.facts["downloads"] = (
            f"{stats['file_downloads']} ({stats['file_downloads'] / max(self.count, 1):g} per clip)"
        )
        row.facts["complete clip, checksum and playback OK"] = f"{clips_ok}/{self.count}"
        row.details["between_tries"] = self.between_tries
        return row

    def _check_clip(self, lab: Lab, view: TaskView, job_id: str | None) -> list[str]:
        result = lab.xcom(view.key, "return_value")
        if not isinstance(result, dict):
            return [f"no result in XCom: {result!r}"]
        final = self.clip(lab, view.key.map_index)
        problems = []
        if result.get("stored_path") != f"file://{final}":
            problems.append(f"stored at {result.get('stored_path')}, expected file://{final}")
        if not final.exists():
            return [*problems, "no file at the final path"]
        data = final.read_bytes()
        leftovers = sorted(path.name for path in final.parent.glob(f".{final.name}.*.partial"))
        if leftovers:
            problems.append(f"partial files left after the retry: {leftovers}")
        if len(data) != result.get("stored_size") or hashlib.sha256(data).hexdigest() != result.get("stored_sha256"):
            problems.append("the stored file does not match the size and SHA-256 the task reported")
        # The emulator renders the same bytes for the same job every time: fetch them once more to compare.
        original = httpx.get(str(result.get("video_url")), timeout=30).content
        if hashlib.sha256(original).hexdigest() != hashlib.sha256(data).hexdigest():
            problems.append(f"the stored clip differs from job {job_id}'s video")
        problems += playable(data, expected_seconds=3.0)
        return problems


class TriggererKillTrial(VideoBatchTrial):
    item = "2"
    title = "Triggerer SIGKILL mid-render, then restarted"
    dag_id = "rel_triggerer_kill"
    exclusive_start = True
    downtime = 3.0

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, plan.triggerer_kill)
        self.phase = "rendering"
        self.killed_at = 0.0
        self.rendering_at_kill = 0
        self.restart_seconds = 0.0
        self.restarted_at = 0.0
        self.trigger_rows_checked = 0
        self.trigger_row_leaks: list[str] = []

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(self.plan.long_render_seconds), CONNECTION)

    def armed(self, lab: Lab) -> bool:
        return self.phase != "rendering"

    def triggers_running(self, lab: Lab) -> bool:
        """Every task deferred, its trigger started in the triggerer (it has a trigger log) and polling."""
        if not self.all_deferred(lab):
            return False
        logs = lab.task_logs(self.dag_id, self.run_id)
        if any(not logs.trigger.get((self.task_id, index)) for index in range(self.count)):
            return False
        return int(lab.apis[self.dag_id].stats()["status_calls"]["total"]) >= self.count

    def step(self, lab: Lab) -> bool:
        if self.phase == "rendering" and self.triggers_running(lab):
            # While every task waits, its trigger row holds the trigger's kwargs: the key must not be there.
            self.trigger_rows_checked = len(lab.cluster.db_rows("trigger"))
            self.trigger_row_leaks = [
                place for place in lab.cluster.find_secret(lab.apis[self.dag_id].api_key) if "db:trigger" in place
            ]
            self.killed_at = time.time()
            self.rendering_at_kill = sum(
                job["finished"] > self.killed_at for job in lab.apis[self.dag_id].jobs().values()
            )
            lab.cluster.kill("triggerer")
            self.phase = "down"
        elif self.phase == "down" and time.time() - self.killed_at >= self.downtime:
            self.restart_seconds = lab.cluster.restart("triggerer")
            self.restarted_at = time.time()
            self.phase = "restarted"
        elif self.phase == "restarted":
            return super().step(lab)
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"stuck in phase {self.phase} after {self.timeout:.0f} s")
            self.ended = time.monotonic()
            return True
        return False

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        job_ids = self.job_ids(lab, views)
        for view in views:
            problems = expect_state(view, "success", try_number=1, starts=1)
            if len(view.triggers()) < 2:  # a trigger log per triggerer that ran the trigger
                problems.append(f"its trigger ran in {len(view.triggers())} triggerer(s), expected the old and the new")
            row.count_task(problems, expect_success=True, where=f"video {view.key.map_index}")
        stats = lab.apis[self.dag_id].stats()
        row.submissions, row.jobs, row.duplicates = _counts(stats)
        row.check_api_counts(stats)
        row.check(row.submissions == self.count, f"{row.submissions} submissions for {self.count} videos")
        row.check(
            self.rendering_at_kill == self.count,
            f"only {self.rendering_at_kill} of {self.count} jobs were still rendering when the triggerer died",
        )
        row.check(not self.trigger_row_leaks, f"the API key is in trigger rows: {self.trigger_row_leaks}")
        self.check_jobs_are_the_tasks(row, lab, job_ids)
        ends = [view.ti.end_date.timestamp() for view in views if view.ti is not None and view.ti.end_date]
        row.facts["rendering at the kill"] = f"{self.rendering_at_kill}/{self.count}"
        row.facts["triggerer back after"] = f"{self.restart_seconds:.0f} s"
        if ends and self.restarted_at:
            row.facts["last video done after the restart"] = f"{max(ends) - self.restarted_at:.0f} s"
        row.facts["task retries"] = sum(view.try_number > 1 for view in views)
        row.facts["trigger rows checked for the key"] = self.trigger_rows_checked
        return row


class EmulatorRestartTrial(VideoBatchTrial):
    item = "3"
    title = "API (emulator) SIGKILL mid-render, restarted from its state file"
    dag_id = "rel_emulator_restart"
    exclusive_start = True
    downtime = 6.0

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, plan.emulator_restart)
        self.phase = "rendering"
        self.killed_at = 0.0
        self.rendering_at_kill = 0
        self.before: dict[str, Any] = {}

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(self.plan.long_render_seconds), CONNECTION)

    def armed(self, lab: Lab) -> bool:
        return self.phase != "rendering"

    def step(self, lab: Lab) -> bool:
        api = lab.apis[self.dag_id]
        if self.phase == "rendering" and self.all_deferred(lab):
            stats = api.stats()
            if stats["status_calls"]["total"] >= self.count:  # the triggers are polling
                self.before = stats
                self.killed_at = time.time()
                self.rendering_at_kill = sum(job["finished"] > self.killed_at for job in api.jobs().values())
                api.emulator.kill()
                self.phase = "down"
        elif self.phase == "down" and time.time() - self.killed_at >= self.downtime:
            api.emulator.start()  # the same port and state file
            self.phase = "restarted"
        elif self.phase == "restarted":
            return super().step(lab)
        if time.monotonic() - self.started > self.timeout:
            self.problems.append(f"stuck in phase {self.phase} after {self.timeout:.0f} s")
            self.ended = time.monotonic()
            return True
        return False

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        job_ids = self.job_ids(lab, views)
        transient = 0
        for view in views:
            problems = expect_state(view, "success", try_number=1, starts=1)
            transient += sum(len(log.find(TRANSIENT)) for log in view.triggers().values())
            row.count_task(problems, expect_success=True, where=f"video {view.key.map_index}")
        after = lab.apis[self.dag_id].stats() if lab.apis[self.dag_id].emulator.running else {}
        if not self.before or not after:
            row.check(False, "the API was not restarted mid-render")
            return row
        row.submissions = int(self.before["submissions"]["total"]) + int(after["submissions"]["total"])
        row.jobs = int(after["jobs"]["total"])
        row.duplicates = int(after["duplicate_submissions"])
        row.check_api_counts(self.before, label="API before the crash")
        row.check(row.duplicates == 0, f"{row.duplicates} duplicate paid submissions after the restart")
        row.check(row.submissions == self.count, f"{row.submissions} submissions for {self.count} videos")
        row.check(
            row.jobs == self.count, f"{row.jobs} jobs after the restart, expected {self.count} from the state file"
        )
        row.check(
            self.rendering_at_kill == self.count,
            f"only {self.rendering_at_kill} of {self.count} jobs were still rendering when the API died",
        )
        row.check(transient > 0, "no trigger saw the outage (no failed poll was logged)")
        self.check_jobs_are_the_tasks(row, lab, job_ids)
        row.facts["rendering at the crash"] = f"{self.rendering_at_kill}/{self.count}"
        row.facts["API down for"] = f"{self.downtime:.0f} s"
        row.facts["failed polls ridden out"] = transient
        row.facts["task retries"] = sum(view.try_number > 1 for view in views)
        return row


def _counts(stats: dict[str, Any]) -> tuple[int, int, int]:
    return int(stats["submissions"]["total"]), int(stats["jobs"]["total"]), int(stats["duplicate_submissions"])


def _spread(values: Any) -> str:
    found = sorted(set(values))
    return "-" if not found else str(found[0]) if len(found) == 1 else f"{found[0]}-{found[-1]}"
