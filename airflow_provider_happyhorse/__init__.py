"""
Apache Airflow provider for HappyHorse AI video generation.

The public API, importable from here. Each name is loaded on first use: Airflow's providers manager
imports this package to read its provider info, and that must not import Airflow's task machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The error tree imports nothing but typing: loaded at once, its own __all__ is the list of its exports.
from airflow_provider_happyhorse import exceptions
from airflow_provider_happyhorse.exceptions import *  # noqa: F403
from airflow_provider_happyhorse.version import __version__

if TYPE_CHECKING:
    from airflow_provider_happyhorse.budget import (
        BudgetExceededError,
        InvalidRowError,
        RenderPlan,
        RunBudget,
        RunPlanError,
        plan_renders,
    )
    from airflow_provider_happyhorse.core.record import RenderRecord, Since, StoredClip
    from airflow_provider_happyhorse.core.schedule import PollSchedule, expected_render_seconds, first_poll_for
    from airflow_provider_happyhorse.core.wait import WaitPlan
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook
    from airflow_provider_happyhorse.links.happyhorse import HappyHorseVideoLink
    from airflow_provider_happyhorse.models import JobEvent, JobState, JobStatus, VideoRequest, VideoResult
    from airflow_provider_happyhorse.operators.happyhorse import GenerateVideoOperator
    from airflow_provider_happyhorse.sensors.happyhorse import HappyHorseJobSensor
    from airflow_provider_happyhorse.triggers.happyhorse import HappyHorseJobTrigger

_MODULES = {
    "GenerateVideoOperator": "operators.happyhorse",
    "HappyHorseHook": "hooks.happyhorse",
    "HappyHorseJobSensor": "sensors.happyhorse",
    "HappyHorseJobTrigger": "triggers.happyhorse",
    "HappyHorseVideoLink": "links.happyhorse",
    **dict.fromkeys(("JobEvent", "JobState", "JobStatus", "VideoRequest", "VideoResult"), "models"),
    **dict.fromkeys(("PollSchedule", "expected_render_seconds", "first_poll_for"), "core.schedule"),
    "WaitPlan": "core.wait",
    **dict.fromkeys(("RenderRecord", "Since", "StoredClip"), "core.record"),
    **dict.fromkeys(
        ("BudgetExceededError", "InvalidRowError", "RenderPlan", "RunBudget", "RunPlanError", "plan_renders"), "budget"
    ),
}

__all__ = [
    "BudgetExceededError",
    "GenerateVideoOperator",
    "HappyHorseHook",
    "HappyHorseJobSensor",
    "HappyHorseJobTrigger",
    "HappyHorseVideoLink",
    "InvalidRowError",
    "JobEvent",
    "JobState",
    "JobStatus",
    "PollSchedule",
    "RenderPlan",
    "RenderRecord",
    "RunBudget",
    "RunPlanError",
    "Since",
    "StoredClip",
    "VideoRequest",
    "VideoResult",
    "WaitPlan",
    "__version__",
    "expected_render_seconds",
    "first_poll_for",
    "plan_renders",
    *exceptions.__all__,
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
