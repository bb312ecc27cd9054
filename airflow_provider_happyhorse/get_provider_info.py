"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_happyhorse.version import __version__

_INTEGRATION = "HappyHorse"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-happyhorse",
        "name": "HappyHorse",
        "description": "HappyHorse AI video generation (text-to-video and image-to-video with native audio).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://happyhorse.app",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_happyhorse.hooks.happyhorse"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_happyhorse.operators.happyhorse"],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_happyhorse.sensors.happyhorse"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_happyhorse.triggers.happyhorse"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "happyhorse",
                "hook-class-name": "airflow_provider_happyhorse.hooks.happyhorse.HappyHorseHook",
                "hook-name": "HappyHorse",
            }
        ],
        "extra-links": ["airflow_provider_happyhorse.links.happyhorse.HappyHorseVideoLink"],
    }
