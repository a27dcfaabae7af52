#!/usr/bin/env bash
# Installs missing build and test dependencies, builds idm into build/ and runs the whole test
# suite (unit, integration, pam, slow, fuzz-regress). Extra arguments go to `meson test`.
#
#   ./test.sh --sanitizers [ARGS]   then also builds build-asan/ with ASan and UBSan and runs the
#                                   unit, integration and fuzz-regress suites there (what CI runs;
#                                   the PAM suites run once, under valgrind, in the first run).
#   ./test.sh --postgresql [ARGS]   then also runs the integration and PAM suites with every idmd's
#                                   store in PostgreSQL (meson test --setup=postgresql: a throwaway
#                                   cluster per test). CI runs both flags.
set -euo pipefail
cd "$(dirname "$0")"
sanitizers=0
postgresql=0
while [ $# -gt 0 ]; do
        case "$1" in
        --sanitizers) sanitizers=1 ;;
        --postgresql) postgresql=1 ;;
        *) break ;;
        esac
        shift
done
. tools/deps.sh
idm_install_deps "${IDM_BUILD_DEPS[@]}" "${IDM_TEST_DEPS[@]}"

# Any state of a build directory will do: reconfigure it, or start it afresh if that fails. The
# tests build with warnings as errors, as CI must.
setup() {
        local dir=$1
        shift
        if ! { [ -f "$dir/build.ninja" ] && meson setup --reconfigure "$dir" -Dwerror=true "$@" >/dev/null; }; then
                rm -rf "$dir"
                meson setup "$dir" -Dwerror=true "$@" >/dev/null
        fi
        ninja -C "$dir"
}

setup build
rc=0
meson test -C build --print-errorlogs "$@" || rc=$?
if [ "$postgresql" -eq 1 ]; then
        # The store's own tests on PostgreSQL (test-store-postgresql) ran above; these wait on the
        # database more than they compute, so one more at a time than cores.
        meson test -C build --setup=postgresql --print-errorlogs --suite integration --suite pam \
                --num-processes "$(( $(nproc) + 1 ))" "$@" || rc=$?
fi
if [ "$sanitizers" -eq 1 ]; then
        # bench/ too (-Dbench=true): built, not run (its smoke test is suite bench), so that
        # the benchmark code cannot stop compiling unseen.
        setup build-asan -Db_sanitize=address,undefined -Dbench=true
        meson test -C build-asan --print-errorlogs --suite unit --suite integration --suite fuzz-regress "$@" || rc=$?
fi
exit "$rc"
