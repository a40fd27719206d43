#!/usr/bin/env bash
# Installs Debian's headless Chromium and its WebDriver for the browser tests (survey page).
# Idempotent and quiet: does nothing when /usr/bin/chromium and /usr/bin/chromedriver exist.
# Only Debian's packages are used: never a tool's own browser download.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser.sh: no apt-get here; install chromium + chromium-driver yourself (browser tests skip loudly)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "setup_browser.sh: not root and no sudo; browser tests will skip (fail under CI=true)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# the package lists may be missing or old on a fresh machine
$SUDO apt-get update -qq >/dev/null || true
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
