#!/usr/bin/env bash
# Writes PKGDIR/GalleryManifest.xml, the WinDbg extension-gallery manifest of the package laid out by package.sh
# (PKGDIR/amd64/ntsleuth.dll + what it needs). Sources, never a hand-kept second list:
#   commands  <- Native/ntsleuth.def (every export except the DebugExtension* callbacks and _EFN_* extension functions)
#   version   <- <Version> in Directory.Build.props
#   files     <- the files actually present in PKGDIR/amd64: dll, json, and ntsleuth.alz (the !analyze plug-in metadata);
#                the app-local runtime dotnet/ is found by the shim itself
#   scripts/gallery-manifest.sh PKGDIR
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="${1:?usage: gallery-manifest.sh PKGDIR}"
ARCH=amd64
[ -f "$PKG/$ARCH/ntsleuth.dll" ] || { echo "gallery-manifest: $PKG/$ARCH/ntsleuth.dll missing" >&2; exit 1; }
VER="$(sed -n 's:.*<Version>\([^<]*\)</Version>.*:\1:p' "$ROOT/Directory.Build.props" | head -1)"
[ -n "$VER" ] || { echo "gallery-manifest: no <Version> in Directory.Build.props" >&2; exit 1; }
MODULE="$(awk 'toupper($1)=="LIBRARY"{print $2; exit}' "$ROOT/Native/ntsleuth.def")"
mapfile -t CMDS < <(awk 'toupper($1)=="EXPORTS"{e=1; next} e && NF && $1 !~ /^;/ && $1 !~ /^DebugExtension/ && $1 !~ /^_EFN_/ {print $1}' "$ROOT/Native/ntsleuth.def" | tr -d '\r')
[ ${#CMDS[@]} -gt 0 ] || { echo "gallery-manifest: no commands exported in Native/ntsleuth.def" >&2; exit 1; }
{
  echo '<?xml version="1.0" encoding="utf-8"?>'
  echo '<ExtensionPackage>'
  echo "  <Name>NtSleuth</Name>"
  echo "  <Version>$VER</Version>"
  echo "  <Description>Windows kernel triage: pool leaks, ALPC chains, NBL owners, DPC/ISR blame, driver frame order, DHCP timers</Description>"
  echo '  <Components>'
  echo "    <BinaryComponent Name=\"$MODULE\" Type=\"Engine\">"
  echo '      <Files>'
  # ntsleuth.dll first: the module the engine loads; then every other file it needs beside it.
  echo "        <File Architecture=\"$ARCH\" Module=\"$ARCH\\$MODULE.dll\" />"
  for f in $(cd "$PKG/$ARCH" && find . -maxdepth 1 -type f \( -name '*.dll' -o -name '*.json' -o -name '*.alz' \) -printf '%f\n' | LC_ALL=C sort); do
    [ "$f" = "$MODULE.dll" ] || echo "        <File Architecture=\"$ARCH\" Module=\"$ARCH\\$f\" />"
  done
  echo '      </Files>'
  echo '      <LoadTriggers>'
  echo '        <TriggerSet>'
  echo '          <TargetTrigger Type="Kernel" />'
  echo '        </TriggerSet>'
  echo '        <TriggerSet>'
  echo '          <ModuleTrigger Name="dhcpcore.dll" />'
  echo '        </TriggerSet>'
  echo '      </LoadTriggers>'
  echo '      <EngineCommands>'
  for c in "${CMDS[@]}"; do
    echo "        <EngineCommand Name=\"$c\">"
    echo '          <EngineCommandItem>'
    echo "            <Syntax>!$c</Syntax>"
    echo '          </EngineCommandItem>'
    echo '        </EngineCommand>'
  done
  echo '      </EngineCommands>'
  echo '    </BinaryComponent>'
  echo '  </Components>'
  echo '</ExtensionPackage>'
} > "$PKG/GalleryManifest.xml"
echo "gallery-manifest: $PKG/GalleryManifest.xml ($MODULE $VER, ${#CMDS[@]} commands)"
