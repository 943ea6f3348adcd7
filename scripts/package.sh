#!/usr/bin/env bash
# Builds the user package of NtSleuthExt: a folder (and a zip) to copy next to the debugger:
#   ntsleuth.dll nethost.dll NtSleuth.Extension.dll NtSleuth.Commands.dll *.runtimeconfig.json *.deps.json
# and, with --with-runtime, an app-local .NET runtime in dotnet/ (host/fxr/<v>/hostfxr.dll +
# shared/Microsoft.NETCore.App/<v>/) taken from the Microsoft.NETCore.App.Runtime.win-x64 NuGet pack.
# usage: scripts/package.sh [OUTDIR] [--with-runtime] [--no-build] [--configuration Debug|Release]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/out/package"
with_runtime=0
build=1
config=Release
while [ $# -gt 0 ]; do
    case "$1" in
        --with-runtime) with_runtime=1 ;;
        --no-build) build=0 ;;
        --configuration|-c) config="$2"; shift ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) out="$1" ;;
    esac
    shift
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ "$build" = 1 ]; then
    dotnet build "$root/Extension/NtSleuth.Extension.csproj" -c "$config" -nologo -v q -clp:ErrorsOnly >&2
fi
bin="$root/Extension/bin/$config/net10.0"
[ -f "$bin/ntsleuth.dll" ] || { echo "ntsleuth.dll not built in $bin (is mingw-w64 installed? scripts/setup-linux.sh)" >&2; exit 1; }
pkg="$out/ntsleuth"
rm -rf "$pkg"
mkdir -p "$pkg"
cp "$bin"/ntsleuth.dll "$bin"/nethost.dll "$bin"/NtSleuth.*.dll "$bin"/NtSleuth.Extension.runtimeconfig.json "$bin"/NtSleuth.Extension.deps.json "$pkg"/
if [ "$with_runtime" = 1 ]; then
    pkgs="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
    ver="$(dotnet --list-runtimes | awk '/Microsoft.NETCore.App/ {print $2}' | sort -V | tail -1)"
    rt="$pkgs/microsoft.netcore.app.runtime.win-x64/$ver/runtimes/win-x64"
    if [ ! -d "$rt" ]; then
        # Restore the runtime pack through NuGet (PackageDownload) once.
        tmp="$(mktemp -d)"
        cat > "$tmp/rt.csproj" <<EOP
<Project Sdk="Microsoft.NET.Sdk"><PropertyGroup><TargetFramework>net10.0</TargetFramework></PropertyGroup>
<ItemGroup><PackageDownload Include="Microsoft.NETCore.App.Runtime.win-x64" Version="[$ver]" /></ItemGroup></Project>
EOP
        dotnet restore "$tmp/rt.csproj" -v q >&2
        rm -rf "$tmp"
    fi
    [ -d "$rt" ] || { echo "runtime pack $ver not found at $rt" >&2; exit 1; }
    mkdir -p "$pkg/dotnet/host/fxr/$ver" "$pkg/dotnet/shared/Microsoft.NETCore.App/$ver"
    cp "$rt/native/hostfxr.dll" "$pkg/dotnet/host/fxr/$ver/"
    cp "$rt"/lib/net10.0/* "$pkg/dotnet/shared/Microsoft.NETCore.App/$ver/"
    find "$rt/native" -maxdepth 1 -type f ! -name hostfxr.dll ! -name '*.pdb' ! -name '*.lib' -exec cp {} "$pkg/dotnet/shared/Microsoft.NETCore.App/$ver/" \;
fi
( cd "$out" && rm -f ntsleuth.zip && if command -v zip >/dev/null; then zip -qr ntsleuth.zip ntsleuth; else python3 -m zipfile -c ntsleuth.zip ntsleuth; fi )
echo "$pkg"
