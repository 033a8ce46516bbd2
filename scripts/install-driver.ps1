<#
.SYNOPSIS
    Installs the ktmrm driver package and starts the KtmRm service, or stops and uninstalls it.
    Run elevated.

.DESCRIPTION
    Install (default):
      1. stops and removes any previous KtmRm installation (same as -Uninstall);
      2. -Method Pnputil (default): `pnputil /add-driver ktmrm.inf /install` puts the package in
         the driver store and, ktmrm.inf being a primitive driver INF, processes its
         [DefaultInstall.NT<arch>] section, which registers the demand-start kernel service
         KtmRm with its binary in the driver store.
         -Method Sc (development loop, no INF or catalog, needs only an embedded signature on
         the .sys): copies ktmrm.sys to %SystemRoot%\System32\drivers and
         `sc.exe create KtmRm type= kernel start= demand binPath= ...`;
      3. checks that the service exists, and with -Start runs `sc.exe start KtmRm` and waits for
         RUNNING.
    Uninstall (-Uninstall):
      `sc.exe stop KtmRm`; then `pnputil /delete-driver oemNN.inf /uninstall` for every driver
      store entry whose original name is ktmrm.inf; then `sc.exe delete KtmRm` if the service is
      still registered (the Sc method, or a partial install).

.PARAMETER PackageDir
    Directory with ktmrm.inf, ktmrm.sys and ktmrm.cat (cargo make package output:
    target\[<triple>\]<profile>\ktmrm_package).

.EXAMPLE
    .\scripts\install-driver.ps1 -PackageDir target\release\ktmrm_package -Start
.EXAMPLE
    .\scripts\install-driver.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    [string]$PackageDir,
    [ValidateSet('Pnputil', 'Sc')][string]$Method = 'Pnputil',
    [switch]$Start,
    [switch]$Uninstall,
    [string]$ServiceName = 'KtmRm',
    [int]$TimeoutSeconds = 60
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell.'
}

function Get-KtmRmService {
    Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
}

function Wait-ServiceStatus([string]$Status) {
    $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
    while ((Get-Date) -lt $deadline) {
        $svc = Get-KtmRmService
        if ($null -eq $svc) { return ($Status -eq 'Stopped') }
        if ($svc.Status.ToString() -eq $Status) { return $true }
        Start-Sleep -Milliseconds 250
    }
    return $false
}

# Driver store entries (oemNN.inf) installed from a file named ktmrm.inf. Uses the DISM module
# (language-independent objects); falls back to parsing English `pnputil /enum-drivers` output.
function Get-KtmRmPublishedInfs {
    $names = @()
    $dism = Get-Command -Name 'Get-WindowsDriver' -ErrorAction SilentlyContinue
    if ($dism) {
        $names = @(Get-WindowsDriver -Online -All |
            Where-Object { $_.OriginalFileName -and ((Split-Path -Leaf $_.OriginalFileName) -ieq 'ktmrm.inf') } |
            ForEach-Object { $_.Driver })
    } else {
        $published = $null
        foreach ($line in (& pnputil.exe /enum-drivers)) {
            if ($line -match '^\s*Published Name\s*:\s*(\S+)') { $published = $Matches[1] }
            elseif ($line -match '^\s*Original Name\s*:\s*(\S+)' -and $Matches[1] -ieq 'ktmrm.inf' -and $published) {
                $names += $published
            }
        }
    }
    return $names
}

function Uninstall-KtmRm {
    $svc = Get-KtmRmService
    if ($svc -and $svc.Status -ne 'Stopped') {
        Write-Host "Stopping $ServiceName"
        & sc.exe stop $ServiceName | Out-Host
        # 1062 = ERROR_SERVICE_NOT_ACTIVE
        if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 1062) { throw "sc.exe stop failed ($LASTEXITCODE)" }
        if (-not (Wait-ServiceStatus 'Stopped')) {
            throw "$ServiceName did not stop within $TimeoutSeconds s (an open handle to \\.\KtmRm keeps the driver loaded)."
        }
    }
    foreach ($inf in (Get-KtmRmPublishedInfs)) {
        Write-Host "pnputil /delete-driver $inf /uninstall"
        & pnputil.exe /delete-driver $inf /uninstall | Out-Host
        if ($LASTEXITCODE -ne 0) { throw "pnputil /delete-driver $inf failed ($LASTEXITCODE)" }
    }
    if (Get-KtmRmService) {
        Write-Host "sc.exe delete $ServiceName"
        & sc.exe delete $ServiceName | Out-Host
        # 1072 = ERROR_SERVICE_MARKED_FOR_DELETE
        if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 1072) { throw "sc.exe delete failed ($LASTEXITCODE)" }
    }
    $copied = Join-Path $env:SystemRoot 'System32\drivers\ktmrm.sys'
    if (Test-Path -LiteralPath $copied) { Remove-Item -LiteralPath $copied -Force -ErrorAction SilentlyContinue }
}

if ($Uninstall) {
    Uninstall-KtmRm
    Write-Host "$ServiceName uninstalled."
    return
}

if (-not $PackageDir) { throw '-PackageDir is required to install.' }
$PackageDir = (Resolve-Path -LiteralPath $PackageDir).Path
$inf = Join-Path $PackageDir 'ktmrm.inf'
$sys = Join-Path $PackageDir 'ktmrm.sys'
foreach ($f in @($inf, $sys)) {
    if (-not (Test-Path -LiteralPath $f)) { throw "Missing $f (run cargo make package first)." }
}

Uninstall-KtmRm

if ($Method -eq 'Pnputil') {
    Write-Host "pnputil /add-driver $inf /install"
    & pnputil.exe /add-driver $inf /install | Out-Host
    # 3010 = ERROR_SUCCESS_REBOOT_REQUIRED (not expected for a primitive driver, but a success).
    if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 3010) { throw "pnputil /add-driver failed ($LASTEXITCODE)" }
} else {
    $dest = Join-Path $env:SystemRoot 'System32\drivers\ktmrm.sys'
    Copy-Item -LiteralPath $sys -Destination $dest -Force
    Write-Host "sc.exe create $ServiceName type= kernel start= demand binPath= $dest"
    & sc.exe create $ServiceName type= kernel start= demand binPath= $dest | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "sc.exe create failed ($LASTEXITCODE)" }
}

$svc = Get-KtmRmService
if ($null -eq $svc) { throw "The install did not register the $ServiceName service." }
& sc.exe qc $ServiceName | Out-Host

if ($Start) {
    Write-Host "sc.exe start $ServiceName"
    & sc.exe start $ServiceName | Out-Host
    # 1056 = ERROR_SERVICE_ALREADY_RUNNING
    if ($LASTEXITCODE -ne 0 -and $LASTEXITCODE -ne 1056) {
        throw "sc.exe start failed ($LASTEXITCODE). 577 = signature not accepted (test signing off or Secure Boot on); see README.md (Windows section)."
    }
    if (-not (Wait-ServiceStatus 'Running')) { throw "$ServiceName did not reach RUNNING." }
    Write-Host "$ServiceName is running: \\.\KtmRm is available."
}
