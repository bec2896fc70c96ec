#!/usr/bin/env bash
# ensure-services.sh - make sure the backing services for jobsys answer:
#   * Redis      at 127.0.0.1:6379 (`redis-cli ping` -> PONG), no persistence
#   * PostgreSQL at 127.0.0.1:5432, user postgres, trust auth, database `test`
#
# Idempotent and safe to run repeatedly as root on Debian 12 (no systemd:
# servers are started directly). Anything already running is left alone;
# missing packages are installed with apt-get. Each service gets up to 30 s
# to answer, otherwise the script fails with a message.
set -euo pipefail

WAIT=30
export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # no needrestart scan/prompt after apt

log() { echo "ensure-services: $*" >&2; }
die() { echo "ensure-services: ERROR: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root"

# Serialise concurrent runs.
exec 9>/var/lock/jobsys-ensure-services.lock
flock -w 600 9 || die "could not get lock within 600 s"

# detached CMD...: run CMD in its own session with stdin from /dev/null and
# every inherited file descriptor above 2 closed. Daemons started from here
# must not keep our lock (fd 9) or a pipe of the caller open: otherwise the
# next run waits forever on the lock, and a caller reading our output (CI,
# `$(...)`, `| tee`) hangs until the daemon exits. `setsid -w` waits for CMD.
# shellcheck disable=SC2016  # $$, $n and $@ are for the inner bash
CLOSE_FDS_AND_EXEC='for f in /proc/$$/fd/*; do n=${f##*/}; ((n > 2)) && eval "exec $n>&-"; done; exec "$@"'
detached() { setsid -w bash -c "$CLOSE_FDS_AND_EXEC" detached "$@" </dev/null; }

# --- apt helpers (same as in ensure-docker.sh) ----------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

wait_for_apt() {
  local deadline=$((SECONDS + 900))
  while pgrep -x 'apt-get|apt|dpkg|unattended-upgr' >/dev/null 2>&1 ||
        { command -v fuser >/dev/null 2>&1 &&
          fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1; }; do
    (( SECONDS < deadline )) || die "apt/dpkg still busy after 900 s"
    log "waiting for another apt/dpkg process to finish..."
    sleep 3
  done
}

APT_UPDATED=0
apt_install() {  # apt_install PKG... : installs those that are missing
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  (( ${#missing[@]} )) || return 0
  wait_for_apt
  if (( ! APT_UPDATED )); then
    log "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    APT_UPDATED=1
  fi
  log "installing ${missing[*]}"
  # policy-rc.d-less containers: postinst may fail to start the service; we
  # start it ourselves below, so that is fine.
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}

# wait_for SECS DESCRIPTION CMD...: poll CMD every 0.5 s.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "$what did not answer within ${secs} s"
    sleep 0.5
  done
}

# --- Redis ------------------------------------------------------------------------
redis_ok() { [[ $(timeout 5 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]]; }

if command -v redis-cli >/dev/null 2>&1 && redis_ok; then
  log "redis answers"
else
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log "starting redis-server"
  # --daemonize forks into the background; --save ""/--appendonly no: a
  # throw-away broker with no persistence.
  detached redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile /var/log/redis-jobsys.log >/dev/null
  wait_for "$WAIT" "redis at 127.0.0.1:6379" redis_ok
  log "redis is up"
fi

# --- PostgreSQL -------------------------------------------------------------------------
pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2; }
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

if command -v pg_isready >/dev/null 2>&1 && pg_ok; then
  log "postgres answers"
else
  if [[ -z $(pg_version) ]]; then
    apt_install postgresql
    # The package normally creates cluster "main"; create it if it did not.
    [[ -n $(pg_version) ]] || pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main
  fi
  ver=$(pg_version)
  [[ -d /etc/postgresql/$ver/main ]] || pg_createcluster "$ver" main
  log "starting postgres cluster $ver/main"
  # Exit status 2 = already running; anything else non-zero is reported by
  # the wait below together with the log location.
  detached pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
    log "pg_ctlcluster returned $? (see /var/log/postgresql/)"
  wait_for "$WAIT" "postgres at 127.0.0.1:5432 (see /var/log/postgresql/)" pg_ok
  log "postgres is up"
fi

# Trust auth for TCP connections from 127.0.0.1 (tests connect as postgres
# without a password). Only touch pg_hba.conf if a passwordless login fails.
psql_ok() { psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
if ! psql_ok; then
  ver=$(pg_version)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  [[ -f $hba ]] || die "cannot log in as postgres and $hba not found"
  log "adding 'host all all 127.0.0.1/32 trust' to the top of $hba"
  sed -i '1i host    all    all    127.0.0.1/32    trust   # added by jobsys ensure-services.sh' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  wait_for "$WAIT" "passwordless login postgres@127.0.0.1" psql_ok
fi

# Database `test`.
if [[ $(psql -h 127.0.0.1 -U postgres -w -d postgres -Atqc "select 1 from pg_database where datname='test'") == 1 ]]; then
  log "database test exists"
else
  log "creating database test"
  createdb -h 127.0.0.1 -U postgres -w test
fi
log "ok: redis and postgres answer"
