"""The result is a real MP4 (duration, aspect, audio exactly when asked); image-to-video takes the image shape."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import pytest

from happyhorse_emulator import EmulatorServer
from happyhorse_emulator.video import render_png


def download(api, task_id: str) -> bytes:
    payload, _ = api.wait_until_final(task_id)
    assert payload["data"]["status"] == "SUCCESS"
    response = api.http.get(payload["data"]["response"]["resultUrls"][0])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    return response.content


def probe(data: bytes) -> dict[str, object]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        return {
            "duration": container.duration / av.time_base,
            "video_duration": float(video.duration * video.time_base),
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "audio": [stream.codec_context.name for stream in container.streams.audio],
            "frames": sum(1 for _ in container.decode(video=0)),
        }


@pytest.mark.parametrize(
    ("duration", "aspect_ratio", "sound", "ratio"),
    [(4, "16:9", True, 16 / 9), (3, "9:16", False, 9 / 16), (15, "1:1", True, 1.0), (7.5, "16:9", False, 16 / 9)],
)
def test_mp4_matches_the_request(
    api, fast: EmulatorServer, duration: float, aspect_ratio: str, sound: bool, ratio: float
) -> None:
    info = probe(download(api, api.submit(duration=duration, aspect_ratio=aspect_ratio, sound=sound)))
    assert info["duration"] == pytest.approx(duration, abs=0.1)
    assert info["video_duration"] == pytest.approx(duration, abs=0.1)
    assert info["width"] / info["height"] == pytest.approx(ratio, rel=0.01)
    assert info["audio"] == (["aac"] if sound else [])
    assert info["frames"] >= 3 * 8


def test_multi_shot_video_lasts_the_total_duration(api, fast: EmulatorServer) -> None:
    body = {
        "model": "happyhorse-1.0/video",
        "multi_shots": True,
        "duration": 6,
        "multi_prompt": [{"prompt": "a", "duration": 2}, {"prompt": "b", "duration": 4}],
    }
    task_id = api.generate(body).json()["data"]["task_id"]
    assert probe(download(api, task_id))["duration"] == pytest.approx(6, abs=0.1)


def test_same_request_same_bytes_and_head_support(api, fast: EmulatorServer) -> None:
    first = download(api, api.submit(duration=5, sound=True))
    task_id = api.submit(duration=5, sound=True, prompt="another prompt, same shape")
    assert download(api, task_id) == first
    head = api.http.head(f"/files/{task_id}.mp4")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(first)
    assert fast.stats()["file_downloads"] == 2


def test_image_route_serves_a_png_of_the_asked_size(api) -> None:
    response = api.http.get("/_emulator/images/64x48.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    with av.open(io.BytesIO(response.content)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (64, 48)
    assert api.http.get("/_emulator/images/0x48.png").status_code == 404
    assert api.http.get("/_emulator/images/big.png").status_code == 404


@pytest.mark.parametrize(
    ("image_host", "size", "ratio"),
    [("emulator", (300, 400), 3 / 4), ("cdn.example.com", (200, 200), 1.0), ("emulator", (1920, 1080), 16 / 9)],
)
def test_image_to_video_takes_the_image_aspect(
    api, fast: EmulatorServer, image_host: str, size: tuple[int, int], ratio: float
) -> None:
    base = fast.base_url if image_host == "emulator" else f"https://{image_host}"
    url = f"{base}/_emulator/images/{size[0]}x{size[1]}.png"
    info = probe(download(api, api.submit(aspect_ratio="9:16", image_urls=[url], duration=3)))
    assert info["width"] / info["height"] == pytest.approx(ratio, rel=0.03)


def test_unreachable_non_loopback_image_falls_back_to_the_aspect_ratio(api, fast: EmulatorServer) -> None:
    # Never fetched (not loopback): no network traffic, and the requested aspect ratio wins.
    task_id = api.submit(aspect_ratio="9:16", image_urls=["https://images.example.com/photo.jpg"], duration=3)
    info = probe(download(api, task_id))
    assert info["width"] / info["height"] == pytest.approx(9 / 16, rel=0.01)


@pytest.fixture
def loopback_image_server() -> Iterator[str]:
    png = render_png(250, 100)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/photo.png":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_loopback_image_is_fetched_and_measured(api, fast: EmulatorServer, loopback_image_server: str) -> None:
    task_id = api.submit(aspect_ratio="1:1", image_urls=[f"{loopback_image_server}/photo.png"], duration=3)
    info = probe(download(api, task_id))
    assert info["width"] / info["height"] == pytest.approx(2.5, rel=0.03)
    missing = api.submit(aspect_ratio="1:1", image_urls=[f"{loopback_image_server}/missing.png"], duration=3)
    info = probe(download(api, missing))
    assert info["width"] == info["height"]
