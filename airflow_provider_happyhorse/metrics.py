"""
Every metric the provider emits, in one place: its name, its type, its tags and the function that emits
it. They go through Airflow's own ``Stats``, so a deployment's ``[metrics]`` section decides where they
go (StatsD, Datadog's DogStatsD or OpenTelemetry); with none of them on, every call here does nothing.
The how-to ``docs/howto/metrics.md`` lists them with where each is emitted.

Names are ``happyhorse.<what>`` (Airflow puts its own prefix, ``airflow.`` by default, in front). Tags
are a few words from a fixed set, plus the connection id: never the API key, a prompt, a URL or a path.

Polls and 429s are counted in the triggerer's event loop: a metric call must never block it. StatsD's
send is one UDP datagram (``sendto`` on a datagram socket, which does not wait for anyone) and
OpenTelemetry's records into memory, exported by its own reader thread; what may block is making the
backend, once per process (StatsD resolves its host name, Airflow reads its metric registry file), so
:func:`await_started` makes it from a thread before the first poll of a triggerer process.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import Stats

from airflow_provider_happyhorse.exceptions import (
    ClipMismatchError,
    DownloadLimitError,
    DownloadRefusedError,
    InvalidClipError,
)

log = logging.getLogger(__name__)

# -- the names -------------------------------------------------------------------------------------
SUBMISSIONS = "happyhorse.submissions"  # counter; mode, conn_id, outcome
CREDITS_ESTIMATED = "happyhorse.credits_estimated"  # counter (credits); mode, conn_id, unit=credits
# The same for a dialect billed in money (DashScope), in the currency its ``unit`` tag names: a separate
# name, so that a sum over one metric never adds credits to money.
COST_ESTIMATED = "happyhorse.cost_estimated"  # counter (money); mode, conn_id, unit
REATTACHES = "happyhorse.reattaches"  # counter; mode, conn_id, outcome
REFUSALS = "happyhorse.refusals"  # counter; reason, conn_id
WAITS_STARTED = "happyhorse.waits_started"  # counter; where, conn_id
POLLS = "happyhorse.polls"  # counter; outcome, conn_id
RATE_LIMITED = "happyhorse.rate_limited"  # counter; endpoint
CLIPS_VERIFIED = "happyhorse.clips.verified"  # counter; outcome
CLIPS_STORED = "happyhorse.clips.stored"  # counter; verify_clip
CLIPS_REJECTED = "happyhorse.clips.rejected"  # counter; reason
DOWNLOAD_BYTES = "happyhorse.download.bytes"  # counter (bytes)
DOWNLOAD_DURATION = "happyhorse.download.duration"  # timer (milliseconds)

# -- the tag values that have a fixed set ----------------------------------------------------------
# refusals' reason: refused before anything was paid (or, for egress, before anything was fetched).
REFUSAL_REASONS = ("setting", "validation", "budget", "connection", "destination", "if_exists", "pending", "egress")
POLL_OUTCOMES = ("running", "final", "transient_error", "not_found", "error")


def _emit(kind: str, name: str, *args: Any, tags: dict[str, str]) -> None:
    """One call to ``Stats``; a metric that cannot be sent never fails a task or a trigger."""
    try:
        getattr(Stats, kind)(name, *args, tags=tags)
    except Exception as error:
        log.warning("Could not emit the metric %s: %s", name, error)


def submitted(outcome: str, *, mode: str, conn_id: str, cost: float | None = None, unit: str = "credits") -> None:
    """
    A submission ended: ``accepted`` (a job id came back), ``refused`` (the service surely created
    nothing) or ``unknown`` (it may have created a job). An accepted one with a known estimate adds it,
    tagged with its ``unit``, to ``happyhorse.credits_estimated`` (credits) or ``happyhorse.cost_estimated``
    (a currency).
    """
    _emit("incr", SUBMISSIONS, tags={"outcome": outcome, "mode": mode, "conn_id": conn_id})
    if outcome == "accepted" and cost is not None:
        name = CREDITS_ESTIMATED if unit == "credits" else COST_ESTIMATED
        _emit("incr", name, cost, tags={"mode": mode, "conn_id": conn_id, "unit": unit})


def reattached(outcome: str, *, mode: str, conn_id: str) -> None:
    """A later try found the job an earlier one paid for: ``running`` or ``succeeded`` (not paid again)."""
    _emit("incr", REATTACHES, tags={"outcome": outcome, "mode": mode, "conn_id": conn_id})


def refused(reason: str, *, conn_id: str) -> None:
    """Refused before paying (or, ``egress``, before fetching): ``reason`` is one of ``REFUSAL_REASONS``."""
    _emit("incr", REFUSALS, tags={"reason": reason, "conn_id": conn_id})


def wait_started(where: str, *, conn_id: str) -> None:
    """A wait for a job began: ``triggerer``, ``worker`` (blocking mode) or ``sensor`` (poke mode)."""
    _emit("incr", WAITS_STARTED, tags={"where": where, "conn_id": conn_id})


_ready_in_process: int | None = None  # the process whose metrics backend has been made


async def await_started(*, conn_id: str) -> None:
    """
    A wait began in the triggerer. The first in a process is emitted from a thread, which makes Airflow's
    metrics backend (a host name lookup for StatsD, a file read for its registry) off the event loop.
    """
    global _ready_in_process
    if _ready_in_process == os.getpid():
        wait_started("triggerer", conn_id=conn_id)
        return
    await asyncio.to_thread(wait_started, "triggerer", conn_id=conn_id)
    _ready_in_process = os.getpid()


def polled(outcome: str, *, conn_id: str) -> None:
    """One status poll of a wait, by what it found: one of ``POLL_OUTCOMES``."""
    _emit("incr", POLLS, tags={"outcome": outcome, "conn_id": conn_id})


def answered(path: str, status_code: int) -> None:
    """An API answer; a 429 (slow down) is counted by the endpoint it came from."""
    if status_code == 429:
        _emit("incr", RATE_LIMITED, tags={"endpoint": path.rstrip("/").rsplit("/", 1)[-1] or "unknown"})


def clip_verified(mismatches: list[str]) -> None:
    """A downloaded clip was held to its request: ``match`` or ``mismatch``."""
    _emit("incr", CLIPS_VERIFIED, tags={"outcome": "mismatch" if mismatches else "match"})


def clip_stored(verify_clip: str) -> None:
    """A clip was moved into its place (a clip found already stored by an earlier try is not counted)."""
    _emit("incr", CLIPS_STORED, tags={"verify_clip": verify_clip})


def clip_rejected(reason: str) -> None:
    """A downloaded clip was not kept: ``mismatch``, ``invalid`` (not a whole video), ``over_limit`` or ``failed``."""
    _emit("incr", CLIPS_REJECTED, tags={"reason": reason})


def downloaded(size: int, seconds: float) -> None:
    """One whole download of a clip: its bytes and how long it took."""
    _emit("incr", DOWNLOAD_BYTES, size, tags={})
    _emit("timing", DOWNLOAD_DURATION, timedelta(seconds=seconds), tags={})


def clip_not_kept(error: Exception, *, conn_id: str) -> None:
    """A clip the task could not keep: a refused download counts as a refusal, anything else as a rejected clip."""
    if isinstance(error, DownloadRefusedError):
        refused("egress", conn_id=conn_id)
    elif isinstance(error, ClipMismatchError):
        clip_rejected("mismatch")
    elif isinstance(error, InvalidClipError):
        clip_rejected("invalid")
    elif isinstance(error, DownloadLimitError):
        clip_rejected("over_limit")
    else:
        clip_rejected("failed")
