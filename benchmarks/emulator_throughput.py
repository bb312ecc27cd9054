"""How many ``GET /api/status`` requests per second the emulator sustains (target: at least 2,000).

The emulator runs in its own process (``EmulatorProcess``: uvicorn with httptools and uvloop, no access log).
This script creates some jobs, then drives status polls for a fixed time from client processes, each an asyncio
loop with keep-alive connections and a minimal HTTP/1.1 client (so that the client, not the server, costs as
little CPU as possible on a small machine). It prints requests/s and latency percentiles and writes
``benchmarks/results/emulator_throughput.json``.

    .venv/bin/python benchmarks/emulator_throughput.py [--seconds 10] [--connections 32] [--clients 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from happyhorse_emulator import EmulatorConfig, EmulatorProcess

RESULTS = Path(__file__).resolve().parent / "results" / "emulator_throughput.json"


async def _connection(
    host: str, port: int, requests: list[bytes], stop_at: float, latencies: list[float], errors: list[str]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < stop_at:
            request = requests[done % len(requests)]
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200") or b'"code":200' not in body:
                errors.append(head.split(b"\r\n", 1)[0].decode())
            done += 1
    finally:
        writer.close()
    return done


async def _drive(host: str, port: int, requests: list[bytes], seconds: float, connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    cpu_started = time.process_time()
    started = time.perf_counter()
    rotated = [requests[i:] + requests[:i] for i in range(connections)]
    counts = await asyncio.gather(
        *(_connection(host, port, rotated[i % len(rotated)], stop_at, latencies, errors) for i in range(connections))
    )
    return {
        "requests": sum(counts),
        "elapsed": time.perf_counter() - started,
        "client_cpu_seconds": time.process_time() - cpu_started,
        "latencies": latencies,
        "errors": errors[:20],
        "error_count": len(errors),
    }


def _client_process(args: tuple[str, int, list[bytes], float, int], queue: Any) -> None:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    queue.put(runner(_drive(*args)))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive status requests")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections per client process")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--jobs", type=int, default=50, help="jobs to create and poll")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()

    # Real-time renders: the jobs stay in progress (or queued) while they are polled, like in production.
    config = EmulatorConfig(max_concurrent_per_key=8)
    with EmulatorProcess(config) as emulator:
        with httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}) as http:
            task_ids = []
            for index in range(options.jobs):
                body = {"model": "happyhorse-1.0/video", "prompt": f"benchmark clip {index}", "duration": 5}
                response = http.post("/api/generate", json=body)
                response.raise_for_status()
                task_ids.append(response.json()["data"]["task_id"])
        host, port = "127.0.0.1", emulator.port
        requests = [
            (
                f"GET /api/status?task_id={task_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {emulator.api_key}\r\nAccept: application/json\r\n\r\n"
            ).encode()
            for task_id in task_ids
        ]
        server = psutil.Process(emulator.pid)
        server.cpu_percent(None)
        server_cpu = server.cpu_times()
        queue: Any = multiprocessing.get_context("spawn").Queue()
        processes = [
            multiprocessing.get_context("spawn").Process(
                target=_client_process, args=((host, port, requests, options.seconds, options.connections), queue)
            )
            for _ in range(options.clients)
        ]
        for process in processes:
            process.start()
        results = [queue.get(timeout=options.seconds + 60) for _ in processes]
        for process in processes:
            process.join(timeout=10)
        server_cpu_after = server.cpu_times()
        stats = emulator.stats()

    latencies = [latency for result in results for latency in result["latencies"]]
    total = sum(result["requests"] for result in results)
    elapsed = max(result["elapsed"] for result in results)
    server_cpu_seconds = (server_cpu_after.user + server_cpu_after.system) - (server_cpu.user + server_cpu.system)
    summary = {
        "benchmark": "emulator GET /api/status throughput",
        "requests": total,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(total / elapsed, 1),
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * 1000, 3),
            "p99": round(_percentile(latencies, 0.99) * 1000, 3),
            "mean": round(statistics.fmean(latencies) * 1000, 3),
        },
        "errors": sum(result["error_count"] for result in results),
        "error_samples": [error for result in results for error in result["errors"]][:5],
        "server_cpu_ms_per_request": round(server_cpu_seconds * 1000 / max(1, total), 4),
        "client_cpu_ms_per_request": round(
            sum(result["client_cpu_seconds"] for result in results) * 1000 / max(1, total), 4
        ),
        "status_calls_counted_by_server": stats["status_calls"]["total"],
        "setup": {
            "client_processes": options.clients,
            "connections_per_client": options.connections,
            "jobs": options.jobs,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    print(
        f"{summary['requests_per_second']:.0f} status requests/s over {elapsed:.1f} s "
        f"({total} requests, {summary['errors']} errors); latency p50 {summary['latency_ms']['p50']:.2f} ms, "
        f"p99 {summary['latency_ms']['p99']:.2f} ms; server CPU {summary['server_cpu_ms_per_request']:.3f} ms/request"
    )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {options.output}")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
