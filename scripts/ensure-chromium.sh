#!/usr/bin/env bash
# ensure-chromium.sh - install Debian's chromium (used headless by the web UI
# browser tests through Playwright with executable_path=/usr/bin/chromium).
# Idempotent: does nothing when /usr/bin/chromium exists. Run as root.
set -euo pipefail
exec "$(dirname "$0")/ensure-apt-package.sh" ensure-chromium chromium /usr/bin/chromium
