#!/usr/bin/env bash
# Builds dist/sse-hub_<version>_<arch>.deb: the production install (docs/operations.md, "The Debian package").
#
#   scripts/build-deb.sh [--binaries DIR] [--out DIR]
#
# The binaries are built with the Swift standard library and Foundation linked statically (--static-swift-stdlib),
# so the host needs no Swift toolchain: only libc, libsystemd and systemd (the package's Depends, from
# dpkg-shlibdeps). --binaries takes sse-supervisor and sse-worker built that way already (the tests pass their
# own build). The man pages are generated from the --help texts (swift-argument-parser's generate-manual).
#
# What the package does (DEBIAN/postinst, prerm, postrm):
# - install: creates the user sse-hub (sysusers.d) and /run/sse-hub (tmpfiles.d), a random JWT secret in
#   /etc/sse-hub/jwt-secret (root, 0600) if there is none; reloads systemd; enables and starts nothing.
# - remove: stops the service and its sockets.   - purge: removes /etc/sse-hub (the secret).
set -euo pipefail
cd "$(dirname "$0")/.."

binaries=""
out="dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) binaries=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--binaries DIR] [--out DIR]" >&2; exit 64 ;;
  esac
done

for tool in dpkg-deb dpkg-shlibdeps fakeroot gzip; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install dpkg-dev fakeroot)" >&2; exit 69; }
done

if [ -z "$binaries" ]; then
  swift build -c release --scratch-path .build-deb --static-swift-stdlib --product sse-supervisor
  swift build -c release --scratch-path .build-deb --static-swift-stdlib --product sse-worker
  binaries=$(swift build -c release --scratch-path .build-deb --static-swift-stdlib --show-bin-path)
fi
version=$("$binaries/sse-supervisor" --version | head -1 | tr -d '[:space:]')
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "build-deb: sse-supervisor --version printed nothing" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
pkg="$root/pkg"

# Binaries; the supervisor finds the worker beside itself.
install -D -m 0755 "$binaries/sse-supervisor" "$pkg/usr/bin/sse-supervisor"
install -D -m 0755 "$binaries/sse-worker" "$pkg/usr/bin/sse-worker"
strip --strip-unneeded "$pkg/usr/bin/sse-supervisor" "$pkg/usr/bin/sse-worker"

# The units, with the package's paths (scripts/install.sh keeps /usr/local).
for unit in sse-hub.service sse-hub.socket sse-hub-control.socket sse-hub-metrics.socket; do
  install -D -m 0644 "systemd/$unit" "$pkg/lib/systemd/system/$unit"
  sed -i -e 's|/usr/local/bin/|/usr/bin/|g' -e 's|/usr/local/share/doc/sse-hub/|/usr/share/doc/sse-hub/|g' \
    "$pkg/lib/systemd/system/$unit"
done
install -D -m 0644 systemd/sysusers.d/sse-hub.conf "$pkg/usr/lib/sysusers.d/sse-hub.conf"
install -D -m 0644 systemd/tmpfiles.d/sse-hub.conf "$pkg/usr/lib/tmpfiles.d/sse-hub.conf"

# The operator's guide, the README, the dashboard.
doc="$pkg/usr/share/doc/sse-hub"
install -D -m 0644 docs/operations.md "$doc/operations.md"
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 dashboards/sse-hub.json "$doc/grafana-dashboard.json"
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sse-hub
Files: *
Copyright: the sse-hub developers
License: proprietary
EOF

# Man pages from the --help texts: swift-argument-parser's generate-manual renders each command's help as mdoc
# (built for this machine from the package's own dependency; it runs the binaries with --experimental-dump-help).
man="$root/man"
mkdir -p "$man"
swift build --product generate-manual >"$root/manual.log" 2>&1 || { cat "$root/manual.log" >&2; exit 1; }
generate_manual="$(swift build --show-bin-path)/generate-manual"
for tool in sse-supervisor sse-worker; do
  "$generate_manual" "$pkg/usr/bin/$tool" --multi-page --date "$(date -u +%Y-%m-%d)" --output-directory "$man"
done
found=0
for page in "$man"/*.1; do
  [ -e "$page" ] || continue
  install -D -m 0644 "$page" "$pkg/usr/share/man/man1/$(basename "$page")"
  gzip -9n "$pkg/usr/share/man/man1/$(basename "$page")"
  found=$((found + 1))
done
[ "$found" -ge 2 ] || { echo "build-deb: the man pages were not generated" >&2; exit 1; }

# Depends: what the binaries link (dpkg-shlibdeps reads their NEEDED entries), and systemd for the units.
mkdir -p "$root/debian"
printf 'Source: sse-hub\n\nPackage: sse-hub\nArchitecture: any\n' >"$root/debian/control"
shlibs=$(cd "$root" && dpkg-shlibdeps -O "$pkg/usr/bin/sse-supervisor" "$pkg/usr/bin/sse-worker" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk "$pkg" | cut -f1)

mkdir -p "$pkg/DEBIAN"
cat >"$pkg/DEBIAN/control" <<EOF
Package: sse-hub
Version: $version
Architecture: $arch
Maintainer: sse-hub developers <sse-hub@localhost>
Installed-Size: $size
Depends: ${shlibs:+$shlibs, }systemd (>= 247)
Section: net
Priority: optional
Homepage: https://github.com/sse-hub/sse-hub
Description: Server-Sent Events hub
 A privileged supervisor takes the listening sockets from systemd, verifies each
 stream's token and hands the connection to an unprivileged worker process, which
 serves the stream. Publishing to everyone, a topic or a user; resume with
 Last-Event-ID; reload and upgrade without dropping a stream; Prometheus metrics
 and a live status page. Installed disabled: systemctl enable --now sse-hub.socket
EOF

cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  systemd-sysusers /usr/lib/sysusers.d/sse-hub.conf
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/sse-hub.conf || true
  # The secret is read by systemd (LoadCredential=), never by the service user: root only. Kept across upgrades.
  if [ ! -e /etc/sse-hub/jwt-secret ]; then
    install -d -m 0700 /etc/sse-hub
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >/etc/sse-hub/jwt-secret)
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade of a running hub: the new binaries take over in place (docs/operations.md), no stream drops.
    if systemctl is-active --quiet sse-hub.service; then systemctl reload sse-hub.service || true; fi
  fi
  echo "sse-hub installed, disabled. Start it with: systemctl enable --now sse-hub.socket"
fi
exit 0
EOF

cat >"$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop sse-hub.service sse-hub.socket sse-hub-control.socket sse-hub-metrics.socket || true
  systemctl disable sse-hub.service sse-hub.socket sse-hub-control.socket sse-hub-metrics.socket >/dev/null 2>&1 || true
fi
exit 0
EOF

cat >"$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /etc/sse-hub
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/sse-hub_${version}_${arch}.deb"
fakeroot dpkg-deb --build -Zxz "$pkg" "$deb" >/dev/null
echo "$deb"
