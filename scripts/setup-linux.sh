#!/usr/bin/env bash
# Installs (only) what is missing to build the native shim and run the end-to-end tier under wine (Debian/Ubuntu).
# Idempotent: apt-get runs only when a package is missing.
set -euo pipefail
# chromium: the headless browser that opens the triage HTML report in the tests and takes the README screenshot.
PKGS=(gcc-mingw-w64-x86-64 wine64 clang-14 lld-14 llvm-14 xz-utils chromium)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-linux: all present (${PKGS[*]})"
else
  echo "setup-linux: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
if ! command -v dotnet >/dev/null 2>&1; then
  echo "setup-linux: the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH" >&2
  exit 1
fi
# Create the wine prefix once (fast no-op afterwards).
. "$(dirname "${BASH_SOURCE[0]}")/wine-env.sh"
