#!/usr/bin/env bash
# Builds release binaries and installs sse-hub as a systemd service: binaries, units, the sse-hub user
# (sysusers.d), /run/sse-hub (tmpfiles.d), the operator's guide, and a random JWT secret if there is none.
#
#   scripts/install.sh                    build, install under /usr/local and /etc, create the user, daemon-reload
#   scripts/install.sh --destdir DIR      install into DIR instead (packaging, tests); nothing is activated
#   scripts/install.sh --binaries DIR     take sse-supervisor and sse-worker from DIR instead of building
#
# Then: systemctl enable --now sse-hub.socket   (see docs/operations.md)
set -euo pipefail
cd "$(dirname "$0")/.."

destdir=""
binaries=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir=$2; shift 2 ;;
    --binaries) binaries=$2; shift 2 ;;
    *) echo "usage: $0 [--destdir DIR] [--binaries DIR]" >&2; exit 2 ;;
  esac
done

if [ -z "$binaries" ]; then
  swift build -c release --product sse-supervisor
  swift build -c release --product sse-worker
  binaries=$(swift build -c release --show-bin-path)
fi

# The units name /usr/local/bin; keep these paths in step with systemd/sse-hub.service.
install -D -m 0755 "$binaries/sse-supervisor" "$destdir/usr/local/bin/sse-supervisor"
install -D -m 0755 "$binaries/sse-worker" "$destdir/usr/local/bin/sse-worker"
for unit in sse-hub.service sse-hub.socket sse-hub-control.socket sse-hub-metrics.socket; do
  install -D -m 0644 "systemd/$unit" "$destdir/etc/systemd/system/$unit"
done
install -D -m 0644 systemd/sysusers.d/sse-hub.conf "$destdir/etc/sysusers.d/sse-hub.conf"
install -D -m 0644 systemd/tmpfiles.d/sse-hub.conf "$destdir/etc/tmpfiles.d/sse-hub.conf"
install -D -m 0644 docs/operations.md "$destdir/usr/local/share/doc/sse-hub/operations.md"

# The secret is read by systemd (LoadCredential=), never by the service user: root only.
secret="$destdir/etc/sse-hub/jwt-secret"
if [ ! -e "$secret" ]; then
  install -d -m 0700 "$(dirname "$secret")"
  (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$secret")
  echo "created a random JWT secret in /etc/sse-hub/jwt-secret"
fi

if [ -z "$destdir" ]; then
  systemd-sysusers /etc/sysusers.d/sse-hub.conf
  systemd-tmpfiles --create /etc/tmpfiles.d/sse-hub.conf
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  echo "installed; start with: systemctl enable --now sse-hub.socket"
fi
