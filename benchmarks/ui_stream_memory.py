"""The HappyHorse view's clip route holds memory constant while it streams (issue 15, item 6).

    .venv/bin/python benchmarks/ui_stream_memory.py [--sizes 64,512] [--rate 8] [--streams 4] [--seeks 400]

A fresh Airflow home and SQLite metadata DB; one real run (`airflow dags test` of the integration-test DAG
``happyhorse_it_private`` against the emulator) makes one real task instance with its result and ``job_id``
XComs, whose result records ``stored_path``: the clip file. For each size in ``--sizes`` (MiB) that file (the
very path the result records, which is the only one the route serves) is grown to that size: the real clip's
bytes, then a random 4 MiB block repeated. A real ``airflow api-server --apps core`` process (uvicorn, one
worker, Airflow's middlewares and the plugin mounted at ``/happyhorse``) is started for each size, and a viewer's
bearer token is minted by Airflow's auth manager with the server's JWT secret. After a warm-up (the clip's
row and its first KiB, so the lazily built app and the DB session are loaded) the RSS of the server's process
tree (psutil, every 50 ms) is sampled while:

* ``slow GET``: one whole-file GET read at ``--rate`` MB/s (the server must not read ahead of the client);
* ``N concurrent``: ``--streams`` whole-file GETs at once, each read at ``--rate`` MB/s;
* ``seeks``: ``--seeks`` Range requests on 4 connections at random offsets, half ``bytes=a-b`` (64 KiB to
  1 MiB, read whole) and half ``bytes=a-`` (what a player sends when it seeks), dropped after 512 KiB.

Every byte received is checked against the file (a SHA-256 of each whole file, each range's slice). It prints the
baseline RSS, the peak during each phase, the growth (peak minus baseline), how much higher the phase's second half
peaked than its first (about half the growth if memory grew with the bytes served, about 0 once it levels off), the
RSS after the phases, the bytes served and the server's CPU seconds, per size, then the check: the growth at the
largest size is within ``TOLERANCE_MB`` of the growth at the smallest and under ``BOUND_MB`` -- growth does not
scale with the file's size. Prints markdown tables and writes ``benchmarks/results/ui_stream_memory.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from _airflow import (
    RESULTS,
    command_line,
    exit_on_sigterm,
    fmt,
    happyhorse_connection,
    machine,
    markdown_table,
    write_json,
)

from harness.processes import free_ports, tail

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "tests" / "integration" / "dags"
PYTHON = sys.executable
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "happyhorse_it_private"
TASK_ID = "private_clip"
DAY = "2026-03-01"
MB = 2**20
BLOCK = 4 * MB
BOUND_MB = 32.0  # the growth at the largest size stays under this
TOLERANCE_MB = 8.0  # and within this of the growth at the smallest
SAMPLE_EVERY = 0.05
READ_CHUNK = 64 * 1024
SEEK_CONNECTIONS = 4
ABANDON_AFTER = 512 * 1024


# -- the metadata DB and the clip ------------------------------------------------------------------------------


def fill(home: Path) -> tuple[Path, str]:
    """One real run: its result's ``stored_path`` as a local path, and its run id."""
    from happyhorse_emulator import EmulatorConfig, EmulatorProcess

    output = home / "clips"
    with EmulatorProcess(EmulatorConfig(speed=0.01)) as emulator:
        env = {
            **os.environ,
            "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": happyhorse_connection(emulator.base_url, emulator.api_key),
            "HAPPYHORSE_IT_OUTPUT": f"file://{output}",
        }
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        subprocess.run([AIRFLOW, "dags", "test", DAG_ID, DAY], env=env, check=True, capture_output=True, timeout=300)
    db = sqlite3.connect(home / "airflow.db")
    row = db.execute(
        "SELECT run_id, value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value'", (DAG_ID, TASK_ID)
    ).fetchone()
    db.close()
    value = row[1].decode() if isinstance(row[1], bytes) else row[1]
    result = json.loads(value)
    if isinstance(result, str):
        result = json.loads(result)
    stored = str(result["stored_path"])
    path = Path(stored.removeprefix("file://"))
    print(f"one result row in {home / 'airflow.db'}: run {row[0]}, stored clip {stored} ({path.stat().st_size} B)")
    return path, str(row[0])


def grow(path: Path, head: bytes, size: int) -> None:
    """The clip file at ``size`` bytes: the real clip, then a random block repeated."""
    block = os.urandom(BLOCK)
    with path.open("wb") as handle:
        handle.write(head)
        written = len(head)
        while written < size:
            piece = block[: size - written]
            handle.write(piece)
            written += len(piece)


def whole_file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


# -- the api-server and its memory -----------------------------------------------------------------------------


class ApiServer:
    """One ``airflow api-server --apps core`` process (its own session), on a free loopback port."""

    def __init__(self, home: Path, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "AIRFLOW__API__WORKERS": "1", "AIRFLOW__API__HOST": "127.0.0.1"}
        argv = [PYTHON, "-m", "airflow", "api-server", "--apps", "core", "--port", str(self.port)]
        self._log_handle = log.open("ab")
        self.popen = subprocess.Popen(
            argv, cwd=home, env=env, stdout=self._log_handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the api-server exited ({self.popen.returncode}):\n{tail(self.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the api-server was not healthy within {timeout:.0f} s:\n{tail(self.log)}")

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.popen.pid)
            return [root, *root.children(recursive=True)]
        return []

    def rss(self) -> int:
        total = 0
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log_handle.close()


@dataclass
class RssSampler:
    """The server tree's RSS every ``SAMPLE_EVERY`` seconds, in a thread: (monotonic time, bytes)."""

    server: ApiServer
    samples: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.server.rss()))
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peak(self, began: float, ended: float) -> int:
        return max((rss for at, rss in self.samples if began <= at <= ended), default=0)

    def every_second(self) -> list[float]:
        """The peak of each second since the first sample, in MiB (for the JSON)."""
        if not self.samples:
            return []
        first, seconds = self.samples[0][0], dict[int, int]()
        for at, rss in self.samples:
            second = int(at - first)
            seconds[second] = max(seconds.get(second, 0), rss)
        return [round(seconds[second] / MB, 1) for second in sorted(seconds)]


def settled_rss(server: ApiServer, seconds: float = 2.0) -> int:
    """The tree's RSS after ``seconds`` of idling: the median of a few readings."""
    time.sleep(seconds)
    readings = []
    for _ in range(5):
        readings.append(server.rss())
        time.sleep(0.1)
    return sorted(readings)[len(readings) // 2]


# -- the clients -----------------------------------------------------------------------------------------------


@dataclass
class Clip:
    url: str
    params: dict[str, str | int]
    headers: dict[str, str]
    path: Path
    size: int
    digest: str


def throttled(chunks: Iterator[bytes], rate: float) -> Iterator[bytes]:
    """``chunks`` at no more than ``rate`` bytes per second."""
    began, received = time.monotonic(), 0
    for chunk in chunks:
        received += len(chunk)
        yield chunk
        ahead = received / rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)


def whole_file(clip: Clip, rate: float) -> int:
    """One whole-file GET read at ``rate`` bytes/s; checks every byte. Returns the bytes received."""
    digest, received = hashlib.sha256(), 0
    with (
        httpx.Client(timeout=120) as client,
        client.stream("GET", clip.url, params=clip.params, headers=clip.headers) as response,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"GET {response.url}: {response.status_code} {response.read()[:300]!r}")
        if response.headers.get("content-encoding"):
            raise RuntimeError(f"the clip came {response.headers['content-encoding']}-encoded")
        for chunk in throttled(response.iter_raw(READ_CHUNK), rate):
            digest.update(chunk)
            received += len(chunk)
    if received != clip.size or digest.hexdigest() != clip.digest:
        raise RuntimeError(f"the whole file came wrong: {received} of {clip.size} bytes, or other bytes")
    return received


def seeks(clip: Clip, count: int, seed: int) -> int:
    """``count`` Range requests on ``SEEK_CONNECTIONS`` connections; checks every byte. Returns bytes received."""
    chance = random.Random(seed)
    plans: list[tuple[int, int | None]] = []
    for index in range(count):
        first = chance.randrange(0, clip.size - 1)
        if index % 2:
            plans.append((first, min(first + chance.randrange(64 * 1024, MB) - 1, clip.size - 1)))
        else:
            plans.append((first, None))  # open-ended, dropped after ABANDON_AFTER
    handle = clip.path.open("rb")
    lock = threading.Lock()

    def expected(first: int, length: int) -> bytes:
        with lock:
            handle.seek(first)
            return handle.read(length)

    def run(share: list[tuple[int, int | None]]) -> int:
        received = 0
        with httpx.Client(timeout=120) as client:
            for first, last in share:
                header = f"bytes={first}-" if last is None else f"bytes={first}-{last}"
                with client.stream("GET", clip.url, params=clip.params, headers={**clip.headers, "Range": header}) as r:
                    if r.status_code != 206:
                        raise RuntimeError(f"Range {header}: {r.status_code}")
                    end = clip.size - 1 if last is None else last
                    if r.headers["content-range"] != f"bytes {first}-{end}/{clip.size}":
                        raise RuntimeError(f"Range {header}: Content-Range {r.headers['content-range']}")
                    wanted = end - first + 1 if last is not None else min(ABANDON_AFTER, clip.size - first)
                    body = bytearray()
                    for chunk in r.iter_raw(READ_CHUNK):
                        body += chunk
                        if len(body) >= wanted:
                            break
                    body = body[:wanted]
                    if bytes(body) != expected(first, wanted):
                        raise RuntimeError(f"Range {header}: other bytes")
                    received += len(body)
                if last is None:  # a player that seeks drops the connection of the range it was reading
                    client.close()
                    client = httpx.Client(timeout=120)
        return received

    try:
        with ThreadPoolExecutor(SEEK_CONNECTIONS) as pool:
            return sum(pool.map(run, [plans[index::SEEK_CONNECTIONS] for index in range(SEEK_CONNECTIONS)]))
    finally:
        handle.close()


# -- one size --------------------------------------------------------------------------------------------------


def viewer_token() -> str:
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))


def concurrent(clip: Clip, rate: float, streams: int) -> int:
    with ThreadPoolExecutor(streams) as pool:
        return sum(pool.map(lambda _: whole_file(clip, rate), range(streams)))


def measure(
    home: Path, clip_path: Path, head: bytes, run_id: str, size_mb: int, options: argparse.Namespace
) -> dict[str, Any]:
    size = size_mb * MB
    grow(clip_path, head, size)
    digest = whole_file_digest(clip_path)
    print(f"\n{size_mb} MiB clip written; starting the api-server")
    server = ApiServer(home, home / f"api-server-{size_mb}.log")
    try:
        server.wait_healthy()
        key: dict[str, str | int] = {"dag_id": DAG_ID, "run_id": run_id, "task_id": TASK_ID, "map_index": -1}
        headers = {"Authorization": f"Bearer {viewer_token()}"}
        clip = Clip(f"{server.url}/happyhorse/files/video", key, headers, clip_path, size, digest)
        # Warm-up: the lazily built app, the auth manager, the DB session, the route.
        row = httpx.get(f"{server.url}/happyhorse/api/clip", params=key, headers=headers, timeout=60)
        row.raise_for_status()
        first = httpx.get(clip.url, params=key, headers={**headers, "Range": "bytes=0-1023"}, timeout=60)
        if first.status_code != 206 or first.content != head[:1024]:
            raise RuntimeError(f"warm-up range: {first.status_code} {first.content[:200]!r}")
        baseline = settled_rss(server)
        rate = options.rate * 1e6
        phases: list[dict[str, Any]] = []
        with RssSampler(server) as sampler:
            work: list[tuple[str, Callable[[], int]]] = [
                ("slow GET", lambda: whole_file(clip, rate)),
                (f"{options.streams} concurrent", lambda: concurrent(clip, rate, options.streams)),
                (f"{options.seeks} seeks", lambda: seeks(clip, options.seeks, seed=size_mb)),
            ]
            for name, call in work:
                cpu, began = server.cpu_seconds(), time.monotonic()
                served = call()
                ended = time.monotonic()
                peak, middle = sampler.peak(began, ended), (began + ended) / 2
                late_rise = sampler.peak(middle, ended) - sampler.peak(began, middle)
                phases.append(
                    {
                        "phase": name,
                        "seconds": round(ended - began, 1),
                        "bytes_served": served,
                        "peak_rss_mb": round(peak / MB, 1),
                        "growth_mb": round((peak - baseline) / MB, 1),
                        "second_half_rise_mb": round(late_rise / MB, 1),
                        "server_cpu_seconds": round(server.cpu_seconds() - cpu, 1),
                    }
                )
                print(f"  {name}: {served / MB:,.0f} MiB in {ended - began:.1f} s, peak RSS {peak / MB:.1f} MiB")
        after = settled_rss(server)
        return {
            "size_mb": size_mb,
            "baseline_rss_mb": round(baseline / MB, 1),
            "after_rss_mb": round(after / MB, 1),
            "growth_mb": max(phase["growth_mb"] for phase in phases),
            "retained_mb": round((after - baseline) / MB, 1),
            "phases": phases,
            "samples": len(sampler.samples),
            "rss_mb_each_second": sampler.every_second(),
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,512", help="clip sizes in MiB, comma-separated (default 64,512)")
    parser.add_argument("--rate", type=float, default=8.0, help="MB/s each whole-file client reads (default 8)")
    parser.add_argument("--streams", type=int, default=4, help="concurrent whole-file GETs (default 4)")
    parser.add_argument("--seeks", type=int, default=400, help="Range requests (default 400)")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home (and its clip) afterwards")
    options = parser.parse_args()
    sizes = sorted(int(size) for size in options.sizes.split(","))
    exit_on_sigterm()
    home = Path(tempfile.mkdtemp(prefix="happyhorse-ui-stream-"))
    # Before anything imports Airflow: this process mints the token, the api-server checks it.
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__OPENLINEAGE__DISABLED": "True",
        }
    )
    started = machine()
    try:
        clip_path, run_id = fill(home)
        head = clip_path.read_bytes()
        runs = [measure(home, clip_path, head, run_id, size, options) for size in sizes]
    finally:
        if not options.keep:
            shutil.rmtree(home, ignore_errors=True)

    print(f"\nRSS of the api-server process tree (MiB), whole-file clients at {options.rate:g} MB/s each\n")
    rows = []
    for run in runs:
        for phase in run["phases"]:
            rows.append(
                [
                    f"{run['size_mb']} MiB",
                    phase["phase"],
                    fmt(run["baseline_rss_mb"]),
                    fmt(phase["peak_rss_mb"]),
                    fmt(phase["growth_mb"]),
                    fmt(phase["second_half_rise_mb"]),
                    f"{phase['bytes_served'] / MB:,.0f} MiB",
                    fmt(phase["seconds"]),
                    fmt(phase["server_cpu_seconds"]),
                ]
            )
    headers = ["clip", "phase", "baseline", "peak", "growth", "2nd-half rise", "served", "seconds", "server CPU s"]
    print(markdown_table(headers, rows))
    print()
    print(
        markdown_table(
            ["clip", "baseline", "peak growth", "RSS after", "retained"],
            [
                [
                    f"{r['size_mb']} MiB",
                    fmt(r["baseline_rss_mb"]),
                    fmt(r["growth_mb"]),
                    fmt(r["after_rss_mb"]),
                    fmt(r["retained_mb"]),
                ]
                for r in runs
            ],
        )
    )
    small, large = runs[0], runs[-1]
    difference = large["growth_mb"] - small["growth_mb"]
    held = large["growth_mb"] <= BOUND_MB and abs(difference) <= TOLERANCE_MB
    verdict = "held" if held else "did NOT hold"
    print(
        f"\nCheck: growth does not scale with file size -- growth at {large['size_mb']} MiB "
        f"{large['growth_mb']:.1f} MiB vs {small['size_mb']} MiB {small['growth_mb']:.1f} MiB "
        f"(difference {difference:+.1f}, allowed ±{TOLERANCE_MB:g}; bound {BOUND_MB:g} MiB): {verdict}"
    )
    write_json(
        RESULTS / "ui_stream_memory.json",
        {
            "command": command_line(),
            "machine": started,
            "options": {
                "sizes_mb": sizes,
                "rate_mb_s": options.rate,
                "streams": options.streams,
                "seeks": options.seeks,
            },
            "bound_mb": BOUND_MB,
            "tolerance_mb": TOLERANCE_MB,
            "held": held,
            "runs": runs,
        },
    )
    print(f"wrote {RESULTS / 'ui_stream_memory.json'}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
