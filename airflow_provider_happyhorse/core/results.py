"""
Judging a result download, with no I/O: which redirect to follow, what a body that is not a video is
(said so a person can tell an error page from a cut file), and whether a video is the one the request
asked for. ``storage`` downloads and ``media`` reads; they ask here.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from airflow_provider_happyhorse.constants import ASPECT_TOLERANCE, DURATION_TOLERANCE, MAX_RESULT_REDIRECTS
from airflow_provider_happyhorse.exceptions import ResultRedirectError
from airflow_provider_happyhorse.models import MediaInfo, Usage, VideoRequest

# The frame's short side each resolution promises.
RESOLUTION_HEIGHT = {"720P": 720, "1080P": 1080}
# The tasks whose clip takes the request's aspect_ratio (a first frame's or a source video's aspect wins).
RATIO_TASKS = frozenset({"text", "reference"})
# An edit lasts as long as its source video, at most this long (seconds).
MAX_EDIT_SECONDS = 15.0

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def next_hop(job_id: str, chain: list[str], location: str | None) -> str:
    """
    The URL a redirect from ``chain[-1]`` leads to, appended to ``chain``; ``ResultRedirectError`` for a
    redirect without a Location, to another scheme, back to a URL already visited, or one hop too many.
    """
    if not location:
        raise ResultRedirectError(job_id, chain, "redirects without a Location header")
    target = urljoin(chain[-1], location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise ResultRedirectError(job_id, [*chain, target], f"redirects to a {scheme or 'schemeless'} URL")
    if target in chain:
        raise ResultRedirectError(job_id, [*chain, target], "redirects in a loop")
    if len(chain) > MAX_RESULT_REDIRECTS:
        raise ResultRedirectError(job_id, [*chain, target], f"redirects more than {MAX_RESULT_REDIRECTS} times")
    chain.append(target)
    return target


def what_came(content_type: str | None, size: int, head: bytes, *, foreign_host: str | None = None) -> str:
    """
    A body in words: its type, its size and how it begins (as text when it is text). A body from a host
    other than the API's (``foreign_host``) is never echoed: only that it was not shown.
    """
    kind = (content_type or "no content type").split(";")[0].strip()
    said = f"{kind}, {size} bytes"
    if foreign_host is not None:
        return f"{said} from {foreign_host} (not the API's host: its bytes are not shown)"
    if not head:
        return said
    text = head[:120].decode("utf-8", errors="replace")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text) / len(text)
    if printable > 0.9:
        return f"{said}, beginning {' '.join(text.split())!r}"
    return f"{said}, beginning with bytes {head[:16].hex(' ')}"


def cut_short(media: MediaInfo) -> str | None:
    """Why a file whose frames end well before its header's duration is cut, or None."""
    declared = media.declared_duration
    if declared is not None and media.duration < declared - DURATION_TOLERANCE:
        return f"a video cut short: its frames end at {media.duration:g} s of the {declared:g} s its header declares"
    return None


def mismatches(media: MediaInfo, request: VideoRequest | None, usage: Usage | None = None) -> list[str]:
    """
    Each way the clip differs from what its request's task promises, as 'property: wanted X, got Y'.
    Duration within ``DURATION_TOLERANCE``: the request's, or for an edit (which lasts as long as its source
    video, at most ``MAX_EDIT_SECONDS``) the service's ``usage.output_video_duration`` (without it, not
    compared: :func:`not_compared` says so). The frame's short side for a ``resolution`` (720P: 720). The
    frame's aspect only for a task that takes a ratio (text, reference: with a first frame or a source video,
    the picture's aspect wins). An audio track exactly when ``sound`` is true. No request (a sensor): nothing.
    """
    if request is None:
        return []
    found = []
    task = request.effective_task
    wanted: float | None = request.duration
    if task == "edit":
        given = None if usage is None else usage.output_video_duration
        wanted = None if given is None else min(given, MAX_EDIT_SECONDS)
    if wanted is not None and abs(media.duration - wanted) > DURATION_TOLERANCE:
        found.append(f"duration: wanted {wanted:g} s (within {DURATION_TOLERANCE:g} s), got {media.duration:g} s")
    if request.resolution is not None:
        height = RESOLUTION_HEIGHT[request.resolution]
        if min(media.width, media.height) != height:
            found.append(
                f"resolution: wanted {request.resolution} (a short side of {height} px), "
                f"got {media.width}x{media.height}"
            )
    if task in RATIO_TASKS:
        wide, tall = (int(part) for part in request.aspect_ratio.split(":"))
        if abs((media.width / media.height) / (wide / tall) - 1) > ASPECT_TOLERANCE:
            found.append(f"aspect ratio: wanted {request.aspect_ratio}, got {media.width}x{media.height}")
    if media.has_audio != request.sound:
        wanted_track, had = (
            ("an audio track", "none") if request.sound else ("no audio track", media.audio_codec or "one")
        )
        found.append(f"sound: wanted {wanted_track}, got {had}")
    return found


def not_compared(request: VideoRequest | None, usage: Usage | None = None) -> list[str]:
    """What :func:`mismatches` could not compare for this request, in words (for the log)."""
    if request is None or request.effective_task != "edit":
        return []
    if usage is not None and usage.output_video_duration is not None:
        return []
    return [
        "duration: not compared, as an edit lasts as long as its source video (at most "
        f"{MAX_EDIT_SECONDS:g} s), which the request does not know, and the service's answer gave no "
        "usage.output_video_duration"
    ]
