"""``happyhorse-emulator`` / ``python -m happyhorse_emulator``: serve the emulator.

Settings come from the defaults, then ``--config FILE`` (an ``EmulatorConfig`` as JSON), then the flags.
It binds 127.0.0.1:8765 unless told otherwise and prints two lines: its URL and API key, then the admin token
(``--admin-token``, else ``$HAPPYHORSE_EMULATOR_ADMIN_TOKEN``, else the config file's, else a random one) that the
``/_emulator/*`` admin routes want in the ``X-Emulator-Token`` header. No access log by default.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from .app import create_app, is_loopback_host
from .config import ADMIN_TOKEN_ENV, ADMIN_TOKEN_HEADER, EmulatorConfig
from .server import bind_socket, uvicorn_config

logger = logging.getLogger("happyhorse_emulator")

# flag -> (config field, type, help); fault flags set fields of the nested FaultConfig. Each help ends with the
# field's default, read from the config models (so --help cannot drift from them).
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--speed": ("speed", float, "multiply every render time (0.01: a 40 s render takes 0.4 s)"),
    "--base-seconds": ("base_seconds", float, "render time model: fixed part"),
    "--per-video-second": ("per_video_second", float, "render time model: seconds per second of video"),
    "--pro-factor": ("pro_factor", float, "render time model: factor for mode=pro"),
    "--audio-factor": ("audio_factor", float, "render time model: factor for sound=true"),
    "--jitter": ("jitter", float, "render times vary by +/- this fraction"),
    "--seed": ("seed", int, "seed of the fault and job decisions"),
    "--rate-limit": ("rate_limit_per_second", float, "per-key requests per second; none: no limit"),
    "--rate-limit-burst": ("rate_limit_burst", int, "per-key burst size"),
    "--query-limit": (
        "query_limit_per_second",
        float,
        "dashscope dialect: task queries per second for the whole account (429 Throttling.RateQuota beyond)",
    ),
    "--result-ttl": ("result_ttl_seconds", float, "seconds a result file stays downloadable (then 410)"),
    "--job-failure-rate": ("job_failure_rate", float, "share of jobs that end FAILED"),
}
_FAULT_FLAGS: dict[str, tuple[str, type, str]] = {
    "--fault-server-error": ("server_error_rate", float, "rate of 500/502/503/504 answers"),
    "--fault-rate-limit-storm": ("rate_limit_storm_rate", float, "rate of 429 answers with Retry-After"),
    "--fault-slow-response": ("slow_response_rate", float, "rate of answers delayed by --fault-slow-seconds"),
    "--fault-slow-seconds": ("slow_response_seconds", float, "delay of a slow answer, in seconds"),
    "--fault-drop-after-create": ("drop_after_create_rate", float, "rate of POSTs dropped after creating"),
    "--fault-drop-before-create": ("drop_before_create_rate", float, "rate of POSTs dropped before creating"),
    "--fault-malformed-body": ("malformed_body_rate", float, "rate of 200 answers with a broken body"),
    "--fault-status-variant": ("status_variant_rate", float, "share of jobs using alternative spellings"),
    "--fault-unknown-status": ("unknown_status_rate", float, "share of jobs reporting an unlisted status"),
    "--fault-result-redirect": ("result_redirect_rate", float, "rate of result downloads redirected to a signed URL"),
    "--fault-signed-url-refused": (
        "signed_url_refused_rate",
        float,
        "rate of result downloads answered 200 with an HTML error page",
    ),
    "--fault-cut-body": ("cut_body_rate", float, "rate of result downloads cut in half (Content-Length agreeing)"),
    "--fault-clip-mismatch": ("clip_mismatch_rate", float, "share of jobs whose clip does not match the request"),
}
_BOTH_ENDPOINTS = ("generate", "status")


def _shown(value: object) -> str:
    """A default as ``--help`` prints it (escaped for argparse's %-formatting of help texts)."""
    if value is None:
        text = "none"
    elif isinstance(value, tuple):
        text = ", ".join(str(item) for item in value) or "none"
    else:
        text = str(value)
    return text.replace("%", "%%")


def _with_default(text: str, value: object) -> str:
    return f"{text} (default: {_shown(value)})"


def build_parser() -> argparse.ArgumentParser:
    """The CLI. Flags that map to a config field default to None ("not given", so a ``--config`` file's value
    stands); their help shows the config's own default instead."""
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="happyhorse-emulator", description="A local emulator of the HappyHorse video generation API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to bind; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--dialect",
        choices=("happyhorse", "dashscope"),
        help=_with_default(
            "the API spoken: happyhorse.app's (/api/generate) or Alibaba Cloud Model Studio's (DashScope, "
            "/api/v1/services/aigc/video-generation/video-synthesis)",
            defaults.dialect,
        ),
    )
    parser.add_argument(
        "--config", metavar="JSON_FILE", help="an EmulatorConfig as JSON (default: none, the built-in defaults)"
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help=_with_default("job log replayed at start-up, so jobs survive a restart", defaults.state_file),
    )
    parser.add_argument(
        "--api-key", action="append", metavar="KEY", help=_with_default("accepted key, repeatable", defaults.api_keys)
    )
    parser.add_argument(
        "--no-credit-key",
        action="append",
        metavar="KEY",
        help=_with_default("key answered 402, repeatable", defaults.no_credit_keys),
    )
    parser.add_argument(
        "--forbidden-key",
        action="append",
        metavar="KEY",
        help=_with_default("key answered 403, repeatable", defaults.forbidden_keys),
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        # The config says None for "no limit", the flag says 0.
        help=_with_default("renders at once per key; 0: no limit", defaults.max_concurrent_per_key or 0),
    )
    for table, values in ((_FLAGS, defaults), (_FAULT_FLAGS, defaults.faults)):
        for flag, (field, kind, text) in table.items():
            parser.add_argument(flag, dest=field, type=kind, help=_with_default(text, getattr(values, field)))
    faults_on = defaults.faults.faults_on
    parser.add_argument(
        "--faults-on",
        choices=("generate", "status", "both"),
        help=_with_default(
            "endpoints the request faults hit", "both" if set(faults_on) == set(_BOTH_ENDPOINTS) else faults_on
        ),
    )
    parser.add_argument(
        "--no-admin-routes",
        "--no-admin",
        dest="no_admin",
        action="store_true",
        help=_with_default(
            "turn off the /_emulator/* admin routes (they answer 404); the test image route stays on",
            "served" if defaults.admin_routes else "off",
        ),
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help=_with_default(
            f"token the admin routes want in the {ADMIN_TOKEN_HEADER} header, printed at start",
            f"${ADMIN_TOKEN_ENV}, else the --config file's, else a random one made at start",
        ),
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help=_with_default(
            "Host header name accepted besides localhost, loopback addresses and --host; repeatable",
            defaults.allowed_hosts,
        ),
    )
    parser.add_argument(
        "--redirect-results",
        action="store_true",
        help=_with_default(
            "every result URL redirects to a signed URL (--fault-result-redirect: only a share)",
            "on" if defaults.redirect_results else "off",
        ),
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log level of the emulator and uvicorn (default: %(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Defaults, then the ``--config`` file, then the flags."""
    config = EmulatorConfig()
    if args.config:
        with open(args.config, encoding="utf-8") as file:
            config = EmulatorConfig.model_validate(json.load(file))
    partial: dict[str, Any] = {}
    token = args.admin_token if args.admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
    if token is not None:
        partial["admin_token"] = token
    for field, _, _ in _FLAGS.values():
        if getattr(args, field) is not None:
            partial[field] = getattr(args, field)
    faults: dict[str, Any] = {}
    for field, _, _ in _FAULT_FLAGS.values():
        if getattr(args, field) is not None:
            faults[field] = getattr(args, field)
    if args.faults_on:
        faults["faults_on"] = _BOTH_ENDPOINTS if args.faults_on == "both" else (args.faults_on,)
    if faults:
        partial["faults"] = faults
    if args.api_key:
        partial["api_keys"] = tuple(args.api_key)
    if args.no_credit_key:
        partial["no_credit_keys"] = tuple(args.no_credit_key)
    if args.forbidden_key:
        partial["forbidden_keys"] = tuple(args.forbidden_key)
    if args.max_concurrent is not None:
        partial["max_concurrent_per_key"] = args.max_concurrent or None
    if args.redirect_results:
        partial["redirect_results"] = True
    if args.state_file:
        partial["state_file"] = args.state_file
    if args.no_admin:
        partial["admin_routes"] = False
    if args.allowed_host:
        partial["allowed_hosts"] = tuple(args.allowed_host)
    if args.dialect:
        partial["dialect"] = args.dialect
    return config.merged(partial)


def startup_lines(url: str, config: EmulatorConfig) -> str:
    """What the CLI prints once it listens (``server.STARTUP_LINE`` and ``server.ADMIN_LINE`` parse it)."""
    key = config.api_keys[0] if config.api_keys else "-"
    if not config.admin_routes:
        admin = "happyhorse-emulator admin routes: off"
    elif config.admin_token is None:
        admin = "happyhorse-emulator admin routes: open (no admin token)"
    else:
        admin = (
            f"happyhorse-emulator admin token: {config.admin_token} "
            f"(send it as {ADMIN_TOKEN_HEADER} on /_emulator/* admin routes)"
        )
    return f"happyhorse-emulator listening on {url} (api key: {key})\n{admin}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"happyhorse-emulator: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if not is_loopback_host(args.host):
        logger.warning("binding %s: the emulator is reachable from other machines", args.host)
    app = create_app(config, bind_host=args.host)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(startup_lines(f"http://{shown_host}:{port}", config), flush=True)
    server = uvicorn.Server(uvicorn_config(app, access_log=args.access_log, log_level=args.log_level))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
