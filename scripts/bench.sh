#!/usr/bin/env bash
# Runs every registered bench case (command x scenario x scale 1x/10x/100x) over the in-memory target and prints one
# table: KD packets, bytes and modelled KDNET seconds of the command vs. the manual procedure it replaces, counted the
# same way on both sides (docs/bench.md).
# Usage: scripts/bench.sh [--command NAME] [--scenario NAME] [--build KEY] [--scales 1,10,100]
# Needs ../shared beside the repository (or NTSLEUTH_SHARED=/path/to/shared).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dotnet build Extension.Tests/Lab/NtSleuth.Lab.csproj -c Release -nologo -v quiet >/dev/null
exec dotnet "Extension.Tests/Lab/bin/Release/net10.0/NtSleuth.Lab.dll" bench "$@"
