"""
Why a deferred task can hold its worker slot for ``[workers] min_heartbeat_interval`` after it has
exited (benchmarks/worker_cost.py): the race in Airflow's task supervisor, reproduced without Airflow.

Airflow 3.3's supervisor (``airflow.sdk.execution_time.supervisor``, ``_monitor_subprocess``) waits in
``select()`` on the task process's sockets; when they report EOF it unregisters them and checks for exit
once with ``psutil.Process.wait(timeout=0)``. If the process is not reapable yet at that instant, the next
``select()`` has no sockets left to wake it and sleeps up to ``min_heartbeat_interval`` (5 s by default)
before it checks again. This script forks children from a parent holding ``--heap-mb`` of memory (a
task process is a fork of its supervisor), each closing one socket explicitly and the other at
``os._exit`` as a task process does, and counts how often the parent, woken by the EOF, finds the child
not yet reapable. Prints a table and writes benchmarks/results/supervisor_exit_race.json.

    .venv/bin/python benchmarks/supervisor_exit_race.py [--exits 200] [--heap-mb 0 50 100 200]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results" / "supervisor_exit_race.json"


def one_exit() -> bool:
    """Fork a child that exits; True if it was not reapable when its last socket reported EOF."""
    requests, child_requests = socket.socketpair()
    stdout, child_stdout = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the task process: closes its requests socket, then exits (stdout closes with it)
        requests.close()
        stdout.close()
        time.sleep(0.005)
        child_requests.close()
        os._exit(0)
    child_requests.close()
    child_stdout.close()
    process = psutil.Process(pid)
    selector = selectors.DefaultSelector()
    for sock in (requests, stdout):
        selector.register(sock, selectors.EVENT_READ)
    while selector.get_map():
        for key, _ in selector.select(timeout=10):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock.recv(4096) == b"":
                selector.unregister(sock)
                sock.close()
    selector.close()
    try:
        process.wait(timeout=0)  # what the supervisor does once the sockets are gone
    except psutil.TimeoutExpired:
        process.wait()
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--exits", type=int, default=200)
    parser.add_argument("--heap-mb", type=int, nargs="+", default=[0, 50, 100, 200])
    args = parser.parse_args()
    rows = []
    for heap_mb in args.heap_mb:
        heap = [bytearray(1 << 20) for _ in range(heap_mb)]  # touched pages the child inherits
        late = sum(one_exit() for _ in range(args.exits))
        rows.append({"heap_mb": heap_mb, "exits": args.exits, "not_reapable_at_eof": late})
        del heap
    print(f"`.venv/bin/python benchmarks/supervisor_exit_race.py --exits {args.exits}`\n")
    print("| parent heap MB | exits | not reapable when their sockets reported EOF |")
    print("|---:|---:|---:|")
    for row in rows:
        share = row["not_reapable_at_eof"] / row["exits"]
        print(f"| {row['heap_mb']} | {row['exits']} | {row['not_reapable_at_eof']} ({share:.0%}) |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
