#!/usr/bin/env bash
# Real-engine timing bench: every sample's commands and the built-in dbgeng commands that read the same data, in one
# engine session per command (Microsoft's dbgeng.dll; under wine64 on Linux). Prints first / warm ms and the ratio.
#   scripts/bench-engine.sh OUTDIR [--runs N] [--only NAME-SUBSTRING] [--config Debug|Release] [--timeout S] [--no-build]
# OUTDIR comes from scripts/make-samples.sh. Timings are printed, never asserted (machines are noisy).
# NTSLEUTH_BENCH_NO_WX=1 sets DOTNET_EnableWriteXorExecute=0 in the engine's environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--runs N] [--only NAME] [--config C] [--timeout S] [--no-build]" >&2; exit 2; }
OUT="$(cd "$1" && pwd)"; shift
RUNS=5; ONLY=""; CONFIG=Release; TIMEOUT=120; BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift;;
    --only) ONLY="$2"; shift;;
    --config) CONFIG="$2"; shift;;
    --timeout) TIMEOUT="$2"; shift;;
    --no-build) BUILD=0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
[ "$RUNS" -ge 2 ] || { echo "--runs must be >= 2 (first + warm)" >&2; exit 2; }
[ -f "$OUT/manifest.json" ] || { echo "$OUT/manifest.json missing (scripts/make-samples.sh $OUT)" >&2; exit 1; }
case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) echo "bench-engine.sh: run on Linux (wine); on Windows call bench-engine.py with enginehost.exe" >&2; exit 2;; esac
PKG="$OUT/.ntsleuth-package"
if [ $BUILD -eq 1 ] || [ ! -f "$PKG/amd64/ntsleuth.dll" ]; then
  "$ROOT/scripts/package.sh" "$PKG" --with-runtime --config "$CONFIG" --no-zip >&2
fi
# shellcheck source=engine-env.sh
. "$ROOT/scripts/engine-env.sh"
ntsleuth_engine_env || exit 1
[ "${NTSLEUTH_BENCH_NO_WX:-0}" = 1 ] && export DOTNET_EnableWriteXorExecute=0
"$WINESERVER" -p 2>/dev/null || true   # keep wineserver warm: every session then costs the engine, not wine's start
DLL="$(winpath "$PKG/amd64/ntsleuth.dll")"
# The host is run through wine: pass "wine enginehost.exe" as one argv prefix.
exec python3 "$ROOT/scripts/bench-engine.py" "$ROOT" "$OUT" "$HOSTEXE" "$ENGINE" "$DLL" "$RUNS" "$ONLY" "$TIMEOUT" --wine "$WINE"
