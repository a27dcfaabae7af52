#!/usr/bin/env bash
# Installs missing build and test dependencies, builds idm into build/ and runs the whole test
# suite (unit, integration, fuzz-regress). Extra arguments go to `meson test`.
set -euo pipefail
cd "$(dirname "$0")"
. tools/deps.sh
idm_install_deps "${IDM_BUILD_DEPS[@]}" "${IDM_TEST_DEPS[@]}"

if [ -f build/build.ninja ]; then
        meson setup --reconfigure build >/dev/null
else
        rm -rf build
        meson setup build >/dev/null
fi
ninja -C build
exec meson test -C build --print-errorlogs "$@"
