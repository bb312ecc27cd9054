"""The API's requests: the base URL a connection names, and the submit and status requests."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx

from airflow_provider_happyhorse.constants import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    GENERATE_PATH,
    STATUS_PATH,
    USER_AGENT,
)
from airflow_provider_happyhorse.models import VideoRequest

# The request extension that tells the hook how many bytes of the answer it may read (``responses.bounded``).
MAX_ANSWER_BYTES = "happyhorse.max_answer_bytes"


def normalize_base_url(host: str | None, *, scheme: str | None = None, path_prefix: str | None = None) -> str:
    """
    A connection's host as a base URL: scheme defaults to https, a path in it is kept (proxies), and so
    is ``path_prefix``: the path of a connection URI (``happyhorse://:KEY@host/prefix``), which Airflow
    keeps in the connection's schema field (hidden in the form).
    """
    if not host:
        return DEFAULT_BASE_URL
    raw = host.strip()
    if "://" not in raw:
        raw = f"{scheme or 'https'}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"HappyHorse base URL must be an http(s) URL, got {host!r}")
    path = parts.path.rstrip("/")
    if path_prefix:
        path = f"{path}/{path_prefix.strip('/')}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _headers(api_key: str | None) -> dict[str, str]:
    # identity: a compressed answer could inflate far past the answer's size limit.
    headers = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _extensions(seconds: float, max_answer_bytes: int) -> dict[str, object]:
    # On the request itself: the async path sends through a transport, without a client to add it.
    return {"timeout": httpx.Timeout(seconds).as_dict(), MAX_ANSWER_BYTES: max_answer_bytes}


def build_submit_request(
    base_url: str,
    api_key: str,
    request: VideoRequest,
    *,
    timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> httpx.Request:
    return httpx.Request(
        "POST",
        base_url + GENERATE_PATH,
        headers=_headers(api_key),
        json=request.to_body(),
        extensions=_extensions(timeout, max_answer_bytes),
    )


def build_status_request(
    base_url: str,
    api_key: str | None,
    job_id: str,
    *,
    timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> httpx.Request:
    """``GET /api/status`` for one job; without a key (``None``) only for the connection check."""
    return httpx.Request(
        "GET",
        base_url + STATUS_PATH,
        headers=_headers(api_key),
        params={"task_id": job_id},
        extensions=_extensions(timeout, max_answer_bytes),
    )
