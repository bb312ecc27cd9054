"""The request model's rules, its exact JSON body and fingerprint, the credit estimate, and status classes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.exceptions import APIStatusError, InvalidRequestError
from airflow_provider_happyhorse.models import (
    CREDITS_PER_SECOND,
    MODEL_ID,
    JobEvent,
    JobState,
    JobStatus,
    VideoRequest,
    classify_status,
    estimate_credits,
)

PROMPT = "a white horse galloping on a beach at dawn"
IMAGE = "https://img.example.com/first.png"
IMAGE_2 = "http://img.example.com/last.jpg"


def shots(*durations: float | None) -> list[dict[str, Any]]:
    return [
        {"prompt": f"shot {index}"} | ({} if duration is None else {"duration": duration})
        for index, duration in enumerate(durations)
    ]


# ---------------------------------------------------------------------------------------------------
# Accepted: (fields, what the body must contain)

ACCEPTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("prompt only", {"prompt": PROMPT}, {"prompt": PROMPT}),
    ("prompt of exactly 2500 chars", {"prompt": "p" * 2500}, {"prompt": "p" * 2500}),
    # The model takes the longest prompt any dialect takes; each dialect holds it to its own (test_dialects.py).
    ("prompt of exactly 5000 chars", {"prompt": "p" * 5000}, {"prompt": "p" * 5000}),
    ("mode std", {"prompt": PROMPT, "mode": "std"}, {"mode": "std"}),
    ("mode pro", {"prompt": PROMPT, "mode": "pro"}, {"mode": "pro"}),
    ("duration lower bound", {"prompt": PROMPT, "duration": 3}, {"duration": 3}),
    ("duration upper bound", {"prompt": PROMPT, "duration": 15}, {"duration": 15}),
    ("duration fractional", {"prompt": PROMPT, "duration": 7.5}, {"duration": 7.5}),
    ("duration whole float", {"prompt": PROMPT, "duration": 10.0}, {"duration": 10}),
    # Airflow renders templated fields as strings.
    ("duration numeric string", {"prompt": PROMPT, "duration": "12"}, {"duration": 12}),
    ("aspect 16:9", {"prompt": PROMPT, "aspect_ratio": "16:9"}, {"aspect_ratio": "16:9"}),
    ("aspect 9:16", {"prompt": PROMPT, "aspect_ratio": "9:16"}, {"aspect_ratio": "9:16"}),
    ("aspect 1:1", {"prompt": PROMPT, "aspect_ratio": "1:1"}, {"aspect_ratio": "1:1"}),
    # DashScope's two more (happyhorse.app's dialect refuses them: test_dialects.py).
    ("aspect 4:3", {"prompt": PROMPT, "aspect_ratio": "4:3"}, {"aspect_ratio": "4:3"}),
    ("aspect 3:4", {"prompt": PROMPT, "aspect_ratio": "3:4"}, {"aspect_ratio": "3:4"}),
    ("one image", {"prompt": PROMPT, "image_urls": [IMAGE]}, {"image_urls": [IMAGE]}),
    ("two images (first, last)", {"prompt": PROMPT, "image_urls": [IMAGE, IMAGE_2]}, {"image_urls": [IMAGE, IMAGE_2]}),
    ("sound off", {"prompt": PROMPT, "sound": False}, {"sound": False}),
    ("sound on", {"prompt": PROMPT, "sound": True}, {"sound": True}),
    ("cfg_scale 0", {"prompt": PROMPT, "cfg_scale": 0}, {"cfg_scale": 0}),
    ("cfg_scale 1", {"prompt": PROMPT, "cfg_scale": 1}, {"cfg_scale": 1}),
    ("cfg_scale 0.75", {"prompt": PROMPT, "cfg_scale": 0.75}, {"cfg_scale": 0.75}),
    ("explicit model id", {"prompt": PROMPT, "model": MODEL_ID}, {"model": MODEL_ID}),
    (
        "multi-shot without prompt or durations",
        {"multi_shots": True, "multi_prompt": shots(None, None)},
        {"multi_shots": True, "multi_prompt": shots(None, None)},
    ),
    (
        "multi-shot durations adding up",
        {"multi_shots": True, "duration": 10, "multi_prompt": shots(4, 6)},
        {"multi_prompt": shots(4, 6), "duration": 10},
    ),
    (
        "multi-shot fractional durations adding up",
        {"multi_shots": True, "duration": 7.5, "multi_prompt": shots(2.5, 2.5, 2.5)},
        {"multi_prompt": shots(2.5, 2.5, 2.5), "duration": 7.5},
    ),
    (
        "multi-shot with exactly one image",
        {"multi_shots": True, "multi_prompt": shots(None), "image_urls": [IMAGE]},
        {"image_urls": [IMAGE]},
    ),
    (
        "multi-shot with a prompt too",
        {"prompt": PROMPT, "multi_shots": True, "multi_prompt": shots(None)},
        {"prompt": PROMPT, "multi_shots": True},
    ),
    (
        "elements passed through untouched",
        {"prompt": PROMPT, "happyhorse_elements": [{"id": "hero", "ref": None, "tags": ["a", 1, 2.5, {"x": None}]}]},
        {"happyhorse_elements": [{"id": "hero", "ref": None, "tags": ["a", 1, 2.5, {"x": None}]}]},
    ),
    (
        "elements of any JSON kind",
        {"prompt": PROMPT, "happyhorse_elements": ["x", 3]},
        {"happyhorse_elements": ["x", 3]},
    ),
]


@pytest.mark.parametrize(("fields", "expected"), [row[1:] for row in ACCEPTED], ids=[row[0] for row in ACCEPTED])
def test_accepted_requests(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = VideoRequest.parse(fields).to_body()
    assert {key: body[key] for key in expected} == expected
    for key, value in expected.items():
        assert type(body[key]) is type(value), key


# ---------------------------------------------------------------------------------------------------
# Refused: (fields, fragments the message must contain: the field, then the rule)

REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("prompt too long", {"prompt": "p" * 5001}, ("prompt:", "at most 5000 characters")),
    ("prompt missing", {}, ("prompt:", "required unless multi_shots")),
    ("prompt null", {"prompt": None}, ("prompt:", "required unless multi_shots")),
    ("prompt empty", {"prompt": ""}, ("prompt:", "required unless multi_shots")),
    ("prompt blank", {"prompt": " \t\n "}, ("prompt:", "required unless multi_shots")),
    ("prompt not a string", {"prompt": 42}, ("prompt:", "valid string")),
    ("mode unknown", {"prompt": PROMPT, "mode": "ultra"}, ("mode:", "'std' or 'pro'", "'ultra'")),
    ("mode wrong case", {"prompt": PROMPT, "mode": "PRO"}, ("mode:", "'std' or 'pro'")),
    ("duration below 3", {"prompt": PROMPT, "duration": 2}, ("duration:", "greater than or equal to 3")),
    ("duration just below 3", {"prompt": PROMPT, "duration": 2.99}, ("duration:", "greater than or equal to 3")),
    ("duration zero", {"prompt": PROMPT, "duration": 0}, ("duration:", "greater than or equal to 3")),
    ("duration negative", {"prompt": PROMPT, "duration": -5}, ("duration:", "greater than or equal to 3")),
    ("duration above 15", {"prompt": PROMPT, "duration": 16}, ("duration:", "less than or equal to 15")),
    ("duration just above 15", {"prompt": PROMPT, "duration": 15.01}, ("duration:", "less than or equal to 15")),
    ("duration true", {"prompt": PROMPT, "duration": True}, ("duration:", "not a boolean")),
    ("duration false", {"prompt": PROMPT, "duration": False}, ("duration:", "not a boolean")),
    ("duration word", {"prompt": PROMPT, "duration": "ten"}, ("duration:", "valid number")),
    ("duration with unit", {"prompt": PROMPT, "duration": "10s"}, ("duration:", "valid number")),
    ("duration empty string", {"prompt": PROMPT, "duration": ""}, ("duration:", "valid number")),
    ("duration null", {"prompt": PROMPT, "duration": None}, ("duration:", "valid number")),
    ("duration list", {"prompt": PROMPT, "duration": [5]}, ("duration:", "valid number")),
    ("duration NaN", {"prompt": PROMPT, "duration": float("nan")}, ("duration:",)),
    ("aspect 16x9", {"prompt": PROMPT, "aspect_ratio": "16x9"}, ("aspect_ratio:", "'1:1', '4:3' or '3:4'")),
    ("aspect empty", {"prompt": PROMPT, "aspect_ratio": ""}, ("aspect_ratio:", "'16:9', '9:16', '1:1', '4:3'")),
    ("aspect 21:9", {"prompt": PROMPT, "aspect_ratio": "21:9"}, ("aspect_ratio:", "'16:9', '9:16', '1:1', '4:3'")),
    (
        "three images single-shot",
        {"prompt": PROMPT, "image_urls": [IMAGE, IMAGE, IMAGE]},
        ("image_urls:", "single-shot takes at most 2"),
    ),
    (
        "two images multi-shot",
        {"multi_shots": True, "multi_prompt": shots(None), "image_urls": [IMAGE, IMAGE_2]},
        ("image_urls:", "multi-shot takes exactly 1"),
    ),
    (
        "no image in a given list, multi-shot",
        {"multi_shots": True, "multi_prompt": shots(None), "image_urls": []},
        ("image_urls:", "multi-shot takes exactly 1"),
    ),
    ("ftp image", {"prompt": PROMPT, "image_urls": ["ftp://img.example.com/a.png"]}, ("image_urls:", "http(s) URL")),
    ("file image", {"prompt": PROMPT, "image_urls": ["file:///tmp/a.png"]}, ("image_urls:", "http(s) URL")),
    ("scheme-less image", {"prompt": PROMPT, "image_urls": ["img.example.com/a.png"]}, ("image_urls:", "http(s) URL")),
    ("host-less image", {"prompt": PROMPT, "image_urls": ["https://"]}, ("image_urls:", "http(s) URL")),
    (
        "second image bad",
        {"prompt": PROMPT, "image_urls": [IMAGE, "data:image/png;base64,AAAA"]},
        ("image_urls:", "item 1 must be an http(s) URL"),
    ),
    ("image_urls not a list", {"prompt": PROMPT, "image_urls": IMAGE}, ("image_urls:", "valid list")),
    ("image url not a string", {"prompt": PROMPT, "image_urls": [5]}, ("image_urls.0:", "valid string")),
    ("sound word", {"prompt": PROMPT, "sound": "maybe"}, ("sound:", "valid boolean")),
    ("sound number", {"prompt": PROMPT, "sound": 2}, ("sound:", "valid boolean")),
    ("cfg_scale above 1", {"prompt": PROMPT, "cfg_scale": 1.01}, ("cfg_scale:", "less than or equal to 1")),
    ("cfg_scale below 0", {"prompt": PROMPT, "cfg_scale": -0.01}, ("cfg_scale:", "greater than or equal to 0")),
    ("cfg_scale true", {"prompt": PROMPT, "cfg_scale": True}, ("cfg_scale:", "not a boolean")),
    ("cfg_scale word", {"prompt": PROMPT, "cfg_scale": "high"}, ("cfg_scale:", "valid number")),
    ("multi_shots word", {"prompt": PROMPT, "multi_shots": "several"}, ("multi_shots:", "valid boolean")),
    ("multi-shot without shots", {"multi_shots": True}, ("multi_prompt:", "required", "when multi_shots is true")),
    ("multi-shot with empty shots", {"multi_shots": True, "multi_prompt": []}, ("multi_prompt:", "required")),
    ("multi_prompt not a list", {"multi_shots": True, "multi_prompt": "one shot"}, ("multi_prompt:", "valid list")),
    ("shot without prompt", {"multi_shots": True, "multi_prompt": [{}]}, ("multi_prompt.0.prompt:", "Field required")),
    (
        "second shot blank prompt",
        {"multi_shots": True, "multi_prompt": [{"prompt": "a"}, {"prompt": "  "}]},
        ("multi_prompt.1.prompt:", "must not be blank"),
    ),
    (
        "shot prompt empty",
        {"multi_shots": True, "multi_prompt": [{"prompt": ""}]},
        ("multi_prompt.0.prompt:", "at least 1 character"),
    ),
    (
        "shot prompt too long",
        {"multi_shots": True, "multi_prompt": [{"prompt": "p" * 2501}]},
        ("multi_prompt.0.prompt:", "at most 2500 characters"),
    ),
    (
        "shot durations for some shots only",
        {"multi_shots": True, "duration": 10, "multi_prompt": shots(4, None)},
        ("multi_prompt:", "for every shot or for none"),
    ),
    (
        "shot durations not adding up",
        {"multi_shots": True, "duration": 10, "multi_prompt": shots(3, 4)},
        ("multi_prompt:", "add up to 7", "not duration 10"),
    ),
    (
        "shot durations against the default duration",
        {"multi_shots": True, "multi_prompt": shots(4, 4)},
        ("multi_prompt:", "add up to 8", "not duration 5"),
    ),
    (
        "shot duration zero",
        {"multi_shots": True, "multi_prompt": [{"prompt": "a", "duration": 0}]},
        ("multi_prompt.0.duration:", "greater than 0"),
    ),
    (
        "shot duration true",
        {"multi_shots": True, "multi_prompt": [{"prompt": "a", "duration": True}]},
        ("multi_prompt.0.duration:", "not a boolean"),
    ),
    (
        "elements not a list",
        {"prompt": PROMPT, "happyhorse_elements": {"id": "hero"}},
        ("happyhorse_elements:", "valid list"),
    ),
    (
        "unknown field negative_prompt",
        {"prompt": PROMPT, "negative_prompt": "x"},
        ("negative_prompt:", "Extra inputs are not permitted"),
    ),
    (
        "unknown field typo",
        {"prompt": PROMPT, "aspectRatio": "1:1"},
        ("aspectRatio:", "Extra inputs are not permitted"),
    ),
    ("other model", {"prompt": PROMPT, "model": "happyhorse-2.0/video"}, ("model:", "'happyhorse-1.0/video'")),
]


@pytest.mark.parametrize(("fields", "fragments"), [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED])
def test_refused_requests_name_field_and_rule(fields: dict[str, Any], fragments: tuple[str, ...]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.parse(fields)
    message = str(caught.value)
    assert message.startswith("Invalid HappyHorse request: ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # Raised locally: no HTTP status, and pydantic's own error does not leak out as the cause.
    assert caught.value.status_code is None
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.parse({"prompt": PROMPT, "mode": "max", "duration": 99, "aspect_ratio": "2:1"})
    reported = caught.value.message.removeprefix("Invalid HappyHorse request: ").split("; ")
    assert [problem.split(":")[0] for problem in reported] == ["mode", "duration", "aspect_ratio"]


def test_invalid_request_error_is_an_api_status_error_for_callers_catching_either() -> None:
    with pytest.raises(APIStatusError):
        VideoRequest.parse({})


def test_long_refused_values_are_not_echoed() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.parse({"prompt": "p" * 5001})
    assert "ppppp" not in str(caught.value)
    assert str(caught.value) == (
        "Invalid HappyHorse request: prompt: String should have at most 5000 characters (got 5,001 characters)"
    )


def test_long_lists_are_counted_not_echoed() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.parse({"prompt": "p", "image_urls": "https://img.test/" + "a" * 100})
    assert "image_urls: Input should be a valid list (got 117 characters)" in str(caught.value)


# ---------------------------------------------------------------------------------------------------
# The body


def test_body_with_defaults_is_exactly_the_documented_json() -> None:
    assert VideoRequest.parse({"prompt": PROMPT}).to_body() == {
        "model": "happyhorse-1.0/video",
        "prompt": PROMPT,
        "mode": "std",
        "duration": 5,
        "aspect_ratio": "16:9",
        "sound": True,
        "cfg_scale": 0.5,
        "multi_shots": False,
    }


def test_body_with_every_field_is_exact() -> None:
    request = VideoRequest.parse(
        {
            "prompt": PROMPT,
            "mode": "pro",
            "duration": 10.0,
            "aspect_ratio": "9:16",
            "image_urls": [IMAGE, IMAGE_2],
            "sound": False,
            "cfg_scale": 1.0,
            "happyhorse_elements": [{"id": "hero", "image": IMAGE, "weight": None}],
        }
    )
    body = request.to_body()
    assert body == {
        "model": "happyhorse-1.0/video",
        "prompt": PROMPT,
        "mode": "pro",
        "duration": 10,
        "aspect_ratio": "9:16",
        "image_urls": [IMAGE, IMAGE_2],
        "sound": False,
        "cfg_scale": 1,
        "multi_shots": False,
        "happyhorse_elements": [{"id": "hero", "image": IMAGE, "weight": None}],
    }
    assert type(body["duration"]) is int
    assert type(body["cfg_scale"]) is int
    # Serialisable as is, and the JSON text says 10, not 10.0.
    assert '"duration": 10,' in json.dumps(body)


def test_multi_shot_body_is_exact_and_has_no_nulls() -> None:
    body = VideoRequest.parse(
        {"multi_shots": True, "duration": 9, "image_urls": [IMAGE], "multi_prompt": shots(3.0, 6)}
    ).to_body()
    assert body == {
        "model": "happyhorse-1.0/video",
        "mode": "std",
        "duration": 9,
        "aspect_ratio": "16:9",
        "image_urls": [IMAGE],
        "sound": True,
        "cfg_scale": 0.5,
        "multi_shots": True,
        "multi_prompt": [{"prompt": "shot 0", "duration": 3}, {"prompt": "shot 1", "duration": 6}],
    }
    assert type(body["multi_prompt"][0]["duration"]) is int
    assert "prompt" not in body
    assert None not in body.values()


def test_elements_are_passed_through_untouched() -> None:
    elements = [
        {"id": "hero", "nested": {"deep": [None, 1.5, "é"], "empty": {}}, "ref": None},
        {"unknownShape": True, "n": 10.0},
    ]
    original = json.dumps(elements, sort_keys=True)
    body = VideoRequest.parse({"prompt": PROMPT, "happyhorse_elements": elements}).to_body()
    assert json.dumps(body["happyhorse_elements"], sort_keys=True) == original
    assert json.dumps(elements, sort_keys=True) == original  # the caller's list is not modified


def test_request_is_immutable() -> None:
    request = VideoRequest.parse({"prompt": PROMPT})
    with pytest.raises(Exception, match="frozen"):
        request.prompt = "other"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------
# Fingerprint


def test_fingerprint_is_the_sha256_of_the_canonical_body() -> None:
    # The body written out, not taken from to_body(): a fingerprint an earlier release stored in a task-state record
    # must still match, else a retry after an upgrade submits (and pays) again.
    canonical = (
        '{"aspect_ratio":"16:9","cfg_scale":0.5,"duration":5,"mode":"pro","model":"happyhorse-1.0/video",'
        '"multi_shots":false,"prompt":"a white horse galloping on a beach at dawn","sound":true}'
    )
    request = VideoRequest.parse({"prompt": PROMPT, "mode": "pro"})
    assert request.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "same",
    [
        {"prompt": PROMPT},
        {"mode": "std", "prompt": PROMPT},
        {"prompt": PROMPT, "duration": 5.0},
        {"prompt": PROMPT, "duration": "5"},
        {"prompt": PROMPT, "sound": True, "cfg_scale": 0.5, "aspect_ratio": "16:9", "multi_shots": False},
        {"prompt": PROMPT, "model": MODEL_ID},
    ],
)
def test_fingerprint_is_stable_across_spellings_of_the_same_clip(same: dict[str, Any]) -> None:
    reference = VideoRequest.parse({"prompt": PROMPT}).fingerprint()
    assert VideoRequest.parse(same).fingerprint() == reference


def test_fingerprint_changes_with_every_field() -> None:
    variants: list[dict[str, Any]] = [
        {"prompt": PROMPT},
        {"prompt": PROMPT + "."},
        {"prompt": PROMPT, "mode": "pro"},
        {"prompt": PROMPT, "duration": 6},
        {"prompt": PROMPT, "duration": 5.5},
        {"prompt": PROMPT, "aspect_ratio": "1:1"},
        {"prompt": PROMPT, "image_urls": [IMAGE]},
        {"prompt": PROMPT, "image_urls": [IMAGE, IMAGE_2]},
        {"prompt": PROMPT, "image_urls": [IMAGE_2, IMAGE]},
        {"prompt": PROMPT, "sound": False},
        {"prompt": PROMPT, "cfg_scale": 0.4},
        {"prompt": PROMPT, "happyhorse_elements": [{"id": "a"}]},
        {"prompt": PROMPT, "happyhorse_elements": [{"id": "b"}]},
        {"prompt": PROMPT, "multi_shots": True, "multi_prompt": shots(None)},
        {"prompt": PROMPT, "multi_shots": True, "multi_prompt": shots(5)},
    ]
    prints = [VideoRequest.parse(fields).fingerprint() for fields in variants]
    assert len(set(prints)) == len(variants)
    assert all(len(p) == 64 and int(p, 16) >= 0 for p in prints)


# ---------------------------------------------------------------------------------------------------
# Credits


def test_price_table_is_the_documented_one() -> None:
    assert CREDITS_PER_SECOND == {("std", False): 40, ("std", True): 60, ("pro", False): 54, ("pro", True): 80}


@pytest.mark.parametrize(
    ("mode", "duration", "sound", "credits"),
    [
        ("pro", 10, True, 800),  # the contract's own example
        ("pro", 10, False, 540),
        ("std", 10, True, 600),
        ("std", 10, False, 400),
        ("std", 5, True, 300),
        ("std", 3, False, 120),
        ("pro", 15, True, 1200),
        ("pro", 3, False, 162),
        ("std", 7.5, True, 450),
        ("std", 3.5, False, 140),
        ("pro", 7.5, False, 405),
        ("std", 4.25, True, 255),
    ],
)
def test_credit_estimate(mode: str, duration: float, sound: bool, credits: int) -> None:
    assert estimate_credits(mode, duration, sound) == credits  # type: ignore[arg-type]
    from_request = VideoRequest.parse({"prompt": PROMPT, "mode": mode, "duration": duration, "sound": sound})
    assert from_request.estimate_credits() == credits
    assert type(from_request.estimate_credits()) is int


def test_credit_estimate_keeps_fractions() -> None:
    assert estimate_credits("pro", 3.3, True) == pytest.approx(264.0)
    assert estimate_credits("std", 4.1, False) == pytest.approx(164.0)
    assert estimate_credits("pro", 3.1, False) == pytest.approx(167.4)


def test_credit_estimate_uses_the_defaults() -> None:
    # std, 5 s, with sound.
    assert VideoRequest.parse({"prompt": PROMPT}).estimate_credits() == 300


# ---------------------------------------------------------------------------------------------------
# Status classification

STATUSES: list[tuple[str, JobState, bool]] = [
    ("SUCCESS", JobState.SUCCEEDED, True),
    ("COMPLETED", JobState.SUCCEEDED, True),
    ("success", JobState.SUCCEEDED, True),
    ("Completed", JobState.SUCCEEDED, True),
    (" SUCCESS ", JobState.SUCCEEDED, True),
    ("FAILED", JobState.FAILED, True),
    ("FAILURE", JobState.FAILED, True),
    ("CANCELLED", JobState.FAILED, True),
    ("failed", JobState.FAILED, True),
    ("Cancelled", JobState.FAILED, True),
    ("IN_PROGRESS", JobState.PENDING, True),
    ("NOT_START", JobState.PENDING, True),
    ("QUEUED", JobState.PENDING, True),
    ("PENDING", JobState.PENDING, True),
    ("in_progress", JobState.PENDING, True),
    # Unknown statuses: still running, and flagged as unknown so the caller can log them.
    ("RENDERING_AUDIO", JobState.PENDING, False),
    ("SUCCESSFUL_PARTIALLY", JobState.PENDING, False),
    ("", JobState.PENDING, False),
    ("200", JobState.PENDING, False),
]


@pytest.mark.parametrize(("status", "state", "known"), STATUSES, ids=[repr(row[0]) for row in STATUSES])
def test_classify_status(status: str, state: JobState, known: bool) -> None:
    assert classify_status(status) is state
    job = JobStatus(job_id="j", status=status, state=classify_status(status))
    assert job.is_known_status is known
    assert job.status == status  # the service's spelling is kept for messages


def test_job_states_are_plain_strings() -> None:
    assert [state.value for state in JobState] == ["pending", "succeeded", "failed"]
    assert JobState("failed") is JobState.FAILED


def test_a_template_that_rendered_to_text_is_named() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.parse({"multi_shots": True, "multi_prompt": "[{'prompt': 'a horse'}]"})
    assert str(caught.value) == (
        "Invalid HappyHorse request: multi_prompt: Input should be a valid list (got \"[{'prompt': 'a horse'}]\"): "
        "a Jinja template renders to text unless the DAG sets render_template_as_native_obj=True"
    )


def test_a_rule_that_shows_the_value_does_not_show_it_twice() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.parse({"prompt": "p", "image_urls": ["s3://bucket/frame.png"]})
    assert str(caught.value) == (
        "Invalid HappyHorse request: image_urls: item 0 must be an http(s) URL, got 's3://bucket/frame.png'"
    )


# ---------------------------------------------------------------------------------------------------
# The trigger event and the task result


def test_job_events_from_a_status_and_their_payloads() -> None:
    at = "2026-01-01T12:01:00+00:00"
    done = JobStatus(job_id="j1", status="SUCCESS", state=JobState.SUCCEEDED, video_url="https://cdn.test/j1.mp4")
    failed = JobStatus(job_id="j2", status="FAILED", state=JobState.FAILED, error_message="nsfw")
    running = JobStatus(job_id="j3", status="IN_PROGRESS", state=JobState.PENDING)
    assert JobEvent.from_job(done, finished_at=at, polls=2).payload() == {
        "status": "success",
        "job_id": "j1",
        "finished_at": at,
        "polls": 2,
        "transient_errors": 0,
        "job_status": "SUCCESS",
        "video_url": "https://cdn.test/j1.mp4",
    }
    assert JobEvent.from_job(failed, finished_at=at).message == "nsfw"
    assert JobEvent.from_job(running, finished_at=at).status == "error"
    error = JobEvent.from_error("j4", ValueError("boom"), finished_at=at, polls=1, transient_errors=0)
    assert (error.error_type, error.message) == ("ValueError", "boom")
    timeout = JobEvent.timed_out(
        "j5", deadline=at, detail="last status QUEUED", finished_at=at, polls=3, transient_errors=1
    )
    assert JobEvent.model_validate(timeout.payload()) == timeout  # the payload is the event


def test_a_result_is_what_was_known_at_submission_plus_the_event() -> None:
    request = VideoRequest.parse({"prompt": "a horse", "mode": "pro", "duration": 10})
    known = RenderRecord.submitting(request, datetime(2026, 1, 1, 12, tzinfo=UTC)).model_copy(update={"job_id": "j1"})
    event = JobEvent(
        status="success", job_id="j1", finished_at="2026-01-01T12:02:00+00:00", job_status="SUCCESS", video_url="u"
    )
    result = known.succeeded(event).result()
    assert result["credits_estimate"] == 800
    assert result["request"] == request.to_body()
    assert result["submitted_at"] == "2026-01-01T12:00:00+00:00"
    assert (result["status"], result["video_url"], result["finished_at"]) == ("SUCCESS", "u", event.finished_at)
    sensor = RenderRecord.awaited("j1", datetime(2026, 1, 1, 12, tzinfo=UTC)).succeeded(event).result()
    assert (sensor["request"], sensor["submitted_at"]) == (None, None)  # a sensor knows no request
