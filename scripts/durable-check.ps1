<#
.SYNOPSIS
    Checks the installed driver's durable mode: a committed key survives a service restart, and
    the conformance scenarios and bad-input suite pass in durable mode.

.DESCRIPTION
    Sets Services\KtmRm\Parameters\Durable = 1 and restarts KtmRm (the driver replays its log,
    creates a durable TM and RM and recovers them; README "Durability"), commits a key in a
    transaction, restarts again and reads it back; runs scenarios and bad-input against the
    durable device; then deletes the key, sets Durable back to what it was and restarts. Needs
    an elevated prompt and an installed, startable driver (scripts\install-driver.ps1 -Start).

.EXAMPLE
    .\scripts\durable-check.ps1 -Harness .\target\release\ktmrm-test.exe -ResultsDir out\durable
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string]$Harness,
    [string]$ResultsDir,
    [int]$TimeoutSeconds = 60
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$params = 'HKLM:\SYSTEM\CurrentControlSet\Services\KtmRm\Parameters'

function Wait-Status([string]$Status) {
    $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
    while ((Get-Date) -lt $deadline) {
        if ((Get-Service -Name KtmRm).Status.ToString() -eq $Status) { return }
        Start-Sleep -Milliseconds 250
    }
    throw "KtmRm did not reach $Status"
}

function Restart-KtmRm {
    & sc.exe stop KtmRm | Out-Host
    Wait-Status 'Stopped'
    & sc.exe start KtmRm | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "sc.exe start KtmRm failed ($LASTEXITCODE): see the driver's trace" }
    Wait-Status 'Running'
}

function Invoke-Harness([string[]]$Arguments) {
    $out = & $Harness @Arguments
    if ($LASTEXITCODE -ne 0) { throw "ktmrm-test $($Arguments -join ' ') failed ($LASTEXITCODE): $out" }
    return $out
}

if (-not (Test-Path -LiteralPath $params)) { New-Item -Path $params | Out-Null }
$before = (Get-ItemProperty -Path $params -Name Durable -ErrorAction SilentlyContinue).Durable
if ($null -eq $before) { $before = 0 }
try {
    Set-ItemProperty -Path $params -Name Durable -Type DWord -Value 1
    Restart-KtmRm
    Invoke-Harness @('put', 'durable-check', 'survives', '--tx', 'durable-check') | Out-Null
    Restart-KtmRm
    $value = Invoke-Harness @('get', 'durable-check')
    if ($value -ne 'survives') { throw "after a restart in durable mode the key reads '$value', not 'survives'" }
    Write-Host 'durable mode: a committed key survived a service restart'
    $suites = @{ Suites = 'scenarios,bad-input'; Harness = $Harness }
    if ($ResultsDir) { $suites.ResultsDir = $ResultsDir }
    & (Join-Path $PSScriptRoot 'run-harness.ps1') @suites
    if ($LASTEXITCODE -ne 0) { throw 'the suites failed in durable mode' }
    Invoke-Harness @('delete', 'durable-check') | Out-Null
} finally {
    Set-ItemProperty -Path $params -Name Durable -Type DWord -Value $before
    Restart-KtmRm
}
