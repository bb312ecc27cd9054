"""A small real MP4 for the unit tests' fake service: H.264 at 8 fps, exactly ``duration`` seconds, a bright bar
sweeping across a gradient (about 40 KB for 5 s, so the fake serves it in several 4 KiB chunks), with a mono AAC
tone when ``sound``. PyAV is a dependency of the provider, so the unit tests need no emulator (whose results look
alike but are its own)."""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
from functools import cache
from typing import Any

import av

FPS = 8
AUDIO_RATE = 16_000
AUDIO_FRAME = 1024
# 28 whole cycles per 1024-sample frame: every audio frame has the same samples.
TONE = struct.pack(
    f"<{AUDIO_FRAME}f", *(0.2 * math.sin(2 * math.pi * 28 * i / AUDIO_FRAME) for i in range(AUDIO_FRAME))
)


@cache
def render_mp4(duration: float, width: int, height: int, sound: bool) -> bytes:
    """The MP4's bytes (the same from run to run); ``width`` and ``height`` must be even (yuv420p)."""
    output = io.BytesIO()
    with av.open(output, mode="w", format="mp4") as container:
        video: Any = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "tune": "zerolatency"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1
        audio: Any = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if sound else None
        frames = max(1, round(duration * FPS))
        for index in range(frames):
            luma = bytearray(16 + (x * 160) // width for x in range(width))
            bar = (index * width) // frames
            luma[bar : bar + max(2, width // 16)] = b"\xeb" * len(luma[bar : bar + max(2, width // 16)])
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.pts = index
            rows = [
                bytes(luma),
                bytes([64 + index * 5 % 128]) * (width // 2),
                bytes([192 - index * 3 % 128]) * (width // 2),
            ]
            for plane, row, count in zip(frame.planes, rows, (height, height // 2, height // 2), strict=True):
                data = (row + bytes(plane.line_size - len(row))) * count
                plane.update(data + bytes(plane.buffer_size - len(data)))
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            total = round(duration * AUDIO_RATE)
            for position in range(0, total, AUDIO_FRAME):
                samples = min(AUDIO_FRAME, total - position)
                chunk = av.AudioFrame(format="fltp", layout="mono", samples=samples)
                chunk.sample_rate, chunk.pts = AUDIO_RATE, position
                chunk.planes[0].update(TONE[: samples * 4] + bytes(chunk.planes[0].buffer_size - samples * 4))
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return output.getvalue()


def _stream_like(target: Any, stream: Any) -> Any:
    """A stream of ``target`` copying ``stream``'s codec: ``add_stream_from_template`` from PyAV 14, the older
    ``add_stream(template=...)`` before it (the lowest PyAV the package allows is 12)."""
    if hasattr(target, "add_stream_from_template"):
        return target.add_stream_from_template(stream)
    return target.add_stream(template=stream)


@cache
def faststart(mp4: bytes) -> bytes:
    """The same MP4 remuxed with its index (``moov``) before its media data, as services serving clips write them."""
    with tempfile.TemporaryDirectory() as folder:  # faststart's second pass reopens the file by its name
        path = os.path.join(folder, "faststart.mp4")
        with (
            av.open(io.BytesIO(mp4), mode="r") as source,
            av.open(path, mode="w", format="mp4", options={"movflags": "faststart"}) as target,
        ):
            streams = {stream.index: _stream_like(target, stream) for stream in source.streams}
            for packet in source.demux():
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = streams[packet.stream.index]
                target.mux(packet)
        with open(path, "rb") as handle:
            return handle.read()
