#!/usr/bin/env bash
# ensure-sandbox.sh - install Debian's bubblewrap (bwrap), which workers use to run
# function steps' user code in a sandbox of its own (see workers/sandbox).
# Idempotent: does nothing when /usr/bin/bwrap exists. Run as root.
set -euo pipefail
exec "$(dirname "$0")/ensure-apt-package.sh" ensure-sandbox bubblewrap /usr/bin/bwrap
