"""
Faults on ``POST /api/generate`` after which the client cannot know whether a job was created.

The contract's submission rule says such a submission must not be sent again blindly. Each fault gets its
own trial row (its own DAG, connection and emulator): every task must fail with "outcome unknown", its retry
must refuse to submit, and no request may be paid for twice. ``jobs`` says how many jobs the emulator
creates for N submissions: ``"all"``, ``"none"`` or ``"some"`` (a 5xx creates the job half of the time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# The client's read timeout on these connections, and how long a slow answer takes.
CLIENT_TIMEOUT_SECONDS = 2.0
SLOW_RESPONSE_SECONDS = 5.0


@dataclass(frozen=True)
class AmbiguousFault:
    key: str
    label: str
    faults: dict[str, Any]
    jobs: Literal["all", "none", "some"]

    @property
    def dag_id(self) -> str:
        return f"rel_ambiguous_{self.key}"


AMBIGUOUS_FAULTS: tuple[AmbiguousFault, ...] = (
    AmbiguousFault(
        "drop_after_create",
        "connection dropped after the job was created (the double-submit trap)",
        {"drop_after_create_rate": 1.0},
        "all",
    ),
    AmbiguousFault(
        "drop_before_create",
        "connection dropped before a job was created",
        {"drop_before_create_rate": 1.0},
        "none",
    ),
    AmbiguousFault(
        "slow_response",
        f"answer slower ({SLOW_RESPONSE_SECONDS:g} s) than the client timeout ({CLIENT_TIMEOUT_SECONDS:g} s)",
        {"slow_response_rate": 1.0, "slow_response_seconds": SLOW_RESPONSE_SECONDS},
        "all",
    ),
    AmbiguousFault("malformed_body", "HTTP 200 with a malformed body", {"malformed_body_rate": 1.0}, "all"),
    AmbiguousFault(
        "server_error",
        "5xx from the gateway (500/502/504, 503 without Retry-After)",
        {"server_error_rate": 1.0},
        "some",
    ),
)
