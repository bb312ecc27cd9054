"""
The bad-input table: parameter sets the operator must refuse before anything is paid for.

Each case is the keyword arguments of one mapped ``GenerateVideoOperator`` task, the field the error must
name and a piece of the rule it must state. ``reliability/dags/rel_bad_input.py`` maps the operator over
the cases; the trial reads each task's log for the error. The property test
``tests/integration/test_client_against_emulator.py::test_model_and_emulator_agree_on_validity`` checks
the model against the emulator on generated requests; this table checks the operator, inside Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LONG_PROMPT = "x" * 2501
IMAGE = "https://images.example/first.png"
IMAGE_2 = "https://images.example/last.png"


@dataclass(frozen=True)
class BadInput:
    label: str
    kwargs: dict[str, Any]
    field: str
    rule: str
    notes: dict[str, Any] = field(default_factory=dict)


BAD_INPUTS: tuple[BadInput, ...] = (
    BadInput("no prompt", {}, "prompt", "required unless multi_shots is true"),
    BadInput("empty prompt", {"prompt": ""}, "prompt", "required unless multi_shots is true"),
    BadInput("blank prompt", {"prompt": "   "}, "prompt", "required unless multi_shots is true"),
    # The trial's connection is happyhorse.app: its dialect refuses what only DashScope takes (4:3, 2501+ characters).
    BadInput("prompt too long", {"prompt": LONG_PROMPT}, "prompt", "takes at most 2500 characters"),
    BadInput("prompt past any dialect", {"prompt": "x" * 5001}, "prompt", "at most 5000 characters"),
    BadInput("unknown mode", {"prompt": "a horse", "mode": "ultra"}, "mode", "'std' or 'pro'"),
    BadInput("upper-case mode", {"prompt": "a horse", "mode": "STD"}, "mode", "'std' or 'pro'"),
    BadInput("empty mode", {"prompt": "a horse", "mode": ""}, "mode", "'std' or 'pro'"),
    BadInput("duration too short", {"prompt": "a horse", "duration": 2}, "duration", "greater than or equal to 3"),
    BadInput("duration too long", {"prompt": "a horse", "duration": 16}, "duration", "less than or equal to 15"),
    BadInput("duration zero", {"prompt": "a horse", "duration": 0}, "duration", "greater than or equal to 3"),
    BadInput("duration negative", {"prompt": "a horse", "duration": -5}, "duration", "greater than or equal to 3"),
    BadInput("duration boolean", {"prompt": "a horse", "duration": True}, "duration", "not a boolean"),
    BadInput("duration text", {"prompt": "a horse", "duration": "five"}, "duration", "valid number"),
    BadInput("aspect 4:3", {"prompt": "a horse", "aspect_ratio": "4:3"}, "aspect_ratio", "'16:9', '9:16' or '1:1'"),
    BadInput("aspect 16x9", {"prompt": "a horse", "aspect_ratio": "16x9"}, "aspect_ratio", "'1:1', '4:3' or '3:4'"),
    BadInput(
        "image ftp URL",
        {"prompt": "a horse", "image_urls": ["ftp://images.example/a.png"]},
        "image_urls",
        "http(s) URL",
    ),
    BadInput("image not a URL", {"prompt": "a horse", "image_urls": ["first frame"]}, "image_urls", "http(s) URL"),
    BadInput("image URLs not a list", {"prompt": "a horse", "image_urls": IMAGE}, "image_urls", "valid list"),
    BadInput(
        "three images", {"prompt": "a horse", "image_urls": [IMAGE, IMAGE_2, IMAGE]}, "image_urls", "at most 2 images"
    ),
    BadInput(
        "multi-shot with two images",
        {"multi_shots": True, "multi_prompt": [{"prompt": "one"}], "image_urls": [IMAGE, IMAGE_2]},
        "image_urls",
        "exactly 1 image",
    ),
    BadInput("multi-shot without shots", {"multi_shots": True}, "multi_prompt", "required (at least one shot)"),
    BadInput(
        "multi-shot, empty shots",
        {"multi_shots": True, "multi_prompt": []},
        "multi_prompt",
        "required (at least one shot)",
    ),
    BadInput(
        "shot with empty prompt",
        {"multi_shots": True, "multi_prompt": [{"prompt": ""}]},
        "multi_prompt.0.prompt",
        "at least 1 character",
    ),
    BadInput(
        "shot with blank prompt",
        {"multi_shots": True, "multi_prompt": [{"prompt": "   "}]},
        "multi_prompt.0.prompt",
        "must not be blank",
    ),
    BadInput(
        "shot without prompt",
        {"multi_shots": True, "multi_prompt": [{"duration": 5}]},
        "multi_prompt.0.prompt",
        "Field required",
    ),
    BadInput(
        "shot not an object",
        {"multi_shots": True, "multi_prompt": ["one shot"]},
        "multi_prompt.0",
        "valid dictionary",
    ),
    BadInput(
        "shot durations do not add up",
        {
            "multi_shots": True,
            "duration": 5,
            "multi_prompt": [{"prompt": "a", "duration": 2}, {"prompt": "b", "duration": 2}],
        },
        "multi_prompt",
        "add up to 4, not duration 5",
    ),
    BadInput(
        "some shots without duration",
        {"multi_shots": True, "duration": 5, "multi_prompt": [{"prompt": "a", "duration": 5}, {"prompt": "b"}]},
        "multi_prompt",
        "every shot or for none",
    ),
    BadInput(
        "shot duration zero",
        {"multi_shots": True, "duration": 5, "multi_prompt": [{"prompt": "a", "duration": 0}]},
        "multi_prompt.0.duration",
        "greater than 0",
    ),
    BadInput("cfg_scale above 1", {"prompt": "a horse", "cfg_scale": 1.5}, "cfg_scale", "less than or equal to 1"),
    BadInput("cfg_scale negative", {"prompt": "a horse", "cfg_scale": -0.1}, "cfg_scale", "greater than or equal to 0"),
    BadInput("cfg_scale boolean", {"prompt": "a horse", "cfg_scale": False}, "cfg_scale", "not a boolean"),
    BadInput("sound as text", {"prompt": "a horse", "sound": "yes please"}, "sound", "valid boolean"),
    BadInput("elements not a list", {"prompt": "a horse", "elements": "hero"}, "happyhorse_elements", "valid list"),
    BadInput(
        "estimate above max_credits",
        {"prompt": "a horse", "mode": "pro", "duration": 15, "max_credits": 100},
        "max_credits",
        "1200 credits, above the limit 100",
    ),
)
