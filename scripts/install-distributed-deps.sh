#!/usr/bin/env bash
# System packages the distributed tests and trials (tests/distributed, reliability --distributed) need:
# Debian's PostgreSQL server and Redis server. The harness starts private instances of both on free
# loopback ports (harness/services.py); nothing here configures or starts a system-wide one.
# Idempotent: does nothing when the binaries and the `postgres` user are there; otherwise one
# `apt-get update` and one install (as root, or through sudo when there is one). Fails loudly when it
# cannot install them.
set -euo pipefail
source "$(dirname "$0")/lib/apt.sh"

REDIS_SERVER=/usr/bin/redis-server

postgres_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

have_all() {
    postgres_bin >/dev/null && [[ -x "$REDIS_SERVER" ]] && id -u postgres >/dev/null 2>&1
}

if have_all; then
    exit 0
fi

apt_install install-distributed-deps postgresql redis-server

if ! PG_BIN="$(postgres_bin)"; then
    echo "install-distributed-deps: no /usr/lib/postgresql/<version>/bin/{initdb,postgres} after apt-get install" >&2
    exit 1
fi
if [[ ! -x "$REDIS_SERVER" ]]; then
    echo "install-distributed-deps: $REDIS_SERVER is still missing after apt-get install" >&2
    exit 1
fi
if ! id -u postgres >/dev/null 2>&1; then
    # PostgreSQL will not run as root; the harness runs it as this user when it runs as root itself.
    echo "install-distributed-deps: the postgres user is missing after apt-get install" >&2
    exit 1
fi
"$PG_BIN/postgres" --version >&2
"$REDIS_SERVER" --version >&2
