#!/usr/bin/env bash
# Installs missing build and test dependencies, builds idm into build/ and runs the whole test
# suite (unit, integration, pam, slow, fuzz-regress). Extra arguments go to `meson test`.
#
#   ./test.sh --sanitizers [ARGS]   then also builds build-asan/ with ASan and UBSan and runs the
#                                   unit, integration and fuzz-regress suites there (what CI runs;
#                                   the PAM suites run once, under valgrind, in the first run).
set -euo pipefail
cd "$(dirname "$0")"
sanitizers=0
if [ "${1:-}" = "--sanitizers" ]; then
        sanitizers=1
        shift
fi
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
if [ "$sanitizers" -eq 0 ]; then
        exec meson test -C build --print-errorlogs "$@"
fi
rc=0
meson test -C build --print-errorlogs "$@" || rc=$?
setup build-asan -Db_sanitize=address,undefined
meson test -C build-asan --print-errorlogs --suite unit --suite integration --suite fuzz-regress "$@" || rc=$?
exit "$rc"
