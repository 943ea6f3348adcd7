<#
.SYNOPSIS
  Lab runner on Windows (issue 19): triage a folder of dumps with cdb.exe or kd.exe and ntsleuth.dll, one debugger
  process per dump, in parallel; writes triage.jsonl, report.md and report.html. Same runner as scripts/triage on
  Linux (scripts/triage.py, Python 3 standard library only); see docs/triage.md.
.EXAMPLE
  .\scripts\triage.ps1 D:\dumps -o D:\triage -FailOn error
  .\scripts\triage.ps1 D:\dumps -o D:\triage -j 8 -Timeout 900 -SymPath "srv*C:\symbols*https://msdl.microsoft.com/download/symbols"
.NOTES
  Exit status: 0; 1 a finding at or above -FailOn; 2 a dump could not be triaged; 3 usage / setup.
#>
param(
  [Parameter(Mandatory = $true, Position = 0, ValueFromRemainingArguments = $true)][string[]]$Inputs,
  [Alias("o")][Parameter(Mandatory = $true)][string]$OutDir,
  [Alias("j")][int]$Jobs = [Environment]::ProcessorCount,
  [int]$Timeout = 600,
  [ValidateSet("none", "info", "warning", "error", "critical")][string]$FailOn = "none",
  [string]$SymPath = "",
  [string]$Debugger = "",
  [string]$Extension = ""
)
$ErrorActionPreference = "Stop"
$root = Split-Path $PSScriptRoot -Parent

if (-not $Debugger) {
  # cdb.exe opens kernel and user dumps alike; kd.exe works too (-Debugger ...\kd.exe).
  $kits = @("${env:ProgramFiles(x86)}\Windows Kits\10\Debuggers\x64", "$env:ProgramFiles\Windows Kits\10\Debuggers\x64")
  $Debugger = (Get-Command cdb.exe -ErrorAction SilentlyContinue).Source
  if (-not $Debugger) { $Debugger = $kits | ForEach-Object { Join-Path $_ "cdb.exe" } | Where-Object { Test-Path $_ } | Select-Object -First 1 }
  if (-not $Debugger) { Write-Error "cdb.exe not found: install the Debugging Tools for Windows (Windows SDK) or pass -Debugger"; exit 3 }
}
if (-not $Extension) {
  foreach ($c in @((Join-Path $root "artifacts\ntsleuth\amd64\ntsleuth.dll"), (Join-Path $root "artifacts\ntsleuth\ntsleuth.dll"), (Join-Path $root "Extension\bin\Release\net10.0\ntsleuth.dll"), (Join-Path $root "Extension\bin\Debug\net10.0\ntsleuth.dll"))) {
    if (Test-Path $c) { $Extension = $c; break }
  }
  if (-not $Extension) { Write-Error "ntsleuth.dll not found: run .\build.ps1 or pass -Extension"; exit 3 }
}
$python = (Get-Command py.exe -ErrorAction SilentlyContinue).Source
$pyArgs = @()
if ($python) { $pyArgs = @("-3") } else { $python = (Get-Command python.exe -ErrorAction SilentlyContinue).Source }
if (-not $python) { Write-Error "Python 3 not found (py.exe or python.exe on PATH): the runner is scripts\triage.py"; exit 3 }

$runner = @((Join-Path $PSScriptRoot "triage.py")) + $Inputs + @("-o", $OutDir, "-j", "$Jobs", "--timeout", "$Timeout",
  "--fail-on", $FailOn, "--debugger", $Debugger, "--extension", (Resolve-Path $Extension).Path)
if ($SymPath) { $runner += @("--sympath", $SymPath) }
& $python @pyArgs @runner
exit $LASTEXITCODE
