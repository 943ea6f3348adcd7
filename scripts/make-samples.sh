#!/usr/bin/env bash
# Writes the lab's scenario dumps, their forged symbols and OUTDIR/manifest.json (issue 3, item 6).
#   scripts/make-samples.sh OUTDIR [--builds 7601,19041|win7,win10] [--all-builds] [--scenarios a,b] [--bitmap]
#                           [--variants v,w]  (these variants instead of each scenario's sample variants; plain =
#                           none; e.g. --scenarios pool-leak --variants images-present,image-pages-missing)
# Needs ../shared/realdata (symbol tables) and clang-cl-14/llvm-mc-14/lld-link-14 (scripts/setup-linux.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--builds 7601,19041] [--all-builds] [--scenarios a,b] [--variants v,w] [--bitmap]" >&2; exit 2; }
OUT="$1"; shift
cd "$ROOT"
exec dotnet run --project Extension.Tests/Lab -c Release -- make-samples "$OUT" "$@"
