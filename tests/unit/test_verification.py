"""
Verification knows the mode (issue 23, item 3): each task's clip is held to what it promises (duration, the
resolution's short side, a ratio only where the task takes one, an edit's duration from the answer's usage),
and DashScope's ``usage`` travels from the answer through the event and the record into the result.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from airflow_provider_happyhorse.core.dialects import DASHSCOPE, HAPPYHORSE
from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.core.results import mismatches, not_compared
from airflow_provider_happyhorse.models import JobEvent, MediaInfo, Usage, VideoRequest
from support.clock import START
from support.dashscope import TASK_ID, ds_task
from support.service import envelope, succeeded_data

IMAGE = "https://img.example/a.png"
SOURCE = "https://cdn.example/yesterday.mp4"


def clip(width: int, height: int, seconds: float = 5.0) -> MediaInfo:
    return MediaInfo(duration=seconds, width=width, height=height, video_codec="h264", has_audio=True)


@pytest.mark.parametrize(
    ("fields", "media", "usage", "expected"),
    [
        # Text at 720P, 16:9: the short side and the ratio are both promised.
        ({"prompt": "a", "resolution": "720P"}, clip(1280, 720), None, []),
        (
            {"prompt": "a", "resolution": "720P"},
            clip(1920, 1080),
            None,
            ["resolution: wanted 720P (a short side of 720 px), got 1920x1080"],
        ),
        # Portrait 1080P: the short side is the width.
        ({"prompt": "a", "resolution": "1080P", "aspect_ratio": "9:16"}, clip(1080, 1920), None, []),
        # DashScope's 4:3 and 3:4 (text and reference): the short side is the resolution's, the other from the ratio.
        ({"prompt": "a", "resolution": "720P", "aspect_ratio": "4:3"}, clip(960, 720), None, []),
        ({"prompt": "a", "resolution": "1080P", "aspect_ratio": "3:4"}, clip(1080, 1440), None, []),
        (
            {"prompt": "character1", "task": "reference", "image_urls": [IMAGE], "aspect_ratio": "3:4"},
            clip(720, 960),
            None,
            [],
        ),
        # A 16:9 frame where 4:3 was asked for, and a 4:3 one where 3:4 was: each named.
        (
            {"prompt": "a", "resolution": "720P", "aspect_ratio": "4:3"},
            clip(1280, 720),
            None,
            ["aspect ratio: wanted 4:3, got 1280x720"],
        ),
        ({"prompt": "a", "aspect_ratio": "3:4"}, clip(960, 720), None, ["aspect ratio: wanted 3:4, got 960x720"]),
        ({"prompt": "a", "aspect_ratio": "16:9"}, clip(960, 720), None, ["aspect ratio: wanted 16:9, got 960x720"]),
        # Reference takes a ratio: a square clip for a 16:9 request is a mismatch.
        (
            {"prompt": "character1", "task": "reference", "image_urls": [IMAGE]},
            clip(720, 720),
            None,
            ["aspect ratio: wanted 16:9, got 720x720"],
        ),
        # First frame: the picture's aspect wins, a square clip is what it promises.
        ({"prompt": "a", "task": "first_frame", "image_urls": [IMAGE]}, clip(720, 720), None, []),
        # An edit: no ratio; duration from usage when the answer has it (8 s source: 8 s clip).
        ({"prompt": "night", "source_video": SOURCE}, clip(1080, 1920, 8), Usage(output_video_duration=8), []),
        (
            {"prompt": "night", "source_video": SOURCE},
            clip(1080, 1920, 3),
            Usage(output_video_duration=8),
            ["duration: wanted 8 s (within 0.5 s), got 3 s"],
        ),
        # An edit without usage: the duration is not compared (the request's default 5 s would be a guess).
        ({"prompt": "night", "source_video": SOURCE}, clip(1080, 1920, 12), None, []),
        # A source longer than the cap: the clip is at most 15 s.
        ({"prompt": "night", "source_video": SOURCE}, clip(1920, 1080, 15), Usage(output_video_duration=20), []),
    ],
)
def test_each_task_is_held_to_what_it_promises(
    fields: dict[str, Any], media: MediaInfo, usage: Usage | None, expected: list[str]
) -> None:
    assert mismatches(media, VideoRequest.parse(fields), usage) == expected


def test_an_edit_without_usage_says_its_duration_was_not_compared() -> None:
    edit = VideoRequest.parse({"prompt": "night", "source_video": SOURCE})
    (said,) = not_compared(edit, None)
    assert said.startswith("duration: not compared")
    assert "usage.output_video_duration" in said
    assert not_compared(edit, Usage(output_video_duration=6)) == []
    assert not_compared(VideoRequest.parse({"prompt": "a"}), None) == []


def test_dashscope_usage_travels_from_the_answer_to_the_result() -> None:
    answer = httpx.Response(200, json=ds_task("SUCCEEDED"))
    job = DASHSCOPE.parse_status(answer)
    assert job.usage == Usage(duration=5, output_video_duration=5, video_count=1, SR=720, ratio="16:9")
    event = JobEvent.from_job(job, finished_at=START.isoformat())
    # The trigger's event is JSON: the usage survives the round trip.
    assert JobEvent.model_validate(event.payload()).usage == job.usage
    request = VideoRequest.parse({"prompt": "a", "resolution": "720P"})
    record = RenderRecord.submitting(request, START).model_copy(update={"job_id": TASK_ID}).succeeded(event)
    result = record.result()
    assert result["usage"]["output_video_duration"] == 5
    assert result["usage"]["SR"] == 720
    assert RenderRecord.from_result(result).usage == job.usage
    assert RenderRecord.model_validate_json(record.model_dump_json()).usage == job.usage


def test_a_running_task_or_an_odd_usage_carries_none() -> None:
    assert DASHSCOPE.parse_status(httpx.Response(200, json=ds_task("RUNNING"))).usage is None
    odd = ds_task("SUCCEEDED")
    odd["usage"] = {"output_video_duration": "long"}
    assert DASHSCOPE.parse_status(httpx.Response(200, json=odd)).usage is None


def test_a_happyhorse_app_result_has_no_usage_key() -> None:
    answer = httpx.Response(200, json=envelope(succeeded_data()))
    job = HAPPYHORSE.parse_status(answer)
    assert job.usage is None
    event = JobEvent.from_job(job, finished_at=START.isoformat())
    assert "usage" not in event.payload()
    record = RenderRecord.submitting(VideoRequest.parse({"prompt": "a"}), START).succeeded(event)
    assert "usage" not in record.result()
    assert "usage" not in record.model_dump(mode="json")
