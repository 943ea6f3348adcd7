<#
.SYNOPSIS
  Windows: build, test and package NtSleuthExt (thin; delegates to dotnet).
.EXAMPLE
  ./build.ps1                      # build + test + package (without runtime)
  ./build.ps1 -WithRuntime         # package with an app-local .NET runtime (dotnet\ beside ntsleuth.dll)
  ./build.ps1 -SkipTests -Configuration Debug
  ./build.ps1 -NoReadyToRun        # managed assemblies IL only (default: win-x64 ReadyToRun images)
#>
param(
  [string]$Configuration = "Release",
  [string]$OutDir = "",
  [switch]$WithRuntime,
  [switch]$SkipTests,
  [switch]$NoReadyToRun   # ship the IL-only assemblies of the plain build (no crossgen2)
)
$ErrorActionPreference = "Stop"
$root = $PSScriptRoot

# GalleryManifest.xml, as scripts/gallery-manifest.sh writes it on Linux: commands from Native\ntsleuth.def (every
# export but the DebugExtension* callbacks and the _EFN_* extension functions), version from <Version> in Directory.Build.props, files from amd64\.
function Write-GalleryManifest([string]$pkg) {
  $arch = "amd64"
  $def = Get-Content (Join-Path $root "Native\ntsleuth.def")
  $module = (($def | Where-Object { $_ -match '^\s*LIBRARY\s' }) -split '\s+' | Where-Object { $_ })[1]
  $inExports = $false; $cmds = @()
  foreach ($l in $def) {
    $t = $l.Trim()
    if ($t -ieq "EXPORTS") { $inExports = $true; continue }
    if ($inExports -and $t -and -not $t.StartsWith(";") -and -not $t.StartsWith("DebugExtension") -and -not $t.StartsWith("_EFN_")) { $cmds += ($t -split '\s+')[0] }
  }
  if (-not $cmds) { throw "no commands exported in Native\ntsleuth.def" }
  $ver = ([xml](Get-Content (Join-Path $root "Directory.Build.props"))).Project.PropertyGroup.Version | Where-Object { $_ } | Select-Object -First 1
  if (-not $ver) { throw "no <Version> in Directory.Build.props" }
  $files = @("$module.dll") + (Get-ChildItem (Join-Path $pkg $arch) -File | Where-Object { $_.Extension -in @(".dll",".json",".alz") -and $_.Name -ne "$module.dll" } |
           Sort-Object Name -CaseSensitive | ForEach-Object Name)
  $x = New-Object System.Text.StringBuilder
  [void]$x.AppendLine('<?xml version="1.0" encoding="utf-8"?>').AppendLine('<ExtensionPackage>')
  [void]$x.AppendLine("  <Name>NtSleuth</Name>").AppendLine("  <Version>$ver</Version>")
  [void]$x.AppendLine("  <Description>Windows kernel triage: pool leaks, ALPC chains, NBL owners, DPC/ISR blame, driver frame order, DHCP timers</Description>")
  [void]$x.AppendLine("  <Components>").AppendLine("    <BinaryComponent Name=`"$module`" Type=`"Engine`">").AppendLine("      <Files>")
  foreach ($f in $files) { [void]$x.AppendLine("        <File Architecture=`"$arch`" Module=`"$arch\$f`" />") }
  [void]$x.AppendLine("      </Files>").AppendLine("      <LoadTriggers>")
  [void]$x.AppendLine("        <TriggerSet>").AppendLine('          <TargetTrigger Type="Kernel" />').AppendLine("        </TriggerSet>")
  [void]$x.AppendLine("        <TriggerSet>").AppendLine('          <ModuleTrigger Name="dhcpcore.dll" />').AppendLine("        </TriggerSet>")
  [void]$x.AppendLine("      </LoadTriggers>").AppendLine("      <EngineCommands>")
  foreach ($c in $cmds) {
    [void]$x.AppendLine("        <EngineCommand Name=`"$c`">").AppendLine("          <EngineCommandItem>")
    [void]$x.AppendLine("            <Syntax>!$c</Syntax>").AppendLine("          </EngineCommandItem>").AppendLine("        </EngineCommand>")
  }
  [void]$x.AppendLine("      </EngineCommands>").AppendLine("    </BinaryComponent>").AppendLine("  </Components>").AppendLine("</ExtensionPackage>")
  [System.IO.File]::WriteAllText((Join-Path $pkg "GalleryManifest.xml"), $x.ToString())
  [void][xml](Get-Content (Join-Path $pkg "GalleryManifest.xml"))   # well-formed or throw
}
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
foreach ($f in "ntsleuth.dll","nethost.dll","NtSleuth.Extension.dll","Iced.dll","NtSleuth.Extension.runtimeconfig.json","NtSleuth.Extension.deps.json") {
  if (-not (Test-Path (Join-Path $bin $f))) { throw "$f missing in $bin (install LLVM clang or the MSVC build tools so ntsleuth.dll is built)" }
}
# The package is a WinDbg extension-gallery package: GalleryManifest.xml at its root, the module and what it needs in amd64\.
$pkgDir = $OutDir
if (Test-Path $pkgDir) { Remove-Item -Recurse -Force $pkgDir }
$OutDir = Join-Path $pkgDir "amd64"
New-Item -ItemType Directory -Force $OutDir | Out-Null
Copy-Item (Join-Path $bin "ntsleuth.dll"), (Join-Path $bin "ntsleuth.alz"), (Join-Path $bin "nethost.dll"), (Join-Path $bin "NtSleuth.Extension.runtimeconfig.json"), (Join-Path $bin "NtSleuth.Extension.deps.json") $OutDir
Get-ChildItem $bin -File | Where-Object { $_.Name -like "NtSleuth.*" -and $_.Extension -in @(".dll",".pdb") } | Copy-Item -Destination $OutDir
# Iced.dll: the x86-64 decoder NtSleuth.Commands uses (NuGet Iced; listed in the deps.json).
Copy-Item (Join-Path $bin "Iced.dll") $OutDir
if (-not $NoReadyToRun) {
  # The managed assemblies as win-x64 ReadyToRun images (crossgen2, chosen and restored by the SDK), as scripts/package.sh:
  # a command's first run then JITs about a fifth of the methods (docs/bench.md "First runs").
  $stage = Join-Path ([System.IO.Path]::GetTempPath()) ("ntsleuth-r2r-" + [guid]::NewGuid())
  dotnet publish (Join-Path $root "Extension\NtSleuth.Extension.csproj") -c $Configuration -r win-x64 --self-contained false -p:PublishReadyToRun=true -o $stage -nologo -v q
  if ($LASTEXITCODE) { exit $LASTEXITCODE }
  Get-ChildItem $stage -File | Where-Object { $_.Name -like "NtSleuth.*" -or $_.Name -eq "Iced.dll" } | Copy-Item -Destination $OutDir -Force
  Remove-Item -Recurse -Force $stage
}

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
$OutDir = $pkgDir
Write-GalleryManifest $OutDir
$zip = "$OutDir.zip"
if (Test-Path $zip) { Remove-Item $zip }
Compress-Archive -Path $OutDir -DestinationPath $zip
Write-Host "package: $OutDir ; $zip ($([math]::Round((Get-Item $zip).Length/1MB,1)) MB)"
