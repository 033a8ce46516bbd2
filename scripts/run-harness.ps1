<#
.SYNOPSIS
    Runs ktmrm-test suites against the installed driver (\\.\KtmRm) and keeps their output.

.DESCRIPTION
    For each suite runs `ktmrm-test <suite> [--threads N --seconds S --isolation L] --json`,
    writes the JSON report to <ResultsDir>\<suite>.json and a console transcript to
    <ResultsDir>\<suite>.log, and exits non-zero if any suite failed. The device must be
    installed and started (scripts\install-driver.ps1 -Start); opening it needs an elevated
    prompt (the device's SDDL admits only SYSTEM and Administrators).

    ktmrm-test.exe is taken from -Harness, else target\release\ktmrm-test.exe, else built with
    `cargo build --release --locked -p usermode-test`.

.PARAMETER Suites
    Comma-separated or array: scenarios, bad-input, stress, bench.

.PARAMETER StressIsolation
    The stress transfers' isolation level: read-committed (the default; the transfers re-read
    the balances under their write locks) or serializable (the driver validates the reads and
    the transfers retry its aborts).

.EXAMPLE
    .\scripts\run-harness.ps1 -Suites scenarios,bad-input
.EXAMPLE
    .\scripts\run-harness.ps1 -Suites stress -StressThreads 8 -StressSeconds 300
.EXAMPLE
    .\scripts\run-harness.ps1 -Suites stress -StressIsolation serializable
#>
[CmdletBinding()]
param(
    [string[]]$Suites = @('scenarios', 'bad-input'),
    [string]$Harness,
    [string]$ResultsDir,
    [int]$StressThreads = 8,
    [int]$StressSeconds = 30,
    [ValidateSet('read-committed', 'serializable')]
    [string]$StressIsolation = 'read-committed'
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$repo = Split-Path -Parent $PSScriptRoot
if (-not $ResultsDir) { $ResultsDir = Join-Path $repo 'target\harness' }
# Absolute, because Start-Process below resolves its redirection paths on its own.
$ResultsDir = (New-Item -ItemType Directory -Path $ResultsDir -Force).FullName

# `-Suites a,b` arrives as one string when the script is started with powershell -File.
$list = @($Suites | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() } | Where-Object { $_ })

if (-not $Harness) {
    $Harness = Join-Path $repo 'target\release\ktmrm-test.exe'
    if (-not (Test-Path -LiteralPath $Harness)) {
        Write-Host 'Building ktmrm-test (cargo build --release --locked -p usermode-test)'
        Push-Location $repo
        try {
            & cargo build --release --locked -p usermode-test
            if ($LASTEXITCODE -ne 0) { throw "cargo build failed ($LASTEXITCODE)" }
        } finally { Pop-Location }
    }
}
if (-not (Test-Path -LiteralPath $Harness)) { throw "ktmrm-test not found at $Harness" }
$Harness = (Resolve-Path -LiteralPath $Harness).Path

$failed = @()
foreach ($suite in $list) {
    $suiteArgs = @($suite)
    if ($suite -eq 'stress') {
        $suiteArgs += @('--threads', "$StressThreads", '--seconds', "$StressSeconds", '--isolation', $StressIsolation)
    }
    $suiteArgs += '--json'
    $json = Join-Path $ResultsDir "$suite.json"
    $log = Join-Path $ResultsDir "$suite.log"
    Write-Host "== ktmrm-test $($suiteArgs -join ' ')"
    $started = Get-Date
    # stdout is the JSON report, stderr (progress, messages) the log. Start-Process writes both
    # files as the process produced them (no PowerShell re-encoding, no error records).
    $proc = Start-Process -FilePath $Harness -ArgumentList $suiteArgs -NoNewWindow -Wait -PassThru `
        -RedirectStandardOutput $json -RedirectStandardError $log
    $code = $proc.ExitCode
    if (Test-Path -LiteralPath $log) { Get-Content -LiteralPath $log | Out-Host }
    $secs = [int]((Get-Date) - $started).TotalSeconds
    Write-Host "== $suite exited $code after $secs s; report: $json"
    if ($code -ne 0) { $failed += $suite }
}

if ($failed.Count -gt 0) {
    Write-Host "FAILED suites: $($failed -join ', ')"
    exit 1
}
Write-Host "All suites passed: $($list -join ', ')"
exit 0
