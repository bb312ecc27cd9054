#!/usr/bin/env bash
# System packages the browser tests (tests/browser) need: Debian's headless Chromium and its chromedriver.
# Idempotent: does nothing when both binaries are there; otherwise one `apt-get update` and one install
# (as root, or through sudo when there is one). Fails loudly when it cannot install them.
set -euo pipefail
source "$(dirname "$0")/lib/apt.sh"

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    exit 0
fi

apt_install install-test-deps chromium chromium-driver

for binary in "$CHROMIUM" "$CHROMEDRIVER"; do
    if [[ ! -x "$binary" ]]; then
        echo "install-test-deps: $binary is still missing after apt-get install" >&2
        exit 1
    fi
done
"$CHROMIUM" --version >&2
"$CHROMEDRIVER" --version >&2
