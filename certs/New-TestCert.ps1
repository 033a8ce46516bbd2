<#
.SYNOPSIS
    Creates (once) the self-signed SHA-256 code-signing certificate that test-signs ktmrm.sys and
    ktmrm.cat, and exports its public part as a .cer file.

.DESCRIPTION
    The certificate and its private key live in the current user's certificate store
    (Cert:\CurrentUser\My). The key is created non-exportable, so no private key ever reaches the
    disk or the repository; only the public .cer is written. Running the script again reuses the
    newest matching certificate that is valid for at least another week.

    Used by `cargo make package` (task generate-certificate); can be run by hand. Works in
    Windows PowerShell 5.1 and PowerShell 7 on Windows 10/11 and Windows Server 2016+.

.PARAMETER Subject
    Certificate subject. Default: $env:KTMRM_CERT_SUBJECT, else "CN=ktmrm Test Signing".

.PARAMETER CerPath
    Where to write the public certificate. Default: certs\ktmrm-test.cer beside this script.

.PARAMETER ValidYears
    Lifetime of a newly created certificate.

.OUTPUTS
    The certificate's SHA-1 thumbprint (what signtool /sha1 takes).
#>
[CmdletBinding()]
param(
    [string]$Subject = $(if ($env:KTMRM_CERT_SUBJECT) { $env:KTMRM_CERT_SUBJECT } else { 'CN=ktmrm Test Signing' }),
    [string]$CerPath = (Join-Path $PSScriptRoot 'ktmrm-test.cer'),
    [int]$ValidYears = 2
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$store = 'Cert:\CurrentUser\My'
$now = Get-Date

$cert = Get-ChildItem -Path $store -CodeSigningCert |
    Where-Object { $_.Subject -eq $Subject -and $_.HasPrivateKey -and $_.NotAfter -gt $now.AddDays(7) } |
    Sort-Object -Property NotAfter -Descending |
    Select-Object -First 1

if ($null -eq $cert) {
    Write-Host "Creating code-signing certificate '$Subject' in $store (RSA 2048, SHA-256, key not exportable)"
    $cert = New-SelfSignedCertificate -Type CodeSigningCert -Subject $Subject `
        -KeyAlgorithm RSA -KeyLength 2048 -HashAlgorithm SHA256 `
        -KeyUsage DigitalSignature -KeyExportPolicy NonExportable `
        -CertStoreLocation $store -NotAfter $now.AddYears($ValidYears)
} else {
    Write-Host "Using existing certificate '$Subject' ($($cert.Thumbprint), valid until $($cert.NotAfter))"
}

$dir = Split-Path -Parent $CerPath
if ($dir -and -not (Test-Path -LiteralPath $dir)) {
    New-Item -ItemType Directory -Path $dir -Force | Out-Null
}
# Public part only (DER). Export-Certificate never includes the private key.
Export-Certificate -Cert $cert -FilePath $CerPath -Type CERT -Force | Out-Null
Write-Host "Public certificate written to $CerPath"
Write-Output $cert.Thumbprint
