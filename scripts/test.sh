#!/usr/bin/env bash
# The README's test command: installs what is missing (idempotent), builds the solution (incl. the native shim with
# mingw-w64), then runs all tests with the end-to-end tier REQUIRED (NTSLEUTH_REQUIRE_E2E=1: missing wine/mingw fail).
#   scripts/test.sh [extra dotnet test args, e.g. --filter TestCategory=EndToEnd]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup-linux.sh"
. "$ROOT/scripts/wine-env.sh"
"$WINESERVER" -p120 2>/dev/null || true   # keep one wineserver warm for the whole run
mkdir -p "$ROOT/artifacts"
dotnet build NtSleuthExt.sln -nologo -v q
export NTSLEUTH_REQUIRE_E2E=1
start=$(date +%s)
set +e
dotnet test NtSleuthExt.sln --no-build -nologo --logger "console;verbosity=minimal" "$@" 2>&1 | tee "$ROOT/artifacts/test.log"
rc=${PIPESTATUS[0]}
set -e
echo "exports of ntsleuth.dll:"
x86_64-w64-mingw32-objdump -p "$ROOT/Extension/bin/Debug/net10.0/ntsleuth.dll" | sed -n '/Ordinal\/Name Pointer/,/^$/p' | tail -n +2
echo "==== test summary ($(( $(date +%s) - start )) s) ===="
grep -E "^(Passed|Failed)!|Total tests|Passed:|Failed:|Skipped:" "$ROOT/artifacts/test.log" || true
# One plain closing line, summed over the test assemblies: "N passed, N failed, N skipped".
sed -nE 's/.*Failed: *([0-9]+), Passed: *([0-9]+), Skipped: *([0-9]+).*/\1 \2 \3/p' "$ROOT/artifacts/test.log" |
  awk '{f+=$1; p+=$2; s+=$3} END {printf "tests: %d passed, %d failed, %d skipped\n", p, f, s}' 
exit $rc
