"""
``GenerateVideoOperator``'s request arguments read from a mapping: a row of a planned run
(``budget.plan_renders``) or what a ``@task.happyhorse`` function returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_happyhorse.exceptions import InvalidRequestError
from airflow_provider_happyhorse.models import VideoRequest

# The operator's argument -> the request's field. Every other operator argument says how to render, not what.
REQUEST_ARGUMENTS: dict[str, str] = {
    "prompt": "prompt",
    "mode": "mode",
    "duration": "duration",
    "aspect_ratio": "aspect_ratio",
    "image_urls": "image_urls",
    "sound": "sound",
    "cfg_scale": "cfg_scale",
    "multi_shots": "multi_shots",
    "multi_prompt": "multi_prompt",
    "elements": "happyhorse_elements",
    "task": "task",
    "resolution": "resolution",
    "seed": "seed",
    "watermark": "watermark",
    "source_video": "source_video",
    "audio_setting": "audio_setting",
    "extra_fields": "extra_fields",
}


def request_from_arguments(arguments: Mapping[str, Any]) -> VideoRequest:
    """
    The validated request these operator arguments ask for (``None`` means "not given", as in the
    operator); ``InvalidRequestError`` names each bad field, rule and value, or a key that is no
    request argument.
    """
    unknown = sorted(key for key in arguments if key not in REQUEST_ARGUMENTS)
    if unknown:
        raise InvalidRequestError(
            f"Invalid HappyHorse request: {', '.join(map(repr, unknown))} "
            f"{'is not a request argument' if len(unknown) == 1 else 'are not request arguments'} "
            f"(they are {', '.join(REQUEST_ARGUMENTS)})"
        )
    return VideoRequest.parse({REQUEST_ARGUMENTS[key]: value for key, value in arguments.items() if value is not None})
