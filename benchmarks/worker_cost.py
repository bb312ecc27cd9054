"""Worker cost per video on real Airflow: our operator, Airflow's own floor, and the HTTP provider's patterns.

Issue 8, item 1, and issue 25, item 1 (the floor in the same run). One emulator process (real-time renders,
``speed`` 1.0: 42-90 s) and real Airflow 3 components (scheduler with the LocalExecutor, triggerer, dag-processor,
REST and execution api-servers; ``harness/airflow_cluster.py``). The variants run the same N "videos", all at the
same time in the same cluster:

- ``deferrable``: ``GenerateVideoOperator`` as shipped (deferrable, default poll schedule, no clip stored);
- ``stored``: the same with ``output_path`` (the clip is stored on a worker: a second worker start per video);
- ``empty``: Airflow's floor, ``EmptyOperator`` as users write it, rendering nothing (the scheduler marks it
  successful itself, so it never takes a worker slot);
- ``empty_worker``: the same ``EmptyOperator`` with a no-op ``on_execute_callback``, which sends it to a worker:
  the cheapest worker run of a classic operator;
- ``bare_task``: a bare ``@task`` that returns at once, rendering nothing;
- ``poke``: ``HttpOperator`` POSTs ``/api/generate``, then ``HttpSensor`` (``mode="poke"``, every 15 s) polls
  ``/api/status`` with a ``response_check`` (with one it cannot defer);
- ``reschedule``: the same with ``mode="reschedule"``;
- ``blocking``: a ``@task`` that submits with httpx and polls every 15 s.

Each video is a DAG of its own, one DAG file per variant with one DAG per video (``benchmarks/dags/worker_cost/``),
so every variant's task runner parses a file of the same number of DAGs. After one trivial warm-up task (a fresh
api-server takes seconds to serve its first execution-API call), every DAG run is created at once through the REST
API, each due (``run_after``) ``--stagger`` seconds after the previous one, variants interleaved, so every variant
sees the same machine load and no REST call competes with the tasks' execution-API calls. Each paying variant uses
its own API key, so the emulator counts its submissions and status calls apart.

Figures, per variant and per video: worker-slot seconds (the sum of the supervisors' own "Workload finished"
durations: from taking a LocalExecutor slot to giving it back, start-up and any linger included), worker task
starts (the execution API's audit rows: every start, and every resume after a deferral or reschedule), render
seconds (the emulator's job created -> finished), slot time as a share of render time, paid submissions, status
requests, the time from the render's end to the task's end, and wall time. Also the triggerer's CPU seconds
(psutil, its whole process tree) net of its idle rate, and the machine load.

Against the floor: our variants' slot time per video as a multiple of ``empty_worker``'s and ``bare_task``'s
(targets: at most 1.3x without ``output_path``, 2.3x with it), and worker starts per video against theirs. Every
worker run is split into phases from Airflow's own task-log lines, the same for every variant (slot taken -> the
runner's first log line; task-runner start-up and DAG-file parse; Airflow's pre-execute; ``execute``; Airflow's
finish calls; the runner's exit and the supervisor's release of the slot), and our operator's ``execute`` further
by its own log lines: what is ours and what is Airflow's.

The run is repeated on a second cluster with ``[workers] min_heartbeat_interval = 1``: in Airflow 3.3.2 a task
supervisor lingers up to that interval (default 5 s) after its task runner exits, and the linger is slot time.
The default is what users get.

With ``--distributed`` each cluster is a distributed one instead (``harness/distributed.py``: PostgreSQL, Redis,
CeleryExecutor with two workers of ``parallelism / 2`` slots each, two triggerers): a slot is a Celery worker's
pool process, whose supervisor logs the same "Workload finished" line. Run it with ``.venv-distributed``'s python.

    .venv/bin/python benchmarks/worker_cost.py [--videos 10] [--speed 1.0] [--stagger 1.5] [--heartbeats default 1]
        [--variants deferrable stored empty empty_worker bare_task poke reschedule blocking] [--distributed]

Prints markdown tables per heartbeat setting (all variants; against the floor; phases) and writes
``benchmarks/results/worker_cost.json``. Targets for ``GenerateVideoOperator``: worker-slot time at most 2% of
render time; one worker start per video; at most 1.3x the floor's slot time (2.3x with ``output_path``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _airflow import (
    AIRFLOW_DEFAULT_MIN_HEARTBEAT_INTERVAL,
    DAGS,
    RESULTS,
    ComponentCpu,
    LoadSampler,
    command_line,
    db_time,
    exit_on_sigterm,
    fmt,
    happyhorse_connection,
    heartbeat_env,
    heartbeat_label,
    http_connection,
    machine,
    markdown_table,
    wait_for_worker_runs,
    worker_starts_for,
    write_json,
    xcom_values,
)

from happyhorse_emulator import EmulatorConfig, EmulatorProcess, key_id
from harness import AirflowCluster, DistributedCluster, WorkerRun
from harness.observers import TASK_LOG_NAME

DAGS_FOLDER = DAGS / "worker_cost"
OUTPUT = RESULTS / "worker_cost.json"
VARIANTS = ("deferrable", "stored", "empty", "empty_worker", "bare_task", "poke", "reschedule", "blocking")
LABELS = {
    "deferrable": "GenerateVideoOperator (deferrable)",
    "stored": "GenerateVideoOperator, output_path (clip stored)",
    "empty": "EmptyOperator (floor; never on a worker)",
    "empty_worker": "EmptyOperator run on a worker (floor)",
    "bare_task": "bare `@task` returning at once (floor)",
    "poke": "HttpOperator + HttpSensor, poke",
    "reschedule": "HttpOperator + HttpSensor, reschedule",
    "blocking": "@task polling with httpx",
}
# The variants that submit a paid render, each with its own key and connection.
PAID = ("deferrable", "stored", "poke", "reschedule", "blocking")
OURS = ("deferrable", "stored")
# Airflow's floor: the slot time of a task that does nothing (``empty`` never takes a slot at all).
FLOORS = ("empty_worker", "bare_task")
API_KEYS = {variant: f"bench-{variant}-key" for variant in PAID}
# The task whose XCom holds the emulator's job id, and the XCom key.
JOB_ID_XCOM = {
    "deferrable": ("render", "job_id"),
    "stored": ("render", "job_id"),
    "poke": ("submit", "return_value"),
    "reschedule": ("submit", "return_value"),
    "blocking": ("render", "return_value"),
}
# Targets (issue 8, item 1) for GenerateVideoOperator.
TARGET_SLOT_SHARE = 0.02
TARGET_STARTS_PER_VIDEO = 1.0
# Targets (issue 25, item 1): our slot time per video as a multiple of the floor's.
TARGET_FLOOR_RATIO = {"deferrable": 1.3, "stored": 2.3}
IDLE_BASELINE_SECONDS = 10.0
# A run whose slot is still held this share of min_heartbeat_interval after the task runner's last log line hit
# the supervisor's exit linger (Airflow 3.3.2: it sleeps the interval when the runner is not yet reapable).
LINGER_SHARE = 0.9
WARMUP_DAG = "wc_warmup"


def dag_id(variant: str, index: int) -> str:
    return f"wc_{variant}_{index:03d}"  # as benchmarks/dags/worker_cost/_worker_cost_settings.py names them


def dags_of(variant: str, options: argparse.Namespace) -> set[str]:
    return {dag_id(variant, index) for index in range(options.videos)}


def cluster_env(
    emulator: EmulatorProcess, options: argparse.Namespace, heartbeat: int | None, clips_dir: Path
) -> dict[str, str]:
    env = {
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": happyhorse_connection(emulator.base_url, API_KEYS["deferrable"]),
        "AIRFLOW_CONN_HAPPYHORSE_STORED": happyhorse_connection(emulator.base_url, API_KEYS["stored"]),
        "BENCH_WC_VIDEOS": str(options.videos),
        "BENCH_WC_SPEED": repr(options.speed),
        "BENCH_WC_POLL_SECONDS": repr(options.poll_seconds),
        "BENCH_WC_CLIPS_DIR": str(clips_dir),
    }
    for variant in ("poke", "reschedule", "blocking"):
        env[f"AIRFLOW_CONN_HAPPYHORSE_HTTP_{variant.upper()}"] = http_connection(emulator.base_url, API_KEYS[variant])
    env.update(heartbeat_env(heartbeat))
    return env


def create_runs(cluster: AirflowCluster, dag_ids: list[str], stagger: float) -> tuple[dict[str, str], dict[str, float]]:
    """Create every DAG run now, each due ``stagger`` s after the previous one (``run_after``).

    All REST calls happen before the first run is due: the scheduler leaves a queued run alone until its
    ``run_after``, so the calls do not compete with the tasks while the benchmark measures.
    """
    lead = 5.0 + 0.25 * len(dag_ids)  # time to make the calls on a loaded two-core machine
    first_due = datetime.now(UTC).timestamp() + lead
    run_ids, due = {}, {}
    for position, dag in enumerate(dag_ids):
        due[dag] = first_due + position * stagger
        body = {"logical_date": None, "run_after": datetime.fromtimestamp(due[dag], UTC).isoformat()}
        run_ids[dag] = str(cluster.api("POST", f"/dags/{dag}/dagRuns", json=body)["dag_run_id"])
    late = datetime.now(UTC).timestamp() - first_due
    if late > 0:
        print(f"   warning: the runs were created {late:.1f} s after the first was due", flush=True)
    return run_ids, due


def wait_for_runs(cluster: AirflowCluster, run_ids: dict[str, str], timeout: float) -> dict[str, dict[str, Any]]:
    """Poll the metadata DB (read-only) until every run is final; fail fast if a component died."""
    deadline = time.monotonic() + timeout
    while True:
        dead = [name for name in cluster.components if not cluster.is_running(name)]
        if dead:
            raise RuntimeError(f"Airflow components exited during the run: {dead} (see their logs)")
        rows = {row["dag_id"]: row for row in cluster.db_rows("dag_run") if row["run_id"] == run_ids.get(row["dag_id"])}
        pending = [dag for dag in run_ids if rows.get(dag, {}).get("state") not in ("success", "failed")]
        if not pending:
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} runs still going after {timeout:.0f}s: {pending[:5]}")
        time.sleep(2.0)


def _timestamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _worker_log_events(cluster: AirflowCluster, dag: str) -> list[tuple[float, str, dict[str, Any]]]:
    """(time, message, event) of every line the task runners of ``dag`` logged (not its triggers' logs), in order."""
    events = []
    for path in cluster.task_log_files(dag):
        match = TASK_LOG_NAME.match(path.name)
        if match is None or match.group("trigger"):
            continue
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "timestamp" in event:
                    events.append((_timestamp(event), str(event.get("event", "")), event))
    return sorted(events, key=lambda item: item[0])


Mark = tuple[str, Callable[[str], object]]


def _starts_with(*prefixes: str) -> Callable[[str], bool]:
    return lambda text: text.startswith(prefixes)


# Airflow's own task-log lines, the same in every variant's worker run (Airflow 3.3.2's task runner).
_PARSED: Mark = ("startup_and_parse", _starts_with("Worker startup parse complete"))
_PRE_EXECUTED: Mark = ("pre_execute", _starts_with("::endgroup::"))
_EXECUTED: Mark = ("execute", _starts_with("::group::Post Execute", "Pausing task as DEFERRED"))
# GenerateVideoOperator's own lines within ``execute``: its first run (validate, submit, defer) and, with
# ``output_path``, the run that resumes after the trigger (store the clip).
_OURS_FIRST_RUN: tuple[Mark, ...] = (
    ("execute.validate", _starts_with("Validated request")),
    ("execute.connection_and_output_check", _starts_with("Connection ")),
    ("execute.state_store_and_paid_post", _starts_with("Submitted job")),
    ("execute.xcom_and_poll_schedule", _starts_with("Deferring on job")),
)
_OURS_RESUMED_RUN: tuple[Mark, ...] = (
    ("execute.read_state_and_result", re.compile(r"Job \S+ is \S+, seen").match),
    ("execute.download_probe_poster_store", _starts_with("Stored clip")),
)
PHASES = ("to_first_log_line", "startup_and_parse", "pre_execute", "execute", "finish", "exit_and_release")
PHASE_NOTES = {
    "to_first_log_line": "slot taken -> the task runner is forked and logs its first line",
    "startup_and_parse": "the execution API's start call, the bundle, the DAG file's parse",
    "pre_execute": "templates, rendered fields, pre_execute, on_execute_callback",
    "execute": "the operator's execute (or execute_complete) up to Airflow's post-execute or deferral line",
    "finish": "XCom of the return value, the success or deferral message, listeners, the runner's last line",
    "exit_and_release": "the runner's exit, the supervisor's final state call and linger, the slot given back",
}


def _run_phases(
    events: list[tuple[float, str, dict[str, Any]]], slot_start: float, slot_end: float, ours: tuple[Mark, ...]
) -> dict[str, float] | None:
    """Seconds per phase of one worker run, or None when one of its marks is missing from the task log."""
    inside = [item for item in events if slot_start - 0.2 <= item[0] <= slot_end + 0.2]
    if not inside:
        return None
    marks = [_PARSED, _PRE_EXECUTED, *ours, (_EXECUTED[0] if not ours else "execute.rest", _EXECUTED[1])]
    phases = {"to_first_log_line": inside[0][0] - slot_start}
    previous, position = inside[0][0], 0
    for name, matches in marks:
        found = next((i for i in range(position, len(inside)) if matches(inside[i][1])), None)
        if found is None:
            return None
        phases[name] = inside[found][0] - previous
        previous, position = inside[found][0], found + 1
        if name == "startup_and_parse":
            parse_ms = inside[found][2].get("dag_file_parse_ms")
            if isinstance(parse_ms, int | float):
                phases["dag_file_parse"] = parse_ms / 1000
    if ours:
        phases["execute"] = sum(seconds for name, seconds in phases.items() if name.startswith("execute."))
    phases["finish"] = inside[-1][0] - previous
    phases["exit_and_release"] = slot_end - inside[-1][0]
    phases["slot"] = slot_end - slot_start
    return phases


def worker_run_phases(
    cluster: AirflowCluster, variant: str, runs: list[WorkerRun], linger_threshold: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """Where a variant's slot time goes: mean seconds per phase, per task and per run (first, resumed).

    From the supervisor's own duration (when the slot was taken and given back) and the timestamps of Airflow's
    own task-log lines (``PHASES``, the same for every variant); our operator's ``execute`` is split further by
    its own lines (``execute.*``). Also the variant's totals: slot seconds, seconds from the runner's last line
    to the slot's release (``exit_and_release``; 0 for a run whose marks are missing), and how many runs held
    the slot ``linger_threshold`` s or more after that line (the supervisor's exit linger).
    """
    totals = {"runs": 0.0, "slot_seconds": 0.0, "exit_and_release_seconds": 0.0, "runs_with_exit_linger": 0.0}
    by_group: dict[str, list[dict[str, float]]] = defaultdict(list)
    counted: dict[str, int] = defaultdict(int)
    by_ti: dict[tuple[str, str], list[WorkerRun]] = defaultdict(list)
    for run in runs:
        if run.key is not None and run.finished_at is not None:
            by_ti[(run.key.dag_id, run.key.task_id)].append(run)
    for (dag, task_id), ti_runs in by_ti.items():
        events = _worker_log_events(cluster, dag)
        for ordinal, run in enumerate(sorted(ti_runs, key=lambda r: r.finished_at or datetime.min.replace(tzinfo=UTC))):
            assert run.finished_at is not None
            group = f"{task_id}, {'first run' if ordinal == 0 else 'resumed run'}"
            counted[group] += 1
            ours: tuple[Mark, ...] = ()
            if variant in OURS:
                ours = _OURS_FIRST_RUN if ordinal == 0 else _OURS_RESUMED_RUN
            end = run.finished_at.timestamp()
            phases = _run_phases(events, end - run.duration, end, ours)
            totals["runs"] += 1
            totals["slot_seconds"] += run.duration
            if phases is not None:
                by_group[group].append(phases)
                totals["exit_and_release_seconds"] += phases["exit_and_release"]
                totals["runs_with_exit_linger"] += phases["exit_and_release"] >= linger_threshold
    summary: dict[str, Any] = {}
    for group, count in counted.items():
        found = by_group.get(group, [])
        names = list(dict.fromkeys(name for phases in found for name in phases))
        summary[group] = {
            "runs": count,
            "runs_with_every_mark": len(found),
            "mean_seconds": {name: round(statistics.fmean(p[name] for p in found if name in p), 3) for name in names},
        }
    return summary, totals


def warm_up(cluster: AirflowCluster) -> None:
    """Run the trivial ``wc_warmup`` DAG once, so no measured run pays the fresh cluster's first-use costs."""
    run_id = cluster.trigger(WARMUP_DAG)
    wait_for_runs(cluster, {WARMUP_DAG: run_id}, timeout=300)


def variant_figures(
    variant: str,
    options: argparse.Namespace,
    dag_runs: dict[str, dict[str, Any]],
    task_rows: list[dict[str, Any]],
    worker_runs: list[WorkerRun],
    starts: int,
    due: dict[str, float],
    job_ids: dict[str, str],
    jobs: dict[str, dict[str, Any]],
    stats: dict[str, Any],
) -> dict[str, Any]:
    n = options.videos
    dags = [dag_id(variant, index) for index in range(n)]
    runs = [run for run in worker_runs if run.key is not None and run.key.dag_id in dags]
    slot_by_task: dict[str, float] = defaultdict(float)
    slot_by_dag: dict[str, float] = dict.fromkeys(dags, 0.0)
    for run in runs:
        assert run.key is not None
        slot_by_task[run.key.task_id] += run.duration
        slot_by_dag[run.key.dag_id] += run.duration
    task_end: dict[str, float] = {}
    for row in task_rows:
        end = db_time(row.get("end_date"))
        if row["dag_id"] in slot_by_dag and end is not None:
            task_end[row["dag_id"]] = max(task_end.get(row["dag_id"], 0.0), end.timestamp())
    renders, shares, after_render, latencies = [], [], [], []
    for dag in dags:
        job = jobs.get(job_ids.get(dag, ""))
        if job is not None:
            render = job["finished"] - job["created"]
            renders.append(render)
            shares.append(slot_by_dag[dag] / render)
            if dag in task_end:
                after_render.append(task_end[dag] - job["finished"])
        if dag in task_end:
            latencies.append(task_end[dag] - due[dag])
    slot_per_video = sum(slot_by_dag.values()) / n
    render_per_video = statistics.fmean(renders) if renders else None
    # The stats document names keys by their id only; the floor variants have none (they send nothing).
    key = key_id(API_KEYS[variant]) if variant in API_KEYS else None
    return {
        "label": LABELS[variant],
        "videos": n,
        "failed_runs": sum(1 for dag in dags if dag_runs[dag]["state"] != "success"),
        "failed_tasks": sum(1 for row in task_rows if row["dag_id"] in slot_by_dag and row["state"] != "success"),
        "worker_starts_per_video": starts / n,
        "worker_runs_logged": len(runs),
        "worker_slot_seconds_per_video": round(slot_per_video, 3),
        "worker_slot_seconds_median_video": round(statistics.median(slot_by_dag.values()), 3),
        "worker_slot_seconds_per_video_by_task": {task: round(total / n, 3) for task, total in slot_by_task.items()},
        "worker_slot_seconds_by_video": [round(slot_by_dag[dag], 3) for dag in dags],
        "worker_slot_seconds_max_run": round(max((run.duration for run in runs), default=0.0), 3),
        "render_seconds_per_video": round(render_per_video, 3) if render_per_video else None,
        "slot_share_of_render": round(slot_per_video / render_per_video, 5) if render_per_video else None,
        "slot_share_of_render_by_video": [round(share, 4) for share in shares],
        "submissions_per_video": stats["submissions"]["by_key"].get(key, {}).get("accepted", 0) / n if key else 0.0,
        "duplicate_submissions": sum(
            entry["count"] - 1 for entry in stats.get("duplicated_fingerprints", []) if key and entry["key_id"] == key
        ),
        "status_requests_per_video": stats["status_calls"]["by_key"].get(key, 0) / n if key else 0.0,
        "seconds_from_render_end_to_task_end": round(statistics.fmean(after_render), 2) if after_render else None,
        "seconds_due_to_task_end_per_video": round(statistics.fmean(latencies), 2) if latencies else None,
        "wall_seconds": round(max(task_end.values()) - min(due[dag] for dag in dags), 1) if task_end else None,
    }


def run_once(
    emulator: EmulatorProcess, options: argparse.Namespace, heartbeat: int | None, home: Path
) -> dict[str, Any]:
    emulator.reset()
    parallelism = options.parallelism or 2 * options.videos + 8
    env = cluster_env(emulator, options, heartbeat, home.parent / "clips")
    label = heartbeat_label(heartbeat)
    print(f"\n== min_heartbeat_interval {label}: starting Airflow (parallelism {parallelism}) ...", flush=True)
    cluster: AirflowCluster
    if options.distributed:
        cluster = DistributedCluster(home, DAGS_FOLDER, extra_env=env, worker_concurrency=-(-parallelism // 2))
        triggerers = list(cluster.triggerers)
    else:
        cluster = AirflowCluster(home, DAGS_FOLDER, extra_env=env, parallelism=parallelism)
        triggerers = ["triggerer"]
    with cluster:
        print(f"   cluster healthy in {cluster.startup_seconds:.0f} s; warm-up run, idle baseline ...", flush=True)
        warm_up(cluster)
        idle = ComponentCpu(cluster, triggerers).start()
        time.sleep(IDLE_BASELINE_SECONDS)
        idle_rate = idle.stop() / IDLE_BASELINE_SECONDS

        triggerer = ComponentCpu(cluster, triggerers).start()
        scheduler = ComponentCpu(cluster, "scheduler").start()
        execution_api = ComponentCpu(cluster, "execution-api").start()
        began = time.time()
        with LoadSampler() as load:
            order = [dag_id(variant, index) for index in range(options.videos) for variant in options.variants]
            run_ids, due = create_runs(cluster, order, options.stagger)
            print(f"   {len(run_ids)} runs created, due one every {options.stagger:g} s; waiting ...", flush=True)
            dag_runs = wait_for_runs(cluster, run_ids, timeout=options.timeout)
            window = time.time() - began
            worker_runs = wait_for_worker_runs(cluster, set(run_ids))
        cpu = {"triggerer": triggerer.stop(), "scheduler": scheduler.stop(), "execution-api": execution_api.stop()}
        starts = {
            variant: worker_starts_for(cluster, {dag_id(variant, index) for index in range(options.videos)})
            for variant in options.variants
        }
        task_rows = [row for row in cluster.db_rows("task_instance") if row["dag_id"] in run_ids]
        job_ids = {}
        for variant in options.variants:
            if variant not in JOB_ID_XCOM:
                continue  # a floor variant: no job
            task_id, key = JOB_ID_XCOM[variant]
            dags = {dag_id(variant, index) for index in range(options.videos)}
            for (dag, _), value in xcom_values(cluster, dags, task_id, key).items():
                job_ids[dag] = str(value)
        interval = AIRFLOW_DEFAULT_MIN_HEARTBEAT_INTERVAL if heartbeat is None else heartbeat
        phases = {
            variant: worker_run_phases(
                cluster,
                variant,
                [run for run in worker_runs if run.key is not None and run.key.dag_id in dags_of(variant, options)],
                LINGER_SHARE * interval,
            )
            for variant in options.variants
        }
        startup_seconds = cluster.startup_seconds
    stats = emulator.stats()
    jobs = emulator.jobs()

    variants = {
        variant: variant_figures(
            variant, options, dag_runs, task_rows, worker_runs, starts[variant], due, job_ids, jobs, stats
        )
        for variant in options.variants
    }
    for variant, figures in variants.items():
        summary, totals = phases[variant]
        figures["phases"] = summary
        n = options.videos
        figures["exit_and_release_seconds_per_video"] = round(totals["exit_and_release_seconds"] / n, 3)
        figures["slot_seconds_before_runner_exit_per_video"] = round(
            (totals["slot_seconds"] - totals["exit_and_release_seconds"]) / n, 3
        )
        figures["runs_with_exit_linger"] = f"{totals['runs_with_exit_linger']:.0f}/{totals['runs']:.0f}"
    deferring = [variant for variant in OURS if variant in variants]
    if deferring:
        # Only our variants defer, so the triggerer's net CPU is theirs, shared over their videos.
        net_triggerer = cpu["triggerer"] - idle_rate * window
        for variant in deferring:
            variants[variant]["triggerer_cpu_seconds_per_video"] = round(
                net_triggerer / (options.videos * len(deferring)), 4
            )
    against_floor(variants)
    return {
        "min_heartbeat_interval": heartbeat,
        "min_heartbeat_interval_label": label,
        "parallelism": parallelism,
        "cluster_startup_seconds": round(startup_seconds or 0.0, 1),
        "window_seconds": round(window, 1),
        "cpu_seconds": {name: round(seconds, 1) for name, seconds in cpu.items()},
        "triggerer_idle_cpu_per_second": round(idle_rate, 4),
        "load": load.summary(),
        "emulator": {
            "accepted_submissions": stats["submissions"]["accepted"],
            "duplicate_submissions": stats["duplicate_submissions"],
            "status_calls": stats["status_calls"]["total"],
            "rate_limited": stats.get("rate_limited"),
            "peak_concurrent_renders": stats["peak_concurrent_renders"],
        },
        "variants": variants,
    }


def against_floor(variants: dict[str, dict[str, Any]]) -> None:
    """Add, to every variant that takes a worker slot, its slot time and worker starts against each floor's."""
    for variant, figures in variants.items():
        if variant == "empty":
            continue
        comparisons = {}
        for floor in FLOORS:
            if floor == variant or floor not in variants:
                continue
            base = variants[floor]
            floor_mean, floor_median = base["worker_slot_seconds_per_video"], base["worker_slot_seconds_median_video"]
            comparison: dict[str, Any] = {
                "floor_slot_seconds_per_video": floor_mean,
                "floor_worker_starts_per_video": base["worker_starts_per_video"],
                "slot_ratio": round(figures["worker_slot_seconds_per_video"] / floor_mean, 3) if floor_mean else None,
                "slot_ratio_of_medians": round(figures["worker_slot_seconds_median_video"] / floor_median, 3)
                if floor_median
                else None,
                "extra_slot_seconds_per_video": round(figures["worker_slot_seconds_per_video"] - floor_mean, 3),
                "slot_ratio_before_runner_exit": round(
                    figures["slot_seconds_before_runner_exit_per_video"]
                    / base["slot_seconds_before_runner_exit_per_video"],
                    3,
                )
                if base["slot_seconds_before_runner_exit_per_video"]
                else None,
            }
            limit = TARGET_FLOOR_RATIO.get(variant)
            if limit is not None and floor_mean:
                comparison["target_ratio"] = limit
                comparison["target_slot_seconds_per_video"] = round(limit * floor_mean, 3)
                comparison["over_target_seconds_per_video"] = round(
                    figures["worker_slot_seconds_per_video"] - limit * floor_mean, 3
                )
            comparisons[floor] = comparison
        figures["against_floor"] = comparisons


def table(result: dict[str, Any]) -> str:
    figures_by_variant = result["variants"]
    ours = figures_by_variant.get("deferrable", {}).get("worker_slot_seconds_per_video")
    rows = []
    for figures in figures_by_variant.values():
        share = figures["slot_share_of_render"]
        rows.append(
            [
                figures["label"],
                fmt(figures["worker_slot_seconds_per_video"], 2),
                fmt(figures["worker_slot_seconds_median_video"], 2),
                f"{figures['worker_slot_seconds_per_video'] / ours:.1f}x" if ours else "-",
                fmt(figures["worker_starts_per_video"], 1),
                fmt(figures["render_seconds_per_video"], 1),
                f"{share * 100:.1f}%" if share is not None else "-",
                fmt(figures["submissions_per_video"], 2),
                fmt(figures["status_requests_per_video"], 1),
                fmt(figures["seconds_from_render_end_to_task_end"], 1),
                fmt(figures["wall_seconds"], 0),
                f"{figures['failed_runs']}/{figures['videos']}",
            ]
        )
    headers = [
        "variant",
        "worker-slot s / video (mean)",
        "(median)",
        "vs ours",
        "worker starts / video",
        "render s / video",
        "slot % of render",
        "submissions / video",
        "status requests / video",
        "task ends s after render",
        "wall s",
        "failed runs",
    ]
    return markdown_table(headers, rows)


def _ratio_cell(figures: dict[str, Any], floor: str) -> str:
    comparison = figures.get("against_floor", {}).get(floor)
    if comparison is None or comparison["slot_ratio"] is None:
        return "-"
    before_exit = comparison["slot_ratio_before_runner_exit"]
    return f"{comparison['slot_ratio']:.2f}x ({fmt(before_exit, 2)}x)"


def floor_table(result: dict[str, Any]) -> str:
    """Our variants and Airflow's floor: slot time and worker starts per video, and the ratios to the floor."""
    variants = result["variants"]
    rows = []
    for variant in (*OURS, "empty", *FLOORS):
        figures = variants.get(variant)
        if figures is None:
            continue
        limit = TARGET_FLOOR_RATIO.get(variant)
        rows.append(
            [
                figures["label"],
                fmt(figures["worker_slot_seconds_per_video"], 2),
                fmt(figures["worker_slot_seconds_median_video"], 2),
                fmt(figures["slot_seconds_before_runner_exit_per_video"], 2),
                fmt(figures["exit_and_release_seconds_per_video"], 2),
                figures["runs_with_exit_linger"],
                fmt(figures["worker_starts_per_video"], 1),
                *(_ratio_cell(figures, floor) for floor in FLOORS),
                f"<= {limit:g}x" if limit is not None else "-",
            ]
        )
    headers = [
        "variant",
        "worker-slot s / video (mean)",
        "(median)",
        "up to the runner's last line",
        "after it (exit, release)",
        "runs held >= 0.9 x interval after it",
        "worker starts / video",
        "x EmptyOperator on a worker: slot (up to last line)",
        "x bare @task: slot (up to last line)",
        "target (slot)",
    ]
    return markdown_table(headers, rows)


def phase_table(result: dict[str, Any]) -> str:
    """Mean seconds per phase of one worker run, for our variants and the floor."""
    rows = []
    for variant in (*OURS, *FLOORS):
        for group, summary in result["variants"].get(variant, {}).get("phases", {}).items():
            means = summary["mean_seconds"]
            rows.append(
                [
                    f"{LABELS[variant]}: {group}",
                    f"{summary['runs_with_every_mark']}/{summary['runs']}",
                    *(fmt(means.get(phase), 2) for phase in PHASES),
                    fmt(means.get("dag_file_parse"), 2),
                    fmt(means.get("slot"), 2),
                ]
            )
    headers = ["worker run", "runs read", *PHASES, "of which DAG-file parse", "slot"]
    return markdown_table(headers, rows)


def our_execute_phases(result: dict[str, Any]) -> list[str]:
    """Our operator's ``execute`` split by its own log lines, one sentence per run kind."""
    lines = []
    for variant in OURS:
        for group, summary in result["variants"].get(variant, {}).get("phases", {}).items():
            parts = {name: seconds for name, seconds in summary["mean_seconds"].items() if name.startswith("execute.")}
            if parts:
                text = ", ".join(f"{name.removeprefix('execute.')} {seconds:.3f}" for name, seconds in parts.items())
                lines.append(f"{LABELS[variant]}, {group}: execute = {text} (mean s)")
    return lines


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    variants = result["variants"]
    ours = variants.get("deferrable")
    if ours is not None:
        share = ours["slot_share_of_render"]
        checks += [
            {
                "target": "GenerateVideoOperator worker-slot time <= 2% of render time",
                "measured": f"{share * 100:.2f}%" if share is not None else None,
                "met": share is not None and share <= TARGET_SLOT_SHARE,
                "ratio_to_target": round(share / TARGET_SLOT_SHARE, 2) if share is not None else None,
            },
            {
                "target": "GenerateVideoOperator one worker start per video (no clip stored)",
                "measured": ours["worker_starts_per_video"],
                "met": ours["worker_starts_per_video"] == TARGET_STARTS_PER_VIDEO,
            },
        ]
    for variant in OURS:
        figures = variants.get(variant)
        if figures is None:
            continue
        for floor, comparison in figures.get("against_floor", {}).items():
            if "target_ratio" not in comparison:
                continue
            checks.append(
                {
                    "target": f"{LABELS[variant]} worker-slot time <= {comparison['target_ratio']:g}x "
                    f"{LABELS[floor]}'s",
                    "measured": f"{comparison['slot_ratio']:.2f}x ({figures['worker_slot_seconds_per_video']:.2f} s "
                    f"against {comparison['floor_slot_seconds_per_video']:.2f} s; "
                    f"{comparison['over_target_seconds_per_video']:+.2f} s per video against the target's "
                    f"{comparison['target_slot_seconds_per_video']:.2f} s)",
                    "met": comparison["slot_ratio"] <= comparison["target_ratio"],
                }
            )
            checks.append(
                {
                    "target": f"{LABELS[variant]} worker starts per video against {LABELS[floor]}'s",
                    "measured": f"{figures['worker_starts_per_video']:g} against "
                    f"{comparison['floor_worker_starts_per_video']:g}",
                    "met": figures["worker_starts_per_video"]
                    == comparison["floor_worker_starts_per_video"] * (2 if variant == "stored" else 1),
                }
            )
    paid = {v: f for v, f in variants.items() if v in PAID}
    floors = {v: f for v, f in variants.items() if v not in PAID}
    checks.append(
        {
            "target": "no failed runs, one paid submission per video in every paying variant, none in the floor's",
            "measured": {v: (f["failed_runs"], f["submissions_per_video"]) for v, f in variants.items()},
            "met": all(f["failed_runs"] == 0 and f["submissions_per_video"] == 1 for f in paid.values())
            and all(f["failed_runs"] == 0 and f["submissions_per_video"] == 0 for f in floors.values()),
        }
    )
    return checks


def parse_heartbeat(value: str) -> int | None:
    return None if value == "default" else int(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10, help="videos per variant (default 10)")
    parser.add_argument("--speed", type=float, default=1.0, help="emulator render-time factor; polls scale too")
    parser.add_argument("--poll-seconds", type=float, default=15.0, help="HttpSensor / blocking poll interval")
    parser.add_argument("--stagger", type=float, default=1.5, help="seconds between two DAG-run triggers")
    parser.add_argument(
        "--heartbeats",
        nargs="+",
        type=parse_heartbeat,
        default=[None, 1],
        metavar="SECONDS|default",
        help="[workers] min_heartbeat_interval per cluster (default: Airflow's default, then 1)",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="which variants to run (default all)"
    )
    parser.add_argument("--parallelism", type=int, default=0, help="LocalExecutor slots (default 2 x videos + 8)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the runs of one cluster")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep-home", action="store_true", help="keep each cluster's AIRFLOW_HOME (logs, DB)")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="CeleryExecutor (two workers), two triggerers, PostgreSQL, Redis (run with .venv-distributed's python)",
    )
    options = parser.parse_args()
    exit_on_sigterm()

    started = time.time()
    results = []
    config = EmulatorConfig(
        api_keys=tuple(API_KEYS.values()), speed=options.speed, max_concurrent_per_key=options.videos, seed=8
    )
    with EmulatorProcess(config) as emulator:
        print(f"Emulator at {emulator.base_url} (speed {options.speed:g}, {options.videos} renders at once per key)")
        for heartbeat in options.heartbeats:
            if options.keep_home:
                home = Path(tempfile.mkdtemp(prefix="bench-worker-cost-"))
                print(f"Airflow home kept at {home}")
                results.append(run_once(emulator, options, heartbeat, home / "airflow"))
                continue
            with tempfile.TemporaryDirectory(prefix="bench-worker-cost-") as tmp:
                results.append(run_once(emulator, options, heartbeat, Path(tmp) / "airflow"))
    elapsed = time.time() - started

    command = command_line()
    if options.distributed:
        command = command.replace(".venv/bin/python", ".venv-distributed/bin/python", 1)
    print(f"\n```\n{command}\n```")
    for result in results:
        load = result["load"]
        print(
            f"\n**[workers] min_heartbeat_interval = {result['min_heartbeat_interval_label']}** -- "
            f"{options.videos} videos per variant, variants interleaved, parallelism {result['parallelism']}"
            f"{' (CeleryExecutor, 2 workers)' if options.distributed else ''}, "
            f"load avg {fmt(load['load_avg_1m_mean'], 1)} (max {fmt(load['load_avg_1m_max'], 1)}) on "
            f"{load['cpus']} CPUs\n"
        )
        print(table(result))
        if any(variant in result["variants"] for variant in FLOORS):
            print("\nAgainst Airflow's floor (same run):\n")
            print(floor_table(result))
        print("\nMean seconds per phase of one worker run (Airflow's own task-log lines):\n")
        print(phase_table(result))
        for line in our_execute_phases(result):
            print(f"\n{line}")
        for variant in OURS:
            figures = result["variants"].get(variant)
            if figures is not None and "triggerer_cpu_seconds_per_video" in figures:
                print(
                    f"\n{figures['label']}: triggerer CPU {figures['triggerer_cpu_seconds_per_video']:.3f} s per video "
                    "(net of its idle rate, shared over our deferring variants)"
                )
        print()
        for check in targets(result):
            print(f"- {'MET   ' if check['met'] else 'MISSED'} {check['target']}: {check['measured']}")
    print(f"\nTotal run time {elapsed / 60:.1f} min")

    document = {
        "benchmark": "worker cost per video on real Airflow, with Airflow's floor (issue 8, item 1; issue 25, item 1)",
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "executor": "CeleryExecutor, 2 workers, 2 triggerers, PostgreSQL"
            if options.distributed
            else "LocalExecutor, SQLite",
            "videos_per_variant": options.videos,
            "emulator_speed": options.speed,
            "render_model": "20 s + 3 s per video second, pro x1.5, audio x1.2, +/-10%; shapes std/pro x 5/10 s",
            "http_poll_seconds": options.poll_seconds * options.speed,
            "stagger_seconds": options.stagger,
            "emulator_max_concurrent_per_key": options.videos,
            "variants": options.variants,
            "warm_up": f"one trivial task ({WARMUP_DAG}) before the measured runs",
            "phases": PHASE_NOTES,
            "floor_ratio_targets": TARGET_FLOOR_RATIO,
        },
        "runs": [{**result, "targets": targets(result)} for result in results],
        "total_seconds": round(elapsed, 1),
    }
    write_json(options.output, document)
    print(f"Wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
