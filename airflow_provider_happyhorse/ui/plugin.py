"""
``HappyHorsePlugin``: the view, registered through the provider info (``plugins``). Airflow 3.1 and newer
mount its FastAPI app in the api-server at ``/happyhorse`` and show a "HappyHorse" entry in the UI's
navigation. Importing this module does no I/O and imports no FastAPI code: the app is built on its first
request. On Airflow 3.0, which has no external views, the plugin offers nothing and says so once.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_happyhorse.constants import UI_URL_PREFIX

log = logging.getLogger(__name__)
MIN_AIRFLOW = (3, 1)


class LazyApp:
    """An ASGI app that builds the real one (``ui.app.create_app``) on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_happyhorse.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


def _airflow_version() -> tuple[int, ...]:
    from airflow import __version__

    return tuple(int(part) for part in __version__.split(".")[:2] if part.isdigit())


def view_available() -> bool:
    """Whether this Airflow shows the view (3.1+: external views and FastAPI apps)."""
    return _airflow_version() >= MIN_AIRFLOW


def _supported() -> bool:
    if view_available():
        return True
    log.info(
        "The HappyHorse view needs Airflow %s or newer; this Airflow has no external views, so it is not "
        "shown. Everything else of the provider works.",
        ".".join(map(str, MIN_AIRFLOW)),
    )
    return False


_SUPPORTED = _supported()


class HappyHorsePlugin(AirflowPlugin):
    name = "happyhorse"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": UI_URL_PREFIX, "name": "HappyHorse"}] if _SUPPORTED else []
    external_views = (
        [
            {
                "name": "HappyHorse",
                "href": f"{UI_URL_PREFIX}/",
                "url_route": "happyhorse",
                "destination": "nav",
                "nav_top_level": True,
            }
        ]
        if _SUPPORTED
        else []
    )
