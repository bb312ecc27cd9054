"""
9. User mistakes: each one fails its task at once, naming the mistake, with nothing paid; once the user fixes it
and clears the task, the video is paid for exactly once and made.

The cases are ``reliability.mistakes.MISTAKES``. Before the run, the trial creates the connections the
connection mistakes need (through the REST API: a connection defined by an ``AIRFLOW_CONN_`` variable cannot be
patched) and writes every case's wrong keyword arguments to the Variable the DAG's upstream task reads. When the
run has failed, it looks at what the refusals left (logs, the API's counts, the task state store, the shipped
``happyhorse-jobs`` CLI), then fixes everything the way a user would (PATCH the Variable and the connections)
and clears the upstream task with its downstream tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_happyhorse.job_store import JobRecordStore
from harness.airflow_cluster import ApiError, TaskInstanceInfo
from reliability.dagkit import batch_prompt
from reliability.lab import ApiSpec, Lab
from reliability.mistakes import MISTAKES, TEMPLATE_CASE, VARIABLE_KEY, Mistake, case_kwargs, conn_typo, fill
from reliability.plan import Plan
from reliability.report import Row
from reliability.trials.base import SUBMITTED, TaskView, VideoBatchTrial, expect_state
from reliability.trials.crashes import CONNECTION

# Render time of the videos once fixed: short, the trial is about what happens before the submission.
RENDER_SECONDS = 4.0
UPSTREAM_TASK = "mistake_cases"
NO_RECORD = "none"
CLI_SAYS = "no HappyHorse job is remembered"


def refusal_problems(
    case: Mistake, ti: TaskInstanceInfo | None, texts: Sequence[str], submitted: bool, record: str | None
) -> tuple[list[str], str | None]:
    """What is wrong with one task's refusal (before the fix), and the error text that names the mistake."""
    problems = []
    if ti is None or ti.state != "failed":
        problems.append(f"ended {ti.state if ti else None} before the fix, expected failed")
    elif ti.try_number != 1:
        problems.append(f"took {ti.try_number} tries to fail, expected 1")
    named = next((text for text in texts if case.message in text), None)
    if named is None:
        problems.append(f"no error saying {case.message!r}; got {list(texts[:2])}")
    if submitted:
        problems.append("a job was submitted")
    if record != NO_RECORD:
        problems.append(f"the task state store kept a record: {record}")
    return problems, named


def api_problems(
    before: Mapping[str, Any], after: Mapping[str, Any], count: int, refusals: Mapping[str, int]
) -> list[str]:
    """
    The API's counts: nothing paid before the fix (only the requests the API itself must refuse, e.g. a wrong
    key's 401, reach ``POST /api/generate``), exactly one paid submission per case after it, no duplicate.
    """
    problems = []
    sent = before["submissions"]
    expected_refused = {status: n for status, n in sorted(refusals.items())}
    if sent["accepted"] or before["jobs"]["total"]:
        problems.append(f"before the fix: {sent['accepted']} paid submissions, {before['jobs']['total']} jobs")
    if sent["total"] != sum(refusals.values()) or sent["refused_by_status"] != expected_refused:
        problems.append(
            f"before the fix: {sent['total']} submissions refused by status {sent['refused_by_status']}, "
            f"expected only {expected_refused}"
        )
    paid = after["submissions"]["accepted"] - sent["accepted"]
    new = after["submissions"]["total"] - sent["total"]
    if paid != count or new != count:
        problems.append(f"after the fix: {new} submissions, {paid} paid, for {count} cases")
    if after["jobs"]["total"] != count:
        problems.append(f"after the fix: {after['jobs']['total']} jobs for {count} cases")
    if after["submissions"]["refused_by_status"] != sent["refused_by_status"]:
        problems.append(f"after the fix the API refused more: {after['submissions']['refused_by_status']}")
    if after["duplicate_submissions"]:
        problems.append(f"{after['duplicate_submissions']} duplicate paid submissions")
    return problems


def free_loopback_url() -> str:
    """A loopback URL on a port nobody listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class MistakesTrial(VideoBatchTrial):
    item = "9"
    title = f"User mistakes: {len(MISTAKES)} mistakes, each refused, fixed, then paid once"
    dag_id = "rel_mistakes"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, len(MISTAKES))
        self.phase = "mistakes"
        self.dead_url = ""
        self.before: dict[int, TaskInstanceInfo] = {}
        self.before_stats: dict[str, Any] = {}
        self.records: dict[int, str] = {}
        self.cli: dict[str, Any] = {}
        self.rendered_template: Any = None
        self.refused_seconds = 0.0
        self.fixed_at = 0.0

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(RENDER_SECONDS), CONNECTION)

    # -- the cases, filled in ------------------------------------------------------------------------

    def clips(self, lab: Lab) -> Path:
        return lab.clips_dir / self.dag_id / self.batch

    def places(self, lab: Lab, index: int) -> dict[str, str]:
        clips = self.clips(lab)
        return {
            "<conn-typo>": conn_typo(self.dag_id),
            "<conn>": self.dag_id,
            "<prompt>": batch_prompt(self.dag_id, self.batch, index),
            "<clips>": str(clips),
            "<case>": f"case-{index}",
            "<blocker>": str(clips / "blocker"),
        }

    def all_kwargs(self, lab: Lab, *, fixed: bool) -> list[dict[str, Any]]:
        return [case_kwargs(case, fixed=fixed, places=self.places(lab, i)) for i, case in enumerate(MISTAKES)]

    def connection_body(self, lab: Lab, case: Mistake, fields: Mapping[str, str | None]) -> dict[str, Any]:
        assert case.connection is not None
        api = lab.apis[self.dag_id]
        places = {"<api>": api.url, "<key>": api.api_key, "<dead>": self.dead_url}
        body: dict[str, Any] = {"connection_id": f"{self.dag_id}_{case.connection.name}", "conn_type": "happyhorse"}
        body.update({name: fill(value, places) for name, value in fields.items() if value is not None})
        return body

    # -- driving ----------------------------------------------------------------------------------------

    def launch(self, lab: Lab) -> None:
        self.batch = self.batch or os.urandom(4).hex()
        clips = self.clips(lab)
        clips.mkdir(parents=True, exist_ok=True)
        (clips / "blocker").write_text("a regular file, where a folder should be")
        self.dead_url = free_loopback_url()
        for case in MISTAKES:
            if case.connection is not None:
                body = self.connection_body(lab, case, case.connection.fields)
                lab.cluster.api("POST", "/connections", json={**body, "extra": json.dumps(CONNECTION)})
        cases = json.dumps(self.all_kwargs(lab, fixed=False))
        lab.cluster.api("POST", "/variables", json={"key": VARIABLE_KEY, "value": cases})
        super().launch(lab)

    def step(self, lab: Lab) -> bool:
        if self.phase == "fixed":
            return super().step(lab)
        if not self.run_finished(lab):
            return False
        if self.problems:  # the run did not finish in time
            self.ended = time.monotonic()
            return True
        self.refused_seconds = time.monotonic() - self.started
        self.look_at_the_refusals(lab)
        self.fix(lab)
        self.phase = "fixed"
        return False

    def ti_path(self, index: int | None = None) -> str:
        path = f"/dags/{self.dag_id}/dagRuns/{quote(self.run_id, safe='')}/taskInstances/{self.task_id}"
        return path if index is None else f"{path}/{index}"

    def look_at_the_refusals(self, lab: Lab) -> None:
        self.before = self.render_states(lab)
        self.before_stats = lab.apis[self.dag_id].stats()
        for index in range(self.count):
            try:
                value = lab.cluster.api(
                    "GET", f"{self.ti_path()}/state-store/{JobRecordStore.key}", params={"map_index": index}
                )
                self.records[index] = f"a record: {value}"
            except ApiError as error:
                gone = error.status_code == 404 and "Task state store key" in error.body
                self.records[index] = NO_RECORD if gone else f"HTTP {error.status_code}: {error.body[:200]}"
        rendered = lab.cluster.api("GET", self.ti_path(TEMPLATE_CASE)).get("rendered_fields") or {}
        self.rendered_template = rendered.get("multi_prompt")
        # The wrong key's task wrote a pending record before sending and deleted it on the 401.
        index = next(i for i, case in enumerate(MISTAKES) if case.message == "refused the API key")
        command = [
            str(Path(sys.executable).with_name("happyhorse-jobs")),
            *("show", "--dag-id", self.dag_id, "--run-id", self.run_id, "--task-id", self.task_id),
            *("--map-index", str(index), "--api-url", f"http://127.0.0.1:{lab.cluster.port}"),
        ]
        # AIRFLOW_API_URL keeps the CLI from reading an Airflow configuration of its own for its help text.
        env = {**os.environ, "AIRFLOW_API_URL": f"http://127.0.0.1:{lab.cluster.port}"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
        self.cli = {"map_index": index, "exit": done.returncode, "output": (done.stdout + done.stderr).strip()}

    def fix(self, lab: Lab) -> None:
        for case in MISTAKES:
            if case.connection is not None:
                body = self.connection_body(lab, case, case.connection.fix)
                lab.cluster.api(
                    "PATCH",
                    f"/connections/{body['connection_id']}",
                    params={"update_mask": list(case.connection.fix)},
                    json=body,
                )
        cases = json.dumps(self.all_kwargs(lab, fixed=True))
        lab.cluster.api("PATCH", f"/variables/{VARIABLE_KEY}", json={"key": VARIABLE_KEY, "value": cases})
        lab.cluster.api(
            "POST",
            f"/dags/{self.dag_id}/clearTaskInstances",
            json={
                "dag_run_id": self.run_id,
                "task_ids": [UPSTREAM_TASK],
                "include_downstream": True,
                "only_failed": False,
                "dry_run": False,
            },
        )
        self.fixed_at = time.monotonic()

    # -- verdict ----------------------------------------------------------------------------------------

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(2 * self.count)
        views = self.tasks(lab)
        stats = lab.apis[self.dag_id].stats()
        messages: dict[str, str] = {}
        for view, case in zip(views, MISTAKES, strict=True):
            index = view.key.map_index
            where = f"case {index} ({case.label})"
            first = view.attempt(1)
            problems, named = refusal_problems(
                case, self.before.get(index), first.exception_texts(), first.has(SUBMITTED), self.records.get(index)
            )
            if named is not None:
                messages[case.label] = named
            row.count_task(problems, expect_success=False, where=f"{where}, before the fix")
            if self.phase == "fixed":
                row.count_task(self.fixed_problems(lab, view, case), expect_success=True, where=f"{where}, fixed")
        refusals = Counter("401" for case in MISTAKES if case.message == "refused the API key")
        if self.before_stats:
            row.problems.extend(api_problems(self.before_stats, stats, self.count, refusals))
        row.submissions, row.jobs = int(stats["submissions"]["total"]), int(stats["jobs"]["total"])
        row.duplicates = int(stats["duplicate_submissions"])
        row.check_api_counts(stats)
        row.check(self.phase == "fixed", "the mistakes were never fixed: the first run did not end in time")
        row.check(
            self.cli.get("exit") == 0 and CLI_SAYS in str(self.cli.get("output")),
            f"happyhorse-jobs show did not say {CLI_SAYS!r}: {self.cli}",
        )
        paid_before = int(self.before_stats["submissions"]["accepted"]) if self.before_stats else None
        refused_before = int(self.before_stats["submissions"]["refused"]) if self.before_stats else None
        paid_after = int(stats["submissions"]["accepted"]) - (paid_before or 0)
        row.facts["cases"] = f"{self.count} ({sum(c.connection is not None for c in MISTAKES)} fixed in a connection)"
        row.facts["messages matched"] = f"{len(messages)}/{self.count}"
        row.facts["paid submissions before / after the fix"] = f"{paid_before} / {paid_after}"
        row.facts["refused by the API before the fix"] = f"{refused_before} (401, the wrong key)"
        row.facts["state store records left"] = sum(record != NO_RECORD for record in self.records.values())
        template = MISTAKES[TEMPLATE_CASE].wrong["multi_prompt"]
        rendered = isinstance(self.rendered_template, str) and self.rendered_template != template
        row.check(
            rendered or not self.before_stats,
            f"the multi_prompt template was not rendered to a string: {self.rendered_template!r}",
        )
        row.facts["multi_prompt template rendered to"] = type(self.rendered_template).__name__ if rendered else "-"
        row.facts["refused in / fixed run"] = (
            f"{self.refused_seconds:.0f} s / {(self.ended or time.monotonic()) - self.fixed_at:.0f} s"
            if self.fixed_at
            else f"{self.refused_seconds:.0f} s / -"
        )
        row.details.update(
            messages=messages,
            records=self.records,
            cli=self.cli,
            rendered_multi_prompt=self.rendered_template,
            before_stats=self.before_stats.get("submissions"),
            refusal_seconds={
                MISTAKES[index].label: ti.duration for index, ti in self.before.items() if ti.duration is not None
            },
        )
        return row

    def fixed_problems(self, lab: Lab, view: TaskView, case: Mistake) -> list[str]:
        # A worker ran each try once, and resumed the fixed one to store its clip.
        problems = expect_state(view, "success", try_number=2, starts=3 if case.stores_clip else 2)
        submitted = len(view.attempt(2).find(SUBMITTED))
        if submitted != 1:
            problems.append(f"the fixed try logged {submitted} submissions")
        if case.stores_clip:
            problems += self.clip_problems(lab, view)
        return problems

    def clip_problems(self, lab: Lab, view: TaskView) -> list[str]:
        final = self.clips(lab) / f"case-{view.key.map_index}.mp4"
        result = lab.xcom(view.key, "return_value")
        if not isinstance(result, dict):
            return [f"no result in XCom: {result!r}"]
        if result.get("stored_path") != f"file://{final}":
            return [f"stored at {result.get('stored_path')}, expected file://{final}"]
        if not final.exists():
            return ["no clip at the fixed output_path"]
        data = final.read_bytes()
        if len(data) != result.get("stored_size") or hashlib.sha256(data).hexdigest() != result.get("stored_sha256"):
            return ["the stored clip does not match the size and SHA-256 the task reported"]
        return []
