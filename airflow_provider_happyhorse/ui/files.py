"""
Which files the HappyHorse view serves: only a clip the provider stored, or the poster it wrote beside it.

A file route takes its path from the task's result XCom, which a user with XCom edit rights, or any DAG
whose task returns a dict and pushes a ``job_id`` XCom, can set to anything. So a file is served only
when every rule below holds, checked on every request; otherwise ``NotServed`` names the rule that
failed (the route answers 404 with it) and one warning line names the task instance and the rule.

1. The result reads as a ``RenderRecord`` (``RenderRecord.from_result``) with a stored clip: a job id and
   the clip's path, size and SHA-256; for the poster, its path is ``poster_path_for`` the clip's: the
   poster beside the clip.
2. With ``[happyhorse] view_roots`` set (comma-separated folders and ``scheme://bucket/prefix`` URLs),
   the file is inside one of them: local paths compared on path components after resolving symlinks,
   object-store URLs without the connection id.
3. The provider's record of the clip exists beside it (beside the symlink's target, for a local symlink)
   and agrees with the result: the same job, size and SHA-256 (for the poster: the record's
   ``poster_size`` and ``poster_sha256``).
4. The file is a regular file (local files are opened with ``O_NONBLOCK | O_NOFOLLOW`` and checked on the
   descriptor before any read, so a FIFO never blocks; the descriptor is the one served), of the recorded
   size, beginning like an MP4/MOV (an ISO-BMFF box) or a JPEG, and its SHA-256 is the recorded one
   (computed once per version of the file and kept in a small bounded cache).

Importing this module does no I/O; a check reads the record, the file's first bytes and, once per
version of the file, the whole file.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow_provider_happyhorse.core.record import RenderRecord

log = logging.getLogger(__name__)

VIDEO = "video"
POSTER = "poster"
WHY = "the HappyHorse view serves only files the provider stored"
MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"})
JPEG_START = b"\xff\xd8\xff"
HASH_CHUNK = 1024 * 1024
SHA_CACHE_SIZE = 1024
DEFAULT_NAMES = {VIDEO: "clip.mp4", POSTER: "poster.jpg"}
MEDIA_TYPES = {VIDEO: "video/mp4", POSTER: "image/jpeg"}
_SCHEME_ALIASES = {"s3a": "s3", "gcs": "gs"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")

# The rules, as the 404's detail and the warning name them ("{what}": "the clip" or "the poster").
NO_FIELD = "the result has no {field}"
NOT_A_LOCATION = "the stored path is neither an absolute path nor a storage URL"
POSTER_ELSEWHERE = "the poster path is not the poster beside the stored clip"
UNREACHABLE = "{what}'s storage is unknown or cannot be reached"
OUTSIDE_ROOTS = "{what} is outside [happyhorse] view_roots"
NO_RECORD = "the clip's record beside it is missing"
OTHER_JOB = "the clip's record is of another job"
RECORD_DISAGREES = "the clip's record does not agree with the result's size and SHA-256"
NO_POSTER_RECORD = "the clip's record has no poster"
GONE = "{what} is gone from its storage"
NOT_REGULAR = "{what} is not a regular file"
SIZE_CHANGED = "{what}'s size is not the size recorded"
SHA_CHANGED = "{what}'s SHA-256 is not the one recorded"
NOT_MP4 = "{what} does not begin like an MP4/MOV video"
NOT_JPEG = "{what} does not begin like a JPEG"


class NotServed(Exception):
    """A rule the file fails: the route answers 404 with ``detail``."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule

    @property
    def detail(self) -> str:
        return f"not served: {self.rule} ({WHY})"


class Source(Protocol):
    """An open file to serve: positional reads, then close."""

    def read_at(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class _LocalFile:
    """A local file by its descriptor (closed by ``close``, else when collected: never leaked)."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "rb", buffering=0)

    def read_at(self, offset: int, size: int) -> bytes:
        return os.pread(self._file.fileno(), size, offset)

    def close(self) -> None:
        self._file.close()


class _StoredObject:
    """An object-store file through its filesystem's one open handle."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def read_at(self, offset: int, size: int) -> bytes:
        self._handle.seek(offset)
        data: bytes = self._handle.read(size)
        return data

    def close(self) -> None:
        self._handle.close()


@dataclass
class Servable:
    """A file that passed every rule, open: ``chunks`` streams a byte range and closes it; else ``close``."""

    kind: str
    size: int
    filename: str
    source: Source

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.kind]

    @property
    def headers(self) -> dict[str, str]:
        """What every served file carries: no sniffing, shown inline under a safe name, sandboxed."""
        return {
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{self.filename}"',
            "Content-Security-Policy": "sandbox",
        }

    def chunks(self, first: int, last: int, chunk_size: int) -> Iterator[bytes]:
        """Bytes ``first``..``last`` (inclusive) in chunks of at most ``chunk_size``; a sync iterator."""
        try:
            offset = first
            while offset <= last:
                data = self.source.read_at(offset, min(chunk_size, last - offset + 1))
                if not data:
                    return
                offset += len(data)
                yield data
        finally:
            self.source.close()

    def close(self) -> None:
        self.source.close()


def safe_filename(path_text: str, kind: str) -> str:
    """The base name reduced to ``[A-Za-z0-9._-]`` (no leading dot), else ``clip.mp4`` / ``poster.jpg``."""
    name = _SAFE_NAME.sub("", path_text.rpartition("/")[2]).lstrip(".")
    return name or DEFAULT_NAMES[kind]


# -- the SHA-256 cache --------------------------------------------------------------------------------------


class _ShaCache:
    """SHA-256 of a file by its version's key (location, size, times): the least recently used go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], str]) -> str:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()  # outside the lock: another file's request need not wait for this one's hash
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


SHA_CACHE = _ShaCache(SHA_CACHE_SIZE)


def _sha256(source: Source, size: int) -> str:
    sha = hashlib.sha256()
    offset = 0
    while offset < size:
        data = source.read_at(offset, min(HASH_CHUNK, size - offset))
        if not data:
            break
        sha.update(data)
        offset += len(data)
    return sha.hexdigest()


# -- the roots ------------------------------------------------------------------------------------------------


def view_roots() -> list[str] | None:
    """``[happyhorse] view_roots`` (``AIRFLOW__HAPPYHORSE__VIEW_ROOTS``) as a list; None when unset."""
    from airflow.configuration import conf

    raw = conf.get("happyhorse", "view_roots", fallback="") or ""
    roots = [entry.strip() for entry in raw.split(",") if entry.strip()]
    return roots or None


_LOCAL_SCHEMES = ("file://", "local://")  # Airflow's object storage reads both from the local filesystem


def _is_local(text: str) -> bool:
    return text.startswith("/") or text.startswith(_LOCAL_SCHEMES)


def _local_path(text: str) -> str | None:
    """The absolute local path of ``/a/b`` or ``file:///a/b`` (as the operator's storage path reads it)."""
    from airflow_provider_happyhorse.storage import as_storage_path

    if text.startswith(_LOCAL_SCHEMES) and not text.startswith(tuple(f"{scheme}/" for scheme in _LOCAL_SCHEMES)):
        return None  # file://host/...: not a path on this machine
    path = str(as_storage_path(text).path)
    return path if os.path.isabs(path) else None


def _object_parts(text: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``s3://conn@bucket/a/b`` -> ``("s3", "bucket", ("a", "b"))``: without the connection id; None if odd."""
    split = urlsplit(text)
    scheme = split.scheme.lower()
    bucket = split.netloc.rpartition("@")[2]
    parts = tuple(part for part in split.path.split("/") if part)
    if not scheme or not bucket or any(part in (".", "..") for part in parts):
        return None
    return _SCHEME_ALIASES.get(scheme, scheme), bucket, parts


def _inside_local(real: str, roots: list[str]) -> bool:
    for root in roots:
        if not _is_local(root) or (path := _local_path(root)) is None:
            continue
        root_real = os.path.realpath(path)
        if os.path.commonpath([root_real, real]) == root_real:
            return True
    return False


def _inside_objects(text: str, roots: list[str]) -> bool:
    target = _object_parts(text)
    if target is None:
        return False
    for root in roots:
        if _is_local(root) or (prefix := _object_parts(root)) is None:
            continue
        scheme, bucket, parts = prefix
        if (scheme, bucket) == target[:2] and target[2][: len(parts)] == parts:
            return True
    return False


# -- the files ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Opened:
    source: Source
    size: int
    version: Hashable  # what changes when the file does: the SHA-256 cache's key


class _Location(Protocol):
    text: str

    def inside(self, roots: list[str]) -> bool: ...

    def record_text(self) -> str | None: ...

    def open(self, what: str) -> _Opened: ...

    def poster(self) -> _Location: ...


class _LocalLocation:
    """A local file, by its real path (symlinks resolved)."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.real = os.path.realpath(path)

    def inside(self, roots: list[str]) -> bool:
        return _inside_local(self.real, roots)

    def record_text(self) -> str | None:
        from airflow_provider_happyhorse.storage import as_storage_path, read_record_text

        return read_record_text(as_storage_path(self.real))

    def open(self, what: str) -> _Opened:
        try:
            fd = os.open(self.real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotServed(GONE.format(what=what)) from None
        except OSError as error:
            if error.errno == errno.ELOOP:  # swapped for a symlink since it was resolved
                raise NotServed(NOT_REGULAR.format(what=what)) from None
            raise NotServed(GONE.format(what=what)) from None
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise NotServed(NOT_REGULAR.format(what=what))
            source = _LocalFile(fd)
        except BaseException:
            os.close(fd)
            raise
        version = (
            "file",
            self.real,
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        return _Opened(source, status.st_size, version)

    def poster(self) -> _LocalLocation:
        from airflow_provider_happyhorse.storage import as_storage_path, poster_path_for

        path = str(poster_path_for(as_storage_path(self.real)).path)
        return _LocalLocation(path, path)


class _ObjectLocation:
    """A file in an object store (``s3://``, ``gs://``...), through Airflow's ObjectStoragePath."""

    def __init__(self, text: str, path: Any) -> None:
        self.text = text
        self.path = path

    def inside(self, roots: list[str]) -> bool:
        return _inside_objects(self.text, roots)

    def record_text(self) -> str | None:
        from airflow_provider_happyhorse.storage import read_record_text

        return read_record_text(self.path)

    def open(self, what: str) -> _Opened:
        fs = self.path.fs
        try:
            info = fs.info(self.path.path)
        except FileNotFoundError:
            raise NotServed(GONE.format(what=what)) from None
        except Exception:
            raise NotServed(UNREACHABLE.format(what=what)) from None
        if info.get("type") != "file":
            raise NotServed(NOT_REGULAR.format(what=what))
        size = int(info.get("size") or 0)
        stamps = tuple(
            str(info.get(name)) for name in ("LastModified", "mtime", "updated", "last_modified", "ETag", "etag")
        )
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            raise NotServed(GONE.format(what=what)) from None
        except Exception:
            raise NotServed(UNREACHABLE.format(what=what)) from None
        return _Opened(_StoredObject(handle), size, ("object", self.text, size, stamps))

    def poster(self) -> _ObjectLocation:
        from airflow_provider_happyhorse.storage import poster_path_for

        path = poster_path_for(self.path)
        return _ObjectLocation(str(path), path)


def _locate(text: str, what: str) -> _Location:
    if _is_local(text):
        path = _local_path(text)
        if path is None:
            raise NotServed(NOT_A_LOCATION)
        return _LocalLocation(text, path)
    if "://" not in text or _object_parts(text) is None:
        raise NotServed(NOT_A_LOCATION)
    from airflow_provider_happyhorse.storage import as_storage_path

    try:
        path = as_storage_path(text)
        path.fs  # noqa: B018 (the filesystem is made here: an unknown scheme or a missing package shows now)
    except Exception:
        raise NotServed(UNREACHABLE.format(what=what)) from None
    return _ObjectLocation(text, path)


# -- the rule -------------------------------------------------------------------------------------------------


def _record_of(result: RenderRecord | Mapping[str, Any]) -> RenderRecord:
    """The task's result read through the render record; a missing or malformed field is named."""
    from pydantic import ValidationError

    from airflow_provider_happyhorse.core.record import RenderRecord

    if isinstance(result, RenderRecord):
        return result
    try:
        return RenderRecord.from_result(result)
    except ValidationError as error:
        location = error.errors()[0]["loc"]
        raise NotServed(NO_FIELD.format(field=location[0] if location else "valid value")) from None


def _kept_record(location: _Location) -> RenderRecord:
    """The record the provider kept beside the clip."""
    from pydantic import ValidationError

    from airflow_provider_happyhorse.core.record import RenderRecord

    raw = location.record_text()
    if raw is None:
        raise NotServed(NO_RECORD)
    try:
        record = RenderRecord.model_validate_json(raw)
    except ValidationError:
        raise NotServed(NO_RECORD) from None
    if record.stored is None:
        raise NotServed(NO_RECORD)
    return record


def _verified(
    location: _Location, what: str, size: int, sha256: str, starts: Callable[[bytes], bool], rule: str
) -> _Opened:
    """``location`` opened, once it is of ``size`` bytes, begins as ``starts`` wants and hashes to ``sha256``."""
    opened = location.open(what)
    try:
        if opened.size != size:
            raise NotServed(SIZE_CHANGED.format(what=what))
        if not starts(opened.source.read_at(0, 16)):
            raise NotServed(rule.format(what=what))
        if SHA_CACHE.get(opened.version, lambda: _sha256(opened.source, opened.size)) != sha256:
            raise NotServed(SHA_CHANGED.format(what=what))
    except BaseException:
        opened.source.close()
        raise
    return opened


def _is_mp4(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] in MP4_BOXES


def _is_jpeg(head: bytes) -> bool:
    return head.startswith(JPEG_START)


def _check(result: RenderRecord | Mapping[str, Any], kind: str) -> Servable:
    told = _record_of(result)
    stored = told.stored
    if stored is None:
        raise NotServed(NO_FIELD.format(field="stored_path"))
    if kind == POSTER:
        if stored.poster_path is None:
            raise NotServed(NO_FIELD.format(field="poster_path"))
        beside = _poster_beside(stored.path)
        if beside is None or beside != _normal(stored.poster_path):
            raise NotServed(POSTER_ELSEWHERE)
    roots = view_roots()
    clip = _locate(stored.path, "the clip")
    if roots is not None and not clip.inside(roots):
        raise NotServed(OUTSIDE_ROOTS.format(what="the clip"))
    # The record before the file itself is opened: a path the provider never stored is refused alike,
    # whether a file is there or not.
    kept = _kept_record(clip)
    assert kept.stored is not None
    if kept.job_id != told.job_id:
        raise NotServed(OTHER_JOB)
    if (kept.stored.size, kept.stored.sha256) != (stored.size, stored.sha256):
        raise NotServed(RECORD_DISAGREES)
    opened = _verified(clip, "the clip", kept.stored.size, kept.stored.sha256, _is_mp4, NOT_MP4)
    if kind == VIDEO:
        return Servable(VIDEO, opened.size, safe_filename(stored.path, VIDEO), opened.source)
    opened.source.close()
    if kept.stored.poster_size is None or kept.stored.poster_sha256 is None:
        raise NotServed(NO_POSTER_RECORD)
    poster = clip.poster()
    if roots is not None and not poster.inside(roots):
        raise NotServed(OUTSIDE_ROOTS.format(what="the poster"))
    opened = _verified(poster, "the poster", kept.stored.poster_size, kept.stored.poster_sha256, _is_jpeg, NOT_JPEG)
    assert stored.poster_path is not None
    return Servable(POSTER, opened.size, safe_filename(stored.poster_path, POSTER), opened.source)


def _normal(text: str) -> str | None:
    from airflow_provider_happyhorse.storage import as_storage_path

    try:
        return str(as_storage_path(text))
    except Exception:
        return None


def _poster_beside(stored: str) -> str | None:
    from airflow_provider_happyhorse.storage import as_storage_path, poster_path_for

    try:
        return str(poster_path_for(as_storage_path(stored)))
    except Exception:
        return None


def open_stored_file(result: RenderRecord | Mapping[str, Any], kind: str, where: str) -> Servable:
    """
    The clip (``kind`` ``"video"``) or poster (``"poster"``) of a task's ``result``, open, when every rule
    holds; else ``NotServed`` naming the rule, logged once as a warning with ``where`` (the task instance).
    """
    if kind not in MEDIA_TYPES:
        raise ValueError(f"kind must be {VIDEO!r} or {POSTER!r}, not {kind!r}")
    try:
        return _check(result, kind)
    except NotServed as refusal:
        log.warning("HappyHorse view: not serving the %s of %s: %s", kind, where, refusal.rule)
        raise
