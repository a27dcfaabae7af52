#!/usr/bin/env bash
# Quick start: installs missing build dependencies, builds idm into build/ and runs idmd in the
# foreground with the embedded defaults, its socket and state under ./run/. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")"
. tools/deps.sh
idm_install_deps "${IDM_BUILD_DEPS[@]}"

# Any state of build/ will do: reconfigure it, or start it afresh if that fails.
if ! { [ -f build/build.ninja ] && meson setup --reconfigure build >/dev/null; }; then
        rm -rf build
        meson setup build >/dev/null
fi
ninja -C build

mkdir -p run
sock="$PWD/run/socket"
cat <<MSG

idmd is starting in the foreground (Ctrl-C stops it).
  socket:     $sock
  state:      $PWD/run/state
Try, in another terminal:
  build/idmctl/idmctl --socket $sock status
  build/idmctl/idmctl --socket $sock publisher create "My Publisher" --redirect-uri https://app.example.com/cb

MSG
# --config /dev/null: the embedded defaults, whatever /etc/idm holds on this machine.
exec build/idmd/idmd --config /dev/null --state-dir "$PWD/run/state" --socket "$sock" --foreground
