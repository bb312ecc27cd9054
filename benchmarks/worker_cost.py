"""Worker cost per video on real Airflow: our deferrable operator next to what users build from the HTTP provider.

Issue 8, item 1. One emulator process (real-time renders, ``speed`` 1.0: 42-90 s) and real Airflow 3 components
(scheduler with the LocalExecutor, triggerer, dag-processor, REST and execution api-servers;
``harness/airflow_cluster.py``). Four variants render the same N requests, all at the same time in the same
cluster:

- ``deferrable``: ``GenerateVideoOperator`` as shipped (deferrable, default poll schedule, no clip stored);
- ``poke``: ``HttpOperator`` POSTs ``/api/generate``, then ``HttpSensor`` (``mode="poke"``, every 15 s) polls
  ``/api/status`` with a ``response_check`` (with one it cannot defer);
- ``reschedule``: the same with ``mode="reschedule"``;
- ``blocking``: a ``@task`` that submits with httpx and polls every 15 s.

Each video is a DAG of its own (``benchmarks/dags/worker_cost/``). After one trivial warm-up task (a fresh
api-server takes seconds to serve its first execution-API call), every DAG run is created at once through the REST
API, each due (``run_after``) ``--stagger`` seconds after the previous one, variants interleaved, so every variant
sees the same machine load and no REST call competes with the tasks' execution-API calls. Each variant uses its
own API key, so the emulator counts its submissions and status calls apart.

Figures, per variant and per video: worker-slot seconds (the sum of the supervisors' own "Workload finished"
durations: from taking a LocalExecutor slot to giving it back, start-up and any linger included), worker task
starts (the execution API's audit rows: every start, and every resume after a deferral or reschedule), render
seconds (the emulator's job created -> finished), slot time as a share of render time, paid submissions, status
requests, the time from the render's end to the task's end, and wall time. Also the triggerer's CPU seconds
(psutil, its whole process tree) net of its idle rate, and the machine load.

The run is repeated on a second cluster with ``[workers] min_heartbeat_interval = 1``: in Airflow 3.3.2 a task
supervisor lingers up to that interval (default 5 s) after its task runner exits, and the linger is slot time.
The default is what users get.

With ``--distributed`` each cluster is a distributed one instead (``harness/distributed.py``: PostgreSQL, Redis,
CeleryExecutor with two workers of ``parallelism / 2`` slots each, two triggerers): a slot is a Celery worker's
pool process, whose supervisor logs the same "Workload finished" line. Run it with ``.venv-distributed``'s python.

    .venv/bin/python benchmarks/worker_cost.py [--videos 10] [--speed 1.0] [--stagger 1.5] [--heartbeats default 1]
        [--variants deferrable poke reschedule blocking] [--distributed]

Prints one markdown table per heartbeat setting and writes ``benchmarks/results/worker_cost.json``.
Targets for ``GenerateVideoOperator``: worker-slot time at most 2% of render time; one worker start per video.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _airflow import (
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

from airflow_provider_happyhorse.emulator import EmulatorConfig, EmulatorProcess, key_id
from harness import AirflowCluster, DistributedCluster, WorkerRun

DAGS_FOLDER = DAGS / "worker_cost"
OUTPUT = RESULTS / "worker_cost.json"
VARIANTS = ("deferrable", "poke", "reschedule", "blocking")
LABELS = {
    "deferrable": "GenerateVideoOperator (deferrable)",
    "poke": "HttpOperator + HttpSensor, poke",
    "reschedule": "HttpOperator + HttpSensor, reschedule",
    "blocking": "@task polling with httpx",
}
API_KEYS = {variant: f"bench-{variant}-key" for variant in VARIANTS}
# The task whose XCom holds the emulator's job id, and the XCom key.
JOB_ID_XCOM = {
    "deferrable": ("render", "job_id"),
    "poke": ("submit", "return_value"),
    "reschedule": ("submit", "return_value"),
    "blocking": ("render", "return_value"),
}
# Targets (issue 8, item 1) for GenerateVideoOperator.
TARGET_SLOT_SHARE = 0.02
TARGET_STARTS_PER_VIDEO = 1.0
IDLE_BASELINE_SECONDS = 10.0
WARMUP_DAG = "wc_warmup"


def dag_id(variant: str, index: int) -> str:
    return f"wc_{variant}_{index:03d}"  # as benchmarks/dags/worker_cost/_worker_cost_settings.py names them


def cluster_env(emulator: EmulatorProcess, options: argparse.Namespace, heartbeat: int | None) -> dict[str, str]:
    env = {
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": happyhorse_connection(emulator.base_url, API_KEYS["deferrable"]),
        "BENCH_WC_VIDEOS": str(options.videos),
        "BENCH_WC_SPEED": repr(options.speed),
        "BENCH_WC_POLL_SECONDS": repr(options.poll_seconds),
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


def _task_log_events(cluster: AirflowCluster, dag: str) -> list[dict[str, Any]]:
    events = []
    for path in cluster.task_log_files(dag):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "timestamp" in event:
                    events.append(event)
    return sorted(events, key=lambda event: str(event["timestamp"]))


# Task-log lines that split a deferring run of GenerateVideoOperator into phases (see deferrable_breakdown).
_MARKS = (
    ("task_runner_start_and_dag_parse", "Worker startup parse complete"),
    ("pre_execute", "Validated request"),
    ("operator_execute", "Deferring on job"),
)


def deferrable_breakdown(cluster: AirflowCluster, runs: list[WorkerRun]) -> dict[str, float | None]:
    """Where our operator's slot time goes: mean seconds per phase of its (single) worker run.

    From the supervisor's own duration and the task log's timestamps: ``to_first_log_line`` (the slot is taken,
    the task runner is forked and logs "Pre Execute"); ``task_runner_start_and_dag_parse`` (the execution API's
    start call, the bundle, the DAG file parse); ``pre_execute`` (templates, rendered fields, validation);
    ``operator_execute`` (task state store, the paid POST, XCom, up to "Deferring on job");
    ``defer_and_exit`` (the deferral call, the runner's exit, and the supervisor's linger until it frees the slot).
    """
    phases: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.key is None or run.finished_at is None:
            continue
        events = _task_log_events(cluster, run.key.dag_id)
        if not events:
            continue
        stamps: dict[str, float] = {}
        for event in events:
            text = str(event.get("event", ""))
            for phase, mark in _MARKS:
                if text.startswith(mark) and phase not in stamps:
                    stamps[phase] = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
        if len(stamps) != len(_MARKS):
            continue
        slot_start = run.finished_at.timestamp() - run.duration
        previous = datetime.fromisoformat(str(events[0]["timestamp"]).replace("Z", "+00:00")).timestamp()
        phases["to_first_log_line"].append(previous - slot_start)
        for phase, _ in _MARKS:
            phases[phase].append(stamps[phase] - previous)
            previous = stamps[phase]
        phases["defer_and_exit"].append(run.finished_at.timestamp() - previous)
    return {name: round(statistics.fmean(values), 3) if values else None for name, values in phases.items()}


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
    key = key_id(API_KEYS[variant])  # the stats document names keys by their id only
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
        "submissions_per_video": stats["submissions"]["by_key"].get(key, {}).get("accepted", 0) / n,
        "duplicate_submissions": sum(
            entry["count"] - 1 for entry in stats.get("duplicated_fingerprints", []) if entry["key_id"] == key
        ),
        "status_requests_per_video": stats["status_calls"]["by_key"].get(key, 0) / n,
        "seconds_from_render_end_to_task_end": round(statistics.fmean(after_render), 2) if after_render else None,
        "seconds_due_to_task_end_per_video": round(statistics.fmean(latencies), 2) if latencies else None,
        "wall_seconds": round(max(task_end.values()) - min(due[dag] for dag in dags), 1) if task_end else None,
    }


def run_once(
    emulator: EmulatorProcess, options: argparse.Namespace, heartbeat: int | None, home: Path
) -> dict[str, Any]:
    emulator.reset()
    parallelism = options.parallelism or 2 * options.videos + 8
    env = cluster_env(emulator, options, heartbeat)
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
            task_id, key = JOB_ID_XCOM[variant]
            dags = {dag_id(variant, index) for index in range(options.videos)}
            for (dag, _), value in xcom_values(cluster, dags, task_id, key).items():
                job_ids[dag] = str(value)
        ours = [run for run in worker_runs if run.key is not None and run.key.dag_id.startswith("wc_deferrable_")]
        breakdown = deferrable_breakdown(cluster, ours)
        startup_seconds = cluster.startup_seconds
    stats = emulator.stats()
    jobs = emulator.jobs()

    variants = {
        variant: variant_figures(
            variant, options, dag_runs, task_rows, worker_runs, starts[variant], due, job_ids, jobs, stats
        )
        for variant in options.variants
    }
    if "deferrable" in variants:
        net_triggerer = cpu["triggerer"] - idle_rate * window
        variants["deferrable"]["triggerer_cpu_seconds_per_video"] = round(net_triggerer / options.videos, 4)
        variants["deferrable"]["slot_breakdown_seconds_per_run"] = breakdown
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


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    ours = result["variants"].get("deferrable")
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
    checks.append(
        {
            "target": "no failed runs and one paid submission per video, in every variant",
            "measured": {v: (f["failed_runs"], f["submissions_per_video"]) for v, f in result["variants"].items()},
            "met": all(f["failed_runs"] == 0 and f["submissions_per_video"] == 1 for f in result["variants"].values()),
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

    print(f"\n```\n{command_line()}\n```")
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
        ours = result["variants"].get("deferrable")
        if ours is not None:
            phases = ", ".join(f"{name} {seconds}" for name, seconds in ours["slot_breakdown_seconds_per_run"].items())
            print(
                f"\nGenerateVideoOperator's worker run, mean seconds per phase: {phases}. "
                f"Triggerer CPU: {ours['triggerer_cpu_seconds_per_video']:.3f} s per video (net of its idle rate)."
            )
        for check in targets(result):
            print(f"- {'MET   ' if check['met'] else 'MISSED'} {check['target']}: {check['measured']}")
    print(f"\nTotal run time {elapsed / 60:.1f} min")

    document = {
        "benchmark": "worker cost per video on real Airflow (issue 8, item 1)",
        "command": command_line(),
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
        },
        "runs": [{**result, "targets": targets(result)} for result in results],
        "total_seconds": round(elapsed, 1),
    }
    write_json(options.output, document)
    print(f"Wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
