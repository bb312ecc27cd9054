"""The emulator is safe on a laptop: admin token, JSON-only admin POSTs, Host check, no presented key shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from happyhorse_emulator import (
    ADMIN_TOKEN_HEADER,
    EmulatorConfig,
    EmulatorProcess,
    EmulatorServer,
    create_app,
    key_id,
)
from happyhorse_emulator.__main__ import build_parser, config_from_args
from happyhorse_emulator.app import host_name
from happyhorse_emulator.config import ADMIN_TOKEN_ENV
from happyhorse_emulator.server import ADMIN_LINE, STARTUP_LINE

BODY = {"model": "happyhorse-1.0/video", "prompt": "a horse", "duration": 3, "sound": False}
ADMIN_ROUTES = [
    ("GET", "/_emulator/stats", None),
    ("GET", "/_emulator/jobs", None),
    ("GET", "/_emulator/config", None),
    ("POST", "/_emulator/reset", None),
    ("POST", "/_emulator/config", {"seed": 5}),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ADMIN_ROUTES]
GOOD_KEY = "good-key-4f1e0c2b9a"
REJECTED_KEY = "rejected-key-77d3c1e8a0"


def _client(emulator: EmulatorServer, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=emulator.base_url, headers=headers, timeout=5.0, trust_env=False)


def _assert_token_refused(response: httpx.Response, presented: str | None = None) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "admin_token"
    assert ADMIN_TOKEN_HEADER in error["message"]
    assert "printed" in error["message"]
    assert "--admin-token" in error["message"]
    if presented is not None:
        assert presented not in response.text


# -- admin token ------------------------------------------------------------------------------------------------


def test_each_config_gets_its_own_random_token() -> None:
    first, second = EmulatorConfig(), EmulatorConfig()
    assert first.admin_token
    assert second.admin_token
    assert first.admin_token != second.admin_token
    assert len(first.admin_token) >= 32
    assert first.admin_token not in repr(first)
    assert first.merged({"speed": 2}).admin_token == first.admin_token


@pytest.mark.parametrize(("method", "path", "payload"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_admin_route_without_token_is_401(
    emulator: EmulatorServer, method: str, path: str, payload: object | None
) -> None:
    with _client(emulator, Authorization=f"Bearer {emulator.api_key}") as http:  # an API key is no admin token
        _assert_token_refused(http.request(method, path, json=payload))
    assert emulator.config.seed == emulator.initial_config.seed


@pytest.mark.parametrize(("method", "path", "payload"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_admin_route_with_a_wrong_token_is_401(
    emulator: EmulatorServer, method: str, path: str, payload: object | None
) -> None:
    wrong = "not-the-token-3b8e"
    with _client(emulator, **{ADMIN_TOKEN_HEADER: wrong}) as http:
        _assert_token_refused(http.request(method, path, json=payload), presented=wrong)
        # A prefix of the right token, and the right token in another header, are wrong too.
        assert emulator.admin_token is not None
        response = http.request(method, path, json=payload, headers={ADMIN_TOKEN_HEADER: emulator.admin_token[:-1]})
        _assert_token_refused(response)
        response = http.request(method, path, json=payload, headers={"Authorization": f"Bearer {emulator.admin_token}"})
        _assert_token_refused(response)


@pytest.mark.parametrize(("method", "path", "payload"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_admin_route_with_the_token_is_200(
    emulator: EmulatorServer, method: str, path: str, payload: object | None
) -> None:
    with _client(emulator, **emulator.admin_headers) as http:
        response = http.request(method, path, json=payload)
    assert response.status_code == 200, response.text
    assert emulator.admin_token is not None
    assert emulator.admin_token not in response.text


def test_health_and_images_need_no_token(emulator: EmulatorServer) -> None:
    with _client(emulator) as http:
        assert http.get("/_emulator/health").json()["status"] == "ok"
        assert http.get("/_emulator/images/32x32.png").status_code == 200


@pytest.mark.parametrize("path", ["/_emulator/reset", "/_emulator/config"])
@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", b'{"seed": 99}'),
        ("application/x-www-form-urlencoded", b"seed=99"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="seed"\r\n\r\n99\r\n--x--'),
        (None, b'{"seed": 99}'),
    ],
    ids=["text-plain", "form", "multipart", "no-content-type"],
)
def test_admin_post_that_is_not_json_is_415(
    api, emulator: EmulatorServer, path: str, content_type: str | None, content: bytes
) -> None:
    """What a cross-site form or no-cors fetch can send is refused, even with the token."""
    task_id = api.submit()
    request = api.http.build_request("POST", path, content=content)
    if content_type is not None:  # httpx sends raw bytes without a content type
        request.headers["content-type"] = content_type
    response = api.http.send(request)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert emulator.config.seed == emulator.initial_config.seed
    assert task_id in emulator.jobs()  # not reset


def test_admin_post_json_with_a_charset_and_bodyless_reset_are_accepted(api, emulator: EmulatorServer) -> None:
    response = api.http.post(
        "/_emulator/config", content=b'{"seed": 9}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200, response.text
    assert emulator.config.seed == 9
    assert api.http.post("/_emulator/reset").json() == {"status": "reset"}  # no body, no content type


def test_the_token_is_fixed_and_never_shown(api, emulator: EmulatorServer) -> None:
    token = emulator.admin_token
    assert token is not None
    shown = api.http.get("/_emulator/config").json()
    assert "admin_token" not in shown
    refused = api.http.post("/_emulator/config", json={"admin_token": "a-new-token"})
    assert refused.status_code == 400
    assert "a-new-token" not in refused.text
    emulator.set_config(EmulatorConfig(speed=0.5))  # a config with another random token
    assert emulator.admin_token == token == emulator.config.admin_token
    assert api.http.get("/_emulator/stats").status_code == 200


def test_admin_routes_off_answer_404_with_or_without_token(api, emulator: EmulatorServer) -> None:
    emulator.configure(admin_routes=False)
    with _client(emulator) as anonymous:
        for method, path, payload in ADMIN_ROUTES:
            assert api.http.request(method, path, json=payload).status_code == 404, path
            assert anonymous.request(method, path, json=payload).status_code == 404, path
        assert anonymous.get("/_emulator/images/32x32.png").status_code == 200
    assert api.submit()


def test_former_name_admin_enabled_is_still_accepted(api, emulator: EmulatorServer) -> None:
    assert EmulatorConfig.model_validate({"admin_enabled": False}).admin_routes is False
    assert EmulatorConfig().merged({"admin_enabled": False}).admin_routes is False
    with pytest.raises(ValueError, match="contradicts"):
        EmulatorConfig.model_validate({"admin_enabled": False, "admin_routes": True})
    response = api.http.post("/_emulator/config", json={"admin_enabled": True, "speed": 0.5})
    assert response.status_code == 200, response.text
    assert response.json()["admin_routes"] is True


def test_cli_token_comes_from_the_flag_then_the_environment_then_the_file_then_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    config_file = tmp_path / "emulator.json"
    config_file.write_text(json.dumps({"admin_token": "file-token"}))
    parse = build_parser().parse_args
    assert config_from_args(parse(["--config", str(config_file)])).admin_token == "file-token"
    assert config_from_args(parse(["--admin-token", "flag-token"])).admin_token == "flag-token"
    random_token = config_from_args(parse([])).admin_token
    assert random_token
    assert random_token != config_from_args(parse([])).admin_token
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "env-token")
    assert config_from_args(parse(["--config", str(config_file)])).admin_token == "env-token"
    assert config_from_args(parse(["--admin-token", "flag-token"])).admin_token == "flag-token"
    with pytest.raises(ValueError, match="admin_token"):
        config_from_args(parse(["--admin-token", "has space"]))


# -- Host header ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8765", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8765", "::1"),
        ("[::1]", "::1"),
        ("evil.example.", "evil.example"),
        ("evil.example:x", None),
        ("[::1", None),
        ("[::1]x", None),
        ("::1", None),
        ("", None),
    ],
)
def test_host_header_parsing(header: str, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_foreign_host_header_is_refused_everywhere(api, emulator: EmulatorServer, host: str) -> None:
    """A DNS-rebinding page reaches the port under its own name: nothing answers it, API routes included."""
    task_id = api.submit()
    headers = {"Host": host.format(port=emulator.port)}
    for method, path in [
        ("GET", "/_emulator/stats"),
        ("POST", "/_emulator/reset"),
        ("GET", "/_emulator/health"),
        ("GET", "/_emulator/images/32x32.png"),
        ("GET", f"/api/status?task_id={task_id}"),
        ("POST", "/api/generate"),
        ("GET", f"/files/{task_id}.mp4"),
    ]:
        response = api.http.request(method, path, headers=headers, json=BODY if method == "POST" else None)
        assert response.status_code == 421, (path, response.text)
        assert response.json()["error"]["code"] == "misdirected_request"
        assert emulator.api_key not in response.text
        assert emulator.admin_token is not None
        assert emulator.admin_token not in response.text
    assert task_id in emulator.jobs()
    assert emulator.stats()["submissions"]["total"] == 1


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "127.0.0.7", "[::1]:{port}"])
def test_loopback_host_headers_are_accepted(api, emulator: EmulatorServer, host: str) -> None:
    headers = {"Host": host.format(port=emulator.port)}
    assert api.http.get("/_emulator/stats", headers=headers).status_code == 200
    assert api.http.post("/api/generate", json=BODY, headers=headers).status_code == 200


def test_allowed_hosts_add_names(api, emulator: EmulatorServer) -> None:
    emulator.configure(allowed_hosts=["videos.example.test"])
    assert api.http.get("/_emulator/health", headers={"Host": "videos.example.test:9999"}).status_code == 200
    assert api.http.get("/_emulator/health", headers={"Host": "evil.example"}).status_code == 421


def test_the_bound_address_is_accepted_and_other_loopback_addresses_serve() -> None:
    app = create_app(EmulatorConfig(speed=0.01), bind_host="192.0.2.10")
    with TestClient(app, base_url="http://192.0.2.10:8765") as client:
        assert client.get("/_emulator/health").status_code == 200
        assert client.get("/_emulator/health", headers={"Host": "192.0.2.11"}).status_code == 421
    # The harness may bind another loopback address than 127.0.0.1.
    with EmulatorServer(EmulatorConfig(speed=0.01), host="127.0.0.2") as server:
        assert server.base_url.startswith("http://127.0.0.2:")
        with _client(server, Authorization=f"Bearer {server.api_key}", **server.admin_headers) as http:
            assert http.post("/api/generate", json=BODY).status_code == 200
            assert http.get("/_emulator/stats").json()["submissions"]["accepted"] == 1


# -- presented keys are never kept nor shown ---------------------------------------------------------------------


def _submit_with_both_keys(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as http:
        for key in (GOOD_KEY, REJECTED_KEY):
            headers = {"Authorization": f"Bearer {key}"}
            created = http.post("/api/generate", json=BODY, headers=headers)
            polled = http.get("/api/status", params={"task_id": "n00000000hh00"}, headers=headers)
            for response in (created, polled):
                assert key not in response.text
                assert key not in str(response.headers)
            assert created.status_code == (200 if key == GOOD_KEY else 401)
            if key == GOOD_KEY:  # and a duplicate, so that duplicated_fingerprints lists the key's id
                assert http.post("/api/generate", json=BODY, headers=headers).status_code == 200


def _assert_no_key_in_documents(stats_text: str, jobs_text: str) -> None:
    for text in (stats_text, jobs_text):
        assert GOOD_KEY not in text
        assert REJECTED_KEY not in text
    stats = json.loads(stats_text)
    good, rejected = key_id(GOOD_KEY), key_id(REJECTED_KEY)
    assert stats["submissions"]["by_key"][good]["accepted"] == 2
    assert stats["submissions"]["by_key"][rejected]["refused"] == 1
    assert stats["status_calls"]["by_key"] == {good: 1, rejected: 1}
    assert stats["jobs"]["by_key"] == {good: 2}
    assert stats["duplicated_fingerprints"][0]["key_id"] == good
    assert len(json.loads(jobs_text)) == 2


def test_key_id_is_short_and_stable() -> None:
    assert key_id("emulator-demo-key") == key_id("emulator-demo-key")
    assert key_id("emulator-demo-key").startswith("key-")
    assert len(key_id("emulator-demo-key")) == len("key-") + 12
    assert key_id("a") != key_id("b")


def test_stats_jobs_and_logs_show_key_ids_only(api, emulator: EmulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    emulator.configure(api_keys=[emulator.api_key, GOOD_KEY])
    with caplog.at_level(logging.DEBUG):
        _submit_with_both_keys(emulator.base_url)
        stats_text = api.http.get("/_emulator/stats").text
        jobs_text = api.http.get("/_emulator/jobs").text
        config_text = api.http.get("/_emulator/config").text
    _assert_no_key_in_documents(stats_text, jobs_text)
    assert REJECTED_KEY not in config_text  # a configured key is listed there, a presented one never
    assert GOOD_KEY not in json.dumps(emulator.stats()) + json.dumps(emulator.jobs())
    assert all(job.api_key == key_id(GOOD_KEY) for job in emulator.emulator.store)  # not kept in memory either
    assert GOOD_KEY not in caplog.text
    assert REJECTED_KEY not in caplog.text


def test_cli_prints_the_token_and_emulator_process_uses_it(tmp_path: Path) -> None:
    config = EmulatorConfig(speed=0.01, api_keys=(GOOD_KEY,))
    args = ["--log-level", "debug", "--access-log"]
    with EmulatorProcess(config, args=args, state_file=tmp_path / "jobs.jsonl", env={ADMIN_TOKEN_ENV: ""}) as process:
        lines = process.log_text().splitlines()
        startup, admin = STARTUP_LINE.search(lines[0]), ADMIN_LINE.search(lines[1])
        assert startup is not None, lines[:2]
        assert admin is not None, lines[:2]
        token = admin.group("token")
        assert token == process.admin_token == config.admin_token  # from the --config file EmulatorProcess wrote
        assert f"{ADMIN_TOKEN_HEADER}" in lines[1]
        with httpx.Client(base_url=process.base_url, timeout=5.0, trust_env=False) as http:
            _assert_token_refused(http.get("/_emulator/stats"))
            _assert_token_refused(http.post("/_emulator/reset", json={}))
            assert http.get("/_emulator/stats", headers=process.admin_headers).status_code == 200
            assert http.get("/_emulator/health", headers={"Host": "evil.example"}).status_code == 421
            refused = http.post("/_emulator/config", content=b'{"seed": 3}', headers=process.admin_headers)
            assert refused.status_code == 415  # httpx sends no content type for raw bytes

        _submit_with_both_keys(process.base_url)
        stats, jobs = process.stats(), process.jobs()  # the handle's admin calls send the token
        _assert_no_key_in_documents(json.dumps(stats), json.dumps(jobs))
        assert process.configure(seed=4).seed == 4
        process.reset()
        assert process.stats()["jobs"]["total"] == 0
        log = process.log_text()
    assert "GET /_emulator/stats" in log  # the access log was on
    assert GOOD_KEY not in log.split("\n", 1)[1]  # the startup line names the configured key, nothing after it
    assert REJECTED_KEY not in log
    assert GOOD_KEY not in (tmp_path / "jobs.jsonl").read_text()


def test_cli_token_from_the_environment(tmp_path: Path) -> None:
    with EmulatorProcess(args=["--speed", "0.01"], env={ADMIN_TOKEN_ENV: "env-token-0123456789"}) as process:
        assert process.admin_token == "env-token-0123456789"
        assert process.stats()["jobs"]["total"] == 0
        lines = process.log_text().splitlines()
    assert lines[1].startswith("happyhorse-emulator admin token: env-token-0123456789 ")
