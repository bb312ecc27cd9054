"""How big each trial is: the default run (fits in CI) and the full run (issue 7's counts)."""

from __future__ import annotations

from dataclasses import dataclass

from happyhorse_emulator import EmulatorConfig

# The emulator's render time for the suite's videos (3 s, no sound) at speed 1: 20 s + 3 s per video second.
RENDER_SECONDS_AT_SPEED_1 = 29.0


@dataclass(frozen=True)
class Plan:
    name: str
    worker_kill: int
    triggerer_kill: int
    emulator_restart: int
    storm: int
    ambiguous: int
    """Tasks per kind of ambiguous submission fault."""
    download_kill: int
    hostile_normals: int
    """Normal renders running beside the hostile service's cases (trial 10)."""
    render_seconds: float
    """Render time of most trials' videos: long enough for a deferral, short enough to keep runs quick."""
    long_render_seconds: float
    """Render time where something must crash mid-render (triggerer, API), after every task deferred."""
    parallelism: int
    trial_timeout: float

    def emulator(self, render_seconds: float | None = None, **settings: object) -> EmulatorConfig:
        seconds = self.render_seconds if render_seconds is None else render_seconds
        base = {"speed": seconds / RENDER_SECONDS_AT_SPEED_1, "max_concurrent_per_key": None}
        return EmulatorConfig.model_validate({**base, **settings})


DEFAULT = Plan(
    name="default",
    worker_kill=3,
    triggerer_kill=3,
    emulator_restart=3,
    storm=20,
    ambiguous=2,
    download_kill=2,
    hostile_normals=4,
    render_seconds=10.0,
    long_render_seconds=40.0,
    parallelism=8,
    trial_timeout=420.0,
)
FULL = Plan(
    name="full",
    worker_kill=20,
    triggerer_kill=20,
    emulator_restart=10,
    storm=200,
    ambiguous=10,
    download_kill=10,
    hostile_normals=8,
    render_seconds=10.0,
    long_render_seconds=75.0,
    parallelism=8,
    trial_timeout=1800.0,
)


@dataclass(frozen=True)
class DistributedPlan(Plan):
    """The distributed trials' sizes (``reliability.run --distributed``): CeleryExecutor with two workers of
    ``parallelism`` slots each, two triggerers, PostgreSQL and Redis."""

    batch: int
    """Videos in the mapped batch (D1)."""
    triggerer_stop: int
    scheduler_kill: int
    postgres_restart: int
    short: bool
    """Only the batch and the triggerer kill (what CI runs on every change)."""


DISTRIBUTED_SHORT = DistributedPlan(
    name="distributed-short",
    worker_kill=0,
    triggerer_kill=10,
    emulator_restart=0,
    storm=0,
    ambiguous=0,
    download_kill=0,
    hostile_normals=0,
    render_seconds=10.0,
    long_render_seconds=60.0,
    parallelism=4,
    trial_timeout=420.0,
    batch=30,
    triggerer_stop=0,
    scheduler_kill=0,
    postgres_restart=0,
    short=True,
)
DISTRIBUTED_FULL = DistributedPlan(
    name="distributed-full",
    worker_kill=6,
    triggerer_kill=20,
    emulator_restart=0,
    storm=0,
    ambiguous=0,
    download_kill=6,
    hostile_normals=0,
    render_seconds=10.0,
    long_render_seconds=60.0,
    parallelism=4,
    trial_timeout=600.0,
    batch=30,
    triggerer_stop=10,
    scheduler_kill=10,
    postgres_restart=10,
    short=False,
)
