#!/usr/bin/env bash
# Installs missing build and test dependencies, builds idm into build/ and runs the whole test
# suite (unit, integration, pam, slow). Extra arguments go to `meson test`.
set -euo pipefail
cd "$(dirname "$0")"
. tools/deps.sh
idm_install_deps "${IDM_BUILD_DEPS[@]}" "${IDM_TEST_DEPS[@]}"

# The tests build with warnings as errors, as CI must.
# Any state of build/ will do: reconfigure it, or start it afresh if that fails.
if ! { [ -f build/build.ninja ] && meson setup --reconfigure build -Dwerror=true >/dev/null; }; then
        rm -rf build
        meson setup build -Dwerror=true >/dev/null
fi
ninja -C build
exec meson test -C build --print-errorlogs "$@"
