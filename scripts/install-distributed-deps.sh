#!/usr/bin/env bash
# System packages the distributed tests and trials (tests/distributed, reliability --distributed) need:
# Debian's PostgreSQL server and Redis server. The harness starts private instances of both on free
# loopback ports (harness/services.py); nothing here configures or starts a system-wide one.
# Idempotent: does nothing when the binaries and the `postgres` user are there; otherwise one
# `apt-get update` and one install (as root, or through sudo when there is one). Fails loudly when it
# cannot install them.
set -euo pipefail

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

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-distributed-deps: PostgreSQL or redis-server is missing and I am not root (no sudo either)." >&2
    echo "install-distributed-deps: run as root: apt-get install -y --no-install-recommends postgresql redis-server" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-distributed-deps: no apt-get here; install postgresql and redis-server (Debian packages) yourself." >&2
    exit 1
fi

echo "install-distributed-deps: installing postgresql and redis-server from the Debian mirror" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends postgresql redis-server

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
