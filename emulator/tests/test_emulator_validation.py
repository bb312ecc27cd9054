"""Every rule of the request table, accepted and refused, with the service's error shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from happyhorse_emulator import EmulatorServer

MODEL = "happyhorse-1.0/video"
IMAGE = "https://cdn.example.com/first.png"
IMAGE2 = "http://cdn.example.com/last.jpg"


def body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "a horse", **fields}


def shots(*durations: float | None, prompt: str = "shot") -> list[dict[str, Any]]:
    return [{"prompt": f"{prompt} {i}", **({} if d is None else {"duration": d})} for i, d in enumerate(durations)]


def multi(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "multi_shots": True, "multi_prompt": shots(None, None), **fields}


ACCEPTED: dict[str, dict[str, Any]] = {
    "minimal": body(),
    "all-single-shot-fields": body(
        mode="pro", duration=8, aspect_ratio="9:16", image_urls=[IMAGE, IMAGE2], sound=False, cfg_scale=0.9
    ),
    "mode-std": body(mode="std"),
    "duration-3": body(duration=3),
    "duration-15": body(duration=15),
    "duration-fraction": body(duration=7.5),
    "aspect-16:9": body(aspect_ratio="16:9"),
    "aspect-1:1": body(aspect_ratio="1:1"),
    "one-image": body(image_urls=[IMAGE]),
    "no-images": body(image_urls=[]),
    "cfg-0": body(cfg_scale=0),
    "cfg-1": body(cfg_scale=1.0),
    "sound-true": body(sound=True),
    "prompt-2500": body(prompt="x" * 2500),
    "multi-shots-false": body(multi_shots=False),
    "multi-shot-without-prompt": multi(),
    "multi-shot-with-prompt": multi(prompt="overall"),
    "multi-shot-one-image": multi(image_urls=[IMAGE]),
    "shot-durations-sum": multi(duration=10, multi_prompt=shots(4, 6)),
    "shot-durations-default-duration": multi(multi_prompt=shots(2, 3)),
    "elements-pass-through": body(happyhorse_elements=[{"name": "hero", "anything": [1, 2]}, "free-form"]),
    "unknown-fields-ignored": body(webhook_url="https://example.com/hook", seed=42, resolution="1080p"),
}


@pytest.mark.parametrize("payload", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(http: httpx.Client, payload: dict[str, Any]) -> None:
    response = http.post("/api/generate", json=payload)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "IN_PROGRESS"
    assert data["task_id"].isalnum()
    assert data["task_id"] == data["task_id"].lower()


# (payload, HTTP status, field named in the message)
REFUSED: dict[str, tuple[Any, int, str]] = {
    "not-an-object": ([body()], 400, "body"),
    "model-missing": ({"prompt": "a horse"}, 400, "model"),
    "model-unknown": (body(model="happyhorse-2.0/video"), 400, "model"),
    "model-not-string": (body(model=1), 422, "model"),
    "prompt-missing": ({"model": MODEL}, 400, "prompt"),
    "prompt-empty": (body(prompt=""), 400, "prompt"),
    "prompt-blank": (body(prompt="   "), 400, "prompt"),
    "prompt-2501": (body(prompt="x" * 2501), 400, "prompt"),
    "prompt-not-string": (body(prompt=42), 422, "prompt"),
    "prompt-null": (body(prompt=None), 422, "prompt"),
    "multi-shot-prompt-too-long": (multi(prompt="x" * 2501), 400, "prompt"),
    "mode-unknown": (body(mode="fast"), 400, "mode"),
    "mode-not-string": (body(mode=1), 422, "mode"),
    "duration-below": (body(duration=2.99), 400, "duration"),
    "duration-above": (body(duration=15.01), 400, "duration"),
    "duration-string": (body(duration="5"), 422, "duration"),
    "duration-bool": (body(duration=True), 422, "duration"),
    "duration-null": (body(duration=None), 422, "duration"),
    "aspect-unknown": (body(aspect_ratio="4:3"), 400, "aspect_ratio"),
    "aspect-3:4": (body(aspect_ratio="3:4"), 400, "aspect_ratio"),  # DashScope's, not happyhorse.app's
    "prompt-2501-cjk": (body(prompt="马" * 2501), 400, "prompt"),
    "aspect-not-string": (body(aspect_ratio=1.77), 422, "aspect_ratio"),
    "images-three": (body(image_urls=[IMAGE, IMAGE2, IMAGE]), 400, "image_urls"),
    "images-not-list": (body(image_urls=IMAGE), 422, "image_urls"),
    "image-not-string": (body(image_urls=[7]), 422, "image_urls[0]"),
    "image-not-url": (body(image_urls=["first.png"]), 400, "image_urls[0]"),
    "image-ftp": (body(image_urls=[IMAGE, "ftp://cdn.example.com/a.png"]), 400, "image_urls[1]"),
    "image-no-host": (body(image_urls=["https:///a.png"]), 400, "image_urls[0]"),
    "multi-shot-two-images": (multi(image_urls=[IMAGE, IMAGE2]), 400, "image_urls"),
    "multi-shot-zero-images": (multi(image_urls=[]), 400, "image_urls"),
    "sound-string": (body(sound="true"), 422, "sound"),
    "sound-int": (body(sound=1), 422, "sound"),
    "cfg-above": (body(cfg_scale=1.5), 400, "cfg_scale"),
    "cfg-below": (body(cfg_scale=-0.1), 400, "cfg_scale"),
    "cfg-string": (body(cfg_scale="0.5"), 422, "cfg_scale"),
    "cfg-bool": (body(cfg_scale=False), 422, "cfg_scale"),
    "multi-shots-string": (body(multi_shots="yes"), 422, "multi_shots"),
    "multi-prompt-missing": ({"model": MODEL, "multi_shots": True}, 400, "multi_prompt"),
    "multi-prompt-empty": (multi(multi_prompt=[]), 400, "multi_prompt"),
    "multi-prompt-not-list": (multi(multi_prompt={"prompt": "x"}), 422, "multi_prompt"),
    "shot-not-object": (multi(multi_prompt=["a shot"]), 422, "multi_prompt[0]"),
    "shot-without-prompt": (multi(multi_prompt=[{"duration": 5}]), 400, "multi_prompt[0].prompt"),
    "shot-empty-prompt": (multi(multi_prompt=[{"prompt": "ok"}, {"prompt": ""}]), 400, "multi_prompt[1].prompt"),
    "shot-prompt-not-string": (multi(multi_prompt=[{"prompt": 3}]), 422, "multi_prompt[0].prompt"),
    "shot-prompt-too-long": (multi(multi_prompt=[{"prompt": "x" * 2501}]), 400, "multi_prompt[0].prompt"),
    "shot-duration-string": (multi(multi_prompt=[{"prompt": "a", "duration": "5"}]), 422, "multi_prompt[0].duration"),
    "shot-duration-zero": (multi(multi_prompt=[{"prompt": "a", "duration": 0}]), 400, "multi_prompt[0].duration"),
    "shot-durations-wrong-sum": (multi(duration=10, multi_prompt=shots(4, 5)), 400, "multi_prompt"),
    "shot-durations-vs-default": (multi(multi_prompt=shots(4, 4)), 400, "multi_prompt"),
    "shot-durations-partial": (multi(duration=5, multi_prompt=shots(5, None)), 400, "multi_prompt"),
    "elements-not-list": (body(happyhorse_elements={"name": "hero"}), 422, "happyhorse_elements"),
}


@pytest.mark.parametrize(("payload", "status", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(http: httpx.Client, emulator: EmulatorServer, payload: Any, status: int, field: str) -> None:
    response = http.post("/api/generate", json=payload)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == status
    assert error["message"].startswith(f"{field}: "), error["message"]
    stats = emulator.stats()
    assert stats["jobs"]["total"] == 0
    assert stats["submissions"]["refused_by_status"] == {str(status): 1}


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"model": "happyhorse-1.0/video", "prompt": "x", "duration": NaN}', b""]
)
def test_body_that_is_not_json_is_400(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/api/generate", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "body: invalid JSON"}
