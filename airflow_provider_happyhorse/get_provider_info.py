"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_happyhorse.version import __version__

_INTEGRATION = "HappyHorse"

# The connection form (Airflow 3.3 reads it from here; the hook's get_ui_field_behaviour() returns the
# same for older versions). Only the base URL and the key are used: every other standard field is
# hidden, so nothing typed there can change the URL.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login", "port", "schema"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {
        "host": "https://happyhorse.app",
        "password": "the key from the HappyHorse dashboard's API Keys page",
        "extra": '{"timeout": 30, "max_retries": 4, "submit_max_retries": 3}',
    },
}


# The connection form's own fields, kept in the connection's extra (Airflow 3.3 reads them from here; before
# 3.3 the form has no such field: set the extra's "dialect" key, or let the Base URL's host decide).
CONN_FIELDS: dict[str, Any] = {
    "dialect": {
        "label": "Dialect",
        "description": (
            "How the service at the Base URL speaks: 'happyhorse' (happyhorse.app) or 'dashscope' (Alibaba Cloud "
            "Model Studio and resellers of its protocol). Empty: from the Base URL's host (dashscope*.aliyuncs.com "
            "is dashscope, any other host happyhorse)."
        ),
        "schema": {"type": ["string", "null"], "enum": ["happyhorse", "dashscope", None]},
    },
}


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
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
        "task-decorators": [
            {"name": "happyhorse", "class-name": "airflow_provider_happyhorse.decorators.happyhorse.happyhorse_task"}
        ],
        "extra-links": ["airflow_provider_happyhorse.links.happyhorse.HappyHorseVideoLink"],
        "plugins": [{"name": "happyhorse", "plugin-class": "airflow_provider_happyhorse.ui.plugin.HappyHorsePlugin"}],
        "config": {
            "happyhorse": {
                "description": "Settings of the HappyHorse provider.",
                "options": {
                    "freeze_triggerer_heap": {
                        "description": (
                            "When the first HappyHorse trigger starts in a triggerer process, move every object "
                            "alive then (the triggerer's imported modules and state) to the garbage collector's "
                            "permanent generation (gc.freeze), so full collections no longer walk them and "
                            "pause the event loop for less time. Cycles among those objects that become "
                            "garbage later are never collected."
                        ),
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": None,
                        "default": "True",
                    },
                    "view_roots": {
                        "description": (
                            "Where the HappyHorse view may serve stored clips and posters from: a comma-separated "
                            "list of local folders (compared on whole path components after resolving symlinks, "
                            "so /data/clips allows /data/clips/a.mp4 but not /data/clips2/a.mp4) and object-store "
                            "prefixes (scheme://bucket/prefix, compared without the connection id, so "
                            "s3://bucket/clips allows s3://aws_default@bucket/clips/a.mp4). When set, nothing "
                            "outside them is served. Empty (the default): any location, still only files the "
                            "provider stored (its record beside the file, the same size and SHA-256)."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/data/clips,s3://my-bucket/clips/",
                        "default": "",
                    },
                },
            }
        },
    }
