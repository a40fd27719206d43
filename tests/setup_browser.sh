#!/usr/bin/env bash
# Installs Debian's headless Chromium, its WebDriver and a CJK font (Noto Sans CJK) for the browser
# tests: the pages are Chinese first, and without a CJK font every character is a blank box.
# Idempotent and quiet: does nothing when /usr/bin/chromium, /usr/bin/chromedriver and a font
# covering Chinese (fc-list :lang=zh) are there.
# Only Debian's packages are used: never a tool's own browser download.
set -euo pipefail

has_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh family 2>/dev/null | head -n 1)" ]
}
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && has_cjk_font; then
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
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk fontconfig >/dev/null
