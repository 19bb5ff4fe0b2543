#!/usr/bin/env bash
# Boots a real systemd as PID 1 in fresh namespaces (pid, mount, uts, ipc, net, cgroup) over a copy-on-write
# view of this machine's root, so tests can drive sse-hub's units with systemctl and journalctl. Needs root.
#
#   systemd-sandbox.sh start NAME [STAGE]   boot; STAGE's tree is copied over / first (units, binaries, /etc files);
#                                           prints the host pid of the sandbox's systemd once it is running
#   systemd-sandbox.sh pid NAME             that pid
#   systemd-sandbox.sh exec NAME CMD...     run CMD inside (all namespaces of the sandbox)
#   systemd-sandbox.sh stop NAME            poweroff, then kill what is left; removes the cgroup and state
#   systemd-sandbox.sh available            exit 0 when this machine can run a sandbox
#
# Every wait is bounded (SANDBOX_TIMEOUT seconds, default 30). State lives in $SANDBOX_STATE_ROOT/NAME
# (default /tmp/sse-hub-sandbox); the console (what systemd prints) goes to its console.log.
set -euo pipefail

STATE_ROOT=${SANDBOX_STATE_ROOT:-/tmp/sse-hub-sandbox}
TIMEOUT=${SANDBOX_TIMEOUT:-30}
CGROUP_ROOT=/sys/fs/cgroup/unified
# Services the host enables that have no business here (and can hang poweroff).
MASKED=(nginx postgresql pushpin zurl console-getty getty@tty1 systemd-timesyncd systemd-firstboot e2scrub_reap)

die() { echo "systemd-sandbox: $*" >&2; exit 1; }

# Polls `$@` every 50 ms until it succeeds; fails after $TIMEOUT seconds.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.05
  done
}

state_dir() { echo "$STATE_ROOT/$1"; }
cgroup_dir() {
  [ -d "$CGROUP_ROOT" ] || CGROUP_ROOT=/sys/fs/cgroup  # pure cgroup2 hosts
  echo "$CGROUP_ROOT/sse-hub-sandbox-$1"
}

# The host pid of the sandbox's PID 1: the child of `unshare --fork`.
systemd_pid() {
  local unshare_pid child
  unshare_pid=$(cat "$(state_dir "$1")/unshare.pid" 2>/dev/null) || return 1
  child=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null) || return 1
  child=${child%% *}
  [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && echo "$child"
}

# Whether systemd inside has finished booting (running or degraded: some host units may fail here).
booted() {
  local pid state
  pid=$(systemd_pid "$1") || return 1
  state=$(nsenter -t "$pid" -a systemctl is-system-running 2>/dev/null) || true
  [ "$state" = running ] || [ "$state" = degraded ]
}

available() {
  [ "$(id -u)" -eq 0 ] || return 1
  [ -x /lib/systemd/systemd ] && command -v unshare >/dev/null && command -v nsenter >/dev/null \
    && command -v script >/dev/null || return 1
  local dir; dir=$(cgroup_dir probe-$$)
  mkdir "$dir" 2>/dev/null || return 1
  rmdir "$dir"
  unshare --pid --mount --uts --ipc --net --cgroup --fork --kill-child true 2>/dev/null
}

start() {
  local name=$1 stage=${2:-}
  local state; state=$(state_dir "$name")
  [ ! -e "$state/unshare.pid" ] || die "sandbox $name exists; stop it first"
  mkdir -p "$state"
  local cgroup; cgroup=$(cgroup_dir "$name")
  mkdir -p "$cgroup"
  # In its own cgroup (moved before unsharing, so that is the root of its cgroup namespace), under `script`
  # because systemd wants a terminal for its console; `exec` keeps the recorded pid that of unshare.
  (
    echo $BASHPID >"$cgroup/cgroup.procs"
    # Whatever else our caller left open (the write end of a pipe it reads to the end) must not live on in
    # the sandbox, or that caller never sees end-of-file.
    for fd in $(ls /proc/$BASHPID/fd); do
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid script -qefc "echo \$\$ >'$state/unshare.pid'; exec unshare --pid --mount --uts --ipc --net --cgroup \
      --fork --kill-child '$0' __init '$state' '$stage'" "$state/console.log" </dev/null >/dev/null 2>&1
  ) &
  wait_for "systemd to start in sandbox $name" systemd_pid "$name"
  wait_for "sandbox $name to boot" booted "$name"
  systemd_pid "$name"
}

# Runs as PID 1 of the new pid namespace: builds the root and becomes systemd.
init() {
  local state=$1 stage=$2
  mount --make-rprivate /
  mkdir -p "$state/rw" "$state/root"
  mount -t tmpfs -o mode=0755 sandbox "$state/rw"
  mkdir -p "$state/rw/upper" "$state/rw/work"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$state/rw/upper,workdir=$state/rw/work" "$state/root"
  local root=$state/root
  mount -t proc proc "$root/proc"
  mount -t sysfs -o ro sysfs "$root/sys"
  mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
  local device
  for device in null zero full random urandom tty; do
    touch "$root/dev/$device"
    mount --bind "/dev/$device" "$root/dev/$device"
  done
  mkdir -p "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
  mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
  ln -s pts/ptmx "$root/dev/ptmx"
  # The terminal `script` gave us is the console.
  touch "$root/dev/console"
  mount --bind "$(tty)" "$root/dev/console"
  if [ -n "$stage" ]; then cp -a "$stage/." "$root/"; fi
  local unit
  for unit in "${MASKED[@]}"; do ln -sf /dev/null "$root/etc/systemd/system/$unit.service"; done

  hostname sse-hub-sandbox
  ip link set lo up
  mkdir -p "$root/.old-root"
  cd "$root"
  pivot_root . .old-root
  umount -l /.old-root
  rmdir /.old-root
  exec env -i container=sse-hub-sandbox TERM=dumb /lib/systemd/systemd --log-target=console --show-status=no
}

sandbox_exec() {
  local name=$1; shift
  local pid; pid=$(systemd_pid "$name") || die "sandbox $name is not running"
  exec nsenter -t "$pid" -a "$@"
}

stop() {
  local name=$1
  local state; state=$(state_dir "$name")
  local cgroup; cgroup=$(cgroup_dir "$name")
  local unshare_pid pid
  unshare_pid=$(cat "$state/unshare.pid" 2>/dev/null || true)
  if pid=$(systemd_pid "$name"); then
    timeout "$TIMEOUT" nsenter -t "$pid" -a systemctl poweroff --no-block >/dev/null 2>&1 || true
    local deadline=$((SECONDS + TIMEOUT))
    while [ -e "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    # Killing a pid namespace's init kills everything in it.
    [ ! -e "/proc/$pid" ] || kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ -n "$unshare_pid" ]; then
    local deadline=$((SECONDS + TIMEOUT))
    while [ -e "/proc/$unshare_pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
  fi
  if [ -d "$cgroup" ]; then
    local deadline=$((SECONDS + TIMEOUT))
    until find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null && [ ! -d "$cgroup" ]; do
      [ "$SECONDS" -lt "$deadline" ] || die "cgroup $cgroup still has processes: $(cat "$cgroup/cgroup.procs" | tr '\n' ' ')"
      sleep 0.05
    done
  fi
  rm -rf "$state"
}

command=${1:-}
shift || true
case "$command" in
  start) [ $# -ge 1 ] || die "usage: $0 start NAME [STAGE]"; start "$@" ;;
  pid) systemd_pid "$1" || die "sandbox $1 is not running" ;;
  exec) [ $# -ge 2 ] || die "usage: $0 exec NAME CMD..."; sandbox_exec "$@" ;;
  stop) [ $# -ge 1 ] || die "usage: $0 stop NAME"; stop "$1" ;;
  available) available ;;
  __init) init "$@" ;;
  *) die "usage: $0 start|pid|exec|stop|available ..." ;;
esac
