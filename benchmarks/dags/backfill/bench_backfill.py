"""
Backfill benchmark: one DAG run maps ``GenerateVideoOperator`` over N videos (``expand_kwargs``).

Set by ``benchmarks/backfill_throughput.py`` through the environment of every Airflow component:
``BENCH_BACKFILL_VIDEOS`` (how many), ``BENCH_BACKFILL_SPEED`` (the emulator's render-time factor; the
operator's poll schedule is its default scaled by the same factor: first poll at the expected render
time, floor 10 s, cap 120 s) and ``BENCH_BACKFILL_MAX_ACTIVE`` (``max_active_tis_per_dag``: deferred
tasks count towards it, so it bounds the jobs in flight at the service). No retries: a failure counts.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_provider_happyhorse import GenerateVideoOperator, expected_render_seconds

VIDEOS = int(os.environ.get("BENCH_BACKFILL_VIDEOS", "500"))
SPEED = float(os.environ.get("BENCH_BACKFILL_SPEED", "0.1"))
MAX_ACTIVE = int(os.environ.get("BENCH_BACKFILL_MAX_ACTIVE", "16"))
# The worker-cost mix: 42 s, 60 s, 63 s and 90 s renders at real speed (all with audio).
SHAPES: tuple[tuple[str, int], ...] = (("std", 5), ("std", 10), ("pro", 5), ("pro", 10))


def video(index: int) -> dict[str, object]:
    mode, duration = SHAPES[index % len(SHAPES)]
    return {
        "prompt": f"Backfill benchmark video {index}: a horse gallops along a beach at sunset",
        "mode": mode,
        "duration": duration,
        "first_poll_after": expected_render_seconds(mode, duration, True) * SPEED,
    }


with DAG(
    dag_id="bench_backfill",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=MAX_ACTIVE,
    tags=["benchmark", "backfill"],
    default_args={"retries": 0},
):
    GenerateVideoOperator.partial(
        task_id="render",
        sound=True,
        poll_interval=10.0 * SPEED,
        max_poll_interval=120.0 * SPEED,
        max_active_tis_per_dag=MAX_ACTIVE,
    ).expand_kwargs([video(index) for index in range(VIDEOS)])
