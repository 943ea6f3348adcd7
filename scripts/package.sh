#!/usr/bin/env bash
# Makes the user package, laid out as a WinDbg extension-gallery package: OUTDIR/GalleryManifest.xml
# (scripts/gallery-manifest.sh) and OUTDIR/amd64/ with ntsleuth.dll, its !analyze plug-in metadata ntsleuth.alz, nethost.dll, the managed NtSleuth.*.dll files, Iced.dll and their
# runtimeconfig/deps json; with --with-runtime also an app-local .NET runtime "dotnet/" (a dotnet root:
# host/fxr/<v>/hostfxr.dll + shared/Microsoft.NETCore.App/<v>/...) from the Microsoft.NETCore.App.Runtime.win-x64 pack.
# The managed assemblies (NtSleuth.*.dll, Iced.dll) are ReadyToRun images for win-x64 (crossgen2 through
# `dotnet publish -r win-x64 -p:PublishReadyToRun=true`, run even with --no-build): a command's first run then JITs a
# fifth of the methods (docs/bench.md "First runs"). --no-r2r ships the IL-only assemblies of the plain build.
#   scripts/package.sh [OUTDIR] [--with-runtime] [--config Debug|Release] [--no-build] [--no-zip] [--no-r2r]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=""; WITH_RUNTIME=0; CONFIG=Release; BUILD=1; ZIP=1; R2R=1
while [ $# -gt 0 ]; do
  case "$1" in
    --with-runtime) WITH_RUNTIME=1;;
    --config) CONFIG="$2"; shift;;
    --no-build) BUILD=0;;
    --no-zip) ZIP=0;;
    --no-r2r) R2R=0;;
    -*) echo "unknown option $1" >&2; exit 2;;
    *) OUT="$1";;
  esac; shift
done
OUT="${OUT:-$ROOT/artifacts/ntsleuth}"
if [ $BUILD -eq 1 ]; then dotnet build "$ROOT/Extension/NtSleuth.Extension.csproj" -c "$CONFIG" -nologo -v q; fi
BIN="$ROOT/Extension/bin/$CONFIG/net10.0"
for f in ntsleuth.dll ntsleuth.alz nethost.dll NtSleuth.Extension.dll Iced.dll NtSleuth.Extension.runtimeconfig.json NtSleuth.Extension.deps.json; do
  [ -f "$BIN/$f" ] || { echo "package: $BIN/$f missing (build with mingw-w64 installed: scripts/setup-linux.sh)" >&2; exit 1; }
done
rm -rf "$OUT"; mkdir -p "$OUT/amd64"
PKG="$OUT"; OUT="$OUT/amd64"
# ntsleuth.alz beside ntsleuth.dll: !analyze finds the plug-in by it (docs/analyze.md).
# Iced.dll: the x86-64 decoder NtSleuth.Commands uses (NuGet Iced; listed in the deps.json).
cp "$BIN"/ntsleuth.dll "$BIN"/ntsleuth.alz "$BIN"/nethost.dll "$BIN"/NtSleuth.*.dll "$BIN"/Iced.dll "$BIN"/NtSleuth.Extension.runtimeconfig.json "$BIN"/NtSleuth.Extension.deps.json "$OUT/"
cp "$BIN"/NtSleuth.*.pdb "$OUT/" 2>/dev/null || true
if [ $R2R -eq 1 ]; then
  # ReadyToRun: the win-x64 variant published with crossgen2 (restored by the SDK, its version chosen by the SDK) into
  # a staging folder; its managed files (and RID-specific deps.json) replace the IL-only ones. Framework-dependent:
  # the runtime (app-local or installed) stays the one the runtimeconfig rolls forward to.
  STAGE="$(mktemp -d)"
  trap 'rm -rf "$STAGE"' EXIT
  dotnet publish "$ROOT/Extension/NtSleuth.Extension.csproj" -c "$CONFIG" -r win-x64 --self-contained false \
    -p:PublishReadyToRun=true -o "$STAGE" -nologo -v q >"$STAGE.log" 2>&1 || { cat "$STAGE.log" >&2; rm -f "$STAGE.log"; echo "package: ReadyToRun publish failed" >&2; exit 1; }
  rm -f "$STAGE.log"
  cp "$STAGE"/NtSleuth.*.dll "$STAGE"/Iced.dll "$STAGE"/NtSleuth.Extension.deps.json "$STAGE"/NtSleuth.Extension.runtimeconfig.json "$OUT/"
  cp "$STAGE"/NtSleuth.*.pdb "$OUT/" 2>/dev/null || true
fi
if [ $WITH_RUNTIME -eq 1 ]; then
  PKGS="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
  RT="$(ls -d "$PKGS"/microsoft.netcore.app.runtime.win-x64/10.* 2>/dev/null | sort -V | tail -1)"
  [ -n "$RT" ] || { echo "package: Microsoft.NETCore.App.Runtime.win-x64 10.x not in $PKGS (dotnet build restores it)" >&2; exit 1; }
  V="$(basename "$RT")"
  mkdir -p "$OUT/dotnet/host/fxr/$V" "$OUT/dotnet/shared/Microsoft.NETCore.App/$V"
  cp "$RT/runtimes/win-x64/native/hostfxr.dll" "$OUT/dotnet/host/fxr/$V/"
  cp "$RT"/runtimes/win-x64/lib/net10.0/* "$OUT/dotnet/shared/Microsoft.NETCore.App/$V/"
  for f in "$RT"/runtimes/win-x64/native/*; do
    case "$(basename "$f")" in hostfxr.dll|createdump.exe|*.lib|*.pdb) ;; *) cp "$f" "$OUT/dotnet/shared/Microsoft.NETCore.App/$V/";; esac
  done
  cp "$RT/LICENSE.TXT" "$RT/THIRD-PARTY-NOTICES.TXT" "$OUT/dotnet/" 2>/dev/null || true
fi
OUT="$PKG"
"$ROOT/scripts/gallery-manifest.sh" "$OUT"
if [ $ZIP -eq 1 ] && command -v zip >/dev/null 2>&1; then
  (cd "$(dirname "$OUT")" && rm -f "$(basename "$OUT").zip" && zip -qr "$(basename "$OUT").zip" "$(basename "$OUT")")
  echo "package: $OUT.zip ($(du -h "$OUT.zip" | cut -f1))"
elif [ $ZIP -eq 1 ]; then
  (cd "$(dirname "$OUT")" && tar -czf "$(basename "$OUT").tar.gz" "$(basename "$OUT")")
  echo "package: $OUT.tar.gz ($(du -h "$OUT.tar.gz" | cut -f1)) (zip not installed)"
fi
echo "package: $OUT ($(du -sh "$OUT" | cut -f1))"
