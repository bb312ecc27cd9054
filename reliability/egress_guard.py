"""
The egress guard of trial 10 (hostile service): an audit hook that refuses every ``socket.connect`` to an address
outside loopback, and writes down each one it refused.

Trial 10 copies this file as ``sitecustomize.py`` into a folder of its own that goes first on the ``PYTHONPATH``
of every process of the reliability cluster (``HostileServiceTrial.cluster_env``), with
``HAPPYHORSE_EGRESS_LOG`` naming the file the refusals go to. Python imports ``sitecustomize`` at start-up, so
each Airflow process (scheduler and its task runners, triggerer, dag-processor, api-servers) installs the hook
before it runs anything else, and writes its pid to ``<log>.loaded`` (a forked process, such as a task runner,
inherits its parent's hook). A refused connect raises ``PermissionError`` before the system call, so no packet
leaves even if the provider had a bug, and the log line says which process tried, where to, and from which code.

What is seen: every connect Python code makes (``socket.connect``/``connect_ex``: httpx, aiohttp and asyncio's
default loop all end there). Not seen: sockets opened in C (FFmpeg's own network code, uvloop): trial 10 counts
those at its 127.0.0.2 listener instead. Only stdlib here: it runs in every process, first.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from types import FrameType
from typing import Any

LOG_VARIABLE = "HAPPYHORSE_EGRESS_LOG"
ALLOWED_NAMES = frozenset({"localhost"})


def refusal(address: Any) -> str | None:
    """Why a connect to ``address`` (as ``socket.connect`` got it) is refused, or None: loopback (127.0.0.0/8,
    ::1, an IPv4-mapped loopback), ``localhost`` and non-IP sockets (Unix paths, netlink) pass."""
    if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[0], str | bytes):
        return None
    host = address[0].decode() if isinstance(address[0], bytes) else address[0]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None if host.lower() in ALLOWED_NAMES else f"{host!r} is a host name, not a loopback address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_loopback else f"{ip} is not a loopback address"


def _where() -> str:
    """The innermost frames that are not this file, as ``file:line``."""
    frames: list[str] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and len(frames) < 6:
        frames.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(frames)


def loaded_log(log_path: str) -> str:
    """Where each process that installed the guard writes its pid (the trial checks every component did)."""
    return f"{log_path}.loaded"


def install(log_path: str) -> None:
    try:
        with open(loaded_log(log_path), "a", encoding="utf-8") as handle:
            handle.write(f"pid={os.getpid()} argv={' '.join(sys.argv[:3])!r}\n")
    except OSError:
        pass

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect":
            return
        why = refusal(args[1])
        if why is None:
            return
        task = os.environ.get("AIRFLOW_CTX_TASK_ID", "-")
        index = os.environ.get("AIRFLOW_CTX_MAP_INDEX", "-")
        line = (
            f"pid={os.getpid()} argv={' '.join(sys.argv[:3])!r} task={task} map_index={index} "
            f"address={args[1]!r} ({why}) at {_where()}\n"
        )
        try:
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError:  # refused all the same; the trial then sees no line, but the connect never happened
            pass
        raise PermissionError(f"reliability egress guard: connect to {args[1]!r} refused ({why})")

    sys.addaudithook(hook)


if os.environ.get(LOG_VARIABLE) and __name__ in ("sitecustomize", "__main__"):
    install(os.environ[LOG_VARIABLE])
