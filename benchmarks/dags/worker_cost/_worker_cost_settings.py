"""
Settings shared by the worker-cost DAG files (one file per variant, one DAG per video, so that
``benchmarks/worker_cost.py`` can start the videos a little apart and count each one's worker starts).

Everything comes from environment variables the benchmark gives every Airflow component, so the DAG
files stay cheap to parse and identical in the dag-processor and on the workers. This module imports
nothing but ``os`` at the top: the floor variants (``wc_empty*.py``, ``wc_bare_task.py``) import it too, and
must not pay for importing the provider.
"""

from __future__ import annotations

import os
from typing import Any

# How many videos per variant; the same request shapes, in the same order, for every variant.
VIDEOS = int(os.environ.get("BENCH_WC_VIDEOS", "10"))
# The emulator's render-time factor; every poll setting below is multiplied by it (1.0 = real time).
SPEED = float(os.environ.get("BENCH_WC_SPEED", "1.0"))
# The HTTP provider's sensor and the blocking task poll every 15 s: the low end of what the service's
# docs suggest (15-60 s).
POLL_SECONDS = float(os.environ.get("BENCH_WC_POLL_SECONDS", "15")) * SPEED
# Where the ``stored`` variant keeps its clips (an absolute folder; the benchmark gives one inside the
# cluster's temporary directory).
CLIPS_DIR = os.environ.get("BENCH_WC_CLIPS_DIR", "/tmp/happyhorse-worker-cost-clips")
# Renders at the emulator's realistic model: 20 s + 3 s per video second, pro x1.5, audio x1.2.
# (std, 5 s) 42 s, (std, 10 s) 60 s, (pro, 5 s) 63 s, (pro, 10 s) 90 s.
SHAPES: tuple[tuple[str, int], ...] = (("std", 5), ("std", 10), ("pro", 5), ("pro", 10))
MODEL = "happyhorse-1.0/video"
SUCCESS_STATUSES = frozenset({"SUCCESS", "COMPLETED"})
FAILED_STATUSES = frozenset({"FAILED", "FAILURE", "CANCELLED"})

DAG_ARGS: dict[str, Any] = {
    "schedule": None,
    "catchup": False,
    "tags": ["benchmark", "worker_cost"],
    "max_active_runs": 1,
}


def dag_id(variant: str, index: int) -> str:
    return f"wc_{variant}_{index:03d}"


def shape(index: int) -> tuple[str, int]:
    return SHAPES[index % len(SHAPES)]


def prompt(variant: str, index: int) -> str:
    return f"Worker-cost benchmark, {variant} video {index}: a horse gallops along a beach at sunset"


def request_body(variant: str, index: int) -> dict[str, Any]:
    """The JSON body the HTTP-provider and blocking variants POST (what our operator sends too)."""
    mode, duration = shape(index)
    return {
        "model": MODEL,
        "prompt": prompt(variant, index),
        "mode": mode,
        "duration": duration,
        "aspect_ratio": "16:9",
        "sound": True,
        "cfg_scale": 0.5,
    }


def operator_kwargs(index: int, variant: str = "deferrable") -> dict[str, Any]:
    """``GenerateVideoOperator`` arguments: the same request, and its default poll schedule scaled by SPEED."""
    from airflow_provider_happyhorse import expected_render_seconds

    mode, duration = shape(index)
    return {
        "prompt": prompt(variant, index),
        "mode": mode,
        "duration": duration,
        "aspect_ratio": "16:9",
        "sound": True,
        # None: the operator's default, the expected render time (right at SPEED 1.0).
        "first_poll_after": None if SPEED == 1.0 else expected_render_seconds(mode, duration, True) * SPEED,
        "poll_interval": 10.0 * SPEED,
        "max_poll_interval": 120.0 * SPEED,
    }


def clip_path(variant: str, index: int) -> str:
    """The ``output_path`` of the ``stored`` variant's clip: a local file the worker writes."""
    return f"file://{CLIPS_DIR}/{dag_id(variant, index)}.mp4"


def job_id_of(response: Any) -> str:
    """``HttpOperator`` response filter: the job id is what goes to XCom."""
    return str(response.json()["data"]["task_id"])


def job_finished(response: Any) -> bool:
    """``HttpSensor`` response check: True once the job succeeded; a failed job fails the sensor."""
    data = response.json()["data"]
    status = str(data.get("status", "")).upper()
    if status in FAILED_STATUSES:
        raise RuntimeError(f"HappyHorse job {data.get('task_id')} ended {status}: {data.get('error_message')}")
    return status in SUCCESS_STATUSES
