#!/usr/bin/env bash
# ensure-chromium.sh - install Debian's chromium (used headless by the web UI
# browser tests through Playwright with executable_path=/usr/bin/chromium).
# Idempotent: does nothing when /usr/bin/chromium exists. Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # no needrestart scan/prompt after apt

log() { echo "ensure-chromium: $*" >&2; }
die() { echo "ensure-chromium: ERROR: $*" >&2; exit 1; }

if [[ -x /usr/bin/chromium ]]; then
  log "chromium present"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root to install chromium"

exec 9>/var/lock/jobsys-ensure-chromium.lock
flock -w 900 9 || die "could not get lock within 900 s"
# Another run may have installed it while we waited for the lock.
[[ -x /usr/bin/chromium ]] && { log "chromium present"; exit 0; }

# Wait for any other apt/dpkg (e.g. a background install) to finish.
deadline=$((SECONDS + 900))
while pgrep -x 'apt-get|apt|dpkg|unattended-upgr' >/dev/null 2>&1; do
  (( SECONDS < deadline )) || die "apt/dpkg still busy after 900 s"
  log "waiting for another apt/dpkg process to finish..."
  sleep 3
done

log "apt-get update"
apt-get -o DPkg::Lock::Timeout=600 update -qq
log "installing chromium"
apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium

[[ -x /usr/bin/chromium ]] || die "chromium installed but /usr/bin/chromium is missing"
log "ok: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
