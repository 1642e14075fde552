#!/usr/bin/env bash
# Build the pullprint .deb from a clean copy of the tree and check it with lintian.
#
#   scripts/build-deb.sh            -> artifacts/deb/pullprint_<version>_<arch>.deb (+ .changes, lintian.txt)
#
# The copy holds the files git tracks, as a clean clone has them (TRACKED_ONLY=0 adds the
# untracked ones that are not ignored: work in progress), never .venv, caches or an old ./debian;
# packaging/debian is copied to ./debian there. Build dependencies missing on this machine are installed with apt (as root,
# idempotent). pip fetches the private environment's wheels at build time (network needed here,
# never at install time). Environment: OUT (default artifacts/deb), BUILD_DIR (default
# build/deb), LINTIAN=0 to skip lintian.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/artifacts/deb}
BUILD_DIR=${BUILD_DIR:-$ROOT/build/deb}
# pybuild takes the first python3.11 on PATH: it must be Debian's.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log() { echo "build-deb: $*" >&2; }

# -- build dependencies ------------------------------------------------------------------------
need=(dpkg-dev build-essential fakeroot lintian)
while read -r dep; do need+=("$dep"); done < <(
  sed -n '/^Build-Depends:/,/^[A-Z][A-Za-z-]*:/p' packaging/debian/control \
    | sed -e '1s/^Build-Depends://' -e '/^[A-Z][A-Za-z-]*:/d' | tr ',' '\n' \
    | sed -e 's/([^)]*)//g' -e 's/|.*//' -e 's/[[:space:]]//g' -e 's/^debhelper-compat$/debhelper/' \
    | grep -v '^$')
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing build dependencies: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || { log "not root: install them first: apt-get install ${missing[*]}"; exit 1; }
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- a clean copy of the tree ------------------------------------------------------------------
rm -rf "$BUILD_DIR"
src=$BUILD_DIR/pullprint
mkdir -p "$src" "$OUT"
others=
[ "${TRACKED_ONLY:-1}" = 0 ] && others=--others  # TRACKED_ONLY=0: also untracked work in progress
git ls-files -z --cached $others --exclude-standard \
  | grep -zv -e '^debian/' -e '^artifacts/' -e '^build/' \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$src"
rm -rf "$src/debian"
cp -a packaging/debian "$src/debian"
log "building in $src"

# -- build -------------------------------------------------------------------------------------
(cd "$src" && dpkg-buildpackage -us -uc -b) > "$BUILD_DIR/build.log" 2>&1 || {
  tail -n 60 "$BUILD_DIR/build.log" >&2
  log "dpkg-buildpackage failed; full log: $BUILD_DIR/build.log"
  exit 1
}
changes=$(ls "$BUILD_DIR"/pullprint_*.changes)
rm -f "$OUT"/pullprint_*
cp "$BUILD_DIR"/pullprint_*.deb "$BUILD_DIR"/pullprint_*.changes "$BUILD_DIR"/pullprint_*.buildinfo "$OUT"/
cp "$BUILD_DIR/build.log" "$OUT/build.log"
deb=$(ls "$OUT"/pullprint_*.deb)
log "built $deb ($(du -h "$deb" | cut -f1))"

# -- lintian: no errors ------------------------------------------------------------------------
if [ "${LINTIAN:-1}" != 0 ]; then
  lintian --info --display-info --show-overrides "$changes" > "$OUT/lintian.txt" 2>&1 || true
  errors=$(grep -c '^E: ' "$OUT/lintian.txt" || true)
  warnings=$(grep -c '^W: ' "$OUT/lintian.txt" || true)
  log "lintian: $errors errors, $warnings warnings (all tags in $OUT/lintian.txt)"
  if [ "$errors" -gt 0 ]; then
    grep '^E: ' "$OUT/lintian.txt" >&2
    exit 1
  fi
fi
echo "$deb"
