<#
.SYNOPSIS
    Prepares a test machine for the test-signed ktmrm package: trusts the test certificate and
    turns on the TESTSIGNING boot option (or undoes both with -Disable). Run elevated; reboot
    afterwards.

.DESCRIPTION
    - Imports the public certificate into LocalMachine\Root and LocalMachine\TrustedPublisher, so
      pnputil accepts the package's catalog without a prompt.
    - `bcdedit /set testsigning on`, so the kernel loads drivers signed by any certificate.
      Windows ignores TESTSIGNING while Secure Boot is on: turn Secure Boot off in the VM's
      firmware settings first (Hyper-V: Settings > Security > Enable Secure Boot).
    Only ever do this on a test machine.

.PARAMETER CerPath
    The public certificate, e.g. ktmrm-test.cer from the package directory.

.PARAMETER Disable
    Removes the certificate from both stores and sets testsigning off.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$CerPath,
    [switch]$Disable
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell.'
}

$stores = @('Cert:\LocalMachine\Root', 'Cert:\LocalMachine\TrustedPublisher')
$resolved = (Resolve-Path -LiteralPath $CerPath).Path
$cert = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2($resolved)

if ($Disable) {
    foreach ($store in $stores) {
        $item = Join-Path $store $cert.Thumbprint
        if (Test-Path -LiteralPath $item) {
            Remove-Item -LiteralPath $item
            Write-Host "Removed $($cert.Subject) from $store"
        }
    }
    & bcdedit.exe /set testsigning off
    if ($LASTEXITCODE -ne 0) { throw "bcdedit failed ($LASTEXITCODE)" }
    Write-Host 'TESTSIGNING is off after the next reboot.'
    return
}

foreach ($store in $stores) {
    Import-Certificate -FilePath $resolved -CertStoreLocation $store | Out-Null
    Write-Host "Trusted $($cert.Subject) ($($cert.Thumbprint)) in $store"
}

$secureBoot = $false
try { $secureBoot = Confirm-SecureBootUEFI } catch { $secureBoot = $false }
if ($secureBoot) {
    Write-Warning 'Secure Boot is on: Windows ignores TESTSIGNING until it is turned off in the firmware.'
}

& bcdedit.exe /set testsigning on
if ($LASTEXITCODE -ne 0) { throw "bcdedit failed ($LASTEXITCODE)" }
& bcdedit.exe /enum '{current}' | Select-String -Pattern 'testsigning'
Write-Host 'Reboot now; the desktop then shows "Test Mode" in its corner.'
