#!/usr/bin/env bash
# The README's main command: installs what is missing, builds ntsleuth.dll and the managed extension, makes the
# sample dumps (lab scenarios of the seed case studies, with forged symbols) and runs every sample's commands with
# the extension loaded in Microsoft's real debugger engine (dbgeng.dll under wine), printing the output; then the lab
# runner triages the whole sample folder (scripts/triage) and prints where the report is.
#   scripts/demo.sh [OUTDIR]        (default: out/samples)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/out/samples}"
"$ROOT/scripts/setup-linux.sh"
dotnet build "$ROOT/NtSleuthExt.sln" -c Release -nologo -v q
"$ROOT/scripts/make-samples.sh" "$OUT"
"$ROOT/scripts/run-samples.sh" "$OUT"
echo "===== lab run: scripts/triage $OUT -o $OUT/triage ====="
rc=0; "$ROOT/scripts/triage" "$OUT" -o "$OUT/triage" --fail-on critical --package "$OUT/.ntsleuth-package" || rc=$?
echo "Report: $OUT/triage/report.html (also report.md; one JSON record per dump in $OUT/triage/triage.jsonl)"
echo "triage exit status $rc (1 = a critical finding, as the seed samples have; see docs/triage.md)"
