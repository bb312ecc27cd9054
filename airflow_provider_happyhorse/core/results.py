"""
Judging a result download, with no I/O: which redirect to follow, what a body that is not a video is
(said so a person can tell an error page from a cut file), and whether a video is the one the request
asked for. ``storage`` downloads and ``media`` reads; they ask here.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from airflow_provider_happyhorse.constants import ASPECT_TOLERANCE, DURATION_TOLERANCE, MAX_RESULT_REDIRECTS
from airflow_provider_happyhorse.exceptions import ResultRedirectError
from airflow_provider_happyhorse.models import MediaInfo, VideoRequest

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


def mismatches(media: MediaInfo, request: VideoRequest | None) -> list[str]:
    """
    Each way the clip differs from its request, as 'property: wanted X, got Y'. Duration within
    ``DURATION_TOLERANCE``; the frame's aspect for text-to-video only (with images, the images' aspect
    wins); an audio track exactly when ``sound`` is true. No request (a sensor): nothing to compare.
    """
    if request is None:
        return []
    found = []
    if abs(media.duration - request.duration) > DURATION_TOLERANCE:
        found.append(
            f"duration: wanted {request.duration:g} s (within {DURATION_TOLERANCE:g} s), got {media.duration:g} s"
        )
    if not request.image_urls:
        wide, tall = (int(part) for part in request.aspect_ratio.split(":"))
        if abs((media.width / media.height) / (wide / tall) - 1) > ASPECT_TOLERANCE:
            found.append(f"aspect ratio: wanted {request.aspect_ratio}, got {media.width}x{media.height}")
    if media.has_audio != request.sound:
        wanted, had = ("an audio track", "none") if request.sound else ("no audio track", media.audio_codec or "one")
        found.append(f"sound: wanted {wanted}, got {had}")
    return found
