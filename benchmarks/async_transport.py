"""
Which transport the hook's async path should use: client CPU per status request, httpx's default async
transport vs httpx over aiohttp (httpx-aiohttp), one shared client each, at several numbers of requests
in flight, against the emulator in its own process. Prints a table and writes
benchmarks/results/async_transport.json.

    .venv/bin/python benchmarks/async_transport.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
from httpx_aiohttp import AiohttpTransport

from airflow_provider_happyhorse.emulator import EmulatorConfig, EmulatorProcess

IN_FLIGHT = (1, 50, 200, 1000)
RESULTS = Path(__file__).parent / "results" / "async_transport.json"


async def measure(make_transport: str, base_url: str, key: str, job_id: str, in_flight: int, requests: int) -> float:
    """Client CPU milliseconds per request with ``in_flight`` requests outstanding at once."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    transport: httpx.AsyncBaseTransport = (
        AiohttpTransport(limits=limits) if make_transport == "aiohttp" else httpx.AsyncHTTPTransport(limits=limits)
    )
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, limits=limits, timeout=60) as client:
        await client.get(f"{base_url}/api/status", params={"task_id": job_id}, headers=headers)  # warm up
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.get(f"{base_url}/api/status", params={"task_id": job_id}, headers=headers)
                response.raise_for_status()

        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return (time.process_time() - started) * 1000 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with EmulatorProcess(EmulatorConfig(max_concurrent_per_key=None)) as emulator:
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        body = {"model": "happyhorse-1.0/video", "prompt": "benchmark"}
        job_id = httpx.post(f"{emulator.base_url}/api/generate", json=body, headers=headers).json()["data"]["task_id"]
        rows = {}
        for name in ("httpx default", "aiohttp"):
            rows[name] = {
                n: asyncio.run(measure(name, emulator.base_url, emulator.api_key, job_id, n, args.requests))
                for n in IN_FLIGHT
            }
    print(f"`.venv/bin/python benchmarks/async_transport.py --requests {args.requests}`\n")
    print("| client CPU ms per status request | " + " | ".join(f"{n} in flight" for n in IN_FLIGHT) + " |")
    print("|---|" + "---|" * len(IN_FLIGHT))
    for name, by_n in rows.items():
        print(f"| {name} (one shared client) | " + " | ".join(f"{by_n[n]:.2f}" for n in IN_FLIGHT) + " |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"requests": args.requests, "cpu_ms_per_request": rows}, indent=2))


if __name__ == "__main__":
    main()
