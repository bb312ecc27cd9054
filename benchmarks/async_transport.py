"""
Which transport the hook's async path should use: client CPU per status request at several numbers of
requests in flight, against the emulator in its own process, one shared client or session each:

- ``httpx.AsyncClient`` with httpx's default transport (``client.get``, the answer read as JSON);
- ``HappyHorseHook.aget_job``: what a trigger runs for one poll (the request built once per job, sent
  through the hook's aiohttp transport, the answer parsed into a ``JobStatus``);
- a bare ``aiohttp.ClientSession`` (``session.get``, the body read as JSON): the floor, with nothing of
  ours in it.

Prints a table and writes benchmarks/results/async_transport.json.

    .venv/bin/python benchmarks/async_transport.py [--requests 3000]
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

from airflow_provider_happyhorse.emulator import EmulatorConfig, EmulatorProcess
from airflow_provider_happyhorse.hooks.happyhorse import HappyHorseHook

IN_FLIGHT = (1, 50, 200, 1000)
RESULTS = Path(__file__).parent / "results" / "async_transport.json"
CLIENTS = {
    "httpx_default": "httpx.AsyncClient, default transport",
    "hook": "HappyHorseHook.aget_job (aiohttp transport)",
    "aiohttp": "bare aiohttp.ClientSession (floor)",
}


async def _poller(
    client: str, stack: AsyncExitStack, base_url: str, key: str, job_id: str
) -> Callable[[], Awaitable[None]]:
    """One status request with ``client``, everything shared set up in ``stack``."""
    headers = {"Authorization": f"Bearer {key}"}
    if client == "hook":
        hook = HappyHorseHook()
        await stack.enter_async_context(hook.async_session())

        async def hook_poll() -> None:
            await hook.aget_job(job_id, max_attempts=1)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=3000)
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
    print(f"`.venv/bin/python benchmarks/async_transport.py --requests {args.requests}`\n")
    print("| client CPU ms per status request | " + " | ".join(f"{n} in flight" for n in IN_FLIGHT) + " |")
    print("|---|" + "---|" * len(IN_FLIGHT))
    for client, by_n in rows.items():
        print(f"| {CLIENTS[client]} | " + " | ".join(f"{by_n[n]:.2f}" for n in IN_FLIGHT) + " |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"requests": args.requests, "cpu_ms_per_request": rows}, indent=2))


if __name__ == "__main__":
    main()
