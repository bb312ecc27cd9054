"""The emulator as a child process: the CLI, SIGKILL and restart with a state file, clean shutdown."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from happyhorse_emulator import EmulatorConfig, EmulatorProcess
from happyhorse_emulator.__main__ import build_parser, config_from_args, main

BODY = {"model": "happyhorse-1.0/video", "prompt": "a horse", "duration": 3, "sound": False}


def _client(process: EmulatorProcess) -> httpx.Client:
    return httpx.Client(
        base_url=process.base_url, headers={"Authorization": f"Bearer {process.api_key}"}, timeout=5, trust_env=False
    )


def _status(process: EmulatorProcess, task_id: str) -> str:
    with _client(process) as http:
        response = http.get("/api/status", params={"task_id": task_id})
    assert response.status_code == 200, response.text
    status: str = response.json()["data"]["status"]
    return status


def test_jobs_survive_a_crash_with_a_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "jobs.jsonl"
    # A 3 s clip without sound: 0.01 * (20 + 3 * 3) = 0.29 s for a finished job; the long one takes 2.1 s.
    config = EmulatorConfig(speed=0.01, jitter=0.0)
    with EmulatorProcess(config, state_file=state_file) as process:
        with _client(process) as http:
            done = http.post("/api/generate", json=BODY).json()["data"]["task_id"]
            process.configure(base_seconds=200)
            pending = http.post("/api/generate", json=BODY | {"prompt": "long"}).json()["data"]["task_id"]
        deadline = time.monotonic() + 5
        while _status(process, done) != "SUCCESS":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _status(process, pending) == "IN_PROGRESS"
        port, pid = process.port, process.pid

        process.kill()
        assert not psutil.pid_exists(pid)
        with pytest.raises(httpx.TransportError), _client(process) as http:
            http.get("/_emulator/health")

        process.restart()
        assert process.port == port
        assert process.pid != pid
        assert len(state_file.read_text().splitlines()) == 2
        assert _status(process, done) == "SUCCESS"
        with _client(process) as http:
            assert http.get(f"/files/{done}.mp4").status_code == 200
        deadline = time.monotonic() + 5
        while _status(process, pending) != "SUCCESS":  # created before the crash, finishes after it
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stats = process.stats()
        assert stats["jobs"]["total"] == 2
        assert stats["submissions"]["total"] == 0  # request counters start again; jobs are replayed

        process.reset()
        assert state_file.read_text() == ""
        pid = process.pid
    assert not psutil.pid_exists(pid)


def test_torn_last_line_is_skipped_on_replay(tmp_path: Path) -> None:
    state_file = tmp_path / "jobs.jsonl"
    with EmulatorProcess(EmulatorConfig(speed=0.01), state_file=state_file) as process:
        with _client(process) as http:
            task_id = http.post("/api/generate", json=BODY).json()["data"]["task_id"]
        process.kill()
        with state_file.open("a") as log:
            log.write('{"task_id": "ntorn')  # a write cut short by the crash
        process.start()
        assert process.stats()["jobs"]["total"] == 1
        assert _status(process, task_id) in {"IN_PROGRESS", "SUCCESS"}


def test_cli_flags_start_a_quiet_server_on_loopback() -> None:
    args = ["--speed", "0.01", "--api-key", "cli-key", "--api-key", "cli-key-2", "--no-admin-routes", "--seed", "7"]
    with EmulatorProcess(args=args) as process:
        assert process.api_key == "cli-key"
        assert process.base_url.startswith("http://127.0.0.1:")
        with _client(process) as http:
            created = http.post("/api/generate", json=BODY)
            assert created.status_code == 200
            assert http.get("/_emulator/stats").status_code == 404
        with pytest.raises(RuntimeError, match="admin routes are off"):
            process.stats()
        log = process.log_text()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines == [
        f"happyhorse-emulator listening on {process.base_url} (api key: cli-key)",
        "happyhorse-emulator admin routes: off",
    ]
    assert process.admin_token is None


def test_config_from_flags_and_file(tmp_path: Path) -> None:
    config_file = tmp_path / "emulator.json"
    config_file.write_text(EmulatorConfig(speed=0.5, faults={"malformed_body_rate": 0.2}).model_dump_json())
    args = build_parser().parse_args(
        [
            "--config",
            str(config_file),
            "--speed",
            "0.02",
            "--max-concurrent",
            "0",
            "--rate-limit",
            "5",
            "--result-ttl",
            "60",
            "--fault-server-error",
            "0.1",
            "--fault-slow-seconds",
            "2",
            "--faults-on",
            "status",
            "--no-credit-key",
            "broke",
            "--forbidden-key",
            "basic",
            "--state-file",
            str(tmp_path / "s.jsonl"),
        ]
    )
    config = config_from_args(args)
    assert config.speed == 0.02
    assert config.max_concurrent_per_key is None
    assert config.rate_limit_per_second == 5
    assert config.result_ttl_seconds == 60
    assert config.faults.server_error_rate == 0.1
    assert config.faults.malformed_body_rate == 0.2  # from the file
    assert config.faults.slow_response_seconds == 2
    assert config.faults.faults_on == ("status",)
    assert config.no_credit_keys == ("broke",)
    assert config.forbidden_keys == ("basic",)
    assert config.state_file == str(tmp_path / "s.jsonl")
    assert config.admin_routes
    assert config.admin_token  # random unless given
    assert config_from_args(build_parser().parse_args(["--no-admin"])).admin_routes is False  # the former spelling


def test_cli_refuses_a_bad_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--speed", "-1"]) == 2
    assert "invalid configuration" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--fault-drop-after-create" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("happyhorse-emulator")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "--state-file" in result.stdout
