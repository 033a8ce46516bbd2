<#
.SYNOPSIS
    Driver Verifier for ktmrm.sys: turn it on or off, or run the harness under it and collect the
    result. Run elevated.

.DESCRIPTION
    Checks enabled for ktmrm.sys (the "standard" set): special pool, force IRQL checking, pool
    tracking, I/O verification, deadlock detection, DMA checking, security checks, miscellaneous
    checks and DDI compliance checking: `/flags 0x209BB`, the same as `/standard`, or in Windows 11
    rule-class form `/rc 1 2 4 5 6 8 9 12 18`.

    -Mode On       verifier /flags 0x209BB /driver ktmrm.sys; takes effect at the next reboot.
    -Mode Off      verifier /reset; takes effect at the next reboot.
    -Mode Query    verifier /querysettings and /query.
    -Mode Enable   turns checks on for ktmrm.sys *without* a reboot, before the driver loads (the
                   service must be stopped): on Windows 11 / Server 2025 and later
                   `verifier /dif 1 2 4 5 9 12 18 /now /driver ktmrm.sys` (the rule classes that can
                   start immediately; deadlock detection and DMA checking need a reboot), else
                   `verifier /volatile /flags 0x9BB` + `/volatile /adddriver ktmrm.sys` (Windows 10:
                   DDI compliance cannot be volatile). Falls back from the first to the second.
    -Mode Run      (the default) Enable if verifier is not already active for ktmrm.sys, install
                   and start the driver (with -PackageDir), run the harness suites scenarios,
                   bad-input and stress, stop the driver (pool leaks are checked at unload), and
                   write everything to -ResultsDir.
    -Mode Collect  after a bugcheck and reboot: copies minidumps newer than -Since and the
                   BugCheck events from the System log into -ResultsDir.

    A violation is a bugcheck (0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION, or 0x52504E43 "RPNC" for a
    Rust panic); without a kernel debugger the machine reboots and writes a dump. README.md (Windows section)
    ("Reading a Driver Verifier failure") says how to read it.
#>
[CmdletBinding()]
param(
    [ValidateSet('On', 'Off', 'Query', 'Enable', 'Run', 'Collect')][string]$Mode = 'Run',
    [string]$PackageDir,
    [string]$ResultsDir,
    [string]$Harness,
    [int]$StressThreads = 8,
    [int]$StressSeconds = 60,
    [datetime]$Since = (Get-Date).AddDays(-1),
    [string]$Driver = 'ktmrm.sys'
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell.'
}

$repo = Split-Path -Parent $PSScriptRoot
if (-not $ResultsDir) { $ResultsDir = Join-Path $repo 'target\verifier' }
New-Item -ItemType Directory -Path $ResultsDir -Force | Out-Null

$StandardFlags = '0x209BB'   # = /standard
$VolatileFlags = '0x9BB'     # standard minus DDI compliance (0x20000), which cannot be volatile
$NowRuleClasses = @('1', '2', '4', '5', '9', '12', '18')

function Invoke-Verifier([string[]]$VerifierArgs) {
    # Native output merged into the pipeline must not become a terminating error.
    $ErrorActionPreference = 'Continue'
    Write-Host "verifier $($VerifierArgs -join ' ')"
    $out = & verifier.exe @VerifierArgs 2>&1 | ForEach-Object { "$_" }
    $code = $LASTEXITCODE
    $out | Out-Host
    return [pscustomobject]@{ Code = $code; Output = ($out -join "`n") }
}

# Whether verifier is set to verify $Driver: `/querysettings` lists the drivers of the
# registry/volatile settings, `/query` those loaded and verified now. The driver's file name is
# not localized, so matching it works on any language.
function Test-VerifierActive {
    $pattern = [regex]::Escape($Driver)
    $s = Invoke-Verifier @('/querysettings')
    if ($s.Output -match $pattern) { return $true }
    $q = Invoke-Verifier @('/query')
    return ($q.Output -match $pattern)
}

function Enable-VerifierNoReboot {
    $build = [Environment]::OSVersion.Version.Build
    if ($build -ge 22000) {
        $null = Invoke-Verifier (@('/dif') + $NowRuleClasses + @('/now', '/driver', $Driver))
        if (Test-VerifierActive) { return 'dif-now' }
        Write-Warning '/dif /now was not accepted (are rule classes already active?); trying /volatile.'
    }
    $null = Invoke-Verifier @('/volatile', '/flags', $VolatileFlags)
    $null = Invoke-Verifier @('/volatile', '/adddriver', $Driver)
    if (Test-VerifierActive) { return 'volatile' }
    return 'none'
}

switch ($Mode) {
    'On' {
        $null = Invoke-Verifier @('/flags', $StandardFlags, '/driver', $Driver)
        $null = Invoke-Verifier @('/querysettings')
        Write-Host "Driver Verifier is set for $Driver; reboot to activate it."
    }
    'Off' {
        $null = Invoke-Verifier @('/reset')
        Write-Host 'Driver Verifier settings cleared; reboot to deactivate it (volatile settings also end at reboot).'
    }
    'Query' {
        $null = Invoke-Verifier @('/querysettings')
        $null = Invoke-Verifier @('/query')
    }
    'Enable' {
        $how = Enable-VerifierNoReboot
        Write-Host "No-reboot verification: $how"
        if ($how -eq 'none') { exit 2 }
    }
    'Collect' {
        $dumps = @()
        foreach ($dir in @((Join-Path $env:SystemRoot 'Minidump'), $env:SystemRoot)) {
            if (Test-Path -LiteralPath $dir) {
                $dumps += Get-ChildItem -LiteralPath $dir -Filter '*.dmp' -File -ErrorAction SilentlyContinue |
                    Where-Object { $_.LastWriteTime -ge $Since }
            }
        }
        foreach ($d in $dumps) {
            Copy-Item -LiteralPath $d.FullName -Destination $ResultsDir -Force
            Write-Host "Copied $($d.FullName)"
        }
        # Event 1001 (WER-SystemErrorReporting) records "The computer has rebooted from a bugcheck".
        $events = Get-WinEvent -FilterHashtable @{ LogName = 'System'; Id = 1001; StartTime = $Since } -ErrorAction SilentlyContinue
        $events | Format-List TimeCreated, ProviderName, Message | Out-File -FilePath (Join-Path $ResultsDir 'bugcheck-events.txt') -Encoding utf8
        if ($events) { $events | Format-List TimeCreated, Message | Out-Host } else { Write-Host 'No bugcheck events since' $Since }
        $null = Invoke-Verifier @('/query')
    }
    'Run' {
        $transcript = Join-Path $ResultsDir 'verifier-run.log'
        Start-Transcript -Path $transcript -Force | Out-Null
        $ok = $false
        try {
            $installer = Join-Path $PSScriptRoot 'install-driver.ps1'
            $svc = Get-Service -Name 'KtmRm' -ErrorAction SilentlyContinue
            if ($svc -and $svc.Status -ne 'Stopped') {
                & $installer -Uninstall
            }
            $how = 'already active'
            if (-not (Test-VerifierActive)) { $how = Enable-VerifierNoReboot }
            Write-Host "Verifier for ${Driver}: $how"
            if ($how -eq 'none') { throw 'Could not enable Driver Verifier without a reboot; use -Mode On, reboot, and run again.' }

            if ($PackageDir) { & $installer -PackageDir $PackageDir -Start }
            else { & sc.exe start KtmRm | Out-Host }

            Invoke-Verifier @('/query') | Out-Null
            $harnessArgs = @{
                Suites        = @('scenarios', 'bad-input', 'stress')
                ResultsDir    = $ResultsDir
                StressThreads = $StressThreads
                StressSeconds = $StressSeconds
            }
            if ($Harness) { $harnessArgs.Harness = $Harness }
            $global:LASTEXITCODE = 0
            & (Join-Path $PSScriptRoot 'run-harness.ps1') @harnessArgs
            $harnessCode = $LASTEXITCODE

            # Unload under Verifier: pool still allocated by ktmrm.sys at unload is a 0xC4 bugcheck.
            & sc.exe stop KtmRm | Out-Host
            Start-Sleep -Seconds 2
            $q = Invoke-Verifier @('/query')
            $q.Output | Out-File -FilePath (Join-Path $ResultsDir 'verifier-query.txt') -Encoding utf8
            $ok = ($harnessCode -eq 0)
        } finally {
            Stop-Transcript | Out-Null
        }
        Write-Host "Results in $ResultsDir (a bugcheck would have rebooted the machine: then run -Mode Collect)."
        if (-not $ok) { exit 1 }
    }
}
