#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian/Ubuntu machine: installs what the build and the tests need
# (libsystemd-dev for the build; python3 for the descriptor-passing tests' independent peer; sseclient-py;
# postgresql for the cluster tests, which start their own servers; chromium and prometheus for the browser and
# metrics tests),
# then a short fuzzing run and `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
pkg-config --exists libsystemd 2>/dev/null || need+=(libsystemd-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The systemd tests boot systemd in namespaces (scripts/systemd-sandbox.sh) and drive it with these.
[ -x /lib/systemd/systemd ] || need+=(systemd)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ps >/dev/null 2>&1 || need+=(procps)
# The cluster tests start private PostgreSQL servers (Tests/IntegrationTests/Support/PostgresServer.swift), run as
# the postgres user the package creates; setpriv (util-linux) runs them as that user.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# The browser tests drive a real headless Chromium (Tests/IntegrationTests/Support/browser_check.py).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The metrics tests start a real Prometheus server (and lint the exposition with its promtool).
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# scripts/build-deb.sh: dpkg-shlibdeps (dpkg-dev) for the package's Depends, fakeroot for its file owners.
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
command -v fakeroot >/dev/null 2>&1 || need+=(fakeroot)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# sseclient-py (with requests): an SSE client this project did not write, for the resume test; PyJWT with
# cryptography: tokens and keys this project did not make, for the identity-provider key tests.
if ! python3 -c 'import sseclient, requests, jwt, cryptography' 2>/dev/null; then
  python3 -m pip install --quiet sseclient-py requests pyjwt cryptography 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages sseclient-py requests pyjwt cryptography
fi

# The whole suite (no arguments) starts with a short real libFuzzer run of every fuzz target (docs/operations.md,
# "Fuzzing"; about 8 minutes cold, 2 once built); a focused run (`--filter ...`) skips it, and so does SSE_SKIP_FUZZ=1.
if [ $# -eq 0 ] && [ "${SSE_SKIP_FUZZ:-}" != 1 ]; then
  scripts/fuzz.sh short
fi

# The Debian package, for the test that installs it under a real systemd (DebianPackageTests): a release build with
# the standard library linked statically (.build-deb; about 10 minutes cold). A focused run, or SSE_SKIP_DEB=1, skips it.
if [ $# -eq 0 ] && [ "${SSE_SKIP_DEB:-}" != 1 ]; then
  SSE_HUB_DEB=$(scripts/build-deb.sh --out .build-deb/dist | tail -1)
  export SSE_HUB_DEB
fi

# Swift Testing runs up to twice as many tests at once as there are cores. Each of these tests starts real servers
# (a hub and its workers, PostgreSQL, Prometheus, Chromium, systemd), so on a 2-core machine four at once starved
# each other past their deadlines (a hub not healthy in 10 s, a watchdog ping late). Two at once; override to taste.
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-2}"
exec swift test "$@"
