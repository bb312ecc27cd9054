"""
Which transport the hook's async path should use: client CPU per status request at several numbers of
requests in flight, against the emulator in its own process, one shared client or session each:

- ``httpx.AsyncClient`` with httpx's default transport (``client.get``, the answer read as JSON);
- ``HappyHorseHook.aget_job``: what a trigger runs for one poll (the request built once per job, sent
  through the hook's aiohttp transport, the answer parsed into a ``JobStatus``);
- a bare ``aiohttp.ClientSession`` (``session.get``, the body read as JSON): the floor, with nothing of
  ours in it.

The last column is a request alone: one every 0.3 s on an otherwise idle loop, as a trigger polls when
few jobs are due at once; its CPU includes waking the idle process for the timer and again for the
answer. The row "wake-up only" is the timer's wake-up with no request.

Prints a table and writes benchmarks/results/async_transport.json.

    .venv/bin/python benchmarks/async_transport.py [--requests 3000] [--alone 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import httpx

from airflow_provider_happyhorse import HappyHorseHook
from happyhorse_emulator import EmulatorConfig, EmulatorProcess

IN_FLIGHT = (1, 50, 200, 1000)
ALONE_GAP_SECONDS = 0.3
RESULTS = Path(__file__).parent / "results" / "async_transport.json"
CLIENTS = {
    "httpx_default": "httpx.AsyncClient, default transport",
    "hook": "HappyHorseHook.aget_job (aiohttp transport)",
    "aiohttp": "bare aiohttp.ClientSession (floor)",
}
WAKE_UP_ONLY = "wake-up only (no request)"


async def _poller(
    client: str, stack: AsyncExitStack, base_url: str, key: str, job_id: str
) -> Callable[[], Awaitable[None]]:
    """One status request with ``client``, everything shared set up in ``stack``."""
    headers = {"Authorization": f"Bearer {key}"}
    if client == "hook":
        hook = HappyHorseHook()
        await stack.enter_async_context(hook.async_session())

        async def hook_poll() -> None:
            await hook.aget_job(job_id, max_retries=0)

        return hook_poll
    if client == "httpx_default":
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        httpx_client = await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=60))

        async def httpx_poll() -> None:
            response = await httpx_client.get(f"{base_url}/api/status", params={"task_id": job_id}, headers=headers)
            response.raise_for_status()
            response.json()

        return httpx_poll
    session = await stack.enter_async_context(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)))
    url = f"{base_url}/api/status?task_id={job_id}"

    async def aiohttp_poll() -> None:
        async with session.get(url, headers=headers) as response:
            response.raise_for_status()
            await response.json()

    return aiohttp_poll


async def measure(client: str, base_url: str, key: str, job_id: str, in_flight: int, requests: int) -> float:
    """Client CPU milliseconds per request with ``in_flight`` requests outstanding at once."""
    async with AsyncExitStack() as stack:
        poll = await _poller(client, stack, base_url, key, job_id)
        await poll()  # warm up: connection, first-use imports
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await poll()

        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return (time.process_time() - started) * 1000 / requests


async def measure_alone(client: str | None, base_url: str, key: str, job_id: str, requests: int) -> float:
    """Client CPU milliseconds per request sent alone, ALONE_GAP_SECONDS after the previous one; with no
    ``client``, per wake-up of the idle loop with no request."""
    async with AsyncExitStack() as stack:
        poll = await _poller(client, stack, base_url, key, job_id) if client else None
        if poll is not None:
            await poll()
        started = time.process_time()
        for _ in range(requests):
            await asyncio.sleep(ALONE_GAP_SECONDS)
            if poll is not None:
                await poll()
        return (time.process_time() - started) * 1000 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--alone", type=int, default=50, help="requests sent alone, 0.3 s apart, per client")
    args = parser.parse_args()
    with EmulatorProcess(EmulatorConfig(max_concurrent_per_key=None)) as emulator:
        os.environ["AIRFLOW_CONN_HAPPYHORSE_DEFAULT"] = json.dumps(
            {"conn_type": "happyhorse", "host": emulator.base_url, "password": emulator.api_key}
        )
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        body = {"model": "happyhorse-1.0/video", "prompt": "benchmark"}
        job_id = httpx.post(f"{emulator.base_url}/api/generate", json=body, headers=headers).json()["data"]["task_id"]
        rows = {
            client: {
                n: asyncio.run(measure(client, emulator.base_url, emulator.api_key, job_id, n, args.requests))
                for n in IN_FLIGHT
            }
            for client in CLIENTS
        }
        alone = {
            client: asyncio.run(measure_alone(client, emulator.base_url, emulator.api_key, job_id, args.alone))
            for client in (*CLIENTS, None)
        }
    print(f"`.venv/bin/python benchmarks/async_transport.py --requests {args.requests} --alone {args.alone}`\n")
    columns = [f"{n} in flight" for n in IN_FLIGHT] + [f"alone, every {ALONE_GAP_SECONDS} s"]
    print("| client CPU ms per status request | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for client, by_n in rows.items():
        figures = [f"{by_n[n]:.2f}" for n in IN_FLIGHT] + [f"{alone[client]:.2f}"]
        print(f"| {CLIENTS[client]} | " + " | ".join(figures) + " |")
    print(f"| {WAKE_UP_ONLY} | " + " | ".join(["-"] * len(IN_FLIGHT)) + f" | {alone[None]:.2f} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "requests": args.requests,
                "cpu_ms_per_request": rows,
                "alone_gap_seconds": ALONE_GAP_SECONDS,
                "alone_requests": args.alone,
                "cpu_ms_per_request_alone": {CLIENTS[c] if c else WAKE_UP_ONLY: v for c, v in alone.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
