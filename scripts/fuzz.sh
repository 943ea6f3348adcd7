#!/usr/bin/env bash
# A corrupted-memory campaign in Microsoft's real engine (issue 20, item 3): mutates the kernel samples of OUTDIR (made by
# scripts/make-samples.sh) reproducibly from (sample, strategy, seed), runs every sample command on each mutant through
# IDebugControl::Execute and ::CallExtension in text, DML and -json, and prints figures per command and per class.
#   scripts/fuzz.sh OUTDIR [--mutants N] [--seed S] [--only NAME] [--all-modes] [--strategies a,b] [--timeout-ms MS] [--keep]
# Exit 3 when any run is not ok (crash, hang, leaked exception, injection, bad JSON). Failing mutants stay in the work dir.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [fuzz options: dotnet run --project Extension.Tests/Lab -- fuzz]" >&2; exit 2; }
OUT="$(cd "$1" && pwd)"; shift
[ -f "$OUT/manifest.json" ] || { echo "$OUT/manifest.json missing (scripts/make-samples.sh $OUT)" >&2; exit 1; }
CONFIG=Release
PKG="$OUT/.ntsleuth-package"
"$ROOT/scripts/package.sh" "$PKG" --with-runtime --config "$CONFIG" --no-zip >&2
# shellcheck source=engine-env.sh
. "$ROOT/scripts/engine-env.sh"
ntsleuth_engine_env || exit 1
if [ "$ONWIN" -eq 0 ]; then "$WINESERVER" -p120 2>/dev/null || true; WINEARG=(--wine "$WINE"); else WINEARG=(); fi
exec dotnet run --project "$ROOT/Extension.Tests/Lab" -c "$CONFIG" -- fuzz --samples "$OUT" --engine "$(winpath "$ENGINE")" \
  --host "$HOSTEXE" --dll "$(winpath "$PKG/amd64/ntsleuth.dll")" "${WINEARG[@]}" "$@"
