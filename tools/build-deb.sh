#!/usr/bin/env bash
# Builds the Debian packages idmd and libpam-idm from the source tree as it is on disk (committed
# or not), checks them with lintian and leaves them in OUTDIR:
#
#   tools/build-deb.sh OUTDIR
#
# The files git lists (tracked, and untracked ones not ignored) are copied into a temporary
# directory with packaging/debian as debian/, and built there with `dpkg-buildpackage -b -us -uc`;
# nothing is written to the source tree except OUTDIR. OUTDIR receives the .deb files, the
# .changes and .buildinfo, and lintian.txt (lintian's report). Exits non-zero when the build
# fails or lintian reports an error. DEB_BUILD_OPTIONS defaults to "nocheck parallel=<cores>":
# the packages' build never runs the test suite (meson test does, and builds these packages).
set -euo pipefail

if [ $# -ne 1 ]; then
        echo "usage: $0 OUTDIR" >&2
        exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
for tool in dpkg-buildpackage dh lintian git; do
        if ! command -v "$tool" >/dev/null; then
                echo "$0: '$tool' not found: install dpkg-dev, debhelper, lintian and git" \
                     "(tools/deps.sh lists them; ./test.sh installs them)" >&2
                exit 1
        fi
done

# The package's version is the project's: meson.build and debian/changelog must agree.
version=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$src/meson.build" | head -n 1)
changelog_version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
if [ "$version" != "$changelog_version" ]; then
        echo "$0: meson.build says version '$version' but packaging/debian/changelog says" \
             "'$changelog_version': add a changelog entry (dch -v $version)" >&2
        exit 1
fi

mkdir -p "$1"
out=$(cd "$1" && pwd)
tmp=$(mktemp -d /tmp/idm-build-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tree="$tmp/idm-$version"
mkdir "$tree"

# What is on disk of what git lists; a tracked file deleted but not yet committed is left out.
(cd "$src" && git -c safe.directory="$src" ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
                if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
        done | tar --null --no-recursion --files-from=- -cf -) | tar -C "$tree" -xf -
rm -rf "$tree/debian"
cp -R "$src/packaging/debian" "$tree/debian"

export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-nocheck parallel=$(nproc)}"
(cd "$tree" && dpkg-buildpackage -b -us -uc)

changes="$tmp/idm_${version}_$(dpkg-architecture -q DEB_HOST_ARCH).changes"
# The report goes to OUTDIR and to the terminal; errors fail the build.
lintian_rc=0
lintian --display-info --fail-on error "$changes" >"$tmp/lintian.txt" 2>&1 || lintian_rc=$?
cat "$tmp/lintian.txt"
cp "$tmp"/*.deb "$changes" "$tmp"/*.buildinfo "$tmp/lintian.txt" "$out/"
if [ "$lintian_rc" -ne 0 ]; then
        echo "$0: lintian reported errors (exit $lintian_rc): see $out/lintian.txt" >&2
        exit 1
fi
echo "Packages in $out:"
(cd "$out" && ls -1 ./*.deb)
