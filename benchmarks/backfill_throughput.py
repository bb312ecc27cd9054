"""Backfill throughput: N mapped videos end to end on real Airflow, with the service's concurrency cap and rate limit.

Issue 8, item 3. One emulator process with a per-key concurrency cap (``--max-concurrent``, default 8: later jobs
queue at the service) and a per-key rate limit (``--rate-limit`` requests/s over both endpoints, burst
``--rate-limit-burst``; over it the emulator answers 429 with ``Retry-After``). One Airflow cluster (scheduler
with the LocalExecutor, triggerer, dag-processor, REST and execution api-servers on SQLite;
``harness/airflow_cluster.py``) runs one DAG run of ``benchmarks/dags/backfill/bench_backfill.py``:
``GenerateVideoOperator.partial(...).expand_kwargs(...)`` over N videos (std/pro x 5/10 s, all with audio: 42, 60,
63 and 90 s renders at real speed), no retries, no clip stored.

Time is compressed by ``--speed`` (default 0.1: renders of 4-9 s instead of 42-90 s, so 500 videos through 8
render slots take minutes, not an hour) and the operator's poll schedule is its default scaled by the same
factor (first poll at the expected render time, floor 10 s, cap 120 s). Airflow's own per-task costs (a worker
start, scheduling) are not compressed, so at this speed they weigh ten times more against render time than they
would in production. ``max_active_tis_per_dag`` (``--max-active``, default 16 = twice the cap; deferred tasks count)
bounds how many jobs are in flight at the service.

Figures: wall time (the run's creation to its end), videos per minute, failed task instances (target 0), duplicate
submissions (the emulator's count of accepted submissions repeating a request body; target 0), 429s answered,
status requests per video, peak concurrent renders, worker starts and worker-slot seconds per video, the render
capacity bound (sum of render seconds / cap: no client can finish sooner) and how close the run came to it,
CPU seconds of each Airflow component (psutil, whole process trees) per video, and the machine load.

    .venv/bin/python benchmarks/backfill_throughput.py [--videos 500] [--speed 0.1] [--max-active 16]
        [--distributed]

With ``--distributed`` the cluster is the distributed one (``harness/distributed.py``: PostgreSQL, Redis,
CeleryExecutor with two workers of ``parallelism / 2`` slots each, two triggerers; run it with
``.venv-distributed``'s python), and the table adds how the triggers spread over the two triggerers (from the
trigger log files, each named after the triggerer job that wrote it).

Prints a markdown table and writes ``benchmarks/results/backfill_throughput.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
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
    machine,
    markdown_table,
    wait_for_worker_runs,
    worker_starts_for,
    write_json,
    xcom_values,
)

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from harness import ALL_COMPONENTS, AirflowCluster, DistributedCluster
from harness.observers import TASK_LOG_NAME

DAGS_FOLDER = DAGS / "backfill"
DAG_ID = "bench_backfill"
OUTPUT = RESULTS / "backfill_throughput.json"
FINAL_TI_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
PROGRESS_EVERY = 30.0


def trigger_spread(cluster: DistributedCluster) -> dict[str, int]:
    """Triggerer component -> how many of the run's triggers it ran (a trigger moved to another counts twice)."""
    jobs = cluster.triggerer_jobs()
    spread: Counter[str] = Counter()
    for path in cluster.task_log_files(DAG_ID):
        if (match := TASK_LOG_NAME.match(path.name)) and (job := match["triggerer"]):
            spread[jobs.get(int(job), f"job {job}")] += 1
    return dict(sorted(spread.items()))


def wait_for_run(cluster: AirflowCluster, run_id: str, videos: int, timeout: float) -> dict[str, Any]:
    """Poll the metadata DB (read-only) until the run is final, printing progress; fail fast if a component died."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + PROGRESS_EVERY
    began = time.monotonic()
    while True:
        dead = [name for name in cluster.components if not cluster.is_running(name)]
        if dead:
            raise RuntimeError(f"Airflow components exited during the run: {dead} (see their logs)")
        runs = [row for row in cluster.db_rows("dag_run") if row["dag_id"] == DAG_ID and row["run_id"] == run_id]
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        if time.monotonic() > next_report:
            states = Counter(str(row["state"]) for row in cluster.db_rows("task_instance") if row["dag_id"] == DAG_ID)
            done = states.get("success", 0)
            print(f"   {time.monotonic() - began:5.0f} s: {done}/{videos} done, {dict(states)}", flush=True)
            next_report = time.monotonic() + PROGRESS_EVERY
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} not finished after {timeout:.0f}s")
        time.sleep(2.0)


def run(emulator: EmulatorProcess, options: argparse.Namespace, home: Path) -> dict[str, Any]:
    env = {
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": happyhorse_connection(emulator.base_url, emulator.api_key),
        "BENCH_BACKFILL_VIDEOS": str(options.videos),
        "BENCH_BACKFILL_SPEED": repr(options.speed),
        "BENCH_BACKFILL_MAX_ACTIVE": str(options.max_active),
        **heartbeat_env(options.min_heartbeat_interval),
    }
    cluster: AirflowCluster
    if options.distributed:
        cluster = DistributedCluster(home, DAGS_FOLDER, extra_env=env, worker_concurrency=-(-options.parallelism // 2))
        groups = {"workers": cluster.workers, "triggerers": cluster.triggerers}
        singles = ["api-server", "execution-api", "scheduler", "dag-processor"]
        executor = "CeleryExecutor (2 workers), 2 triggerers, PostgreSQL, Redis"
    else:
        cluster = AirflowCluster(home, DAGS_FOLDER, extra_env=env, parallelism=options.parallelism)
        groups, singles = {}, list(ALL_COMPONENTS)
        executor = "LocalExecutor, SQLite"
    print(f"Starting Airflow ({executor}, parallelism {cluster.parallelism}) ...", flush=True)
    with cluster:
        print(f"   cluster healthy in {cluster.startup_seconds:.0f} s", flush=True)
        cpu = {name: ComponentCpu(cluster, name).start() for name in singles}
        cpu.update({name: ComponentCpu(cluster, members).start() for name, members in groups.items()})
        with LoadSampler() as load:
            created = datetime.now(UTC)
            run_id = cluster.trigger(DAG_ID)
            print(f"   run {run_id} created with {options.videos} mapped videos; waiting ...", flush=True)
            dag_run = wait_for_run(cluster, run_id, options.videos, options.timeout)
            ended = db_time(dag_run.get("end_date")) or datetime.now(UTC)
            worker_runs = wait_for_worker_runs(cluster, {DAG_ID})
        cpu_seconds = {name: sampler.stop() for name, sampler in cpu.items()}
        starts = worker_starts_for(cluster, {DAG_ID})
        tis = [row for row in cluster.db_rows("task_instance") if row["dag_id"] == DAG_ID]
        job_ids = {
            index: str(value) for (_, index), value in xcom_values(cluster, {DAG_ID}, "render", "job_id").items()
        }
        startup_seconds = cluster.startup_seconds
        spread = trigger_spread(cluster) if isinstance(cluster, DistributedCluster) else None
    stats = emulator.stats()
    jobs = emulator.jobs()

    wall = (ended - created).total_seconds()
    renders = [job["finished"] - job["started"] for job in jobs.values()]
    queued = [job["started"] - job["created"] for job in jobs.values()]
    after_render = []
    for ti in tis:
        job = jobs.get(job_ids.get(ti["map_index"], ""))
        end = db_time(ti.get("end_date"))
        if job is not None and end is not None and ti["state"] == "success":
            after_render.append(end.timestamp() - job["finished"])
    capacity_bound = sum(renders) / options.max_concurrent if renders else None
    n = options.videos
    states = Counter(str(ti["state"]) for ti in tis)
    return {
        "videos": n,
        "dag_run_state": dag_run["state"],
        "wall_seconds": round(wall, 1),
        "videos_per_minute": round(n / wall * 60, 2),
        "succeeded": states.get("success", 0),
        "failures": n - states.get("success", 0),
        "task_instance_states": dict(states),
        "retried_task_instances": sum(1 for ti in tis if (ti.get("try_number") or 0) > 1),
        "accepted_submissions": stats["submissions"]["accepted"],
        "duplicate_submissions": stats["duplicate_submissions"],
        "rate_limited_429": stats.get("rate_limited", 0),
        "status_requests": stats["status_calls"]["total"],
        "status_requests_per_video": round(stats["status_calls"]["total"] / n, 2),
        "peak_concurrent_renders": stats["peak_concurrent_renders"],
        "render_seconds_mean": round(statistics.fmean(renders), 2) if renders else None,
        "queued_at_service_seconds_mean": round(statistics.fmean(queued), 2) if queued else None,
        "task_end_after_render_seconds_mean": round(statistics.fmean(after_render), 2) if after_render else None,
        "task_end_after_render_seconds_max": round(max(after_render), 2) if after_render else None,
        "render_capacity_bound_seconds": round(capacity_bound, 1) if capacity_bound else None,
        "share_of_capacity_bound": round(capacity_bound / wall, 3) if capacity_bound else None,
        "worker_starts_per_video": round(starts / n, 3),
        "worker_slot_seconds_per_video": round(sum(run.duration for run in worker_runs) / n, 3),
        "airflow_cpu_seconds": {name: round(seconds, 1) for name, seconds in cpu_seconds.items()},
        "airflow_cpu_seconds_per_video": round(sum(cpu_seconds.values()) / n, 3),
        "cluster_startup_seconds": round(startup_seconds or 0.0, 1),
        "executor": executor,
        "triggers_per_triggerer": spread,
        "load": load.summary(),
    }


def table(result: dict[str, Any]) -> str:
    r = result
    share = r["share_of_capacity_bound"]
    rows = [
        ("videos", r["videos"]),
        ("wall time", f"{r['wall_seconds']:.0f} s ({r['wall_seconds'] / 60:.1f} min)"),
        ("videos per minute", fmt(r["videos_per_minute"], 1)),
        ("failures (target 0)", f"{r['failures']} (task instances retried: {r['retried_task_instances']})"),
        ("duplicate submissions (target 0)", f"{r['duplicate_submissions']} ({r['accepted_submissions']} paid)"),
        ("429s answered by the emulator", r["rate_limited_429"]),
        ("status requests per video", fmt(r["status_requests_per_video"], 2)),
        ("peak concurrent renders", r["peak_concurrent_renders"]),
        (
            "render s / queued at the service s (means)",
            f"{r['render_seconds_mean']} / {r['queued_at_service_seconds_mean']}",
        ),
        (
            "task ends s after its render (mean / max)",
            f"{r['task_end_after_render_seconds_mean']} / {r['task_end_after_render_seconds_max']}",
        ),
        (
            "render capacity bound (sum of renders / cap)",
            f"{fmt(r['render_capacity_bound_seconds'], 0)} s = {fmt(share * 100 if share else None, 0)}% of wall",
        ),
        ("worker starts per video", fmt(r["worker_starts_per_video"], 2)),
        ("worker-slot s per video", fmt(r["worker_slot_seconds_per_video"], 2)),
        ("Airflow CPU s per video (all components)", fmt(r["airflow_cpu_seconds_per_video"], 2)),
        *(
            [("triggers per triggerer", ", ".join(f"{name} {count}" for name, count in spread.items()))]
            if (spread := r["triggers_per_triggerer"])
            else []
        ),
        (
            f"load avg 1 min (mean / max), {r['load']['cpus']} CPUs",
            f"{fmt(r['load']['load_avg_1m_mean'], 1)} / {fmt(r['load']['load_avg_1m_max'], 1)}",
        ),
    ]
    return markdown_table(["figure", "value"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=500, help="mapped videos in the run (default 500)")
    parser.add_argument("--speed", type=float, default=0.1, help="render-time factor; the poll schedule scales too")
    parser.add_argument("--max-concurrent", type=int, default=8, help="emulator renders at once per key")
    parser.add_argument("--rate-limit", type=float, default=20.0, help="emulator requests per second per key")
    parser.add_argument("--rate-limit-burst", type=int, default=10, help="emulator token-bucket burst")
    parser.add_argument("--max-active", type=int, default=16, help="max_active_tis_per_dag (deferred ones count)")
    parser.add_argument("--parallelism", type=int, default=8, help="worker slots (with --distributed: both workers')")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="CeleryExecutor (two workers), two triggerers, PostgreSQL, Redis (run with .venv-distributed's python)",
    )
    parser.add_argument(
        "--min-heartbeat-interval",
        type=int,
        default=None,
        help="[workers] min_heartbeat_interval (default: Airflow's, 5 s)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep-home", action="store_true", help="keep the cluster's AIRFLOW_HOME (logs, DB)")
    options = parser.parse_args()
    exit_on_sigterm()

    started = time.time()
    config = EmulatorConfig(
        speed=options.speed,
        max_concurrent_per_key=options.max_concurrent,
        rate_limit_per_second=options.rate_limit,
        rate_limit_burst=options.rate_limit_burst,
        seed=8,
    )
    with EmulatorProcess(config) as emulator:
        print(
            f"Emulator at {emulator.base_url}: speed {options.speed:g}, {options.max_concurrent} renders at once, "
            f"{options.rate_limit:g} req/s (burst {options.rate_limit_burst})"
        )
        if options.keep_home:
            home = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
            print(f"Airflow home kept at {home}")
            result = run(emulator, options, home / "airflow")
        else:
            with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
                result = run(emulator, options, Path(tmp) / "airflow")
    elapsed = time.time() - started

    print(f"\n```\n{command_line()}\n```\n")
    print(
        f"{options.videos} mapped videos, speed {options.speed:g} (renders {42 * options.speed:.1f}-"
        f"{90 * options.speed:.1f} s), cap {options.max_concurrent} renders, {options.rate_limit:g} req/s, "
        f"max_active_tis_per_dag {options.max_active}, {result['executor']}, parallelism {options.parallelism}, "
        f"min_heartbeat_interval {heartbeat_label(options.min_heartbeat_interval)}\n"
    )
    print(table(result))
    checks = [
        ("zero failures", result["failures"] == 0, result["failures"]),
        ("zero duplicate submissions", result["duplicate_submissions"] == 0, result["duplicate_submissions"]),
        (
            "wall time at least 97% of the cap's bound",
            (result["share_of_capacity_bound"] or 0) >= 0.97,
            result["share_of_capacity_bound"],
        ),
    ]
    for name, met, measured in checks:
        print(f"- {'MET   ' if met else 'MISSED'} {name}: {measured}")
    print(f"\nTotal run time {elapsed / 60:.1f} min (cluster start-up {result['cluster_startup_seconds']:.0f} s)")

    document = {
        "benchmark": "backfill throughput on real Airflow (issue 8, item 3)",
        "command": command_line(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "videos": options.videos,
            "emulator_speed": options.speed,
            "emulator_max_concurrent_per_key": options.max_concurrent,
            "emulator_rate_limit_per_second": options.rate_limit,
            "emulator_rate_limit_burst": options.rate_limit_burst,
            "max_active_tis_per_dag": options.max_active,
            "parallelism": options.parallelism,
            "executor": result["executor"],
            "min_heartbeat_interval": heartbeat_label(options.min_heartbeat_interval),
            "operator_poll": {
                "first_poll_after": "expected render time x speed",
                "poll_interval": 10 * options.speed,
                "max_poll_interval": 120 * options.speed,
            },
            "retries": 0,
        },
        "result": result,
        "targets": [{"target": name, "met": met, "measured": measured} for name, met, measured in checks],
        "total_seconds": round(elapsed, 1),
    }
    write_json(options.output, document)
    print(f"Wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
