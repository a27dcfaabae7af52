#!/usr/bin/env bash
# Installs the Debian 12 packages idm needs to build and test, when any is missing.
# Sourced by run.sh and test.sh; safe to run again (does nothing when all are present).
set -euo pipefail

IDM_BUILD_DEPS=(
        meson ninja-build pkg-config gcc
        libsodium-dev libargon2-dev liblmdb-dev libjansson-dev libsystemd-dev libinih-dev libpam0g-dev
        # The PostgreSQL store's client library (idmd/store-pg.c).
        libpq-dev
        # Optional for the build (meson option maxminddb): [locales] maxmind_db, and its tests.
        libmaxminddb-dev
        # Optional for the build (meson option qrencode): pam_idm's qr option.
        libqrencode-dev
)
# Not needed to build: what the tour in README.md uses besides idm itself (jq for the values one
# command hands the next, socat for raw JSON-RPC, PyJWT for the offline token check). run.sh
# installs IDM_BUILD_DEPS only, so they are part of it: where ./run.sh ran, the tour works.
IDM_TOUR_DEPS=(jq socat python3 python3-jwt python3-cryptography)
IDM_BUILD_DEPS+=("${IDM_TOUR_DEPS[@]}")
IDM_TEST_DEPS=(
        python3 python3-jwt python3-cryptography python3-prometheus-client lmdb-utils systemd util-linux zbar-tools
        libpam-wrapper libpamtest0-dev pamtester libnss-wrapper openssh-server openssh-client sshpass
        valgrind
        # The throwaway PostgreSQL clusters of the PostgreSQL store's tests (tests/pg/).
        postgresql-15
        # tools/build-deb.sh, run by tests/pam/test_deb.py: the Debian packages and their check
        # (dpkg-buildpackage wants build-essential installed, as every Debian build does).
        build-essential dpkg-dev debhelper lintian git
)

idm_install_deps() {
        local want=("$@") missing=()
        for p in "${want[@]}"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        [ ${#missing[@]} -eq 0 ] && return 0
        echo "Installing missing packages: ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        # Wait for another apt (unattended-upgrades on a fresh machine) rather than fail at once.
        local wait=(-o DPkg::Lock::Timeout=600 -o Acquire::Lock::Timeout=600)
        "${sudo[@]}" apt-get "${wait[@]}" update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get "${wait[@]}" install -y -qq --no-install-recommends \
                "${missing[@]}" >&2
}
