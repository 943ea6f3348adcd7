#!/usr/bin/env bash
# The README's main command: installs what is missing, builds ntsleuth.dll and the managed extension, makes the
# sample dumps (lab scenarios of the seed case studies, with forged symbols) and runs every sample's commands with
# the extension loaded in Microsoft's real debugger engine (dbgeng.dll under wine), printing the output.
#   scripts/demo.sh [OUTDIR]        (default: out/samples)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/out/samples}"
"$ROOT/scripts/setup-linux.sh"
dotnet build "$ROOT/NtSleuthExt.sln" -c Release -nologo -v q
"$ROOT/scripts/make-samples.sh" "$OUT"
"$ROOT/scripts/run-samples.sh" "$OUT"
