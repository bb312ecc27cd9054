"""
``happyhorse-jobs``: show or forget the job a task instance remembers, through Airflow's REST API.

A ``GenerateVideoOperator`` task keeps its job in the task state store key ``happyhorse_job``; a later
try re-attaches to it instead of paying again, and refuses to submit when an earlier try's outcome is
unknown. ``forget`` deletes that key, so the next try (clear the task) submits anew::

    happyhorse-jobs show   --dag-id daily --run-id manual__2026-11-01 --task-id clip
    happyhorse-jobs forget --dag-id daily --run-id manual__2026-11-01 --task-id clip [--map-index 3]

The API is ``--api-url`` (default ``$AIRFLOW_API_URL``, else Airflow's ``[api] base_url``, else
http://localhost:8080). Authentication, never on the command line (``ps`` shows every process's argv to
every user of the machine):

- a token in ``$AIRFLOW_API_TOKEN``, sent as ``Authorization: Bearer``; or
- a user, ``--username`` (or ``$AIRFLOW_USERNAME``), exchanged at ``/auth/token`` with the password in
  ``$AIRFLOW_PASSWORD``, else typed at a prompt when stdin is a terminal;
- nothing, for an API server that lets anonymous requests through (``simple_auth_manager_all_admins``).

``--token`` and ``--password`` are refused, naming the environment variable to use instead. A token or
password sent to a plain ``http://`` URL whose host is not loopback crosses the network in clear text: the
command warns on stderr (use https).
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import ValidationError

from airflow_provider_happyhorse.core.record import RenderRecord
from airflow_provider_happyhorse.job_store import JobRecordStore

DEFAULT_API_URL = "http://localhost:8080"


class CommandError(Exception):
    """What the command says on failure (exit status 2)."""


TOKEN_ENV = "AIRFLOW_API_TOKEN"  # noqa: S105 - the variable's name, not a secret
USERNAME_ENV = "AIRFLOW_USERNAME"
PASSWORD_ENV = "AIRFLOW_PASSWORD"  # noqa: S105 - the variable's name, not a secret
# The options this command once took, and what replaces each.
_REFUSED_OPTIONS = {
    "--token": f"Put it in ${TOKEN_ENV} instead.",
    "--password": f"Put it in ${PASSWORD_ENV} instead, or, at a terminal, give only --username and type it at "
    "the prompt.",
}


class _RefuseSecretOption(argparse.Action):
    """A secret given as an option: refused, naming its environment variable, without repeating the value.

    Without this, argparse would answer ``--password x`` with "unrecognized arguments: --password x".
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name = self.option_strings[0]  # also when abbreviated (--pass) or given as --password=...
        raise CommandError(
            f"{name} is not accepted: a value on the command line is visible to every user of the machine "
            f"(ps shows it) and stays in shell history. {_REFUSED_OPTIONS[name]}"
        )


def _refuse_secret_options(parser: argparse.ArgumentParser) -> None:
    for flag in _REFUSED_OPTIONS:
        parser.add_argument(
            flag, nargs="?", action=_RefuseSecretOption, default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )


def _default_api_url() -> str:
    if url := os.environ.get("AIRFLOW_API_URL"):
        return url
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - installed next to Airflow
        return DEFAULT_API_URL
    return str(conf.get("api", "base_url", fallback=DEFAULT_API_URL) or DEFAULT_API_URL)


AUTH_HELP = (
    f"Authentication, never on the command line (ps shows it): a token in ${TOKEN_ENV}; or a user "
    f"(--username or ${USERNAME_ENV}) whose password is in ${PASSWORD_ENV}, else asked for when stdin is a "
    "terminal; or nothing, if the API server lets anonymous requests through. Use an https:// API URL "
    "unless the server is on this machine: over http a token or password crosses the network in clear text."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="happyhorse-jobs",
        description="Show or forget the HappyHorse job a task instance remembers (its task state store key "
        f"{JobRecordStore.key!r}), through Airflow's REST API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=AUTH_HELP,
    )
    _refuse_secret_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("show", "print the remembered job: its id, when it was submitted, the stored clip"),
        ("forget", "delete the remembered job, so the next try of the task submits anew (and pays)"),
    ):
        command = commands.add_parser(
            name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=AUTH_HELP
        )
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
        command.add_argument(
            "--username",
            default=argparse.SUPPRESS,
            help=f"exchange this user's password for a token at /auth/token (default: ${USERNAME_ENV}); the "
            f"password comes from ${PASSWORD_ENV}, else a prompt",
        )
        _refuse_secret_options(command)
        command.add_argument("--json", action="store_true", help="print the record as JSON")
    return parser


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_clear_text(base_url: str) -> None:
    """One line on stderr when credentials are about to go over plain http to another machine."""
    parts = urlsplit(base_url)
    if parts.scheme.lower() == "http" and not _is_loopback(parts.hostname or ""):
        print(
            f"happyhorse-jobs: warning: {base_url} is plain http to another machine: the token or password "
            "crosses the network in clear text; use an https:// API URL.",
            file=sys.stderr,
        )


def _password(username: str, base_url: str) -> str:
    if password := os.environ.get(PASSWORD_ENV):
        return password
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        try:
            return getpass.getpass(f"Password for {username} at {base_url}: ")
        except EOFError:
            pass
    raise CommandError(
        f"no password for {username!r}: set ${PASSWORD_ENV} (or use a token in ${TOKEN_ENV} instead), or run "
        "from a terminal to be asked for it. It is not accepted as an option on purpose: ps shows the command "
        "line to every user of the machine."
    )


def _credentials(args: argparse.Namespace, base_url: str) -> tuple[str | None, str | None, str | None]:
    """(token, username, password) from the environment or a prompt; all None for an anonymous request."""
    token = os.environ.get(TOKEN_ENV) or None
    username = getattr(args, "username", None) or os.environ.get(USERNAME_ENV) or None
    if token:
        _warn_if_clear_text(base_url)
        return token, None, None
    if username:
        _warn_if_clear_text(base_url)  # before the prompt, so that one can still decline to type the password
        return None, username, _password(username, base_url)
    return None, None, None


def _authenticate(client: httpx.Client, token: str | None, username: str | None, password: str | None) -> None:
    if not token and username:
        answer = client.post("/auth/token", json={"username": username, "password": password or ""})
        if answer.status_code >= 400:
            raise CommandError(f"{client.base_url}auth/token refused {username!r}: HTTP {answer.status_code}")
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
            f"Airflow refused the request (HTTP {answer.status_code}): set ${TOKEN_ENV}, or --username (or "
            f"${USERNAME_ENV}) and ${PASSWORD_ENV}, for a user who may edit this DAG's task instances."
        )
    if answer.status_code == 404:
        raise CommandError(f"No task instance {_instance(args)}: {answer.text}")
    if answer.status_code >= 400:
        raise CommandError(f"Airflow answered HTTP {answer.status_code}: {answer.text}")


def describe(value: dict[str, Any] | None, instance: str) -> str:
    if value is None:
        return f"{instance}: no HappyHorse job is remembered; its next try submits a new one."
    lines = [f"{instance}: task state store key {JobRecordStore.key!r}"]
    try:
        record = RenderRecord.model_validate(value)
    except ValidationError as error:
        lines.append(f"  not a record this provider reads ({error.error_count()} problems): {json.dumps(value)}")
        return "\n".join(lines)
    if record.job_id:
        lines.append(f"  job id:       {record.job_id} (a new try re-attaches to it instead of paying again)")
    else:
        lines.append(
            "  job id:       none: a try sent the submission and never learned its outcome. Look for the job "
            "in the HappyHorse dashboard before forgetting this record: the next try then pays again."
        )
    submitted = record.submitted_at
    lines.append(f"  submitted at: {None if submitted is None else submitted.isoformat()}")
    lines.append(f"  request:      fingerprint {record.fingerprint}")
    stored = record.stored
    if stored is not None:
        lines.append(f"  stored clip:  {stored.path} ({stored.size} bytes, sha256 {stored.sha256})")
    return "\n".join(lines)


def run(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except CommandError as error:  # a secret given as an option
        print(f"happyhorse-jobs: {error}", file=sys.stderr)
        return 2
    # Airflow's logging setup may send httpx's request lines to stdout, which is this command's output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base_url = (args.api_url or _default_api_url()).rstrip("/")
    try:
        token, username, password = _credentials(args, base_url)
        with httpx.Client(base_url=base_url, transport=transport, timeout=30) as client:
            _authenticate(client, token, username, password)
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
