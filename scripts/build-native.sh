#!/usr/bin/env bash
# Builds the native pieces with mingw-w64 into OUTDIR (default: Native/bin):
#   enginehost.exe (test host for the real dbgeng.dll) and, when present, ntsleuth.dll (+ ntsleuth.alz beside it).
# The normal `dotnet build` does the same through Native/Native.targets; this script is for quick manual use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/Native/bin}"
CC="${CC:-x86_64-w64-mingw32-gcc}"
mkdir -p "$OUT"
"$CC" -O2 -Wall -s -o "$OUT/enginehost.exe" "$ROOT/Native/enginehost/enginehost.c"
if [ -f "$ROOT/Native/ntsleuth.c" ]; then
  HOSTINC="$(ls -d "${NUGET_PACKAGES:-$HOME/.nuget/packages}"/microsoft.netcore.app.host.win-x64/10.*/runtimes/win-x64/native 2>/dev/null | sort -V | tail -1)"
  "$CC" -O2 -Wall -s -shared -I"$HOSTINC" -o "$OUT/ntsleuth.dll" "$ROOT/Native/ntsleuth.c" "$ROOT/Native/ntsleuth.def"
  [ -n "$HOSTINC" ] && cp -f "$HOSTINC/nethost.dll" "$OUT/"
  cp -f "$ROOT/Native/ntsleuth.alz" "$OUT/"   # the !analyze plug-in metadata goes beside the DLL (docs/analyze.md)
fi
echo "built into $OUT"
