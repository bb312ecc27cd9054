"""
The user-mistakes table: things a user gets wrong, what the failure must say, and how the user fixes it.

Each case is the keyword arguments of one mapped ``GenerateVideoOperator`` task, with the mistake in them (or
in the connection they name), a piece of the message the failed task must show, and the fix: new keyword
arguments (the trial writes them to the Airflow Variable ``VARIABLE_KEY`` that
``reliability/dags/rel_mistakes.py`` reads) and, for a connection mistake, the connection field to PATCH.

Values hold placeholders the trial fills in at launch (plain ``str.replace``, so Jinja's ``{{ }}`` stays as it
is): ``<conn>`` the trial's connection id, ``<prompt>`` a prompt unique to the case and batch, ``<clips>`` the
batch's clip folder, ``<case>`` the case's name (``case-<index>``), ``<blocker>`` a regular file in
the clip folder; in connection fields ``<api>`` the emulator's URL,
``<key>`` its API key, ``<dead>`` a loopback URL nobody listens on. API keys never go in the Variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VARIABLE_KEY = "rel_mistakes_cases"
"""The Airflow Variable holding the JSON list of every case's keyword arguments."""
WRONG_KEY = "hh-wrong-key-0123456789abcdef"
BASE_KWARGS: dict[str, Any] = {"prompt": "<prompt>", "duration": 3, "sound": False, "happyhorse_conn_id": "<conn>"}


@dataclass(frozen=True)
class BadConnection:
    """A connection the trial creates through the REST API (``<conn>_<name>``), wrong in one field."""

    name: str
    fields: dict[str, str | None]
    """Its fields as created: ``host``, ``password`` (None: no API key)."""
    fix: dict[str, str]
    """The fields the fix PATCHes."""


@dataclass(frozen=True)
class Mistake:
    label: str
    message: str
    """A piece of the failed task's error message (the provider's own words)."""
    wrong: dict[str, Any]
    """Keyword arguments over ``BASE_KWARGS`` with the mistake."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments over ``BASE_KWARGS`` after the fix."""
    connection: BadConnection | None = None

    @property
    def fixed_by(self) -> str:
        return "connection" if self.connection is not None else "Variable"

    @property
    def stores_clip(self) -> bool:
        return "output_path" in self.fixed


def _connection_mistake(
    label: str, message: str, name: str, fields: dict[str, str | None], fix: dict[str, str]
) -> Mistake:
    kwargs = {"happyhorse_conn_id": f"<conn>_{name}"}
    return Mistake(label, message, kwargs, kwargs, BadConnection(name, fields, fix))


def _output_mistake(label: str, message: str, output_path: str) -> Mistake:
    return Mistake(label, message, {"output_path": output_path}, {"output_path": "file://<clips>/<case>.mp4"})


MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "typo in happyhorse_conn_id",
        "is not defined. Create it",
        {"happyhorse_conn_id": "<conn-typo>"},
        {"happyhorse_conn_id": "<conn>"},
    ),
    _connection_mistake(
        "connection without an API key",
        "has no API key",
        "no_key",
        {"host": "<api>", "password": None},
        {"password": "<key>"},
    ),
    _connection_mistake(
        "wrong API key (401)",
        "refused the API key",
        "bad_key",
        {"host": "<api>", "password": WRONG_KEY},
        {"password": "<key>"},
    ),
    _connection_mistake(
        "Base URL on a port nobody listens on",
        "Could not reach HappyHorse at",
        "dead_port",
        {"host": "<dead>", "password": "<key>"},
        {"host": "<api>"},
    ),
    _connection_mistake(
        "wrong path prefix (/wrong after the URL)",
        "has no /api/generate",
        "bad_prefix",
        {"host": "<api>/wrong", "password": "<key>"},
        {"host": "<api>"},
    ),
    _output_mistake(
        "output_path with an unknown scheme",
        "uses a scheme Airflow's object storage does not know",
        "foo://bucket/clip.mp4",
    ),
    _output_mistake(
        "output_path on gs:// without gcsfs",
        "Install apache-airflow-providers-google and gcsfs",
        "gs://bucket/clip.mp4",
    ),
    _output_mistake("output_path under a regular file", "cannot be written", "file://<blocker>/clip.mp4"),
    _output_mistake("relative output_path", "is a relative path", "clips/clip.mp4"),
    _output_mistake("output_path file:// with two slashes", "names the host 'clips'", "file://clips/clip.mp4"),
    _output_mistake("output_path is a folder", "is a folder", "file://<clips>"),
    Mistake(
        "mode 'standard'",
        "mode: Input should be 'std' or 'pro' (got 'standard')",
        {"mode": "standard"},
        {"mode": "std"},
    ),
    Mistake(
        "duration 20",
        "duration: Input should be less than or equal to 15 (got 20)",
        {"duration": 20},
        {"duration": 3},
    ),
    Mistake(
        "multi_prompt template renders to a string",
        "multi_prompt: Input should be a valid list",
        {"prompt": None, "multi_shots": True, "multi_prompt": "{{ params.shots }}"},
        {"prompt": None, "multi_shots": True, "multi_prompt": [{"prompt": "<prompt>"}]},
    ),
    Mistake(
        "over max_credits (5 s with sound = 300)",
        "max_credits: the estimate for this video is 300 credits, above the limit 100",
        {"duration": 5, "sound": True, "max_credits": 100},
        {"duration": 5, "sound": True, "max_credits": 300},
    ),
    Mistake(
        "on_expired 'retry'",
        "on_expired: must be one of fail, regenerate (got 'retry')",
        {"on_expired": "retry"},
        {"on_expired": "regenerate"},
    ),
    Mistake(
        "image URL on s3://",
        "image_urls: item 0 must be an http(s) URL",
        {"image_urls": ["s3://bucket/frame.png"]},
        {"image_urls": ["https://images.example/frame.png"]},
    ),
)
TEMPLATE_CASE = next(
    index for index, case in enumerate(MISTAKES) if case.wrong.get("multi_prompt") == "{{ params.shots }}"
)


def fill(value: Any, places: Mapping[str, str]) -> Any:
    """``value`` with every placeholder in its strings replaced (recursively through lists and dicts)."""
    if isinstance(value, str):
        for placeholder, text in places.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [fill(item, places) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, places) for key, item in value.items()}
    return value


def case_kwargs(case: Mistake, *, fixed: bool, places: Mapping[str, str]) -> dict[str, Any]:
    """One task's keyword arguments, wrong or fixed, placeholders filled in."""
    return fill({**BASE_KWARGS, **(case.fixed if fixed else case.wrong)}, places)


def conn_typo(conn_id: str) -> str:
    """The connection id with its last two letters swapped: the kind of typo nobody sees."""
    return conn_id[:-2] + conn_id[-1] + conn_id[-2]
