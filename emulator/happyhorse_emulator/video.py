"""Real, tiny, deterministic media with PyAV: the MP4 results and the PNG test images.

A result is H.264 at 8 fps in a small frame whose shape follows the requested aspect ratio (or the first
image's), exactly ``duration`` seconds long, with a mono AAC track exactly when sound was requested. The same
inputs give the same bytes, and renders are cached, so serving a result costs well under a second.

PyAV is imported inside the functions: importing it is slow, and most processes that import the emulator
(tests, Airflow workers) never render.
"""

from __future__ import annotations

import io
import math
import re
import struct
from functools import lru_cache
from typing import Any

FPS = 8
AUDIO_RATE = 16_000
_AUDIO_FRAME = 1024
# 28 whole cycles per 1024-sample frame at 16 kHz: 437.5 Hz, so every audio frame has the same samples.
_TONE_CYCLES_PER_FRAME = 28
LONG_SIDE = 160
MIN_SIDE = 16
MAX_IMAGE_SIDE = 8192

ASPECT_FRAME_SIZES: dict[str, tuple[int, int]] = {"16:9": (160, 90), "9:16": (90, 160), "1:1": (96, 96)}

_IMAGE_PATH = re.compile(r"/_emulator/images/(\d{1,5})x(\d{1,5})\.png$")


def image_size_from_url_path(path: str) -> tuple[int, int] | None:
    """``(width, height)`` when ``path`` is the emulator's own image route (on any host), else None."""
    match = _IMAGE_PATH.search(path)
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        return None
    return width, height


def _even(value: float) -> int:
    return max(MIN_SIDE, 2 * round(value / 2))


def frame_size(aspect_ratio: str, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The output frame: the image's shape when known (long side 160 px), else the aspect ratio's."""
    if image_size is None:
        return ASPECT_FRAME_SIZES[aspect_ratio]
    width, height = image_size
    if width >= height:
        return LONG_SIDE, _even(LONG_SIDE * height / width)
    return _even(LONG_SIDE * width / height), LONG_SIDE


def render_mp4(duration: float, width: int, height: int, sound: bool) -> bytes:
    """The MP4 for these parameters (cached; the duration counts to the millisecond)."""
    return _render_mp4_cached(round(duration * 1000), width, height, sound)


@lru_cache(maxsize=64)
def _render_mp4_cached(duration_ms: int, width: int, height: int, sound: bool) -> bytes:
    import av

    duration = duration_ms / 1000
    output = io.BytesIO()
    with av.open(output, mode="w", format="mp4") as container:
        video: Any = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "tune": "zerolatency"})
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1  # one thread keeps the bytes identical from run to run
        audio: Any = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if sound else None

        frames = max(1, round(duration * FPS))
        # Frames larger than the happyhorse.app dialect's (DashScope's 720P/1080P tiers) are one still colour: a 15 s
        # 1080P clip then costs about as much as a small one (one frame built, the rest encode as skipped blocks).
        flat = _flat_frame(av, width, height) if max(width, height) > LONG_SIDE else None
        for index in range(frames):
            if flat is not None:
                frame = flat
                frame.pts = index
            else:
                frame = _video_frame(av, index, frames, width, height)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)

        if audio is not None:
            total = round(duration * AUDIO_RATE)
            tone = _tone_frame()
            position = 0
            while position < total:
                samples = min(_AUDIO_FRAME, total - position)
                chunk = av.AudioFrame(format="fltp", layout="mono", samples=samples)
                chunk.sample_rate = AUDIO_RATE
                chunk.pts = position
                plane = chunk.planes[0]
                data = tone[: samples * 4]
                plane.update(data + bytes(plane.buffer_size - len(data)))
                for packet in audio.encode(chunk):
                    container.mux(packet)
                position += samples
            for packet in audio.encode():
                container.mux(packet)
    return output.getvalue()


def _video_frame(av: Any, index: int, frames: int, width: int, height: int) -> Any:
    """A gradient with a bright bar sweeping across once over the clip; colours drift with time."""
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.pts = index
    bar = (index * width) // frames
    luma = bytearray(16 + (x * 160) // width for x in range(width))
    for x in range(bar, min(width, bar + max(2, width // 16))):
        luma[x] = 235
    planes = frame.planes
    _fill_plane(planes[0], bytes(luma), height)
    chroma_width, chroma_height = (width + 1) // 2, (height + 1) // 2
    _fill_plane(planes[1], bytes([64 + (index * 5) % 128]) * chroma_width, chroma_height)
    _fill_plane(planes[2], bytes([192 - (index * 3) % 128]) * chroma_width, chroma_height)
    return frame


def _flat_frame(av: Any, width: int, height: int) -> Any:
    """One colour over the whole frame (encoded once, then every later frame is all skipped blocks)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    planes = frame.planes
    _fill_plane(planes[0], bytes([96]) * width, height)
    chroma_width, chroma_height = (width + 1) // 2, (height + 1) // 2
    _fill_plane(planes[1], bytes([96]) * chroma_width, chroma_height)
    _fill_plane(planes[2], bytes([160]) * chroma_width, chroma_height)
    return frame


def _fill_plane(plane: Any, row: bytes, rows: int) -> None:
    padded = row + bytes(plane.line_size - len(row))
    data = padded * rows
    plane.update(data + bytes(plane.buffer_size - len(data)))


@lru_cache(maxsize=1)
def _tone_frame() -> bytes:
    step = 2 * math.pi * _TONE_CYCLES_PER_FRAME / _AUDIO_FRAME
    return struct.pack(f"<{_AUDIO_FRAME}f", *(0.2 * math.sin(step * i) for i in range(_AUDIO_FRAME)))


@lru_cache(maxsize=32)
def render_png(width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` (a diagonal gradient), for image-to-video tests."""
    import av

    codec: Any = av.CodecContext.create("png", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "rgb24"
    frame = av.VideoFrame(width, height, "rgb24")
    row = bytearray()
    for x in range(width):
        row += bytes(((x * 255) // max(1, width - 1), 96, 160))
    _fill_plane(frame.planes[0], bytes(row), height)
    packets = list(codec.encode(frame)) + list(codec.encode(None))
    return b"".join(bytes(packet) for packet in packets)


def probe_image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an image (any format FFmpeg reads). Raises on anything unreadable."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            return int(frame.width), int(frame.height)
    raise ValueError("no image frame found")


RESOLUTION_SHORT_SIDES: dict[str, int] = {"720P": 720, "1080P": 1080}
"""DashScope's resolution tiers: the frame's short side (``SR`` in ``usage``)."""


def tier_frame_size(resolution: str, width_ratio: float, height_ratio: float) -> tuple[int, int]:
    """The frame of a DashScope clip: short side of the tier (720 or 1080), the other side from the ratio
    (``16:9`` at 1080P: 1920x1080; ``9:16``: 1080x1920), even sides."""
    short = RESOLUTION_SHORT_SIDES[resolution]
    if width_ratio >= height_ratio:
        return _even(short * width_ratio / height_ratio), short
    return short, _even(short * height_ratio / width_ratio)


def probe_video(data: bytes) -> tuple[float, int, int]:
    """``(duration in seconds, width, height)`` of a video (any container FFmpeg reads). Raises when unreadable."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if container.duration is not None:
            return container.duration / 1_000_000, width, height
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base), width, height
    raise ValueError("no duration found")
