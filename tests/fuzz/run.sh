#!/bin/sh
# Builds the libFuzzer targets (clang, ASan+UBSan) into build-fuzz/ and runs each for SECONDS
# (default 600), one after the other, niced, one job each: tests/fuzz/run.sh [SECONDS [TARGET...]].
# Starts from the seed corpus tests/fuzz/<target>/ and keeps what it learns in
# build-fuzz/fuzz/<target>/corpus (outside git); a crash, leak or timeout is written to
# build-fuzz/fuzz/<target>/ (crash-*, leak-*, timeout-*) and ends that target's run; the fuzzer's
# log is build-fuzz/fuzz/<target>/fuzz-0.log, whose last lines give executions and coverage
# (cov: edges, ft: features). A crash file, once the bug is fixed, goes into tests/fuzz/<target>/
# so that the fuzz-regress suite replays it in every meson test.
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$src/build-fuzz}
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-rpc jwt config pam-reply url validators}

if [ ! -d "$build" ]; then
        CC=${CC:-clang} meson setup "$build" "$src" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
fi
nice -n 10 meson compile -C "$build"

status=0
for t in $targets; do
        out=$build/fuzz/$t
        mkdir -p "$out/corpus"
        dict=
        [ -f "$src/tests/fuzz/$t.dict" ] && dict=-dict=$src/tests/fuzz/$t.dict
        echo "== $t: $seconds s, log in $out/fuzz-0.log"
        # shellcheck disable=SC2086 # $dict is empty or one word
        (cd "$out" &&
         ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1 \
         UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
         nice -n 10 "$build/tests/fuzz/fuzz-$t" -jobs=1 -workers=1 -max_total_time="$seconds" \
                -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$out/" $dict \
                corpus "$src/tests/fuzz/$t") || status=1
        tail -n 25 "$out/fuzz-0.log" | grep -E '^#[0-9]+|stat::|ERROR|SUMMARY' | tail -n 12 || true
done
exit $status
