#!/usr/bin/env bash
# ensure-docker.sh - make sure a Docker engine answers on this machine and
# that the tiny local image jobsys/busybox:local exists.
#
# Idempotent and safe to run repeatedly (and concurrently) as root on Debian 12:
#   1. If `docker info` already answers, the engine is left alone.
#   2. Otherwise install docker.io + busybox-static (apt) if missing and start
#      dockerd directly in the background (the sandbox has no systemd), logging
#      to /var/log/dockerd-jobsys.log, then wait up to 60 s for `docker info`.
#   3. Build jobsys/busybox:local with `docker import` unless it exists.
#   4. Smoke test: `docker run --rm --network none IMAGE sh -c 'echo hi'`.
#
# Environment overrides:
#   DOCKERD_FLAGS  extra dockerd flags; when set, only this flag set is tried
#                  (default: try plain `dockerd` first, then fall back, see
#                  start_dockerd below).
#   DOCKER_WAIT    seconds to wait for `docker info` per attempt (default 60).
set -euo pipefail

IMAGE="jobsys/busybox:local"
LOG="/var/log/dockerd-jobsys.log"
LOCK="/var/lock/jobsys-ensure-docker.lock"
DOCKER_WAIT="${DOCKER_WAIT:-60}"
# Applets linked into the image. (`trap` is also wanted by callers, but it is a
# shell builtin of busybox sh, not an applet: links to names that busybox does
# not know are skipped below, `sh -c 'trap ...'` works regardless.)
APPLETS=(sh echo sleep cat ls env printf seq true false kill trap yes head)

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1   # no needrestart scan/prompt after apt

log() { echo "ensure-docker: $*" >&2; }
die() { echo "ensure-docker: ERROR: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root"

# Serialise concurrent runs (two CI runs must not start two daemons or race
# on the image import). fd 9 stays open for the life of the script.
exec 9>"$LOCK"
flock -w 600 9 || die "could not get lock $LOCK within 600 s"

docker_ok() { command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; }

# Daemons started from here must not keep our lock (fd 9) or a pipe of the
# caller open: otherwise the next run waits forever on the lock, and a caller
# reading our output (CI, `$(...)`, `| tee`) hangs until the daemon exits.
# `bash -c "$CLOSE_FDS_AND_EXEC" NAME CMD...` closes every fd above 2, then
# execs CMD.
# shellcheck disable=SC2016  # $$, $n and $@ are for the inner bash
CLOSE_FDS_AND_EXEC='for f in /proc/$$/fd/*; do n=${f##*/}; ((n > 2)) && eval "exec $n>&-"; done; exec "$@"'

# --- apt helpers ------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Wait (up to 15 min) until no other apt/dpkg holds its locks, e.g. an install
# that was started before us in the background.
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
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"
}

# --- dockerd ------------------------------------------------------------------
dockerd_pid() {  # prints the pid of a live dockerd, if any
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; return 0; fi
  pgrep -xo dockerd 2>/dev/null || true
}

# wait_docker PID SECS: 0 once `docker info` answers; 1 if PID dies or time runs out.
wait_docker() {
  local pid=$1 deadline=$((SECONDS + $2))
  while (( SECONDS < deadline )); do
    docker_ok && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.5
  done
  docker_ok
}

# Try flag sets in order until one gives a daemon that answers. On the
# reference sandbox (Firecracker VM, kernel 6.x, cgroup v1, ext4 root) plain
# `dockerd` works: overlay2 and iptables/bridge are both available. The
# fallbacks are for hosts without iptables/netfilter or without overlayfs.
start_dockerd() {
  local attempts=() flags pid
  if [[ -n ${DOCKERD_FLAGS:-} ]]; then
    attempts=("$DOCKERD_FLAGS")
  else
    attempts=("" "--iptables=false" "--iptables=false --bridge=none --storage-driver=vfs")
  fi
  for flags in "${attempts[@]}"; do
    log "starting: dockerd ${flags} (log: $LOG)"
    echo "=== $(date -Is) ensure-docker.sh: dockerd ${flags}" >>"$LOG"
    # In the background (dockerd stays in the foreground), in its own
    # session, so it survives this script and the caller's
    # process group; inherited fds closed. setsid, bash and dockerd exec each
    # other, so $! is dockerd's pid.
    # shellcheck disable=SC2086  # word splitting of $flags is intended
    setsid bash -c "$CLOSE_FDS_AND_EXEC" dockerd dockerd ${flags} >>"$LOG" 2>&1 </dev/null &
    pid=$!
    if wait_docker "$pid" "$DOCKER_WAIT"; then
      log "dockerd is up (pid $pid, flags: '${flags}')"
      return 0
    fi
    log "dockerd with flags '${flags}' did not come up; last log lines:"
    tail -n 15 "$LOG" >&2 || true
    # Stop it if it is still alive (hung) before trying the next flag set.
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  die "dockerd exited or did not answer 'docker info' within ${DOCKER_WAIT} s with any flag set (see $LOG)"
}

if docker_ok; then
  log "docker engine already answers"
else
  apt_install docker.io busybox-static
  pid=$(dockerd_pid)
  if [[ -n $pid ]]; then
    # A daemon is running but not answering yet (probably still starting).
    log "dockerd (pid $pid) is running; waiting up to ${DOCKER_WAIT} s for it"
    wait_docker "$pid" "$DOCKER_WAIT" ||
      die "dockerd pid $pid is running but 'docker info' does not answer (see $LOG); stop it and re-run"
  else
    start_dockerd
  fi
fi

# --- image --------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "image $IMAGE present"
else
  apt_install busybox-static
  BUSYBOX=""
  for b in /usr/bin/busybox /bin/busybox; do
    # Only a static busybox works inside an image that has no libc.
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi
  done
  [[ -n $BUSYBOX ]] || die "no static busybox found (is busybox-static installed?)"

  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin" "$tmp/tmp"
  chmod 1777 "$tmp/tmp"          # a writable /tmp for jobs that want one
  cp "$BUSYBOX" "$tmp/bin/busybox"
  known=$("$BUSYBOX" --list)
  for a in "${APPLETS[@]}"; do
    if grep -qx "$a" <<<"$known"; then
      ln -s busybox "$tmp/bin/$a"
    else
      log "note: '$a' is not a busybox applet (shell builtin only); no link made"
    fi
  done
  log "importing $IMAGE"
  tar -C "$tmp" -c . | docker import - "$IMAGE" >/dev/null
  rm -rf "$tmp"
  trap - EXIT
fi

# --- smoke test -----------------------------------------------------------------
out=$(docker run --rm --network none "$IMAGE" sh -c 'echo hi' 2>&1) ||
  die "smoke test 'docker run --rm --network none $IMAGE' failed: $out"
[[ $out == "hi" ]] || die "smoke test printed '$out' instead of 'hi'"
log "ok: docker engine answers and $IMAGE runs"
