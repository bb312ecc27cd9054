"""
What a downloaded file is, read with a real demuxer (PyAV, FFmpeg's libraries): its container, streams
and duration (from its packets, so a file cut short shows), and a poster frame as JPEG. The judgement of
what it should be lives in ``core.results``; this module only reads.

PyAV is imported inside the functions: importing it is slow, and most processes that import the
provider (the triggerer, the scheduler) never read a clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from airflow_provider_happyhorse.constants import MAX_FRAME_PIXELS, PROBE_TIMEOUT
from airflow_provider_happyhorse.models import MediaInfo

# FFmpeg's MP4/MOV demuxer, and no other: no playlist that fetches URLs, no image or raw format.
DEMUXER = "mov"


class NotAVideo(Exception):
    """The file does not open as a video container with a video stream (the reason is the message)."""


def _frame_size_refusal(width: int, height: int) -> str | None:
    if width * height > MAX_FRAME_PIXELS:
        return f"frames of {width}x{height}, over the {MAX_FRAME_PIXELS:,}-pixel limit"
    return None


def probe(path: Any, *, timeout: float = PROBE_TIMEOUT) -> MediaInfo:
    """
    The clip's media facts; ``NotAVideo`` when it is not a whole MP4/MOV video, when its frames are over
    ``MAX_FRAME_PIXELS``, or when reading its packets takes longer than ``timeout`` seconds. ``path``:
    anything with ``open("rb")``.
    """
    return read_clip(path, poster=False, timeout=timeout)[0]


def poster_jpeg(path: Any) -> bytes:
    """The clip's first frame as a JPEG (a probed clip: its frames are within ``MAX_FRAME_PIXELS``)."""
    jpeg = read_clip(path, poster=True)[1]
    assert jpeg is not None  # read_clip makes one when asked, or raises
    return jpeg


def read_clip(
    path: Any, *, poster: bool, timeout: float = PROBE_TIMEOUT, clock: Callable[[], float] = time.monotonic
) -> tuple[MediaInfo, bytes | None]:
    """
    The clip's media facts and, when ``poster``, its first frame as a JPEG, from one open of the file and
    one pass over its packets (the first ones are decoded until a frame comes, which is made the JPEG at
    once; the rest only demuxed). ``NotAVideo`` as :func:`probe`, and when no frame of it can be decoded.
    ``path``: anything with ``open("rb")`` (a file that is still arriving, too: its reads wait for the
    bytes); ``timeout`` is counted on ``clock`` (for such a file, one that leaves out the waits).
    """
    import av

    deadline = clock() + timeout
    try:
        with path.open("rb") as handle, av.open(handle, mode="r", format=DEMUXER) as container:
            if not container.streams.video:
                raise NotAVideo(f"a {container.format.name} file without a video stream")
            video = container.streams.video[0]
            if (too_large := _frame_size_refusal(video.codec_context.width, video.codec_context.height)) is not None:
                raise NotAVideo(too_large)
            audio = container.streams.audio[0] if container.streams.audio else None
            end = 0.0
            packets = 0
            jpeg: bytes | None = None
            decoder = video.codec_context if poster else None
            # Demux every packet (no decoding): the duration the file really holds, however long its header says.
            for packet in container.demux(video):
                if clock() > deadline:
                    raise NotAVideo(f"reading its packets took longer than {timeout:g} s")
                if decoder is not None and jpeg is None:
                    first_frame = _first(decoder.decode(packet))  # the end of the stream (None) flushes
                    if first_frame is not None:
                        jpeg = _jpeg(first_frame)  # at once: for a clip still arriving, while it comes
                if packet.pts is None or packet.time_base is None:
                    continue
                packets += 1
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if packets == 0:
                raise NotAVideo("a video stream without a single frame")
            if decoder is not None and jpeg is None:
                raise NotAVideo("a video stream none of whose frames could be decoded")
            declared = float(container.duration or 0) / av.time_base
            rate = video.average_rate or video.guessed_rate
            media = MediaInfo(
                duration=round(end - float(video.start_time or 0) * float(video.time_base or 0), 3),
                declared_duration=round(declared, 3) if declared else None,
                width=video.codec_context.width,
                height=video.codec_context.height,
                frame_rate=float(rate) if rate else None,
                video_codec=video.codec_context.name,
                audio_codec=audio.codec_context.name if audio is not None else None,
                has_audio=audio is not None,
            )
    except av.FFmpegError as error:
        raise NotAVideo(f"FFmpeg cannot read it ({error.strerror or error})") from None
    return media, jpeg


def _first(frames: list[Any]) -> Any:
    return frames[0] if frames else None


def _jpeg(frame: Any) -> bytes:
    import av

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)
