"""``happyhorse-emulator --help`` shows every option's default, and the defaults it shows are the config's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache

import pytest

from happyhorse_emulator import EmulatorConfig, FaultConfig

_OPTION_LINE = re.compile(r"^  (-\S+)")
_DEFAULT = re.compile(r"\(default: ([^)]*)\)")


@cache
def _help_by_option() -> dict[str, str]:
    """The help text of every option, by its first spelling, with line wrapping undone."""
    # A narrow terminal wraps help texts; the parsing below copes, the width only keeps the output readable.
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-m", "happyhorse_emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    options: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in result.stdout.split("options:", 1)[1].splitlines():
        match = _OPTION_LINE.match(line)
        if match:
            current = options.setdefault(match.group(1).rstrip(","), [])
        if current is not None:
            current.append(line.strip())
    return {option: " ".join(" ".join(lines).split()) for option, lines in options.items()}


def _shown_default(option: str) -> str:
    text = _help_by_option()[option]
    match = _DEFAULT.search(text)
    assert match, f"{option} shows no default: {text!r}"
    return match.group(1)


def _number_default(model: type[EmulatorConfig] | type[FaultConfig], field: str) -> float:
    default = model.model_fields[field].default
    assert isinstance(default, int | float), (field, default)
    return float(default)


@pytest.mark.parametrize(
    ("option", "model", "field"),
    [
        ("--speed", EmulatorConfig, "speed"),
        ("--base-seconds", EmulatorConfig, "base_seconds"),
        ("--per-video-second", EmulatorConfig, "per_video_second"),
        ("--jitter", EmulatorConfig, "jitter"),
        ("--rate-limit-burst", EmulatorConfig, "rate_limit_burst"),
        ("--result-ttl", EmulatorConfig, "result_ttl_seconds"),
        ("--max-concurrent", EmulatorConfig, "max_concurrent_per_key"),
        ("--seed", EmulatorConfig, "seed"),
        ("--fault-slow-seconds", FaultConfig, "slow_response_seconds"),
        ("--fault-server-error", FaultConfig, "server_error_rate"),
    ],
)
def test_numeric_defaults_are_the_configs(
    option: str, model: type[EmulatorConfig] | type[FaultConfig], field: str
) -> None:
    assert float(_shown_default(option)) == _number_default(model, field)


def test_key_and_endpoint_defaults_are_the_configs() -> None:
    assert _shown_default("--api-key") == ", ".join(EmulatorConfig.model_fields["api_keys"].default)
    assert EmulatorConfig.model_fields["no_credit_keys"].default == ()
    assert _shown_default("--no-credit-key") == "none"
    assert EmulatorConfig.model_fields["rate_limit_per_second"].default is None
    assert _shown_default("--rate-limit") == "none"
    assert set(FaultConfig.model_fields["faults_on"].default) == {"generate", "status"}
    assert _shown_default("--faults-on") == "both"


def test_bind_defaults_are_the_parsers() -> None:
    from happyhorse_emulator.__main__ import build_parser

    args = build_parser().parse_args([])
    assert _shown_default("--host") == f"{args.host}, loopback"
    assert _shown_default("--port") == str(args.port)
    assert _shown_default("--log-level") == args.log_level


def test_every_option_shows_a_default() -> None:
    options = _help_by_option()
    assert "--fault-unknown-status" in options  # the parsing found the whole list
    missing = [option for option, text in options.items() if option != "-h" and not _DEFAULT.search(text)]
    assert missing == []


def test_admin_defaults_are_the_configs_and_the_random_token_is_described_not_printed() -> None:
    from happyhorse_emulator.__main__ import build_parser
    from happyhorse_emulator.config import ADMIN_TOKEN_ENV

    assert EmulatorConfig.model_fields["admin_routes"].default is True
    assert _shown_default("--no-admin-routes") == "served"
    assert EmulatorConfig.model_fields["admin_token"].default_factory is not None
    shown = _shown_default("--admin-token")
    assert f"${ADMIN_TOKEN_ENV}" in shown
    assert "random" in shown
    assert EmulatorConfig.model_fields["allowed_hosts"].default == ()
    assert _shown_default("--allowed-host") == "none"
    # A printed random token would differ from one help text to the next.
    assert build_parser().format_help() == build_parser().format_help()
