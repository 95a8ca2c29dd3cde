#!/usr/bin/env bash
# Installs headless Chromium from the distribution (Debian/Ubuntu) for tests/test_report.py,
# which opens a `geosr report` page in a real browser, moves its swipe slider and compares
# screenshots. Idempotent: does nothing when a Chromium binary is already on PATH.
# Needs root (or sudo) and network for apt. The browser tests skip (naming this script) without it.
set -euo pipefail

have_chromium() {
    local b
    for b in chromium-headless-shell chromium chromium-browser; do
        if command -v "$b" >/dev/null 2>&1; then echo "$(command -v "$b")"; return 0; fi
    done
    return 1
}

if found=$(have_chromium); then
    echo "install-chromium: Chromium already present ($found)"
    exit 0
fi

. "$(dirname "$0")/apt.sh"
apt_prepare install-chromium "Chromium (or chromium-headless-shell)"
# the headless shell is the browser without the desktop UI: smaller, and all the tests need;
# older releases lack the package, so fall back to the full browser
$SUDO apt-get install -y --no-install-recommends chromium-headless-shell \
    || $SUDO apt-get install -y --no-install-recommends chromium
found=$(have_chromium) || { echo "install-chromium: installed, but no chromium binary on PATH" >&2; exit 1; }
echo "install-chromium: installed $found ($("$found" --version 2>/dev/null || echo 'version unknown'))"
