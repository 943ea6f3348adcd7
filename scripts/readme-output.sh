#!/usr/bin/env bash
# README's "What it prints" blocks, produced from the samples in Microsoft's real engine (issue 19, item 4).
#   scripts/readme-output.sh SAMPLES [--check] [--screenshot] [--config Debug|Release] [--no-build] [--package DIR]
# SAMPLES comes from scripts/make-samples.sh. Without --check it rewrites the blocks; --check exits 1 with a diff when
# README.md differs from what the samples print now (a test runs it). --screenshot also renders docs/img/triage-report.png.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 SAMPLES [--check] [--screenshot] [--config C] [--no-build]" >&2; exit 2; }
OUT="$(cd "$1" && pwd)"; shift
CONFIG=Release; BUILD=1; PASS=(); PKG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG="$2"; shift;;
    --no-build) BUILD=0;;
    --package) PKG="$2"; shift;;
    --check|--screenshot) PASS+=("$1");;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
[ -f "$OUT/manifest.json" ] || { echo "$OUT/manifest.json missing (scripts/make-samples.sh $OUT)" >&2; exit 1; }
# --package: a gallery package (module in amd64/) or a flat module folder, used as it is.
if [ -n "$PKG" ]; then
  DLLFILE="$PKG/amd64/ntsleuth.dll"; [ -f "$DLLFILE" ] || DLLFILE="$PKG/ntsleuth.dll"
  [ -f "$DLLFILE" ] || { echo "no ntsleuth.dll in $PKG" >&2; exit 1; }
else
  PKG="$OUT/.ntsleuth-package"; DLLFILE="$PKG/amd64/ntsleuth.dll"
  if [ $BUILD -eq 1 ] || [ ! -f "$DLLFILE" ]; then
    "$ROOT/scripts/package.sh" "$PKG" --with-runtime --config "$CONFIG" $([ $BUILD -eq 0 ] && echo --no-build) --no-zip >&2
  fi
fi
# shellcheck source=engine-env.sh
. "$ROOT/scripts/engine-env.sh"
ntsleuth_engine_env || exit 1
exec python3 "$ROOT/scripts/readme_output.py" --root "$ROOT" --samples "$OUT" --enginehost "$HOSTEXE" \
  --engine "$(winpath "$ENGINE")" --dll "$(winpath "$DLLFILE")" --wine "${WINE:-}" --config "$CONFIG" "${PASS[@]}"
