<#
.SYNOPSIS
  Windows: build, test and package NtSleuthExt (thin; delegates to dotnet).
.EXAMPLE
  ./build.ps1                      # build + test + package (without runtime)
  ./build.ps1 -WithRuntime         # package with an app-local .NET runtime (dotnet\ beside ntsleuth.dll)
  ./build.ps1 -SkipTests -Configuration Debug
#>
param(
  [string]$Configuration = "Release",
  [string]$OutDir = "",
  [switch]$WithRuntime,
  [switch]$SkipTests
)
$ErrorActionPreference = "Stop"
$root = $PSScriptRoot
if (-not $OutDir) { $OutDir = Join-Path $root "artifacts\ntsleuth" }

# ntsleuth.dll and enginehost.exe are compiled by Native\Native.targets (mingw gcc, clang or MSVC cl on PATH).
dotnet build (Join-Path $root "NtSleuthExt.sln") -c $Configuration -nologo
if ($LASTEXITCODE) { exit $LASTEXITCODE }
if (-not $SkipTests) {
  $env:NTSLEUTH_REQUIRE_E2E = "1"   # the end-to-end tier runs natively on Windows: it must not skip
  dotnet test (Join-Path $root "NtSleuthExt.sln") -c $Configuration --no-build -nologo
  if ($LASTEXITCODE) { exit $LASTEXITCODE }
}

$bin = Join-Path $root "Extension\bin\$Configuration\net10.0"
foreach ($f in "ntsleuth.dll","nethost.dll","NtSleuth.Extension.dll","NtSleuth.Extension.runtimeconfig.json","NtSleuth.Extension.deps.json") {
  if (-not (Test-Path (Join-Path $bin $f))) { throw "$f missing in $bin (install LLVM clang or the MSVC build tools so ntsleuth.dll is built)" }
}
if (Test-Path $OutDir) { Remove-Item -Recurse -Force $OutDir }
New-Item -ItemType Directory -Force $OutDir | Out-Null
Copy-Item (Join-Path $bin "ntsleuth.dll"), (Join-Path $bin "nethost.dll"), (Join-Path $bin "NtSleuth.Extension.runtimeconfig.json"), (Join-Path $bin "NtSleuth.Extension.deps.json") $OutDir
Get-ChildItem $bin -File | Where-Object { $_.Name -like "NtSleuth.*" -and $_.Extension -in @(".dll",".pdb") } | Copy-Item -Destination $OutDir

if ($WithRuntime) {
  $pkgs = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path $HOME ".nuget\packages" }
  $rt = Get-ChildItem (Join-Path $pkgs "microsoft.netcore.app.runtime.win-x64") -Directory | Where-Object Name -like "10.*" |
        Sort-Object { [version]$_.Name } | Select-Object -Last 1
  if (-not $rt) { throw "Microsoft.NETCore.App.Runtime.win-x64 10.x not restored in $pkgs" }
  $v = $rt.Name
  $fxr = Join-Path $OutDir "dotnet\host\fxr\$v"; $shared = Join-Path $OutDir "dotnet\shared\Microsoft.NETCore.App\$v"
  New-Item -ItemType Directory -Force $fxr, $shared | Out-Null
  Copy-Item (Join-Path $rt.FullName "runtimes\win-x64\native\hostfxr.dll") $fxr
  Copy-Item (Join-Path $rt.FullName "runtimes\win-x64\lib\net10.0\*") $shared
  Get-ChildItem (Join-Path $rt.FullName "runtimes\win-x64\native") -File |
    Where-Object { $_.Name -notin @("hostfxr.dll","createdump.exe") -and $_.Extension -notin @(".lib",".pdb") } |
    Copy-Item -Destination $shared
}
$zip = "$OutDir.zip"
if (Test-Path $zip) { Remove-Item $zip }
Compress-Archive -Path $OutDir -DestinationPath $zip
Write-Host "package: $OutDir ; $zip ($([math]::Round((Get-Item $zip).Length/1MB,1)) MB)"
