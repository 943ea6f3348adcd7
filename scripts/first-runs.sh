#!/usr/bin/env bash
# First and warm runs of the seven commands of issue 15 in Microsoft's real engine (under wine64 on Linux), one fresh
# engine session per command and repetition; prints the median `.load`, first run and warm run per command.
#   scripts/first-runs.sh OUTDIR [--sessions N] [--runs R] [--only NAME] [--config Debug|Release] [--bin DIR]
# OUTDIR comes from scripts/make-samples.sh. Uses the extension as built (Extension/bin/CONFIG/net10.0/ntsleuth.dll),
# or the files in DIR (e.g. the amd64/ folder of scripts/package.sh, ReadyToRun).
# NTSLEUTH_PROFILE=1 in the environment adds each command's first-run engine-call profile. Timings are printed, never
# asserted (machines are noisy). docs/bench.md "First runs" has the figures and how they were taken.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--sessions N] [--runs R] [--only NAME] [--config C]" >&2; exit 2; }
OUT="$(cd "$1" && pwd)"; shift
SESSIONS=3; RUNS=4; ONLY=""; CONFIG=Debug; BINDIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sessions) SESSIONS="$2"; shift;;
    --runs) RUNS="$2"; shift;;
    --only) ONLY="$2"; shift;;
    --config) CONFIG="$2"; shift;;
    --bin) BINDIR="$2"; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
[ -f "$OUT/manifest.json" ] || { echo "$OUT/manifest.json missing (scripts/make-samples.sh $OUT)" >&2; exit 1; }
# shellcheck source=engine-env.sh
. "$ROOT/scripts/engine-env.sh"
ntsleuth_engine_env || exit 1
# The extension laid out as users get it: the built files plus the app-local runtime (dotnet\), linked, not copied.
BIN="${BINDIR:-$ROOT/Extension/bin/$CONFIG/net10.0}"
[ -f "$BIN/ntsleuth.dll" ] || { echo "$BIN/ntsleuth.dll missing (dotnet build NtSleuthExt.sln -c $CONFIG)" >&2; exit 1; }
RT="$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/ntsleuth/runtime/10.* 2>/dev/null | sort -V | tail -1 || true)"
[ -n "$RT" ] || { echo "no win-x64 runtime layout under ~/.cache/ntsleuth/runtime (run one end-to-end test, or scripts/package.sh --with-runtime)" >&2; exit 1; }
PKG="$OUT/.first-runs-$CONFIG${BINDIR:+-$(basename "$BINDIR")}"
rm -rf "$PKG"; mkdir -p "$PKG"
for f in "$BIN"/*.dll "$BIN"/ntsleuth.alz "$BIN"/NtSleuth.Extension.runtimeconfig.json "$BIN"/NtSleuth.Extension.deps.json; do
  [ -f "$f" ] && cp "$f" "$PKG/"
done
if [ "$ONWIN" -eq 0 ]; then ln -s "$RT" "$PKG/dotnet"; else cp -r "$RT" "$PKG/dotnet"; fi
DLL="$(winpath "$PKG/ntsleuth.dll")"
if [ "$ONWIN" -eq 0 ]; then
  "$WINESERVER" -p 2>/dev/null || true   # keep wineserver warm: every session then costs the engine, not wine's start
  exec python3 "$ROOT/scripts/first-runs.py" "$ROOT" "$OUT" "$HOSTEXE" "$ENGINE" "$DLL" "$SESSIONS" "$RUNS" "$ONLY" --wine "$WINE"
fi
exec python3 "$ROOT/scripts/first-runs.py" "$ROOT" "$OUT" "$HOSTEXE" "$ENGINE" "$DLL" "$SESSIONS" "$RUNS" "$ONLY"
