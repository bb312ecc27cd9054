"""
Keeping the clip: stream the temporary result URL into storage, verified and atomic, reading it once.

The clip is streamed into a local file by a worker thread while its size and SHA-256 are computed (beside
the destination on a local disk, in the local temporary folder for an object store); the calling thread
reads that file as it grows, probing it with a real demuxer (it must be a whole video, and the one the
request asked for) and making its poster frame while the bytes arrive (its reads wait for them; what it
made is believed only once the download has ended whole). Then the clip is put in place, so the final
path only ever holds a complete, verified file: a local rename is atomic, and on S3 the clip is uploaded
once to its final key (a PUT or multipart upload appears whole or not at all). A record of what made it (the
request's fingerprint, the job id, the result) goes with it: as object metadata where the store keeps
it, else as a JSON sidecar put in place after the clip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_happyhorse import metrics
from airflow_provider_happyhorse.constants import CHUNK_SIZE
from airflow_provider_happyhorse.core.record import RenderRecord, StoredClip
from airflow_provider_happyhorse.core.responses import is_job_id, undecoded
from airflow_provider_happyhorse.core.results import cut_short, mismatches, not_compared, what_came
from airflow_provider_happyhorse.exceptions import (
    ClipMismatchError,
    ConfigurationError,
    DownloadLimitError,
    InvalidClipError,
    TransportError,
)
from airflow_provider_happyhorse.media import NotAVideo, read_clip
from airflow_provider_happyhorse.models import MediaInfo

if TYPE_CHECKING:
    from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

PARTIAL_SUFFIX = ".partial"
RECORD_SUFFIX = ".happyhorse.json"  # the sidecar beside a clip, where the store keeps no object metadata
METADATA_KEY = "happyhorse"  # the object metadata key, where it does
RECORD_LIMIT = 1024 * 1024  # a record is a few kB: never read more than this of one
POSTER_SUFFIX = ".poster.jpg"
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


def as_storage_path(destination: Any) -> Any:
    """An ``ObjectStoragePath`` from a path object or a URI (``file://``, ``s3://``, ``gs://``...)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(destination, ObjectStoragePath):
        return destination
    text = str(destination)
    if "://" not in text:
        text = f"file://{text}"
    elif text.startswith("file://localhost/"):  # the same place as file:///... (RFC 8089)
        text = "file:///" + text.removeprefix("file://localhost/")
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
    _refuse_missing_bucket(final, subject)
    check = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}{CHECK_SUFFIX}"
    try:
        _make_parent(final)
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


def _is_local(path: Any) -> bool:
    return str(path).startswith(("file://", "local://"))


def _refuse_missing_bucket(final: Any, subject: str) -> None:
    """An object store's bucket must exist: making folders there would create it (s3fs does), typo and all."""
    if _is_local(final) or not final.bucket:
        return
    try:
        found = final.fs.exists(final.bucket)
    except Exception as error:
        raise ConfigurationError(
            subject, f"cannot be reached ({type(error).__name__}: {error})", _WRITE_WAY_OUT
        ) from None
    if not found:
        raise ConfigurationError(
            subject,
            f"cannot be written: its bucket {final.bucket!r} does not exist (or the connection cannot see it)",
            "Create the bucket or fix its name or the connection in the URI; then clear the task.",
        )


def _make_parent(final: Any) -> None:
    """The destination's folder, on local disks; object stores have no folders to make (and no bucket is made)."""
    if _is_local(final):
        final.parent.mkdir(parents=True, exist_ok=True)


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


def poster_path_for(final: Any) -> Any:
    """``daily/2026-11-01.mp4`` -> ``daily/2026-11-01.poster.jpg``."""
    return final.parent / f"{final.stem}{POSTER_SUFFIX}"


def _record_path(final: Any) -> Any:
    return final.parent / f"{final.name}{RECORD_SUFFIX}"


def _keeps_metadata(path: Any) -> bool:
    fs = path.fs
    return callable(getattr(fs, "setxattr", None)) and callable(getattr(fs, "getxattr", None))


def read_small_regular_file(path: str, limit: int) -> bytes | None:
    """A local file's bytes if it is a regular file (never a FIFO, never through a symlink) of at most ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
            return None
        chunks, total = [], 0
        while total <= limit and (data := os.read(fd, limit + 1 - total)):
            chunks.append(data)
            total += len(data)
        return None if total > limit else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_record_text(final: Any) -> str | None:
    """
    The text of the record kept with the clip at ``final`` (an ``ObjectStoragePath``), read as something
    anyone with write access could have put there: at most ``RECORD_LIMIT`` bytes, from a regular file only
    (a local sidecar is opened without blocking and without following a link); None when there is none.
    """
    try:
        if _keeps_metadata(final):
            return str(final.fs.getxattr(final.path, METADATA_KEY))
        sidecar = _record_path(final)
        if _is_local(sidecar):
            data = read_small_regular_file(sidecar.path, RECORD_LIMIT)
        else:
            info = sidecar.fs.info(sidecar.path)
            if info.get("type") != "file" or int(info.get("size") or 0) > RECORD_LIMIT:
                return None
            with sidecar.open("rb") as handle:
                data = handle.read(RECORD_LIMIT + 1)
    except Exception:  # missing, unreadable, or the store would not answer: no record
        return None
    return None if data is None or len(data) > RECORD_LIMIT else data.decode("utf-8", errors="replace")


def _is_regular_file(path: Any) -> bool:
    """A file, not a FIFO, socket or device (which could block a reader forever); a link is followed."""
    try:
        return bool(path.fs.info(path.path).get("type") == "file")
    except Exception:
        return False


def read_clip_record(destination: Any) -> RenderRecord | None:
    """The record of the clip at ``destination``, when it holds one we made whose size still matches."""
    final = as_storage_path(destination)
    if not _is_regular_file(final) or (raw := read_record_text(final)) is None:
        return None
    try:
        record = RenderRecord.model_validate_json(raw)
        size = final.stat().st_size
    except (ValueError, OSError):
        return None
    return record if record.stored is not None and record.stored.size == size else None


def prove_kept_clip(destination: Any, fingerprint: str) -> tuple[RenderRecord | None, str]:
    """
    The record of the clip kept at ``destination`` for the request whose fingerprint is given, when it
    proves itself, else None; and what was found, in words. It proves itself when our record is beside it
    (or in its metadata), was made for this request, and the file's size and SHA-256 are the record's. The
    record's paths are the destination's (never what the record says), and the poster is named only when
    its bytes are the ones recorded.
    """
    final = as_storage_path(destination)
    if not final.exists():
        return None, "holds no file"
    if not _is_regular_file(final):
        return None, "holds something that is not a regular file"
    record = read_clip_record(final)
    if record is None or record.stored is None:
        return None, "holds a file with no record of ours that matches its size"
    if record.fingerprint != fingerprint:
        return None, "holds a clip made for another request"
    if record.job_id is None or not is_job_id(record.job_id):
        return None, "holds a clip whose record names no valid job id"
    size, sha256 = digest(final)
    if (size, sha256) != (record.stored.size, record.stored.sha256):
        return None, f"holds a file whose SHA-256 ({sha256}) is not the one its record names ({record.stored.sha256})"
    poster = poster_path_for(final)
    poster_proven = (
        record.stored.poster_sha256 is not None
        and _is_regular_file(poster)
        and digest(poster) == (record.stored.poster_size, record.stored.poster_sha256)
    )
    stored = record.stored.model_copy(
        update={"path": str(final), "poster_path": str(poster) if poster_proven else None}
    )
    found = f"holds the clip of job {record.job_id} made for this request (sha256 {sha256})"
    return record.with_stored(stored), found


# What a clip's record leaves out: the request (its fingerprint stands for it) and the wait.
_NOT_KEPT_WITH_THE_CLIP = frozenset({"request", "deadline", "schedule", "end_task_on_success"})


def store_clip(
    hook: HappyHorseHook,
    *,
    job_id: str,
    url: str,
    destination: Any,
    record: RenderRecord | None = None,
    verify_clip: str = "strict",
    poster: bool = True,
    known: StoredClip | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[StoredClip, bool]:
    """
    Store the clip at ``destination``; returns it and whether it was downloaded (False: an earlier try
    already stored the same complete file, checked by size and SHA-256, so nothing was fetched).

    Before the clip is put in place it must open as a whole video (else ``InvalidClipError``, naming
    what came back) and, unless ``verify_clip`` is ``"off"``, match ``request`` (else, with
    ``"strict"``, ``ClipMismatchError`` and nothing stored). ``record`` is the task's render (by default:
    the job's id and URL, made for no request); it is kept with the clip, without its request.

    The clip is read once: streamed into a local file by a worker thread (hashed as it comes), probed and
    given its poster from that file by the calling thread while it arrives, then put in place: renamed, on
    a local disk (the file is written beside the destination), or uploaded once to the final key with its
    record as metadata, on an object store.
    """
    if record is None:
        record = RenderRecord(job_id=job_id, status="SUCCESS", video_url=url)
    request = record.request
    target: _Target = (
        _LocalTarget(local, scheme="local" if str(destination).startswith("local://") else "file")
        if (local := local_path(destination)) is not None
        else _ObjectTarget(destination)
    )
    if known is not None and known.path == target.uri and target.holds(known.size, known.sha256):
        return known, False
    target.prepare()
    token = f"{job_id}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    temporary = target.temporary_clip(token)
    try:
        size, sha256, media, poster_bytes = _download_and_read(hook, job_id, url, temporary, on_chunk, poster)
        found = [] if verify_clip == "off" else mismatches(media, request, record.usage)
        if verify_clip != "off":
            metrics.clip_verified(found)
            for skipped in not_compared(request, record.usage):
                hook.log.info("Job %s's clip, %s", job_id, skipped)
        if found and verify_clip == "strict":
            raise ClipMismatchError(job_id, found)
        if found:
            hook.log.warning("%s; kept, as verify_clip='warn' asks", ClipMismatchError(job_id, found))
        clip = StoredClip(
            path=target.uri,
            size=size,
            sha256=sha256,
            media=media,
            verified=None if verify_clip == "off" else not found,
            poster_path=target.poster_uri if poster else None,
            poster_size=None if poster_bytes is None else len(poster_bytes),
            poster_sha256=None if poster_bytes is None else hashlib.sha256(poster_bytes).hexdigest(),
        )
        kept = record.with_stored(clip).model_dump_json(exclude=set(_NOT_KEPT_WITH_THE_CLIP))
        target.publish(temporary, poster_bytes, kept, token)
    finally:
        _remove_local(temporary)  # a published local clip was renamed away: nothing is left to remove
    metrics.clip_stored(verify_clip)
    return clip, True


def local_path(destination: Any) -> str | None:
    """
    The path on this machine of a local destination (an absolute path, ``file://``, ``local://``), as
    ``as_storage_path`` reads it (no normalising, no percent-decoding); None for an object store.
    """
    protocol = getattr(destination, "protocol", None)
    if protocol is not None:  # an ObjectStoragePath
        return str(destination.path) if protocol in ("file", "local") else None
    text = str(destination)
    if "://" not in text:
        return text
    if text.startswith("file://localhost/"):
        return "/" + text.removeprefix("file://localhost/")
    for prefix in ("file://", "local://"):
        if text.startswith(prefix) and text[len(prefix) :].startswith("/"):
            return text[len(prefix) :]
    return None


class _Target:
    """Where a clip is put: its URI and its poster's, and how a downloaded clip is put there."""

    uri: str
    poster_uri: str

    def holds(self, size: int, sha256: str) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Remove what killed tries left, and make the destination's folder."""
        raise NotImplementedError

    def temporary_clip(self, token: str) -> str:
        """The local file the clip is downloaded into."""
        raise NotImplementedError

    def publish(self, temporary: str, poster_bytes: bytes | None, record: str, token: str) -> None:
        """Put the poster, the clip and its record in place, in that order: a clip at the final path has both."""
        raise NotImplementedError


class _LocalTarget(_Target):
    """
    A local disk, through ``os`` alone: the clip is written beside the destination and renamed into place
    (atomic), the poster before it and the record (a sidecar) after it.
    """

    def __init__(self, path: str, *, scheme: str) -> None:
        self.path = path
        self.folder, self.name = os.path.split(path)
        self.uri = f"{scheme}://{path}"  # as ObjectStoragePath names it
        self.poster_name = f"{os.path.splitext(self.name)[0]}{POSTER_SUFFIX}"  # as poster_path_for names it
        self.poster_uri = f"{scheme}://{os.path.join(self.folder, self.poster_name)}"

    def holds(self, size: int, sha256: str) -> bool:
        try:
            return _digest_file(self.path) == (size, sha256)
        except OSError:
            return False

    def prepare(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        for name in os.listdir(self.folder):
            if _is_stale(name, self.name, self.poster_name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.folder, name))

    def temporary_clip(self, token: str) -> str:
        return os.path.join(self.folder, f".{self.name}.{token}")

    def publish(self, temporary: str, poster_bytes: bytes | None, record: str, token: str) -> None:
        written: list[str] = []
        try:
            if poster_bytes is not None:
                poster_temporary = os.path.join(self.folder, f".{self.poster_name}.{token}")
                written.append(poster_temporary)
                _write_new(poster_temporary, poster_bytes)
                os.replace(poster_temporary, os.path.join(self.folder, self.poster_name))
            record_temporary = os.path.join(self.folder, f".{self.name}{RECORD_SUFFIX}.{token}")
            written.append(record_temporary)
            _write_new(record_temporary, record.encode())
            _fsync(temporary)  # after a power loss the final path holds the whole clip or nothing
            os.replace(temporary, self.path)
            os.replace(record_temporary, self.path + RECORD_SUFFIX)  # last: a record only ever stands for a whole clip
            _fsync(self.folder)
        finally:
            for leftover in written:
                _remove_local(leftover)


class _ObjectTarget(_Target):
    """
    An object store (``ObjectStoragePath``): the clip is downloaded into a local temporary file and then
    uploaded. Where the store keeps object metadata and its uploads take it (S3), the clip is uploaded
    once, to its final key, with its record as metadata: a PUT or a multipart upload is atomic (the object
    appears whole when it completes, and an upload that fails is aborted), so no partial object is ever
    seen there. Elsewhere it goes up beside the destination and is moved into place, as before.
    """

    def __init__(self, destination: Any) -> None:
        self.final = as_storage_path(destination)
        self.poster = poster_path_for(self.final)
        self.uri = str(self.final)
        self.poster_uri = str(self.poster)

    def holds(self, size: int, sha256: str) -> bool:
        return bool(self.final.exists()) and digest(self.final) == (size, sha256)

    def prepare(self) -> None:
        _remove_stale_partials(self.final)
        _remove_stale_downloads()

    def temporary_clip(self, token: str) -> str:
        return _local_download_file(token)

    def publish(self, temporary: str, poster_bytes: bytes | None, record: str, token: str) -> None:
        fs = self.final.fs
        if poster_bytes is not None:
            fs.pipe_file(self.poster.path, poster_bytes)  # one PUT: atomic
        if _uploads_metadata(fs):
            fs.put_file(
                temporary,
                self.final.path,
                Metadata={METADATA_KEY: record},
                chunksize=UPLOAD_PART_BYTES,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
            return
        parent = self.final.parent
        clip_temporary = parent / f".{self.final.name}.{token}"
        record_temporary = parent / f".{self.final.name}{RECORD_SUFFIX}.{token}"
        metadata = _keeps_metadata(self.final)
        try:
            fs.put_file(temporary, clip_temporary.path)
            if metadata:
                fs.setxattr(clip_temporary.path, **{METADATA_KEY: record})
            else:
                record_temporary.write_text(record)
            clip_temporary.move(self.final)
            if not metadata:
                record_temporary.move(_record_path(self.final))  # last: a record only ever stands for a whole clip
        except BaseException:
            for leftover in (clip_temporary, record_temporary):
                _unlink_quietly(leftover)
            raise


# An upload to S3 holds one part of S3's smallest size in memory at a time (a clip under two parts goes up in one
# PUT, read whole: under 10 MiB); s3fs's default (50 MiB parts, ten at once) holds a clip under 100 MiB whole.
# Measured on moto with the 12.6 and 37.9 MB clips: +4.6 MiB either way, where two parts at once took +16 and +21.
UPLOAD_PART_BYTES = 5 * 1024 * 1024
UPLOAD_CONCURRENCY = 1
_DOWNLOAD_PREFIX = "happyhorse-download-"


def _uploads_metadata(fs: Any) -> bool:
    """s3fs: its ``put_file`` passes ``Metadata`` to the PUT (or to the multipart upload's creation)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "s3" in protocols and callable(getattr(fs, "put_file", None))


def _local_download_file(token: str) -> str:
    """
    A new file in the local temporary folder for a clip on its way to an object store, held with an
    exclusive ``flock`` while this process lives, so that a later store can tell a dead try's file
    (unlocked) from a running one's.
    """
    fd, path = tempfile.mkstemp(prefix=_DOWNLOAD_PREFIX, suffix=f".{token}")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held_downloads[path] = fd
    return path


_held_downloads: dict[str, int] = {}  # a download file's path -> the descriptor holding its lock


def _remove_stale_downloads() -> None:
    """Download files that killed tries left in the local temporary folder: those nobody holds a lock on."""
    folder = tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(folder) if name.startswith(_DOWNLOAD_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its try runs
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _remove_local(path: str) -> None:
    held = _held_downloads.pop(path, None)
    with contextlib.suppress(OSError):
        os.unlink(path)
    if held is not None:
        os.close(held)


def _is_stale(name: str, clip_name: str, poster_name: str) -> bool:
    """A partial file (clip, poster, record) or write check a killed try left for this destination."""
    return any(
        name.startswith(prefix) and name.endswith(suffix) and len(name) >= len(prefix) + len(suffix)
        for prefix, suffix in (
            (f".{clip_name}.", PARTIAL_SUFFIX),
            (f".{poster_name}.", PARTIAL_SUFFIX),
            (f".{clip_name}.", CHECK_SUFFIX),
        )
    )


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: str) -> None:
    """Flush a local file's (or folder's) data to disk: a rename is only as durable as what it renames."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest_file(path: str) -> tuple[int, str] | None:
    """A local regular file's size and SHA-256 (None for anything else: a FIFO would block its reader)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    sha = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _download_and_read(
    hook: HappyHorseHook,
    job_id: str,
    url: str,
    into: str,
    on_chunk: Callable[[int], None] | None,
    poster: bool,
) -> tuple[int, str, MediaInfo, bytes | None]:
    """
    Download into ``into`` in a worker thread (``_DownloadInThread``) while this thread reads the file as
    it arrives, tried again as the hook's download flow decides (a transient failure, or a body that is not
    a video: a CDN's refusal of a signed URL is often momentary). The reading is only believed once the
    download has ended whole; a download that fails or is cut ends every read at once and its error is
    raised here; a read that fails stops the download at its next chunk. The thread is joined before the
    try ends. (The decode stays in this thread, whose memory the C library keeps in the main arena.)
    """

    def fetch() -> tuple[int, str, MediaInfo, bytes | None]:
        arrival = _Arrival()
        started = hook.clock()
        download = _DownloadInThread(
            lambda: _download(hook, job_id=job_id, url=url, into=into, arrival=arrival, on_chunk=on_chunk),
            arrival,
            hook.clock,
        )
        download.start()
        try:
            try:
                read: tuple[MediaInfo, bytes | None] | Exception = read_clip(
                    arrival, poster=poster, clock=arrival.busy_clock
                )
            except Exception as error:  # raised below, unless the download failed (its reads then ended at once)
                read = error
                arrival.stop()  # the rest of the body would not change that: the download stops at its next chunk
            arrival.raise_interruption()  # a task's timeout, say, that came while a read waited
            size, sha256, came = download.result()  # the download's own error, if it failed, wins
        finally:
            arrival.stop()  # after an end, or a download that stopped: nothing to stop
            download.join()
            arrival.close()
        if download.whole:
            metrics.downloaded(size, (download.ended - started).total_seconds())
        if isinstance(read, NotAVideo):
            stopped = "" if download.whole else "; its download was stopped there"
            raise InvalidClipError(job_id, url, f"{came.said(size)} ({read}{stopped})")
        if isinstance(read, Exception):
            raise read
        media, poster_bytes = read
        if (cut := cut_short(media)) is not None:
            raise InvalidClipError(job_id, url, f"{came.said(size)} ({cut})")
        return size, sha256, media, poster_bytes

    return hook.download(job_id, url, fetch)


class _Arrival:
    """
    The local file a download (in a worker thread) is writing, read at the same time by the demuxer. A read
    waits until the bytes it asks for are written or the download has ended, so the demuxer sees exactly
    the bytes, and the end, that the finished file shows; the file's size (which the MP4 demuxer asks for)
    is the answer's Content-Length (a body of another size fails the download), or without one, waits for
    the end. A download that fails abandons it: every read then answers at once with the end of the file,
    so the reader stops promptly (and what it made of the file is thrown away). A reader that has stopped
    (done, or failed) stops the download at its next chunk.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._fd: int | None = None  # the reader's own descriptor of the file, once the download has made it
        self._expected: int | None = None
        self._written = 0
        self._ended = False
        self._abandoned = False
        self._stopped = False  # the reader has stopped: the download need not go on
        self._interruption: BaseException | None = None  # raised in a read, where PyAV would ignore it
        self._waited = 0.0  # seconds the reader has spent waiting for bytes

    # The download's side.

    def begin(self, fd: int, expected: int | None) -> None:
        """The download has made the file (``fd``, opened for reading too) and knows its size, if it was told."""
        with self._changed:
            self._fd, self._expected = os.dup(fd), expected
            self._changed.notify_all()

    def wrote(self, size: int) -> None:
        with self._changed:
            self._written = size
            self._changed.notify_all()

    def end(self) -> None:
        """The download has ended whole: what is written is the file."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def abandon(self) -> None:
        """Whatever the reader still wants, it gets the end of the file at once."""
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()

    @property
    def stopped(self) -> bool:
        """The reader has stopped before the download ended: the download stops too (checked after each chunk)."""
        return self._stopped

    def close(self) -> None:
        """Close the reader's descriptor (once the download has stopped)."""
        with self._changed:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # The reader's side.

    def stop(self) -> None:
        """The reader wants no more of the file."""
        with self._changed:
            self._stopped = True

    def interrupt(self, error: BaseException) -> None:
        """A read was interrupted by ``error`` (a signal's): kept for ``raise_interruption``, every read ends."""
        self._interruption = error
        self.abandon()

    def raise_interruption(self) -> None:
        """Raise what interrupted a read, if anything did (once the reader has returned)."""
        if self._interruption is not None:
            raise self._interruption

    def busy_clock(self) -> float:
        """A monotonic clock that leaves out the reader's waits for bytes: the probe's time limit is on its work."""
        return time.monotonic() - self._waited

    def open(self, mode: str = "rb") -> _ArrivingFile:
        return _ArrivingFile(self)

    def _until(self, ready: Callable[[], bool]) -> int | None:
        """The file's descriptor once ``ready()`` or the download has ended; None once it is abandoned."""
        with self._changed:
            while not self._abandoned and (self._fd is None or not (self._ended or ready())):
                began = time.monotonic()
                self._changed.wait()
                self._waited += time.monotonic() - began
            return None if self._abandoned else self._fd

    def read_at(self, position: int, count: int) -> bytes:
        fd = self._until(lambda: count >= 0 and self._written >= position + count)
        if fd is None:
            return b""
        if count < 0:
            count = max(0, self._written - position)
        parts: list[bytes] = []
        while count > 0 and (part := os.pread(fd, count, position)):
            parts.append(part)
            position += len(part)
            count -= len(part)
        return b"".join(parts)

    def size(self) -> int:
        fd = self._until(lambda: self._expected is not None)
        with self._changed:
            if fd is None or self._ended or self._expected is None:
                return self._written
            return self._expected


class _ArrivingFile:
    """A read-only file object over an ``_Arrival``, as PyAV reads one (read, seek, tell)."""

    def __init__(self, arrival: _Arrival) -> None:
        self._arrival = arrival
        self._position = 0

    def __enter__(self) -> _ArrivingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # PyAV re-raises an Exception from these in the thread that reads, but ignores any other BaseException (a
    # signal handler's, such as the task's execution_timeout): that one is kept for the caller, and the file ends.

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._arrival.read_at(self._position, size)
            self._position += len(data)
            return data
        except Exception:
            raise
        except BaseException as error:
            self._arrival.interrupt(error)
            return b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._seek(offset, whence)
        except Exception:
            raise
        except BaseException as error:
            self._arrival.interrupt(error)
            return self._position

    def _seek(self, offset: int, whence: int) -> int:
        if whence == os.SEEK_SET:
            self._position = offset
        elif whence == os.SEEK_CUR:
            self._position += offset
        elif whence == os.SEEK_END:
            self._position = self._arrival.size() + offset
        else:
            raise ValueError(f"whence {whence!r} is not SEEK_SET, SEEK_CUR or SEEK_END")
        if self._position < 0:
            raise OSError(f"seek to {self._position}, before the start of the file")
        return self._position

    def tell(self) -> int:
        return self._position


class _DownloadInThread:
    """
    ``_download`` in a worker thread, writing the ``_Arrival`` that the calling thread reads: its end (a
    download that ended whole) or its failure (every read then ends at once) is told to the arrival.
    """

    def __init__(self, download: Callable[[], tuple[int, str, Came]], arrival: _Arrival, clock: Any) -> None:
        self._download = download
        self._arrival = arrival
        self._clock = clock
        self._outcome: tuple[int, str, Came] | None = None
        self._error: BaseException | None = None
        self.whole = False  # the download ended whole (not stopped early, not failed)
        self.ended: Any = None  # when it ended (the hook's clock)
        self._thread = threading.Thread(target=self._run, name="happyhorse-clip-download", daemon=True)

    def _run(self) -> None:
        try:
            self._outcome = self._download()
        except BaseException as error:  # handed to the thread that asks for the result
            self._error = error
            self._arrival.abandon()
        else:
            self.whole = not self._arrival.stopped
            self._arrival.end()
        finally:
            self.ended = self._clock()

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> tuple[int, str, Came]:
        """The download's size, SHA-256 and what came, once it has ended; what it raised, raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


def _download(
    hook: HappyHorseHook,
    *,
    job_id: str,
    url: str,
    into: str,
    arrival: _Arrival,
    on_chunk: Callable[[int], None] | None,
) -> tuple[int, str, Came]:
    """
    Stream the result into the local file ``into`` (made anew, or emptied: a retry starts over): at most
    the connection's ``max_download_bytes``, within its ``download_timeout`` as a whole, telling ``arrival``
    of each chunk once it is written. Returns the size, the SHA-256 and what came (its type and, only when
    it came from the API's own host, its first bytes: a foreign body is never echoed).
    """
    settings = hook.settings
    cap, seconds = settings.max_download_bytes, settings.download_timeout
    deadline = hook.clock() + timedelta(seconds=seconds)
    sha = hashlib.sha256()
    size = 0
    head = b""
    with hook.stream_result(job_id, url) as (response, came_from):
        host = urlsplit(came_from).hostname or ""
        expected = _content_length(response)
        if expected is not None and expected > cap:
            raise DownloadLimitError(job_id, host, f"it is {expected:,} bytes, over max_download_bytes {cap:,}")
        content_type = response.headers.get("content-type")
        chunks, encoding = undecoded(response)  # as they arrive: the deadline is checked after each read
        if (encoding or "identity").strip().lower() != "identity":
            raise InvalidClipError(job_id, url, f"a body encoded as {encoding!r}, which was not asked for")
        fd = os.open(into, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            arrival.begin(fd, expected)
            for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise DownloadLimitError(job_id, host, f"it went past max_download_bytes {cap:,}")
                if len(head) < 256:
                    head += chunk[: 256 - len(head)]
                _write_all(fd, chunk)
                arrival.wrote(size)
                sha.update(chunk)
                if on_chunk is not None:
                    on_chunk(size)
                if arrival.stopped:  # the reader refused the file: the rest is not wanted
                    break
                if hook.clock() > deadline:
                    raise DownloadLimitError(
                        job_id, host, f"it took longer than download_timeout {seconds:g} s ({size:,} bytes by then)"
                    )
        finally:
            os.close(fd)
        came = Came(content_type, head, None if host == settings.egress.api_host else host)
    if arrival.stopped:
        return size, sha.hexdigest(), came
    if expected is not None and expected != size:
        raise TransportError(f"download of job {job_id} stopped at {size} of {expected} bytes", request_sent=True)
    if size == 0:
        raise InvalidClipError(job_id, url, f"{came.said(0)} (an empty body)")
    return size, sha.hexdigest(), came


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class Came:
    """What a download answered, for an error that names it: its type, first bytes and whose host it came from."""

    content_type: str | None
    head: bytes
    foreign_host: str | None  # None: the API's own host, whose bytes may be shown

    def said(self, size: int) -> str:
        return what_came(self.content_type, size, self.head, foreign_host=self.foreign_host)


def _content_length(response: Any) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _remove_stale_partials(final: Any) -> None:
    """
    Partial files (clip, poster, record) and write checks a killed try left beside the destination
    (never the destination itself, nor another destination's files).
    """
    parent = final.parent
    if not parent.exists():
        return
    patterns = (
        f".{final.name}.*{PARTIAL_SUFFIX}",
        f".{poster_path_for(final).name}.*{PARTIAL_SUFFIX}",
        f".{final.name}.*{CHECK_SUFFIX}",
    )
    for pattern in patterns:
        for leftover in parent.glob(pattern):
            _unlink_quietly(leftover)


def _unlink_quietly(path: Any) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:
        pass
