#!/usr/bin/env bash
# System packages the browser tests (tests/browser) need: Debian's headless Chromium and its chromedriver.
# Idempotent: does nothing when both binaries are there; otherwise one `apt-get update` and one install
# (as root, or through sudo when there is one). Fails loudly when it cannot install them.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-test-deps: $CHROMIUM or $CHROMEDRIVER is missing and I am not root (no sudo either)." >&2
    echo "install-test-deps: run as root: apt-get install -y --no-install-recommends chromium chromium-driver" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: no apt-get here; install chromium and chromium-driver (Debian packages) yourself." >&2
    exit 1
fi

echo "install-test-deps: installing chromium and chromium-driver from the Debian mirror" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends chromium chromium-driver

for binary in "$CHROMIUM" "$CHROMEDRIVER"; do
    if [[ ! -x "$binary" ]]; then
        echo "install-test-deps: $binary is still missing after apt-get install" >&2
        exit 1
    fi
done
"$CHROMIUM" --version >&2
"$CHROMEDRIVER" --version >&2
