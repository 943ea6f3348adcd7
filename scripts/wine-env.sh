# Source this file: sets up the environment to run Windows test programs (the real dbgeng.dll) under wine64.
#   . scripts/wine-env.sh            -> exports WINE, WINESERVER, WINEPREFIX, WINEDEBUG, DISPLAY, WINEDLLOVERRIDES
# Creates the prefix once (wineboot with mscoree disabled so wine-mono is not installed) and waits for wineserver.
# Keep it warm for a batch of runs with: "$WINESERVER" -p   (stop it with "$WINESERVER" -k)

_ntsleuth_find() { for c in "$@"; do if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi; [ -x "$c" ] && { echo "$c"; return 0; }; done; return 1; }

WINE="${WINE:-$(_ntsleuth_find wine64 /usr/lib/wine/wine64 /usr/bin/wine64 /usr/lib/x86_64-linux-gnu/wine/wine64 wine || true)}"
WINESERVER="${WINESERVER:-$(_ntsleuth_find wineserver /usr/lib/wine/wineserver /usr/lib/wine/wineserver64 /usr/bin/wineserver || true)}"
WINEPREFIX="${WINEPREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/ntsleuth/wineprefix}"
WINEDEBUG=-all
DISPLAY=
# Wine ships stub dbgeng/dbghelp that it prefers even for full paths; force the native (Microsoft) ones.
WINEDLLOVERRIDES="dbgeng,dbghelp,dbgcore,dbgmodel,msdia140=n"
export WINE WINESERVER WINEPREFIX WINEDEBUG DISPLAY WINEDLLOVERRIDES

if [ -z "$WINE" ]; then
    echo "wine-env.sh: wine64 not found (run scripts/setup-linux.sh)" >&2
elif [ ! -f "$WINEPREFIX/system.reg" ]; then
    mkdir -p "$WINEPREFIX"
    echo "wine-env.sh: creating wine prefix $WINEPREFIX (once, ~15 s)" >&2
    # mscoree=d only here: skips the wine-mono install prompt. Never at run time (wine would refuse IL-only assemblies).
    WINEDLLOVERRIDES="mscoree=d;mshtml=d" "$WINE" wineboot -i >/dev/null 2>&1 || echo "wine-env.sh: wineboot failed" >&2
    [ -n "$WINESERVER" ] && "$WINESERVER" -w
fi
unset -f _ntsleuth_find
