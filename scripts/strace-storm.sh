#!/usr/bin/env bash
# Counts the supervisor's system calls (strace -c, every thread) over one connect storm, for one build:
#   scripts/strace-storm.sh BIN_DIR [STREAMS]     # BIN_DIR holds sse-supervisor, sse-worker and sse-bench
# With TRACE=workers, the two workers' calls instead (together: divide by STREAMS for a connection's).
# For an A/B of two builds, run it once with each: the counts are exact where the CPU figures are noisy.
# Needs strace; uses port 18990 on loopback, like scripts/bench.py.
set -euo pipefail
bin=$(cd "$1" && pwd)
streams=${2:-10000}
out=$(mktemp -d)
export SSE_JWT_SECRET=bench-secret-bench-secret-bench-secret-0123
user=(); [ "$(id -u)" -eq 0 ] && user=(--user nobody)
"$bin/sse-supervisor" --listen 127.0.0.1:18990 --workers 2 --log-level warning "${user[@]}" >"$out/hub.log" 2>&1 &
supervisor=$!
trap 'kill $supervisor 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -sf http://127.0.0.1:18990/api/health >/dev/null && break; sleep 0.1; done
traced=(-p "$supervisor")
if [ "${TRACE:-supervisor}" = workers ]; then
  for _ in $(seq 100); do [ "$(pgrep -c -P "$supervisor" sse-worker || true)" -ge 2 ] && break; sleep 0.1; done
  traced=(); for pid in $(pgrep -P "$supervisor" sse-worker); do traced+=(-p "$pid"); done
fi
strace -c -f "${traced[@]}" -o "$out/strace.txt" &
tracer=$!
sleep 1  # strace attaches every thread before the first connection
"$bin/sse-bench" run --target sse-hub --port 18990 --streams "$streams" --events 1 --rate 1 --ramp 50000 \
  --max-connecting 512 --settle 1 --drain 10 --json >"$out/bench.json"
kill -INT "$tracer"; wait "$tracer" || true
echo "${TRACE:-supervisor}: system calls over $streams connections ($bin):"
cat "$out/strace.txt"
