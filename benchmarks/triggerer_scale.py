"""Triggerer scale: N concurrent renders polled by ``HappyHorseJobTrigger`` in one event loop, next to the HTTP
provider's async polling pattern, against the emulator in another process. Prints a markdown table and writes
``benchmarks/results/triggerer_scale.json``.

    .venv/bin/python benchmarks/triggerer_scale.py [--jobs 100 1000 5000] [--speed 0.5] [--quick]
        [--clients happyhorse http_provider] [--freeze on off] [--unscaled-slack]
        [--dialect dashscope [--query-limit 20] [--client-limit QPS]]

How it works (issue 8, item 2):

- The emulator runs as its own process (``EmulatorProcess``) with no concurrency cap and the realistic render
  model (20 s + 3 s per video second, pro x1.5, audio x1.2, +/-10%), every render time multiplied by ``--speed``
  (default 0.5: twice as fast as real time; ``--quick``: 0.1). Every poll parameter that is a time is multiplied
  by the same factor, so both clients follow the schedule production would, only faster: our trigger's first
  poll at ``first_poll_for(expected_render_seconds(...)) * speed``, its floor and cap 2 s and 120 s times
  ``speed``, and the schedule's own times, its slack (``PollSchedule.slack``, 2 s: each later wait is
  ``slack + 10%`` of the time since submission) and its tick (1 s), times ``speed`` too; the HTTP provider's
  pattern polls every ``10 s * speed``. The trigger takes no slack or tick argument, so the benchmark runs a
  subclass (``_trigger_class``) whose ``plan()`` scales the two in the real trigger's ``PollSchedule``; at
  ``--speed 1`` it is the production schedule unchanged. Until 2026-12-06 the slack was left at 2 scaled
  seconds, 2/speed real ones: at speed 0.5 every wait after the first poll was 2 s too long in real time
  (``4 s + 10%``), and about one job in eight found by a later poll missed the target (issue 25, item 3;
  ``--unscaled-slack`` reproduces that). Detection delays are divided by ``speed`` to real time before they
  are checked against "2 s plus 10% of the render time". What is not scaled makes a faster run look worse,
  never better: requests per second are 1/speed times production's (more CPU contention, more polls due in
  one loop iteration), and fixed latencies (a poll's round trip, the loop's lateness) grow by 1/speed when
  converted back to real time.
- For each N and each client a fresh child process is measured, so its CPU, RSS and sockets are its own. It imports
  Airflow and warms up (one status call for an unknown job, outside the window), then waits. The parent re-seeds
  the emulator, submits the N jobs with plain httpx (the same mix of modes, durations and sound for both clients,
  longest render first) and hands the list to the child, which runs them all in one asyncio event loop. Triggers
  are created as ``TriggerRunner.create_triggers`` does (yield, yield, build one, start it as its own task):
  ``happyhorse``: one ``HappyHorseJobTrigger`` per job, consumed as ``TriggerRunner.run_trigger`` does
  (``async for event in trigger.run()``), connection from ``AIRFLOW_CONN_HAPPYHORSE_DEFAULT``;
  ``http_provider``: one ``HttpAsyncHook`` per job polling ``GET /api/status`` every ``10 s * speed`` from its
  start, a new ``aiohttp.ClientSession`` per request as the HTTP provider's triggers do, the response checked in
  Python, connection from ``AIRFLOW_CONN_HAPPYHORSE_HTTP`` (type http, the bearer header in its extra).
- Figures, all over the window from the first trigger's creation to the last event:
  CPU per video: the child's ``time.process_time()`` (all threads, user + system) over the window / N;
  status requests per video: the delta of ``status_calls.total`` in ``GET /_emulator/stats`` / N;
  peak RSS: the child's ``ru_maxrss`` (the whole process, Airflow's imports included; RSS when ready is in the
  JSON); peak sockets: the child's TCP sockets (psutil ``net_connections``, sampled by the parent every 0.25 s);
  longest stall: the longest stretch the loop ran callbacks without looking at its sockets and timers, timed by
  the loop's selector (``--heartbeat`` adds the classic 10 ms heartbeat coroutine as a cross-check; it is not
  on by default because each of its wake-ups costs as much CPU as a status poll on this machine); garbage
  collector pauses are timed apart (``gc.callbacks``) since they are a large part of the stalls;
  detection delay: the time the event reached the consumer minus the job's finish time from
  ``GET /_emulator/jobs``, over the job's render time (finish - start) when checked against the target.
  For ``happyhorse`` the subclass's hook also records when each status poll is sent (the hook's
  ``_await_query_token`` seam: the poll is sent when it returns), so each delay splits into the schedule's part (the
  finding poll sent minus the finish) and the answer's (the event minus that poll's sending); the JSON keeps
  both per job (``detection_jobs``) with the allowance and the poll times, and a second table splits them by
  the poll that found the job and lists the worst missed jobs' poll times (``detection_misses_first``).
- ``--dialect dashscope`` (issue 23, item 5): the emulator speaks Model Studio's API and enforces the account's
  query limit (``--query-limit``, default 20 task queries per second, real seconds, not scaled by ``--speed``:
  429 ``Throttling.RateQuota`` beyond); the jobs are the same draws as text-to-video tasks (pro as 1080P, std as
  720P, every clip with sound, as the emulator renders them), each trigger's record carrying its request as the
  operator writes it (so the wait knows the expected render time: the poll order under the limit and the
  progress lines); the connection says ``"dialect": "dashscope"`` and
  so paces its polls at the dialect's 20 a second unless ``--client-limit`` sets its ``max_queries_per_second``
  (0: unpaced). Only ``HappyHorseJobTrigger`` is measured. Each row adds the 429s the emulator answered
  (``throttled_429``) and the detection target's ceiling at that query rate (``detection_possible_share_at_limit``:
  earliest-deadline-first over the run's own finish times and allowances, one query per job, no latency: what a
  client knowing every finish in advance could reach).
- ``--freeze on off`` measures ``HappyHorseJobTrigger`` once per setting, in that order (``--freeze on off on
  off`` measures each twice, interleaved), each in a fresh child process given
  ``AIRFLOW__HAPPYHORSE__FREEZE_TRIGGERER_HEAP=True`` or ``False``: whether its first trigger moves the heap to
  the collector's permanent generation (``freeze_heap_once``). The HTTP provider's pattern, which starts no
  HappyHorse trigger and so freezes nothing, is measured once per job count. Without the switch the child
  inherits the environment (the trigger's default is to freeze). Every row records what the child did
  (``gc.get_freeze_count()`` at the window's end) and the machine's load average before it started; with the
  switch the table shows whether the heap was frozen and the longest collector pause.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import functools
import gc
import heapq
import json
import math
import os
import platform
import random
import resource
import select
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from airflow_provider_happyhorse import RenderRecord, expected_render_seconds, first_poll_for
from happyhorse_emulator import EmulatorConfig, EmulatorProcess

RESULTS = Path(__file__).resolve().parent / "results" / "triggerer_scale.json"
REPO = Path(__file__).resolve().parents[1]

CLIENTS = ("happyhorse", "http_provider")
CLIENT_LABELS = {"happyhorse": "HappyHorseJobTrigger", "http_provider": "HttpAsyncHook, session per poll"}
# --freeze: the trigger's [happyhorse] freeze_triggerer_heap, set in the measured process's environment.
FREEZE_ENV = "AIRFLOW__HAPPYHORSE__FREEZE_TRIGGERER_HEAP"
FREEZE_SETTINGS = {"on": "True", "off": "False"}
# Production poll parameters in real seconds (the operator's defaults); the benchmark multiplies them by --speed,
# and the schedule's slack and tick as well (_trigger_class).
REAL_MIN_POLL_INTERVAL = 2.0
REAL_MAX_POLL_INTERVAL = 120.0
# The HTTP provider's pattern polls at a fixed interval, as its sensors do (the contract suggests 15-60 s).
BASELINE_POLL_INTERVAL = 10.0
HAPPYHORSE_CONN_ID = "happyhorse_default"
# --dialect dashscope: the requests Model Studio takes (the emulator renders 1080P as pro, every clip with sound).
DASHSCOPE_CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
DASHSCOPE_RESOLUTIONS = {"std": "720P", "pro": "1080P"}
DEFAULT_QUERY_LIMIT = 20.0  # DashScope's documented task queries per second per account
HTTP_CONN_ID = "happyhorse_http"
FINAL_STATUSES = frozenset({"SUCCESS", "COMPLETED", "FAILED", "FAILURE", "CANCELLED"})
HEARTBEAT_SECONDS = 0.010
STALL_LOGGED_SECONDS = 0.050
SAMPLE_SECONDS = 0.25
SOCKET_SAMPLE_EVERY = 4  # samples: TCP sockets once a second

# Targets (issue 8, item 2).
TARGET_CPU_RATIO = 5.0
TARGET_REQUESTS_PER_VIDEO = 3.0
TARGET_DETECTION_FIXED = 2.0
TARGET_DETECTION_SHARE = 0.10
TARGET_RSS_MB = 300.0
TARGET_STALL_SECONDS = 0.2
TARGET_RSS_STALL_JOBS = 5000


# --------------------------------------------------------------------------------------------------------------
# The job mix


def job_mix(count: int, seed: int = 8, dialect: str = "happyhorse") -> list[dict[str, Any]]:
    """``count`` request bodies, the same for every client: 1/4 pro, 3-15 s clips, 70% with sound (``dashscope``:
    the same draws, pro as 1080P and std as 720P, every clip with sound, as Model Studio renders them).

    Longest expected render first: submitting thousands of jobs takes longer than the shortest render, and this
    order keeps every job's first poll in the future when its trigger starts."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = [
        {
            "model": "happyhorse-1.0/video",
            "prompt": f"triggerer scale clip {index}",
            "mode": rng.choice(("std", "std", "std", "pro")),
            "duration": rng.choice((3, 5, 5, 8, 10, 15)),
            "sound": rng.random() < 0.7,
        }
        for index in range(count)
    ]
    if dialect == "dashscope":
        for body in bodies:
            body["sound"] = True
    bodies.sort(key=lambda body: -expected_render_seconds(body["mode"], body["duration"], body["sound"]))
    return bodies


def _submission(body: dict[str, Any], dialect: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The path, JSON and headers that create the job ``body`` describes, in the dialect."""
    if dialect == "dashscope":
        return (
            DASHSCOPE_CREATE_PATH,
            {
                "model": "happyhorse-1.0-t2v",
                "input": {"prompt": body["prompt"]},
                "parameters": {"resolution": DASHSCOPE_RESOLUTIONS[body["mode"]], "duration": body["duration"]},
            },
            {"X-DashScope-Async": "enable"},
        )
    return "/api/generate", body, {}


def _task_id(answer: dict[str, Any], dialect: str) -> str:
    return str(answer["output"]["task_id"] if dialect == "dashscope" else answer["data"]["task_id"])


async def _submit_all(
    base_url: str, api_key: str, bodies: list[dict[str, Any]], dialect: str = "happyhorse"
) -> list[dict[str, Any]]:
    """Create the jobs (plain httpx, 8 at a time); each keeps its spec and its client-side submission time."""
    jobs: list[dict[str, Any] | None] = [None] * len(bodies)
    queue = list(enumerate(bodies))
    queue.reverse()
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30.0, trust_env=False
    ) as client:

        async def worker() -> None:
            while queue:
                index, body = queue.pop()
                submitted_at = datetime.now(UTC)
                path, payload, headers = _submission(body, dialect)
                response = await client.post(path, json=payload, headers=headers)
                response.raise_for_status()
                jobs[index] = {
                    "job_id": _task_id(response.json(), dialect),
                    "submitted_at": submitted_at.isoformat(),
                    "mode": body["mode"],
                    "duration": body["duration"],
                    "sound": body["sound"],
                }
                if dialect == "dashscope":
                    # The trigger's record carries the request, as GenerateVideoOperator writes it: its wait then
                    # knows the job's expected render time (the poll order under the query limit, the progress
                    # lines).
                    jobs[index]["request"] = {key: body[key] for key in ("prompt", "mode", "duration", "sound")}

        await asyncio.gather(*(worker() for _ in range(8)))
    return [job for job in jobs if job is not None]


# --------------------------------------------------------------------------------------------------------------
# The measured child process


class _TimedSelector(selectors.DefaultSelector):
    """The loop's selector, timing how long the loop runs callbacks between two looks at its sockets and timers.

    Such a busy stretch is an event-loop stall: any timer or socket that became due during it waits for its end.
    This costs two clock reads per loop iteration, where a heartbeat coroutine would add a loop wake-up every
    few milliseconds (about 0.1 ms of CPU each on this machine, as much as a whole status poll)."""

    def __init__(self) -> None:
        super().__init__()
        self.origin = time.perf_counter()
        self.resumed: float | None = None
        self.longest = (0.0, 0.0)  # (seconds, offset from origin)
        self.stalls: list[tuple[float, float]] = []  # (offset, seconds) of stretches over STALL_LOGGED_SECONDS
        self.iterations = 0

    def start(self) -> None:
        self.origin = time.perf_counter()
        self.longest = (0.0, 0.0)
        self.stalls = []
        self.iterations = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.resumed is not None:
            busy = time.perf_counter() - self.resumed
            self.iterations += 1
            if busy > self.longest[0]:
                self.longest = (busy, self.resumed - self.origin)
            if busy > STALL_LOGGED_SECONDS:
                self.stalls.append((round(self.resumed - self.origin, 3), round(busy, 4)))
        ready = super().select(timeout)
        self.resumed = time.perf_counter()
        return ready


async def _heartbeat(stop: asyncio.Event, lateness: list[float]) -> None:
    """The classic stall probe (``--heartbeat``): sleep 10 ms, record how late the loop woke it."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(HEARTBEAT_SECONDS)
        lateness.append(loop.time() - started - HEARTBEAT_SECONDS)


async def _heartbeat_cpu_per_beat(seconds: float) -> float:
    """CPU seconds one heartbeat costs on an idle loop (with ``--heartbeat`` the window's CPU is net of them)."""
    stop = asyncio.Event()
    lateness: list[float] = []
    beat = asyncio.create_task(_heartbeat(stop, lateness))
    await asyncio.sleep(HEARTBEAT_SECONDS * 5)
    cpu, beats = time.process_time(), len(lateness)
    await asyncio.sleep(seconds)
    cpu, beats = time.process_time() - cpu, len(lateness) - beats
    stop.set()
    await beat
    return cpu / max(beats, 1)


def _deadline(job: dict[str, Any], speed: float) -> datetime:
    """Generous and bounded: three expected renders (scaled) plus 30 s after submission."""
    expected = expected_render_seconds(job["mode"], job["duration"], job["sound"]) * speed
    return datetime.fromisoformat(job["submitted_at"]) + timedelta(seconds=3 * expected + 30.0)


@functools.cache
def _trigger_class(scale_schedule: bool) -> type[Any]:
    """``HappyHorseJobTrigger`` with two changes, both through its own seams, that leave its wait as it is:

    ``plan()`` multiplies the schedule's slack and tick (times in seconds that the trigger takes no argument
    for), and the render-time estimate when the record has its request (``--dialect dashscope``), by the run's
    speed, as the benchmark does with every other poll time (a no-op at speed 1; not with ``scale_schedule``
    False, ``--unscaled-slack``); ``_make_hook()`` gives a hook that notes when each status poll is sent: when
    its wait for the query bucket's token ends (at once when the connection is not paced), one more coroutine
    frame per poll."""
    from airflow_provider_happyhorse import HappyHorseHook, HappyHorseJobTrigger

    class ScaledTrigger(HappyHorseJobTrigger):
        def __init__(self, *, speed: float, poll_times: list[float], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.speed = speed
            self.poll_times = poll_times

        def plan(self) -> Any:
            plan = super().plan()
            if not scale_schedule:
                return plan
            schedule = plan.schedule
            scaled = dataclasses.replace(schedule, slack=schedule.slack * self.speed, tick=schedule.tick * self.speed)
            estimate = plan.estimate
            if estimate is not None:
                estimate = dataclasses.replace(estimate, expected_seconds=estimate.expected_seconds * self.speed)
            return dataclasses.replace(plan, schedule=scaled, estimate=estimate)

        def _make_hook(self) -> HappyHorseHook:
            poll_times = self.poll_times

            class NotingHook(HappyHorseHook):
                async def _await_query_token(self, detect_by: datetime | None = None) -> None:
                    # Every status poll waits here for the query bucket (at once when not paced), and is sent
                    # as soon as this returns: that is its time.
                    await super()._await_query_token(detect_by)
                    poll_times.append(time.time())

            return NotingHook(self.happyhorse_conn_id)

    return ScaledTrigger


def _happyhorse(
    job: dict[str, Any], speed: float, events: dict[str, list[Any]], scale_schedule: bool
) -> Coroutine[Any, Any, None]:
    """Build the trigger (as the triggerer inflates it from its kwargs) and return what its task runs."""
    poll_times: list[float] = []
    trigger = _trigger_class(scale_schedule)(
        speed=speed,
        poll_times=poll_times,
        record=RenderRecord.model_validate(
            {
                "job_id": job["job_id"],
                **({"request": job["request"]} if "request" in job else {}),
                "started_at": job["submitted_at"],
                "deadline": _deadline(job, speed).isoformat(),
                "schedule": {
                    "first_poll_after": first_poll_for(
                        expected_render_seconds(job["mode"], job["duration"], job["sound"])
                    )
                    * speed,
                    "min_interval": REAL_MIN_POLL_INTERVAL * speed,
                    "max_interval": REAL_MAX_POLL_INTERVAL * speed,
                },
            }
        ),
        happyhorse_conn_id=HAPPYHORSE_CONN_ID,
    )

    async def run_trigger() -> None:
        try:
            # As TriggerRunner.run_trigger: iterate the trigger's generator and hand its first event on.
            async for event in trigger.run():
                events[job["job_id"]] = [time.time(), event.payload["status"], event.payload.get("polls"), poll_times]
                break
        finally:
            await trigger.cleanup()

    return run_trigger()


def _http_provider(
    job: dict[str, Any], speed: float, events: dict[str, list[Any]], scale_schedule: bool
) -> Coroutine[Any, Any, None]:
    """The HTTP provider's async polling: a fixed interval, a new aiohttp session per request, a check in Python."""
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    hook = HttpAsyncHook(method="GET", http_conn_id=HTTP_CONN_ID)
    deadline = _deadline(job, speed)

    async def poll() -> None:
        polls = 0
        while True:
            polls += 1
            status = None
            try:
                # As HttpTrigger/HttpSensorTrigger: a new aiohttp session for every request.
                async with aiohttp.ClientSession() as session:
                    response = await hook.run(session=session, endpoint="/api/status", data={"task_id": job["job_id"]})
                    body = await response.json()
                status = body["data"]["status"]
            except Exception:  # the sensor pattern keeps poking through errors
                status = None
            if status in FINAL_STATUSES:
                events[job["job_id"]] = [time.time(), "failed" if status != "SUCCESS" else "success", polls]
                return
            if datetime.now(UTC) >= deadline:
                events[job["job_id"]] = [time.time(), "timeout", polls]
                return
            await asyncio.sleep(BASELINE_POLL_INTERVAL * speed)

    return poll()


async def _window(
    client: str,
    jobs: list[dict[str, Any]],
    speed: float,
    selector: _TimedSelector,
    heartbeat: bool,
    scale_schedule: bool = True,
) -> dict[str, Any]:
    stop = asyncio.Event()
    lateness: list[float] = []
    beat = asyncio.create_task(_heartbeat(stop, lateness)) if heartbeat else None
    await asyncio.sleep(0)
    events: dict[str, list[Any]] = {}
    build = _happyhorse if client == "happyhorse" else _http_provider
    guard = max((_deadline(job, speed) - datetime.now(UTC)).total_seconds() for job in jobs) + 30.0
    # Collections of the whole heap (Airflow's imports included) pause the loop too: time them apart.
    gc_pauses: list[tuple[int, float]] = []
    gc_long_pauses: list[tuple[float, int, float]] = []  # (offset, generation, seconds) over STALL_LOGGED_SECONDS
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            gc_started[0] = now
            return
        pause = now - gc_started[0]
        gc_pauses.append((info["generation"], pause))
        if pause > STALL_LOGGED_SECONDS:
            gc_long_pauses.append((round(gc_started[0] - selector.origin, 3), info["generation"], round(pause, 4)))

    gc.callbacks.append(on_gc)
    selector.start()
    cpu_started, wall_started, epoch_started = time.process_time(), time.monotonic(), time.time()
    tasks: list[asyncio.Task[None]] = []
    for job in jobs:
        # As TriggerRunner.create_triggers: yield to the loop before and after inflating each trigger, then
        # start it as a task of its own.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(build(job, speed, events, scale_schedule)))
    done, pending = await asyncio.wait(tasks, timeout=guard)
    cpu_seconds, wall_seconds = time.process_time() - cpu_started, time.monotonic() - wall_started
    longest, stalls, iterations = selector.longest, selector.stalls, selector.iterations
    frozen = gc.get_freeze_count()  # objects in the permanent generation: non-zero if the heap was frozen
    gc.callbacks.remove(on_gc)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    stop.set()
    if beat is not None:
        await beat
    crashed = [repr(task.exception()) for task in done if task.exception() is not None]
    lateness.sort()
    return {
        "cpu_seconds": cpu_seconds,
        "wall_seconds": wall_seconds,
        "window_started_epoch": epoch_started,
        "events": events,
        "unfinished": len(pending),
        "crashed": crashed[:5],
        "crashed_count": len(crashed),
        "loop_iterations": iterations,
        "stall_max_seconds": longest[0],
        "stall_max_at_seconds": longest[1],
        "stalls": stalls,
        "heartbeat_lateness_max_seconds": lateness[-1] if lateness else None,
        "heartbeat_lateness_p99_seconds": lateness[int(0.99 * (len(lateness) - 1))] if lateness else None,
        "heartbeats": len(lateness),
        "gc_collections": dict(Counter(generation for generation, _ in gc_pauses)),
        "gc_longest_pause_seconds": max((pause for _, pause in gc_pauses), default=0.0),
        "gc_total_pause_seconds": sum(pause for _, pause in gc_pauses),
        "gc_long_pauses": gc_long_pauses,
        "gc_frozen_objects": frozen,
    }


async def _warm_up(client: str) -> None:
    """First-use costs (imports, connection lookup, pool and parser set-up) belong to a warm triggerer, not the
    window: one status call for an unknown job, then everything is closed again."""
    if client == "happyhorse":
        from airflow_provider_happyhorse import HappyHorseError, HappyHorseHook

        with contextlib.suppress(HappyHorseError):  # happyhorse: 404; dashscope answers UNKNOWN
            await HappyHorseHook(HAPPYHORSE_CONN_ID).aget_job("warm-up", max_retries=0)
    else:
        import aiohttp
        from airflow.providers.http.hooks.http import HttpAsyncHook

        hook = HttpAsyncHook(method="GET", http_conn_id=HTTP_CONN_ID)
        with contextlib.suppress(Exception):  # 404 for the unknown job is the expected answer
            async with aiohttp.ClientSession() as session:
                await hook.run(session=session, endpoint="/api/status", data={"task_id": "warm-up"})


def child_main(client: str, report_fd: int, heartbeat: bool) -> int:
    """Runs in the measured process: warm up, say READY, read the jobs, run the window, report the result.

    The parent is spoken to through ``report_fd``; stdout and stderr (the triggers' logs) go to a log file."""
    # Airflow and both clients are imported before the window, as in a running triggerer.
    import aiohttp  # noqa: F401
    from airflow.providers.http.hooks.http import HttpAsyncHook  # noqa: F401

    from airflow_provider_happyhorse import HappyHorseJobTrigger  # noqa: F401

    asyncio.run(_warm_up(client))
    heartbeat_cpu = asyncio.run(_heartbeat_cpu_per_beat(2.0)) if heartbeat else 0.0
    rss_ready = psutil.Process().memory_info().rss
    # What one full collection costs before any trigger exists: the floor of every full-collection pause.
    gc.collect()
    gc_started = time.perf_counter()
    gc.collect()
    gc_full_ready = time.perf_counter() - gc_started
    frozen_ready = gc.get_freeze_count()
    report = os.fdopen(report_fd, "w", encoding="utf-8")
    report.write("READY\n")
    report.flush()
    request = json.loads(sys.stdin.readline())
    selector = _TimedSelector()
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        result = runner.run(
            _window(client, request["jobs"], request["speed"], selector, heartbeat, request["scale_schedule"])
        )
    result.update(
        gc_frozen_objects_ready=frozen_ready,
        heartbeat_cpu_per_beat=heartbeat_cpu,
        rss_ready_bytes=rss_ready,
        gc_full_ready_seconds=gc_full_ready,
        rss_end_bytes=psutil.Process().memory_info().rss,
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    report.write("RESULT " + json.dumps(result) + "\n")
    report.close()
    return 0


# --------------------------------------------------------------------------------------------------------------
# The parent: emulator, submissions, sampling, figures


class _Sampler(threading.Thread):
    """Samples the child's RSS and open file descriptors every 0.25 s and its TCP sockets every second.

    ``net_connections`` parses the whole system's socket table (tens of ms with thousands of sockets, on the
    cores the child and the emulator use), hence the slower pace; the descriptor count bounds it in between."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.stopping = threading.Event()
        self.peak_rss = 0
        self.peak_fds = 0
        self.peak_sockets = 0
        self.socket_states: Counter[str] = Counter()
        self.samples = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                self.peak_fds = max(self.peak_fds, self.process.num_fds())
                sockets = self.process.net_connections(kind="tcp") if self.samples % SOCKET_SAMPLE_EVERY == 0 else []
            except psutil.Error:
                return
            if len(sockets) > self.peak_sockets:
                self.peak_sockets = len(sockets)
                self.socket_states = Counter(str(sock.status) for sock in sockets)
            self.samples += 1
            self.stopping.wait(SAMPLE_SECONDS)


def _child_env(emulator: EmulatorProcess, client_limit: float | None = None) -> dict[str, str]:
    """The measured process's environment: its connections; in the DashScope dialect the connection says so, and
    ``client_limit`` is its ``max_queries_per_second`` (None: the dialect's default)."""
    host, port = emulator.base_url.removeprefix("http://").rsplit(":", 1)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    connection: dict[str, Any] = {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
    if emulator.config.dialect == "dashscope":
        connection["extra"] = {"dialect": "dashscope"}
        if client_limit is not None:
            connection["extra"]["max_queries_per_second"] = client_limit
    env["AIRFLOW_CONN_HAPPYHORSE_DEFAULT"] = json.dumps(connection)
    env["AIRFLOW_CONN_HAPPYHORSE_HTTP"] = json.dumps(
        {
            "conn_type": "http",
            "host": host,
            "port": int(port),
            "schema": "http",
            "extra": {"Authorization": f"Bearer {emulator.api_key}"},
        }
    )
    return env


def _read_message(stream: IO[str], prefix: str, timeout: float, process: subprocess.Popen[str]) -> str:
    """The next line from the child's report pipe, which must start with ``prefix``; bounded by ``timeout``."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no {prefix.strip()} from the measured process within {timeout:.0f} s")
    line = stream.readline()
    if not line.startswith(prefix):
        code = process.poll()
        raise RuntimeError(f"the measured process sent {line[:200]!r} instead of {prefix.strip()} (exit code {code})")
    return line[len(prefix) :].strip()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * (len(ordered) - 1) + 0.5))] if ordered else math.nan


def run_one(
    emulator: EmulatorProcess,
    client: str,
    count: int,
    speed: float,
    log_dir: Path,
    *,
    heartbeat: bool,
    freeze: str | None = None,
    scale_schedule: bool = True,
    client_limit: float | None = None,
) -> dict[str, Any]:
    """Measure one client on ``count`` fresh jobs in a fresh child process.

    ``freeze`` (``on``/``off``) sets the trigger's heap freeze in the child's environment; None leaves the
    environment as it is. ``scale_schedule`` False (``--unscaled-slack``) leaves the schedule's slack and tick
    in real seconds."""
    env = _child_env(emulator, client_limit)
    dialect = emulator.config.dialect
    log_path = log_dir / f"{client}-{count}.log"
    if freeze is not None:
        env[FREEZE_ENV] = FREEZE_SETTINGS[freeze]
        repeat = 1
        while (log_path := log_dir / f"{client}-{count}-freeze-{freeze}-{repeat}.log").exists():
            repeat += 1
    load_before = os.getloadavg()
    report_read, report_write = os.pipe()
    with open(log_path, "w", encoding="utf-8") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                *("--child", client, "--report-fd", str(report_write)),
                *(["--heartbeat"] if heartbeat else []),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
            pass_fds=(report_write,),
        )
    os.close(report_write)
    report = os.fdopen(report_read, encoding="utf-8")
    assert child.stdin is not None
    try:
        _read_message(report, "READY", 120, child)
        emulator.reset()  # no jobs, zeroed counters, re-seeded render times: every run sees the same draws
        submit_started = time.monotonic()
        jobs = asyncio.run(_submit_all(emulator.base_url, emulator.api_key, job_mix(count, dialect=dialect), dialect))
        submit_seconds = time.monotonic() - submit_started
        before = emulator.stats()
        status_before, throttled_before = before["status_calls"]["total"], before["rate_limited"]
        sampler = _Sampler(child.pid)
        sampler.start()
        child.stdin.write(json.dumps({"jobs": jobs, "speed": speed, "scale_schedule": scale_schedule}) + "\n")
        child.stdin.flush()
        longest = max(_deadline(job, speed) for job in jobs)
        budget = (longest - datetime.now(UTC)).total_seconds() + 120
        result = json.loads(_read_message(report, "RESULT ", budget, child))
        sampler.stopping.set()
        sampler.join()
        stats = emulator.stats()
        timelines = emulator.jobs()
        child.wait(timeout=30)
    finally:
        report.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    row = _figures(client, count, speed, jobs, result, sampler, stats, status_before, timelines, submit_seconds)
    query_limit = emulator.config.query_limit_per_second if dialect == "dashscope" else None
    paced_at = client_limit if client_limit is not None else DEFAULT_QUERY_LIMIT if query_limit else None
    row.update(
        dialect=dialect,
        emulator_query_limit=query_limit,
        client_query_limit=paced_at,
        throttled_429=stats["rate_limited"] - throttled_before,
        **(_possible_at_limit(row, timelines, query_limit, speed) if query_limit else {}),
    )
    row.update(
        schedule_scaled=scale_schedule,
        freeze_setting=freeze,
        heap_frozen=result["gc_frozen_objects"] > 0,
        gc_frozen_objects=result["gc_frozen_objects"],
        gc_frozen_objects_ready=result["gc_frozen_objects_ready"],
        load_average_before=[round(load, 2) for load in load_before],
        log=str(log_path),
    )
    return row


def _detection_detail(
    job: dict[str, Any],
    event: list[Any],
    timeline: dict[str, Any],
    speed: float,
    delay: float,
    allowed: float,
) -> dict[str, Any]:
    """One job's detection in real seconds: its polls from submission, and its delay split in two.

    ``poll_after_finish``: the finding poll's sending minus the finish, the schedule's part (negative when the
    request left just before the finish and reached the emulator after it); ``answer``: the event's arrival
    at the consumer minus that sending, the round trip and the loop's lateness (fixed latencies, times
    1/speed here). ``finding_wait``: for a job found by a later poll, the wait that ended in the finding poll
    (the previous poll's sending to it), which the schedule means to keep within the allowance."""
    submitted = datetime.fromisoformat(job["submitted_at"]).timestamp()
    sent: list[float] = event[3]

    def real(seconds: float) -> float:
        return round(seconds / speed, 3)

    finding_wait = real(sent[-1] - sent[-2]) if len(sent) > 1 else None
    return {
        "job_id": job["job_id"],
        "found_by": "the first poll" if event[2] == 1 else "a later poll",
        "polls": event[2],
        "mode": job["mode"],
        "duration": job["duration"],
        "sound": job["sound"],
        "started": real(timeline["started"] - submitted),
        "finished": real(timeline["finished"] - submitted),
        "render": real(timeline["finished"] - timeline["started"]),
        "polls_sent": [real(moment - submitted) for moment in sent],
        "event": real(event[0] - submitted),
        "allowance": round(allowed, 3),
        "delay": round(delay, 3),
        "within": delay <= allowed,
        "over_allowance": round(delay / allowed, 3),
        "poll_after_finish": real(sent[-1] - timeline["finished"]),
        "answer": real(event[0] - sent[-1]),
        "finding_wait": finding_wait,
        "finding_wait_over_allowance": None if finding_wait is None else round(finding_wait / allowed, 3),
    }


def _best_possible_within(windows: list[tuple[float, float]], rate: float) -> int:
    """How many jobs at most can each be seen by a query inside its window (finish, finish + allowance) when
    queries go out at most ``rate`` a second: earliest deadline first over ``1 / rate`` slots, a job whose window
    has passed dropped, the service idle until the next finish when nothing is pending. For jobs of one query
    each with release times and deadlines this greedy is optimal, so no client can do better: it is granted
    the finish times in advance, one query per job, and answers that take no time."""
    windows = sorted(windows)
    pending: list[float] = []
    served, index, now = 0, 0, windows[0][0] if windows else 0.0
    while index < len(windows) or pending:
        if not pending and windows[index][0] > now:
            now = windows[index][0]
        while index < len(windows) and windows[index][0] <= now:
            heapq.heappush(pending, windows[index][1])
            index += 1
        while pending and pending[0] < now:
            heapq.heappop(pending)
        if pending:
            heapq.heappop(pending)
            served += 1
            now += 1.0 / rate
    return served


def _possible_at_limit(
    row: dict[str, Any], timelines: dict[str, dict[str, Any]], rate: float, speed: float
) -> dict[str, Any]:
    """The detection target's ceiling under the query limit (``_best_possible_within``), from this run's own
    finish times and allowances (run time: allowances times ``speed``; ``rate`` queries per run second), and
    the busiest second of finishes."""
    detail = row["detection_jobs"]
    if not detail:
        return {}
    windows = [
        (finished, finished + job["allowance"] * speed)
        for job in detail
        for finished in [timelines[job["job_id"]]["finished"]]
    ]
    finishes = sorted(start for start, _ in windows)
    busiest = max(bisect.bisect_left(finishes, at + 1.0) - index for index, at in enumerate(finishes))
    return {
        "detection_possible_share_at_limit": round(_best_possible_within(windows, rate) / len(windows), 4),
        "finishes_in_busiest_second": busiest,
        "status_requests_per_second": round(row["status_requests"] / max(row["window_seconds"], 1e-9), 2),
    }


def _detection_split(detail: list[dict[str, Any]]) -> dict[str, Any]:
    """Per finding poll (first or later): delays, allowances and the two parts of the delay; and the misses,
    told apart by whether the finding poll itself was sent past the allowance (the schedule) or only its
    answer arrived past it (the latencies)."""

    def spread(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(_percentile(values, 0.5), 3),
            "p95": round(_percentile(values, 0.95), 3),
            "max": round(max(values), 3),
        }

    split: dict[str, Any] = {}
    for name in ("the first poll", "a later poll"):
        jobs = [job for job in detail if job["found_by"] == name]
        if not jobs:
            continue
        split[name] = {
            "jobs": len(jobs),
            "within": sum(job["within"] for job in jobs),
            "delay": spread([job["delay"] for job in jobs]),
            "allowance": spread([job["allowance"] for job in jobs]) | {"min": min(job["allowance"] for job in jobs)},
            "over_allowance": spread([job["over_allowance"] for job in jobs]),
            "poll_after_finish": spread([job["poll_after_finish"] for job in jobs]),
            "answer": spread([job["answer"] for job in jobs]),
        }
        waits = [job["finding_wait_over_allowance"] for job in jobs if job["finding_wait_over_allowance"] is not None]
        if waits:
            split[name]["finding_wait_over_allowance"] = spread(waits)
    missed = [job for job in detail if not job["within"]]
    split["missed"] = {
        "jobs": len(missed),
        "poll_sent_past_allowance": sum(job["poll_after_finish"] > job["allowance"] for job in missed),
        "finding_wait_over_allowance": sum((job["finding_wait_over_allowance"] or 0.0) > 1 for job in missed),
        "over_by": spread([job["delay"] - job["allowance"] for job in missed]) if missed else None,
        "answer": spread([job["answer"] for job in missed]) if missed else None,
    }
    return split


def _figures(
    client: str,
    count: int,
    speed: float,
    jobs: list[dict[str, Any]],
    result: dict[str, Any],
    sampler: _Sampler,
    stats: dict[str, Any],
    status_before: int,
    timelines: dict[str, dict[str, Any]],
    submit_seconds: float,
) -> dict[str, Any]:
    events: dict[str, list[Any]] = result["events"]
    delays_real: list[float] = []
    within: list[bool] = []
    worst_share: list[float] = []
    # Detected by the first poll or by a later one: the two parts of the schedule, judged apart.
    by_polls: dict[str, list[tuple[float, bool]]] = {"the first poll": [], "a later poll": []}
    detail: list[dict[str, Any]] = []  # happyhorse: per job, where its delay went (the poll times are known)
    for job in jobs:
        event = events.get(job["job_id"])
        timeline = timelines[job["job_id"]]
        if event is None or event[1] not in ("success", "failed"):
            continue
        delay = (event[0] - timeline["finished"]) / speed
        render = (timeline["finished"] - timeline["started"]) / speed
        allowed = TARGET_DETECTION_FIXED + TARGET_DETECTION_SHARE * render
        delays_real.append(delay)
        within.append(delay <= allowed)
        worst_share.append(delay / allowed)
        by_polls["the first poll" if event[2] == 1 else "a later poll"].append((delay, delay <= allowed))
        if len(event) > 3 and event[3]:
            detail.append(_detection_detail(job, event, timeline, speed, delay, allowed))
    window_started = result["window_started_epoch"]
    late_starts = sum(
        1
        for job in jobs
        if datetime.fromisoformat(job["submitted_at"]).timestamp()
        + expected_render_seconds(job["mode"], job["duration"], job["sound"]) * speed
        < window_started
    )
    heartbeat_cpu = result["heartbeat_cpu_per_beat"] * result["heartbeats"]
    cpu_net = max(result["cpu_seconds"] - heartbeat_cpu, 0.0)
    status_calls = stats["status_calls"]["total"] - status_before
    outcomes = Counter(event[1] for event in events.values())
    polls = [event[2] for event in events.values() if isinstance(event[2], int)]
    renders_real = [(t["finished"] - t["started"]) / speed for t in timelines.values()]
    # The HTTP provider's pattern polls on a fixed interval from the window's start: the interval it achieved
    # tells whether its loop kept up (if not, it polled less than it meant to and its CPU per video is understated).
    intervals = [
        (event[0] - window_started) / (event[2] - 1) / speed
        for event in events.values()
        if client == "http_provider" and isinstance(event[2], int) and event[2] > 1
    ]
    after_start = [seconds for offset, seconds in result["stalls"] if offset >= 1.0]
    # Stalls with no collector pause over STALL_LOGGED_SECONDS inside them: what the code itself blocks for.
    without_gc = [
        seconds
        for offset, seconds in result["stalls"]
        if not any(start < offset + seconds and start + pause > offset for start, _, pause in result["gc_long_pauses"])
    ]
    return {
        "client": client,
        "jobs": count,
        "window_seconds": round(result["wall_seconds"], 3),
        "cpu_seconds": round(result["cpu_seconds"], 4),
        "heartbeat_cpu_seconds_subtracted": round(heartbeat_cpu, 4),
        "cpu_seconds_net": round(cpu_net, 4),
        "cpu_ms_per_video": round(cpu_net * 1000 / count, 4),
        "status_requests": status_calls,
        "status_requests_per_video": round(status_calls / count, 3),
        "polls_per_video_from_events": round(statistics.fmean(polls), 3) if polls else None,
        "peak_rss_mb": round(result["max_rss_bytes"] / 2**20, 1),
        "rss_ready_mb": round(result["rss_ready_bytes"] / 2**20, 1),
        "rss_sampled_peak_mb": round(sampler.peak_rss / 2**20, 1),
        "peak_sockets": sampler.peak_sockets,
        "peak_socket_states": dict(sampler.socket_states),
        "peak_fds": sampler.peak_fds,
        "samples": sampler.samples,
        "stall_max_ms": round(result["stall_max_seconds"] * 1000, 2),
        "stall_max_at_seconds": round(result["stall_max_at_seconds"], 3),
        "stall_max_after_first_second_ms": round(max(after_start, default=0.0) * 1000, 2),
        "stall_max_without_gc_ms": round(max(without_gc, default=0.0) * 1000, 2),
        "stalls_over_50ms": len(result["stalls"]),
        "stalls_over_50ms_first": result["stalls"][:20],
        "loop_iterations": result["loop_iterations"],
        "gc_collections_by_generation": result["gc_collections"],
        "gc_longest_pause_ms": round(result["gc_longest_pause_seconds"] * 1000, 2),
        "gc_full_collection_when_ready_ms": round(result["gc_full_ready_seconds"] * 1000, 2),
        "gc_total_pause_ms": round(result["gc_total_pause_seconds"] * 1000, 2),
        "gc_pauses_over_50ms_first": result["gc_long_pauses"][:20],
        "heartbeat_lateness_max_ms": None
        if result["heartbeat_lateness_max_seconds"] is None
        else round(result["heartbeat_lateness_max_seconds"] * 1000, 2),
        "detection_delay_real_seconds": {
            "mean": round(statistics.fmean(delays_real), 3) if delays_real else None,
            "p50": round(_percentile(delays_real, 0.50), 3),
            "p95": round(_percentile(delays_real, 0.95), 3),
            "max": round(max(delays_real), 3) if delays_real else None,
        },
        "detection_delay_scaled_seconds": {
            "mean": round(statistics.fmean(delays_real) * speed, 3) if delays_real else None,
            "p95": round(_percentile(delays_real, 0.95) * speed, 3),
            "max": round(max(delays_real) * speed, 3) if delays_real else None,
        },
        "detection_within_target_share": round(sum(within) / len(within), 4) if within else 0.0,
        "detection_by_poll": {
            name: {
                "jobs": len(pairs),
                "within_target_share": round(sum(ok for _, ok in pairs) / len(pairs), 4),
                "delay_real_p50": round(_percentile([delay for delay, _ in pairs], 0.5), 3),
                "delay_real_max": round(max(delay for delay, _ in pairs), 3),
            }
            for name, pairs in by_polls.items()
            if pairs
        },
        "detection_split": _detection_split(detail),
        "detection_misses_first": sorted(
            (job for job in detail if not job["within"]), key=lambda job: -job["over_allowance"]
        )[:8],
        "detection_jobs": detail,
        "detection_delay_over_allowance_p95": round(_percentile(worst_share, 0.95), 3),
        "detection_delay_over_allowance_max": round(max(worst_share), 3) if worst_share else None,
        "render_real_seconds": {"min": round(min(renders_real), 1), "max": round(max(renders_real), 1)},
        "outcomes": dict(outcomes),
        "missing_events": count - len(events),
        "unfinished": result["unfinished"],
        "crashed": result["crashed_count"],
        "crash_samples": result["crashed"],
        "late_starts": late_starts,
        "mean_poll_interval_real_seconds": round(statistics.fmean(intervals), 2) if intervals else None,
        "submit_seconds": round(submit_seconds, 2),
    }


# --------------------------------------------------------------------------------------------------------------
# Report


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets for every ``HappyHorseJobTrigger`` row (one per freeze setting and repeat with ``--freeze``),
    each tagged with whether that run's heap was frozen."""
    checks: list[dict[str, Any]] = []
    for count in sorted({row["jobs"] for row in rows}):
        theirs = next((row for row in rows if row["client"] == "http_provider" and row["jobs"] == count), None)
        for ours in (row for row in rows if row["client"] == "happyhorse" and row["jobs"] == count):
            checks += [{**check, "heap_frozen": ours["heap_frozen"]} for check in _row_targets(count, ours, theirs)]
    return checks


def _row_targets(count: int, ours: dict[str, Any], theirs: dict[str, Any] | None) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    if theirs is not None:
        ratio = theirs["cpu_ms_per_video"] / max(ours["cpu_ms_per_video"], 1e-9)
        checks.append(
            {
                "jobs": count,
                "target": f"CPU per video at least {TARGET_CPU_RATIO:g}x below the HTTP provider's pattern",
                "value": f"{ratio:.1f}x",
                "met": ratio >= TARGET_CPU_RATIO,
            }
        )
    checks.append(
        {
            "jobs": count,
            "target": f"at most {TARGET_REQUESTS_PER_VIDEO:g} status requests per video on average",
            "value": f"{ours['status_requests_per_video']:.2f}",
            "met": ours["status_requests_per_video"] <= TARGET_REQUESTS_PER_VIDEO,
        }
    )
    share = ours["detection_within_target_share"]
    checks.append(
        {
            "jobs": count,
            "target": "detection within 2 s + 10% of the render time (every job, real-time scale)",
            "value": f"{share:.1%} of jobs within; p95 {ours['detection_delay_over_allowance_p95']:.2f}, "
            f"worst {ours['detection_delay_over_allowance_max']:.2f} x the allowance; "
            + ", ".join(
                f"found by {name} {part['within_target_share']:.0%} within"
                for name, part in ours["detection_by_poll"].items()
            ),
            "met": share >= 1.0,
        }
    )
    if count >= TARGET_RSS_STALL_JOBS:
        checks.append(
            {
                "jobs": count,
                "target": f"peak RSS under {TARGET_RSS_MB:g} MB",
                "value": f"{ours['peak_rss_mb']:.0f} MB",
                "met": ours["peak_rss_mb"] < TARGET_RSS_MB,
            }
        )
        checks.append(
            {
                "jobs": count,
                "target": f"no event-loop stall over {TARGET_STALL_SECONDS * 1000:g} ms",
                "value": f"{ours['stall_max_ms']:.0f} ms at t = {ours['stall_max_at_seconds']:.1f} s; longest "
                f"garbage-collector pause {ours['gc_longest_pause_ms']:.0f} ms (a full collection before any "
                f"trigger existed: {ours['gc_full_collection_when_ready_ms']:.0f} ms); longest stall with no "
                f"collector pause over {STALL_LOGGED_SECONDS * 1000:g} ms in it: "
                + (
                    f"{ours['stall_max_without_gc_ms']:.0f} ms"
                    if ours["stall_max_without_gc_ms"]
                    else f"under {STALL_LOGGED_SECONDS * 1000:g} ms"
                ),
                "met": ours["stall_max_ms"] <= TARGET_STALL_SECONDS * 1000,
            }
        )
    return checks


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def markdown(
    command: str,
    speed: float,
    rows: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    *,
    freeze_columns: bool = False,
) -> str:
    """The tables; ``freeze_columns`` (``--freeze``) adds whether the heap was frozen and the longest collector
    pause, and the HTTP provider's CPU ratio is then given against each ``HappyHorseJobTrigger`` row in order."""
    frozen_head, frozen_rule = ("| heap frozen ", "|---") if freeze_columns else ("", "")
    pause_head, pause_rule = ("| longest GC pause ms ", "|---:") if freeze_columns else ("", "")
    lines = [
        f"    {command}",
        "",
        f"Speed {speed:g}: renders and poll intervals x{speed:g} (real-time figures are scaled back by 1/{speed:g})"
        + (
            "; the schedule's 2 s slack and 1 s tick left unscaled (--unscaled-slack)."
            if any(row.get("schedule_scaled") is False for row in rows)
            else "."
        ),
        "",
        f"| jobs | client {frozen_head}| CPU ms/video | status req/video | peak RSS MB | peak sockets "
        f"| longest stall ms {pause_head}| detection delay s (real) p50 / p95 / max | within 2 s + 10% | CPU ratio |",
        f"|---:|---{frozen_rule}|---:|---:|---:|---:|---:{pause_rule}|---|---:|---:|",
    ]
    for row in rows:
        delay = row["detection_delay_real_seconds"]
        ours = [other for other in rows if other["client"] == "happyhorse" and other["jobs"] == row["jobs"]]
        if not freeze_columns:
            ours = ours[-1:]
        ratio = ""
        if row["client"] == "http_provider" and ours:
            ratio = " / ".join(
                f"{row['cpu_ms_per_video'] / max(other['cpu_ms_per_video'], 1e-9):.1f}x" for other in ours
            )
        frozen = f"| {_yes_no(row['heap_frozen'])} " if freeze_columns else ""
        pause = f"| {row['gc_longest_pause_ms']:.0f} " if freeze_columns else ""
        lines.append(
            f"| {row['jobs']:,} | {CLIENT_LABELS[row['client']]} {frozen}| {row['cpu_ms_per_video']:.2f} "
            f"| {row['status_requests_per_video']:.2f} | {row['peak_rss_mb']:.0f} | {row['peak_sockets']:,} "
            f"| {row['stall_max_ms']:.0f} {pause}| {delay['p50']:.1f} / {delay['p95']:.1f} / {delay['max']:.1f} "
            f"| {row['detection_within_target_share']:.0%} | {ratio} |"
        )
    for row in rows:
        interval = row["mean_poll_interval_real_seconds"]
        if row["client"] == "http_provider" and interval and interval > 1.2 * BASELINE_POLL_INTERVAL:
            lines.append(
                f"\nAt {row['jobs']:,} jobs the HTTP provider's pattern could not keep its "
                f"{BASELINE_POLL_INTERVAL:g} s interval (it achieved {interval:.1f} s): it polled less than it meant "
                "to, so its CPU per video is understated and the ratio is conservative."
            )
    for row in rows:
        if row.get("dialect") == "dashscope":
            lines.append(
                f"\nDashScope dialect, {row['jobs']:,} jobs: the emulator enforces {row['emulator_query_limit']:g} "
                f"queries/s for the account, the connection paces at {row['client_query_limit'] or 'no limit'} "
                f"queries/s; {row['throttled_429']} answers were 429; {row['status_requests']:,} status requests in "
                f"{row['window_seconds']:.0f} s ({row.get('status_requests_per_second', 0):g}/s). Within 2 s + 10%: "
                f"{row['detection_within_target_share']:.1%} of jobs; the most any client could reach at that query "
                f"rate (each job's finish known in advance, one query each, no latency): "
                f"{row.get('detection_possible_share_at_limit', 0):.1%}; the busiest second saw "
                f"{row.get('finishes_in_busiest_second', 0)} renders finish."
            )
    if freeze_columns:
        lines += ["", "| jobs | heap frozen | target | measured | met |", "|---:|---|---|---|---|"]
    else:
        lines += ["", "| jobs | target | measured | met |", "|---:|---|---|---|"]
    for check in checks:
        frozen = f"| {_yes_no(check['heap_frozen'])} " if freeze_columns else ""
        lines.append(
            f"| {check['jobs']:,} {frozen}| {check['target']} | {check['value']} | {'yes' if check['met'] else 'NO'} |"
        )
    detailed = [row for row in rows if row.get("detection_jobs")]
    if detailed:
        lines += [
            "",
            "| jobs | found by | jobs found | within | delay s (real) p50 / p95 / max | allowance s min / p50 "
            "| finding wait / allowance p50 / max | poll sent after finish s p50 / max | answer ms p50 / max |",
            "|---:|---|---:|---:|---|---|---|---|---|",
        ]
        for row in detailed:
            for name, part in row["detection_split"].items():
                if name == "missed":
                    continue
                delay, allowance, answer = part["delay"], part["allowance"], part["answer"]
                after, wait = part["poll_after_finish"], part.get("finding_wait_over_allowance")
                waited = f"{wait['p50']:.2f} / {wait['max']:.2f}" if wait else "-"
                lines.append(
                    f"| {row['jobs']:,} | {name} | {part['jobs']:,} | {part['within'] / part['jobs']:.1%} "
                    f"| {delay['p50']:.2f} / {delay['p95']:.2f} / {delay['max']:.2f} "
                    f"| {allowance['min']:.2f} / {allowance['p50']:.2f} | {waited} "
                    f"| {after['p50']:.2f} / {after['max']:.2f} "
                    f"| {answer['p50'] * 1000:.0f} / {answer['max'] * 1000:.0f} |"
                )
        for row in detailed:
            missed = row["detection_split"]["missed"]
            if not missed["jobs"]:
                continue
            lines.append(
                f"\nAt {row['jobs']:,} jobs {missed['jobs']} missed by {missed['over_by']['p50']:.2f} s (median), "
                f"{missed['over_by']['max']:.2f} s at most: for {missed['poll_sent_past_allowance']} of them the "
                "finding poll itself was sent past the allowance, and for "
                f"{missed['finding_wait_over_allowance']} the wait before that poll was longer than the allowance; "
                f"their answers took {missed['answer']['p50'] * 1000:.0f} ms (median). The worst (real seconds "
                "from submission):"
            )
            for job in row["detection_misses_first"][:5]:
                lines.append(
                    f"- {job['mode']} {job['duration']} s{' sound' if job['sound'] else ''}: started "
                    f"{job['started']:.2f}, finished {job['finished']:.2f} (render {job['render']:.1f}, "
                    f"allowance {job['allowance']:.2f}), polls sent at "
                    + ", ".join(f"{moment:.2f}" for moment in job["polls_sent"])
                    + f", event at {job['event']:.2f}: delay {job['delay']:.2f} ({job['over_allowance']:.2f}x)"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=None, help="job counts (default 100 1000 5000)")
    parser.add_argument(
        "--speed", type=float, default=None, help="render-time and poll-interval factor (default 0.5; --quick 0.1)"
    )
    parser.add_argument("--quick", action="store_true", help="100 jobs at speed 0.1: a smoke check under a minute")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS), help="which clients to run")
    parser.add_argument(
        "--freeze",
        nargs="+",
        choices=tuple(FREEZE_SETTINGS),
        default=None,
        help=f"measure HappyHorseJobTrigger once per setting, in this order, with the heap freeze on or off "
        f"({FREEZE_ENV}=True/False in its process; e.g. --freeze on off on off); the table then says whether "
        "each run's heap was frozen (default: one run, the environment as it is)",
    )
    parser.add_argument(
        "--heartbeat",
        action="store_true",
        help="also run a 10 ms heartbeat coroutine in the measured loop (a cross-check of the stall figure; "
        "its CPU is subtracted using its cost measured on an idle loop)",
    )
    parser.add_argument(
        "--unscaled-slack",
        action="store_true",
        help="leave the schedule's slack (2 s) and tick (1 s) unscaled, as this benchmark did before 2026-12-06: "
        "below speed 1 every wait after the first poll is then too long in real time (reproduces issue 25, item 3)",
    )
    parser.add_argument(
        "--dialect",
        choices=("happyhorse", "dashscope"),
        default="happyhorse",
        help="the emulator and the connection speak happyhorse.app's API (default) or Model Studio's (DashScope: "
        "the HappyHorseJobTrigger client only, the emulator enforcing --query-limit)",
    )
    parser.add_argument(
        "--query-limit",
        type=float,
        default=DEFAULT_QUERY_LIMIT,
        help="dashscope: the account's task queries per second the emulator allows (429 Throttling.RateQuota "
        f"beyond; default {DEFAULT_QUERY_LIMIT:g}, the documented limit; real seconds, not scaled by --speed)",
    )
    parser.add_argument(
        "--client-limit",
        type=float,
        default=None,
        help="dashscope: the connection's max_queries_per_second (default: unset, the dialect's 20; 0: unpaced)",
    )
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        return child_main(options.child, options.report_fd, options.heartbeat)

    counts = options.jobs or ([100] if options.quick else [100, 1000, 5000])
    speed = options.speed or (0.1 if options.quick else 0.5)
    dashscope = options.dialect == "dashscope"
    if dashscope and options.clients != ["happyhorse"]:
        options.clients = ["happyhorse"]  # the HTTP provider's pattern polls happyhorse.app's /api/status
        print("--dialect dashscope: measuring HappyHorseJobTrigger only", flush=True)
    command = " ".join(
        [
            ".venv/bin/python benchmarks/triggerer_scale.py --jobs",
            *map(str, counts),
            f"--speed {speed:g}",
            *(["--clients", *options.clients] if options.clients != list(CLIENTS) else []),
            *(["--heartbeat"] if options.heartbeat else []),
            *(["--freeze", *options.freeze] if options.freeze else []),
            *(["--unscaled-slack"] if options.unscaled_slack else []),
            *([f"--dialect dashscope --query-limit {options.query_limit:g}"] if dashscope else []),
            *([f"--client-limit {options.client_limit:g}"] if dashscope and options.client_limit is not None else []),
        ]
    )
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    config = EmulatorConfig(
        speed=speed,
        max_concurrent_per_key=None,
        dialect=options.dialect,
        query_limit_per_second=options.query_limit if dashscope else None,
    )
    with EmulatorProcess(config) as emulator:
        log_dir = Path(tempfile.mkdtemp(prefix="triggerer-scale-"))
        print(f"emulator {emulator.base_url} (speed {speed:g}); measured processes' logs in {log_dir}", flush=True)
        for count in counts:
            for client in options.clients:
                # The freeze only concerns our trigger: the HTTP provider's pattern is measured once.
                settings: list[str | None] = list(options.freeze or [None]) if client == "happyhorse" else [None]
                for freeze in settings:
                    row = run_one(
                        emulator,
                        client,
                        count,
                        speed,
                        log_dir,
                        heartbeat=options.heartbeat,
                        freeze=freeze,
                        scale_schedule=not options.unscaled_slack,
                        client_limit=options.client_limit if dashscope else None,
                    )
                    rows.append(row)
                    frozen = extra = ""
                    if options.freeze:
                        frozen = f", heap frozen {_yes_no(row['heap_frozen'])}"
                        extra = (
                            f", longest stall {row['stall_max_ms']:.0f} ms, longest GC pause "
                            f"{row['gc_longest_pause_ms']:.0f} ms, load before "
                            + " ".join(f"{load:.2f}" for load in row["load_average_before"])
                        )
                    print(
                        f"  {count:>5} jobs, {client:<13}{frozen}: {row['cpu_ms_per_video']:.2f} CPU ms/video, "
                        f"{row['status_requests_per_video']:.2f} requests/video, window {row['window_seconds']:.0f} s, "
                        f"outcomes {row['outcomes']}{extra}"
                        + (f", {row['throttled_429']} answers 429" if dashscope else ""),
                        flush=True,
                    )
    checks = _targets(rows)
    table = markdown(command, speed, rows, checks, freeze_columns=bool(options.freeze))
    print()
    print(table)
    summary = {
        "benchmark": "triggerer scale: HappyHorseJobTrigger vs the HTTP provider's async polling pattern",
        "command": command,
        "speed": speed,
        "freeze_settings": options.freeze,
        "real_poll_parameters": {
            "first_poll_after": "first_poll_for(expected_render_seconds(mode, duration, sound))",
            "min_poll_interval": REAL_MIN_POLL_INTERVAL,
            "max_poll_interval": REAL_MAX_POLL_INTERVAL,
            "http_provider_interval": BASELINE_POLL_INTERVAL,
            "schedule_slack_and_tick": "unscaled (--unscaled-slack)" if options.unscaled_slack else "x speed",
        },
        "rows": rows,
        "targets": checks,
        "all_targets_met": all(check["met"] for check in checks),
        "table_markdown": table,
        "total_seconds": round(time.monotonic() - started, 1),
        "setup": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {options.output} in {summary['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
