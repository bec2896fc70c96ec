#!/usr/bin/env bash
# ensure-apt-package.sh NAME PACKAGE BINARY - install Debian's PACKAGE unless
# BINARY is already there (the shared body of ensure-chromium.sh and
# ensure-sandbox.sh). Idempotent; waits for any other apt run. Run as root.
set -euo pipefail

name=$1 package=$2 binary=$3
export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # no needrestart scan/prompt after apt

log() { echo "$name: $*" >&2; }
die() { echo "$name: ERROR: $*" >&2; exit 1; }

if [[ -x $binary ]]; then
  log "$binary present"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root to install $package"

exec 9>"/var/lock/jobsys-$name.lock"
flock -w 900 9 || die "could not get lock within 900 s"
# Another run may have installed it while we waited for the lock.
[[ -x $binary ]] && { log "$binary present"; exit 0; }

# Wait for any other apt/dpkg (e.g. a background install) to finish.
deadline=$((SECONDS + 900))
while pgrep -x 'apt-get|apt|dpkg|unattended-upgr' >/dev/null 2>&1; do
  (( SECONDS < deadline )) || die "apt/dpkg still busy after 900 s"
  log "waiting for another apt/dpkg process to finish..."
  sleep 3
done

log "apt-get update"
apt-get -o DPkg::Lock::Timeout=600 update -qq
log "installing $package"
apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$package"

[[ -x $binary ]] || die "$package installed but $binary is missing"
log "ok: $package installed"
