# Source this file (after setting ROOT and CONFIG): locates Microsoft's engine and our enginehost, and on Linux sets up
# wine, once for every script that runs the real engine (run-samples.sh, bench-engine.sh, fuzz.sh, triage,
# readme-output.sh). Sets:
#   ENGINE    folder of dbgeng.dll from the NuGet package Microsoft.Debugging.Platform.DbgEng (version read from
#             Extension.Tests/NtSleuth.Extension.Tests.csproj, the one place it is pinned)
#   HOSTEXE   Extension/bin/$CONFIG/net10.0/enginehost.exe
#   ONWIN     1 on Windows (Git Bash / MSYS), else 0; on Linux wine-env.sh is sourced (WINE, WINESERVER, ...)
#   RUN       argv prefix that starts enginehost ("$WINE" "$HOSTEXE" on Linux)
#   winpath   function: a path as the engine sees it (Z:\... under wine)
# Returns 1 (with a message naming what to run) when something is missing.
ntsleuth_engine_env() {
  local pkgs ver
  pkgs="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
  ver="$(sed -n 's/.*Include="Microsoft.Debugging.Platform.DbgEng" Version="\[\{0,1\}\([0-9.]*\)\]\{0,1\}".*/\1/p' "$ROOT/Extension.Tests/NtSleuth.Extension.Tests.csproj" | head -1)"
  ENGINE="$pkgs/microsoft.debugging.platform.dbgeng/$ver/content/amd64"
  [ -f "$ENGINE/dbgeng.dll" ] || { echo "dbgeng.dll not in $ENGINE (dotnet restore Extension.Tests)" >&2; return 1; }
  HOSTEXE="$ROOT/Extension/bin/$CONFIG/net10.0/enginehost.exe"
  [ -f "$HOSTEXE" ] || { echo "$HOSTEXE missing (dotnet build NtSleuthExt.sln -c $CONFIG, with mingw-w64)" >&2; return 1; }
  case "$(uname -s)" in MINGW*|MSYS*|CYGWIN*) ONWIN=1;; *) ONWIN=0;; esac
  if [ "$ONWIN" -eq 0 ]; then
    # shellcheck source=wine-env.sh
    . "$ROOT/scripts/wine-env.sh"
    [ -n "$WINE" ] || return 1
    unset DOTNET_ROOT _NT_SYMBOL_PATH
    winpath() { local p; p="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; echo "Z:${p//\//\\}"; }
    RUN=("$WINE" "$HOSTEXE")
  else
    winpath() { cygpath -w "$1"; }
    RUN=("$HOSTEXE")
  fi
}
