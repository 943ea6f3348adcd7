#!/usr/bin/env bash
# Crash campaign in Microsoft's real engine (issue 20; docs/real-engine-lab.md): N sessions of one sample, each
# running COMMAND REPEAT times in one enginehost process; counts the sessions that died.
#   scripts/crash-campaign.sh PKGDIR SAMPLESDIR SAMPLE N REPEAT 'COMMAND' [ENV=VALUE ...]
# PKGDIR from scripts/package.sh PKGDIR --with-runtime --config Release --no-zip; SAMPLESDIR from
# scripts/make-samples.sh SAMPLESDIR; ENV=VALUE pairs go into the engine's environment (e.g.
# DOTNET_EnableWriteXorExecute=1 to ask for W^X: the shim overrides it while .NET starts, so this shows no crash).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 6 ] || { sed -n 2,7p "$0" >&2; exit 2; }
PKG=$1; S=$2; name=$3; N=$4; rep=$5; cmd=$6; shift 6
. "$ROOT/scripts/wine-env.sh"
unset DOTNET_ROOT _NT_SYMBOL_PATH
ENGINE=$(ls -d "$HOME"/.nuget/packages/microsoft.debugging.platform.dbgeng/*/content/amd64 | tail -1)
HOST=$(ls "$ROOT"/Extension/bin/*/net10.0/enginehost.exe | head -1)
wp() { local p; p=$(readlink -f "$1"); echo "Z:${p//\//\\}"; }
crash=0
for s in $(seq 1 "$N"); do
  args=(-engine "$(wp "$ENGINE")" -z "$(wp "$S/dumps/$name.dmp")" -y "$(wp "$S/symbols/$name")" -timeout 7200000 -mem
        -c ".load $(wp "$PKG/ntsleuth.dll")")
  for i in $(seq 1 "$rep"); do args+=(-c "$cmd"); done
  t0=$(date +%s)
  out=$(env "$@" "$WINE" "$HOST" "${args[@]}" 2>&1); rc=$?
  n=$(grep -c '^@@end' <<<"$out")
  mem=$(grep '^@@mem' <<<"$out" | sed -n '2p;$p' | awk '{printf "%.1f MB ", $2/1048576}')
  if [ $rc -ne 0 ] || grep -q 'Fatal error' <<<"$out"; then
    crash=$((crash+1))
    echo "session $s: CRASH (exit $rc) after $((n-1)) runs: $(grep -A3 'Fatal error' <<<"$out" | tr '\n' ' ' | cut -c1-200)"
  else
    echo "session $s: ok, $((n-1)) runs in $(( $(date +%s) - t0 )) s, private bytes first/last run: $mem"
  fi
done
echo "RESULT $name '$cmd' x$rep env[$*]: $crash/$N sessions crashed"
