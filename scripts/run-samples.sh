#!/usr/bin/env bash
# Runs every sample of OUTDIR/manifest.json in Microsoft's real engine (dbgeng.dll under wine64 on Linux):
# .load <package>\ntsleuth.dll, then the sample's commands; prints the output.
#   scripts/run-samples.sh OUTDIR [--config Debug|Release] [--only NAME-SUBSTRING] [--timeout SECONDS] [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--config Debug|Release] [--only NAME] [--timeout S] [--no-build]" >&2; exit 2; }
OUT="$(cd "$1" && pwd)"; shift
CONFIG=Release; ONLY=""; TIMEOUT=300; BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG="$2"; shift;;
    --only) ONLY="$2"; shift;;
    --timeout) TIMEOUT="$2"; shift;;
    --no-build) BUILD=0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
[ -f "$OUT/manifest.json" ] || { echo "$OUT/manifest.json missing (scripts/make-samples.sh $OUT)" >&2; exit 1; }
PKG="$OUT/.ntsleuth-package"
if [ $BUILD -eq 1 ] || [ ! -f "$PKG/amd64/ntsleuth.dll" ]; then
  "$ROOT/scripts/package.sh" "$PKG" --with-runtime --config "$CONFIG" --no-zip >&2
fi
# shellcheck source=engine-env.sh
. "$ROOT/scripts/engine-env.sh"
ntsleuth_engine_env || exit 1
DLL="$(winpath "$PKG/amd64/ntsleuth.dll")"
# One sample per line: name<TAB>dump<TAB>symbolPath<TAB>cmd1<TAB>cmd2...
mapfile -t SAMPLES < <(python3 - "$OUT/manifest.json" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1]))["samples"]:
    print("\t".join([s["name"], s["dump"], s["symbolPath"]] + s["commands"]))
PY
)
fail=0
for line in "${SAMPLES[@]}"; do
  IFS=$'\t' read -r -a F <<< "$line"
  name="${F[0]}"; dump="$OUT/${F[1]}"; sym="$OUT/${F[2]}"
  [ -z "$ONLY" ] || [[ "$name" == *"$ONLY"* ]] || continue
  # The symbol path is the sample's own small folder, never a big one (the engine would spin for minutes).
  args=(-engine "$(winpath "$ENGINE")" -z "$(winpath "$dump")" -y "$(winpath "$sym")" -timeout "$((TIMEOUT * 1000))" -c ".load $DLL")
  for c in "${F[@]:3}"; do args+=(-c "$c"); done
  echo "===== $name ($(du -h "$dump" | cut -f1)) ====="
  start=$(date +%s.%N)
  if ! "${RUN[@]}" "${args[@]}" 2>&1 | awk '/^Loading Dump File/{on=1} on' | tr -d '\r' | sed -e '/^@@end /d' -e '/^@@host /d' -e 's/^@@begin /> /' | cat -s; then fail=$((fail + 1)); echo "!! $name: enginehost failed"; fi
  printf '%s: %.1f s\n\n' "$name" "$(echo "$(date +%s.%N) - $start" | bc)"
done
exit $fail
