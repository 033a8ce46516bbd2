<#
.SYNOPSIS
    Signs files (ktmrm.sys, ktmrm.cat) with the ktmrm test certificate: signtool, SHA-256 file
    digest, optional RFC 3161 timestamp.

.DESCRIPTION
    Finds the certificate that New-TestCert.ps1 created in Cert:\CurrentUser\My by subject and
    signs each file with `signtool sign /fd SHA256 /s My /sha1 <thumbprint>`. Sign ktmrm.sys
    before running inf2cat, and ktmrm.cat after it (the catalog records the signed .sys's hash);
    `cargo make package` does exactly that.

    signtool is taken from -SignTool, else from PATH (eWDK prompt, or cargo-make after
    wdk-build's setup), else from the newest Windows Kits 10 bin directory for this machine.

.PARAMETER Path
    Files to sign.

.PARAMETER Subject
    Certificate subject. Default: $env:KTMRM_CERT_SUBJECT, else "CN=ktmrm Test Signing".

.PARAMETER TimestampUrl
    RFC 3161 timestamp server (e.g. http://timestamp.digicert.com). Default:
    $env:KTMRM_TIMESTAMP_URL; empty means no timestamp, which test signing does not need and which
    works offline.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string[]]$Path,
    [string]$Subject = $(if ($env:KTMRM_CERT_SUBJECT) { $env:KTMRM_CERT_SUBJECT } else { 'CN=ktmrm Test Signing' }),
    [string]$TimestampUrl = $env:KTMRM_TIMESTAMP_URL,
    [string]$SignTool
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Find-SignTool {
    $cmd = Get-Command -Name 'signtool.exe' -ErrorAction SilentlyContinue
    if ($cmd) { return $cmd.Source }
    $arch = if ($env:PROCESSOR_ARCHITECTURE -eq 'ARM64') { 'arm64' } else { 'x64' }
    $roots = @()
    if ($env:WDKBinRoot) { $roots += $env:WDKBinRoot }
    if ($env:WindowsSdkBinPath) { $roots += $env:WindowsSdkBinPath }
    $kits = Join-Path ${env:ProgramFiles(x86)} 'Windows Kits\10\bin'
    if (Test-Path -LiteralPath $kits) {
        $roots += Get-ChildItem -LiteralPath $kits -Directory |
            Where-Object { $_.Name -match '^10\.' } |
            Sort-Object -Property { [version]$_.Name } -Descending |
            ForEach-Object { $_.FullName }
    }
    foreach ($root in $roots) {
        $candidate = Join-Path (Join-Path $root $arch) 'signtool.exe'
        if (Test-Path -LiteralPath $candidate) { return $candidate }
    }
    throw 'signtool.exe not found: run from an eWDK/WDK prompt or pass -SignTool.'
}

$now = Get-Date
$cert = Get-ChildItem -Path 'Cert:\CurrentUser\My' -CodeSigningCert |
    Where-Object { $_.Subject -eq $Subject -and $_.HasPrivateKey -and $_.NotAfter -gt $now } |
    Sort-Object -Property NotAfter -Descending |
    Select-Object -First 1
if ($null -eq $cert) {
    throw "No code-signing certificate '$Subject' with a private key in Cert:\CurrentUser\My; run certs\New-TestCert.ps1 first."
}

if (-not $SignTool) { $SignTool = Find-SignTool }
Write-Host "signtool: $SignTool"
Write-Host "certificate: $Subject ($($cert.Thumbprint))"

foreach ($file in $Path) {
    if (-not (Test-Path -LiteralPath $file)) { throw "Not found: $file" }
    $signArgs = @('sign', '/v', '/fd', 'SHA256', '/s', 'My', '/sha1', $cert.Thumbprint)
    if ($TimestampUrl) { $signArgs += @('/tr', $TimestampUrl, '/td', 'SHA256') }
    $signArgs += $file
    & $SignTool @signArgs
    if ($LASTEXITCODE -ne 0) { throw "signtool failed ($LASTEXITCODE) on $file" }
}
