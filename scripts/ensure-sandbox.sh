#!/usr/bin/env bash
# ensure-sandbox.sh - install Debian's bubblewrap (bwrap), which workers use to run
# function steps' user code in a sandbox of its own (see workers/sandbox).
# Idempotent: does nothing when /usr/bin/bwrap exists. Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # no needrestart scan/prompt after apt

log() { echo "ensure-sandbox: $*" >&2; }
die() { echo "ensure-sandbox: ERROR: $*" >&2; exit 1; }

if [[ -x /usr/bin/bwrap ]]; then
  log "bwrap present"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root to install bubblewrap"

exec 9>/var/lock/jobsys-ensure-sandbox.lock
flock -w 900 9 || die "could not get lock within 900 s"
# Another run may have installed it while we waited for the lock.
[[ -x /usr/bin/bwrap ]] && { log "bwrap present"; exit 0; }

# Wait for any other apt/dpkg (e.g. a background install) to finish.
deadline=$((SECONDS + 900))
while pgrep -x 'apt-get|apt|dpkg|unattended-upgr' >/dev/null 2>&1; do
  (( SECONDS < deadline )) || die "apt/dpkg still busy after 900 s"
  log "waiting for another apt/dpkg process to finish..."
  sleep 3
done

log "apt-get update"
apt-get -o DPkg::Lock::Timeout=600 update -qq
log "installing bubblewrap"
apt-get -o DPkg::Lock::Timeout=600 install -y -qq bubblewrap

[[ -x /usr/bin/bwrap ]] || die "bubblewrap installed but /usr/bin/bwrap is missing"
log "ok: $(/usr/bin/bwrap --version)"
