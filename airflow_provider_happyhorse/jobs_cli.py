"""
``happyhorse-jobs``: show or forget the job a task instance remembers, through Airflow's REST API.

A ``GenerateVideoOperator`` task keeps its job in the task state store key ``happyhorse_job``; a later
try re-attaches to it instead of paying again, and refuses to submit when an earlier try's outcome is
unknown. ``forget`` deletes that key, so the next try (clear the task) submits anew::

    happyhorse-jobs show   --dag-id daily --run-id manual__2026-11-01 --task-id clip
    happyhorse-jobs forget --dag-id daily --run-id manual__2026-11-01 --task-id clip [--map-index 3]

The API is ``--api-url`` (default ``$AIRFLOW_API_URL``, else Airflow's ``[api] base_url``, else
http://localhost:8080). Authentication: ``--token`` (or ``$AIRFLOW_API_TOKEN``), or ``--username`` and
``--password`` (or ``$AIRFLOW_USERNAME`` / ``$AIRFLOW_PASSWORD``), exchanged at ``/auth/token``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any
from urllib.parse import quote

import httpx

from airflow_provider_happyhorse.job_store import JobRecordStore

DEFAULT_API_URL = "http://localhost:8080"


class CommandError(Exception):
    """What the command says on failure (exit status 2)."""


def _default_api_url() -> str:
    if url := os.environ.get("AIRFLOW_API_URL"):
        return url
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - installed next to Airflow
        return DEFAULT_API_URL
    return str(conf.get("api", "base_url", fallback=DEFAULT_API_URL) or DEFAULT_API_URL)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="happyhorse-jobs",
        description="Show or forget the HappyHorse job a task instance remembers (its task state store key "
        f"{JobRecordStore.key!r}), through Airflow's REST API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("show", "print the remembered job: its id, when it was submitted, the stored clip"),
        ("forget", "delete the remembered job, so the next try of the task submits anew (and pays)"),
    ):
        command = commands.add_parser(name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        command.add_argument("--dag-id", required=True)
        command.add_argument("--run-id", required=True, help="the DAG run id (the UI shows it on the run)")
        command.add_argument("--task-id", required=True)
        command.add_argument("--map-index", type=int, default=-1, help="for mapped tasks")
        command.add_argument(
            "--api-url",
            default=None,
            help="Airflow's API server (default: $AIRFLOW_API_URL, else Airflow's [api] base_url, else "
            f"{DEFAULT_API_URL})",
        )
        command.add_argument("--token", default=os.environ.get("AIRFLOW_API_TOKEN"), help=argparse.SUPPRESS)
        command.add_argument("--username", default=os.environ.get("AIRFLOW_USERNAME"))
        command.add_argument("--password", default=os.environ.get("AIRFLOW_PASSWORD"), help=argparse.SUPPRESS)
        command.add_argument("--json", action="store_true", help="print the record as JSON")
    return parser


def _authenticate(client: httpx.Client, args: argparse.Namespace) -> None:
    token = args.token
    if not token and args.username:
        answer = client.post("/auth/token", json={"username": args.username, "password": args.password or ""})
        if answer.status_code >= 400:
            raise CommandError(f"{client.base_url}auth/token refused {args.username!r}: HTTP {answer.status_code}")
        token = answer.json()["access_token"]
    if token:
        client.headers["Authorization"] = f"Bearer {token}"


def _record_path(args: argparse.Namespace) -> str:
    dag, run, task = (quote(value, safe="") for value in (args.dag_id, args.run_id, args.task_id))
    return f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/state-store/{JobRecordStore.key}"


def _instance(args: argparse.Namespace) -> str:
    where = f"{args.dag_id} / {args.run_id} / {args.task_id}"
    return where if args.map_index < 0 else f"{where} (map index {args.map_index})"


def _fetch(client: httpx.Client, args: argparse.Namespace) -> dict[str, Any] | None:
    answer = client.get(_record_path(args), params={"map_index": args.map_index})
    if answer.status_code == 404 and "Task state store key" in answer.text:
        return None
    _raise_for(answer, args)
    value = answer.json().get("value")
    return value if isinstance(value, dict) else {"value": value}


def _raise_for(answer: httpx.Response, args: argparse.Namespace) -> None:
    if answer.status_code in (401, 403):
        raise CommandError(
            f"Airflow refused the request (HTTP {answer.status_code}): give --token, or --username and "
            "--password, of a user who may edit this DAG's task instances."
        )
    if answer.status_code == 404:
        raise CommandError(f"No task instance {_instance(args)}: {answer.text}")
    if answer.status_code >= 400:
        raise CommandError(f"Airflow answered HTTP {answer.status_code}: {answer.text}")


def describe(record: dict[str, Any] | None, instance: str) -> str:
    if record is None:
        return f"{instance}: no HappyHorse job is remembered; its next try submits a new one."
    lines = [f"{instance}: task state store key {JobRecordStore.key!r}"]
    job_id = record.get("job_id")
    if job_id:
        lines.append(f"  job id:       {job_id} (a new try re-attaches to it instead of paying again)")
    else:
        lines.append(
            "  job id:       none: a try sent the submission and never learned its outcome. Look for the job "
            "in the HappyHorse dashboard before forgetting this record: the next try then pays again."
        )
    lines.append(f"  submitted at: {record.get('submitted_at')}")
    lines.append(f"  request:      fingerprint {record.get('fingerprint')}")
    stored = record.get("stored")
    if isinstance(stored, dict):
        lines.append(
            f"  stored clip:  {stored.get('path')} ({stored.get('size')} bytes, sha256 {stored.get('sha256')})"
        )
    return "\n".join(lines)


def run(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Airflow's logging setup may send httpx's request lines to stdout, which is this command's output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base_url = (args.api_url or _default_api_url()).rstrip("/")
    try:
        with httpx.Client(base_url=base_url, transport=transport, timeout=30) as client:
            _authenticate(client, args)
            record = _fetch(client, args)
            if args.command == "show":
                print(json.dumps(record) if args.json else describe(record, _instance(args)))
                return 0
            if record is None:
                print(describe(None, _instance(args)))
                return 0
            _raise_for(client.delete(_record_path(args), params={"map_index": args.map_index}), args)
    except CommandError as error:
        print(f"happyhorse-jobs: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(
            f"happyhorse-jobs: could not reach Airflow's API at {base_url} ({error}); give --api-url", file=sys.stderr
        )
        return 2
    print(describe(record, _instance(args)))
    print(
        "Forgotten. Clear the task to submit the request anew (it is paid again). The old job, if it exists, "
        "is not cancelled: HappyHorse has no cancel endpoint."
    )
    return 0


def main() -> None:
    sys.exit(run())
