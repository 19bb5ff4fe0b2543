#!/usr/bin/env bash
# Fuzzes sse-hub's parsers with libFuzzer; docs/operations.md ("Fuzzing") says what each target checks.
#
#   scripts/fuzz.sh short              build, then each target for $FUZZ_SECONDS (25) seconds, seed $FUZZ_SEED (1): CI's run
#   scripts/fuzz.sh long               build, then request-head until 10 million executions, each other target 10 min
#   scripts/fuzz.sh run TARGET [OPT..] build, then one target with libFuzzer options of your own (-runs=, -jobs=...)
#   scripts/fuzz.sh merge TARGET       fold what a run found into the committed corpus, minimized (-merge=1)
#   scripts/fuzz.sh build              only build .build-fuzz/release/sse-fuzz
#
# FUZZ_TARGETS limits short and long to some targets ("request-head handoff"). A run stops at the first crash or
# disagreement, writes the input to .build-fuzz/findings/TARGET/, and the script exits non-zero; replay it with
# a plain build: `swift build --product sse-fuzz && .build/debug/sse-fuzz TARGET that-file`.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=.build-fuzz
binary=$scratch/release/sse-fuzz
all_targets=(request-head control-frame handoff token-claims jwks)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

build() {
    # -sanitize=fuzzer instruments the Swift code; -fsanitize=fuzzer-no-link the C code (SwiftNIO's llhttp
    # among it, so coverage also guides through the parser the supervisor is compared with). ld.gold cannot link
    # the result (an internal error); lld, which comes with the toolchain, can.
    swift build -c release --scratch-path "$scratch" --product sse-fuzz \
        -Xswiftc -sanitize=fuzzer -Xswiftc -DLIBFUZZER -Xcc -fsanitize=fuzzer-no-link \
        -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
}

options_for() {
    case "$1" in
        request-head) echo "-max_len=2048 -dict=Fuzz/request-head.dict" ;;
        control-frame) echo "-max_len=4096" ;;
        handoff) echo "-max_len=1024" ;;
        token-claims) echo "-max_len=1024 -dict=Fuzz/token-claims.dict" ;;
        jwks) echo "-max_len=4096 -dict=Fuzz/jwks.dict" ;;
        *) echo "unknown target $1 (${all_targets[*]})" >&2; exit 64 ;;
    esac
}

# fuzz TARGET [libFuzzer options...]: new inputs go to the scratch corpus, the committed one is read only.
fuzz() {
    local target=$1
    shift
    local work=$scratch/corpus/$target findings=$scratch/findings/$target
    mkdir -p "$work" "$findings"
    local options
    read -r -a options <<<"$(options_for "$target")"
    echo "== $target: $binary $target ${options[*]} $* $work Fuzz/Corpus/$target"
    # Swift's own backtracer would race libFuzzer's handler for the crash; libFuzzer's saves the input.
    SWIFT_BACKTRACE=enable=no "$binary" "$target" "${options[@]}" -artifact_prefix="$findings/" -print_final_stats=1 \
        "$@" "$work" "Fuzz/Corpus/$target"
}

case "${1:-}" in
    build)
        build
        ;;
    short)
        build
        # A fixed seed: CI's pass replays the same mutations each time, so it fails on a regression, not on luck.
        # New territory is for `long` and `run` (random seeds); FUZZ_SEED=0 makes this one random too.
        for target in "${targets[@]}"; do fuzz "$target" -max_total_time="${FUZZ_SECONDS:-25}" -seed="${FUZZ_SEED:-1}"; done
        ;;
    long)
        build
        for target in "${targets[@]}"; do
            if [ "$target" = request-head ]; then
                fuzz "$target" -runs="${FUZZ_RUNS:-10000000}"
            else
                fuzz "$target" -max_total_time="${FUZZ_SECONDS:-600}"
            fi
        done
        ;;
    run)
        [ $# -ge 2 ] || { echo "usage: $0 run TARGET [libFuzzer options]" >&2; exit 64; }
        build
        fuzz "${@:2}"
        ;;
    merge)
        [ $# -eq 2 ] || { echo "usage: $0 merge TARGET" >&2; exit 64; }
        build
        read -r -a options <<<"$(options_for "$2")"
        SWIFT_BACKTRACE=enable=no "$binary" "$2" "${options[@]}" -merge=1 "Fuzz/Corpus/$2" "$scratch/corpus/$2"
        ;;
    *)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 64
        ;;
esac
