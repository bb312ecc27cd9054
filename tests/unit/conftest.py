"""
Fixtures for the unit tests (the fake service, its clock and the loopback server are in ``support``).

- ``connection``: puts a HappyHorse connection in ``AIRFLOW_CONN_HAPPYHORSE_DEFAULT`` (JSON form).
- ``no_proxy``: loopback servers are reached directly.

Nothing here is autouse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.service import API_KEY, BASE_URL, ConnectionSetter

# ---------------------------------------------------------------------------------------------------
# Connections


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback servers are reached directly, whatever proxy the machine sets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> ConnectionSetter:
    """``connection(host=..., password=..., extra={...})`` defines ``happyhorse_default`` (or ``conn_id``)."""

    def define(
        host: str | None = BASE_URL,
        *,
        password: str | None = API_KEY,
        extra: dict[str, Any] | None = None,
        conn_id: str = "happyhorse_default",
        uri: str | None = None,
    ) -> None:
        if uri is not None:
            value = uri
        else:
            fields: dict[str, Any] = {"conn_type": "happyhorse"}
            if host is not None:
                fields["host"] = host
            if password is not None:
                fields["password"] = password
            if extra is not None:
                fields["extra"] = extra
            value = json.dumps(fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    define()
    return define
