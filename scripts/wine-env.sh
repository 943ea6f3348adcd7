# shellcheck shell=bash
# Source this file: sets up the wine environment that runs Microsoft's real dbgeng.dll on Linux
# (facts and traps: ../shared/docs/real-engine-on-linux.md). Creates the prefix once.
#   WINE            the wine64 loader
#   WINEPREFIX      default ${XDG_CACHE_HOME:-$HOME/.cache}/ntsleuth/wineprefix
#   NTSLEUTH_ENGINE_DIR  folder with the amd64 dbgeng.dll from the NuGet package (when restored)
if [ -z "${WINE:-}" ]; then
    for w in /usr/lib/wine/wine64 "$(command -v wine64 2>/dev/null)" "$(command -v wine 2>/dev/null)"; do
        if [ -n "$w" ] && [ -x "$w" ]; then WINE="$w"; break; fi
    done
fi
export WINE
export WINEPREFIX="${WINEPREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/ntsleuth/wineprefix}"
export WINEDEBUG=-all
export DISPLAY=
# Wine's own stub dbgeng/dbghelp would win even for a full path: force the native (Microsoft) DLLs.
export WINEDLLOVERRIDES="dbgeng,dbghelp,dbgcore,dbgmodel,msdia140=n"
WINESERVER="$(dirname "${WINE:-/usr/lib/wine/wine64}")/wineserver"
[ -x "$WINESERVER" ] || WINESERVER="$(command -v wineserver 2>/dev/null || echo /usr/lib/wine/wineserver)"
export WINESERVER

ntsleuth_wine_prefix() {
    if [ -z "${WINE:-}" ]; then echo "wine64 not found: run scripts/setup-linux.sh" >&2; return 1; fi
    if [ ! -f "$WINEPREFIX/system.reg" ]; then
        mkdir -p "$WINEPREFIX"
        # mscoree disabled only for wineboot (skips the wine-mono installer); never at run time.
        WINEDLLOVERRIDES="mscoree=d" "$WINE" wineboot -i >/dev/null 2>&1 || true
        "$WINESERVER" -w || true
    fi
}

ntsleuth_engine_dir() {
    local pkgs="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
    local d="$pkgs/microsoft.debugging.platform.dbgeng/20260109.1235.0/content/amd64"
    [ -f "$d/dbgeng.dll" ] && echo "$d"
}
