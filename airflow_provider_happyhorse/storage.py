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
from urllib.parse import urlsplit

from airflow_provider_happyhorse.constants import CHUNK_SIZE
from airflow_provider_happyhorse.core.retries import is_retryable_poll_error, retry_after_of
from airflow_provider_happyhorse.exceptions import (
    ConfigurationError,
    HappyHorseError,
    ResultUnavailableError,
    TransportError,
)

if TYPE_CHECKING:
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

PARTIAL_SUFFIX = ".partial"
CHECK_SUFFIX = ".happyhorse-write-check"
# What to install for the object stores whose filesystem package Airflow does not bring itself.
FILESYSTEM_PACKAGES = {
    "s3": "apache-airflow-providers-amazon[s3fs]",
    "s3a": "apache-airflow-providers-amazon[s3fs]",
    "gs": "apache-airflow-providers-google and gcsfs",
    "gcs": "apache-airflow-providers-google and gcsfs",
    "abfs": "apache-airflow-providers-microsoft-azure and adlfs",
    "az": "apache-airflow-providers-microsoft-azure and adlfs",
    "adl": "apache-airflow-providers-microsoft-azure and adlfs",
}
_WRITE_WAY_OUT = (
    "Check that the folder or bucket exists and that the worker may write there (for object stores, the "
    "connection named in the URI); then clear the task."
)
_URI_EXAMPLES = (
    "an absolute path (/data/clips/a.mp4) or a URI (file:///data/clips/a.mp4, s3://aws_default@bucket/a.mp4)"
)


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


def prepare_destination(destination: Any) -> Any:
    """
    ``output_path`` resolved and proven writable before anything is paid for: a known scheme whose
    filesystem package is installed, an absolute location, its folder created, and a tiny file written
    and removed beside the destination. Raises ``ConfigurationError`` naming what is wrong and the way out.
    """
    text = str(destination)
    subject = f"output_path {text!r}"
    scheme, _, rest = text.partition("://")
    if not rest:
        if not text.startswith("/"):
            raise ConfigurationError(
                subject,
                "is a relative path: it would land in whatever folder the worker runs in",
                f"Give {_URI_EXAMPLES}.",
            )
    elif scheme == "file" and urlsplit(text).netloc not in ("", "localhost"):
        raise ConfigurationError(
            subject,
            f"names the host {urlsplit(text).netloc!r} (file:// takes an absolute path after it)",
            f"Give {_URI_EXAMPLES}.",
        )
    try:
        final = as_storage_path(destination)
        is_folder = final.is_dir()  # the first look at the store: a missing package or host shows here
    except ValueError as error:
        known = _known_protocols().get(scheme)
        if known is not None:  # Airflow 3.0 says "no filesystem registered" where 3.3 raises ImportError
            raise _missing_package(subject, scheme, f"{error}; {known.get('err', known.get('class'))}") from None
        raise ConfigurationError(
            subject,
            f"uses a scheme Airflow's object storage does not know ({error})",
            "Use file://, s3://, gs://, abfs:// or another fsspec protocol.",
        ) from None
    except ImportError as error:
        raise _missing_package(subject, scheme, str(error)) from None
    except Exception as error:
        raise ConfigurationError(
            subject, f"cannot be reached ({type(error).__name__}: {error})", _WRITE_WAY_OUT
        ) from None
    if is_folder:
        raise ConfigurationError(subject, "is a folder", "Give the path of the file to store the clip as.")
    check = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}{CHECK_SUFFIX}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        check.write_bytes(b"")
        check.unlink()
    except (FileExistsError, NotADirectoryError) as error:
        raise ConfigurationError(
            subject,
            f"cannot be written: a folder on its path is a file ({type(error).__name__}: {error})",
            "Give a path whose folders are folders (or remove the file in the way); then clear the task.",
        ) from None
    except Exception as error:
        _unlink_quietly(check)
        raise ConfigurationError(
            subject, f"cannot be written ({type(error).__name__}: {error})", _WRITE_WAY_OUT
        ) from None
    return final


def _known_protocols() -> dict[str, dict[str, str]]:
    from fsspec.registry import known_implementations

    return dict(known_implementations)


def _missing_package(subject: str, scheme: str, detail: str) -> ConfigurationError:
    package = FILESYSTEM_PACKAGES.get(scheme, "the fsspec filesystem package for this scheme")
    return ConfigurationError(
        subject, f"needs a package that is not installed ({detail})", f"Install {package} on every worker."
    )


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
    retries = 0
    while True:
        try:
            size, sha256 = _download(hook, job_id=job_id, url=url, into=temporary, on_chunk=on_chunk)
            break
        except HappyHorseError as error:
            _unlink_quietly(temporary)
            if retries >= policy.max_retries or not is_retryable_poll_error(error):
                raise
            retries += 1
            delay = policy.backoff(retries, retry_after_of(error), hook.rng)
            hook.log.info("Download of job %s failed (%s); retry %d in %.1f s", job_id, error, retries, delay)
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
    """
    Partial files and write checks a killed try left beside the destination (never the destination
    itself, nor another destination's files).
    """
    parent = final.parent
    if not parent.exists():
        return
    for suffix in (PARTIAL_SUFFIX, CHECK_SUFFIX):
        for leftover in parent.glob(f".{final.name}.*{suffix}"):
            _unlink_quietly(leftover)


def _unlink_quietly(path: Any) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:
        pass
