"""
Keeping the clip: stream the temporary result URL into object storage, verified and atomic.

The clip is written to a hidden temporary name beside the destination while its size and SHA-256
are computed, then moved into place, so the final path only ever holds a complete file (a local
rename is atomic; on object stores the final object appears whole or not at all).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_happyhorse import client_core
from airflow_provider_happyhorse.exceptions import HappyHorseError, ResultUnavailableError, TransportError

if TYPE_CHECKING:
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

CHUNK_SIZE = 1024 * 1024
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class StoredClip:
    path: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def as_storage_path(destination: Any) -> Any:
    """An ``ObjectStoragePath`` from a path object or a URI (``file://``, ``s3://``, ``gs://``...)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(destination, ObjectStoragePath):
        return destination
    text = str(destination)
    if "://" not in text:
        text = f"file://{text}"
    return ObjectStoragePath(text)


def digest(path: Any) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def store_clip(
    hook: HappyHorseHook,
    *,
    job_id: str,
    url: str,
    destination: Any,
    known: StoredClip | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[StoredClip, bool]:
    """
    Store the clip at ``destination``; returns it and whether it was downloaded (False: an earlier try
    already stored the same complete file, checked by size and SHA-256, so nothing was fetched).
    """
    final = as_storage_path(destination)
    if (
        known is not None
        and known.path == str(final)
        and final.exists()
        and digest(final) == (known.size, known.sha256)
    ):
        return known, False
    _remove_stale_partials(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.{job_id}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    policy = hook.settings.policy
    attempt = 0
    while True:
        attempt += 1
        try:
            size, sha256 = _download(hook, job_id=job_id, url=url, into=temporary, on_chunk=on_chunk)
            break
        except HappyHorseError as error:
            _unlink_quietly(temporary)
            if attempt >= policy.max_attempts or not client_core.is_retryable_poll_error(error):
                raise
            delay = policy.backoff(attempt, client_core.retry_after_of(error), hook.rng)
            hook.log.info("Download of job %s failed (%s); retrying in %.1f s", job_id, error, delay)
            hook.sleep(delay)
        except BaseException:
            _unlink_quietly(temporary)
            raise
    try:
        temporary.move(final)
    except BaseException:
        _unlink_quietly(temporary)
        raise
    return StoredClip(path=str(final), size=size, sha256=sha256), True


def _download(
    hook: HappyHorseHook, *, job_id: str, url: str, into: Any, on_chunk: Callable[[int], None] | None
) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with hook.stream_result(job_id, url) as response:
        expected = response.headers.get("content-length")
        with into.open("wb") as handle:
            for chunk in response.iter_bytes(CHUNK_SIZE):
                handle.write(chunk)
                sha.update(chunk)
                size += len(chunk)
                if on_chunk is not None:
                    on_chunk(size)
    if expected is not None and int(expected) != size:
        raise TransportError(f"download of job {job_id} stopped at {size} of {expected} bytes", request_sent=True)
    if size == 0:
        raise ResultUnavailableError(job_id, url, "the result file is empty")
    return size, sha.hexdigest()


def _remove_stale_partials(final: Any) -> None:
    """Partial files a killed try left beside the destination (never the destination itself)."""
    parent = final.parent
    if not parent.exists():
        return
    for leftover in parent.glob(f".{final.name}.*{PARTIAL_SUFFIX}"):
        _unlink_quietly(leftover)


def _unlink_quietly(path: Any) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:
        pass
