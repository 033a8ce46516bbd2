<#
.SYNOPSIS
    Driver Verifier for ktmrm.sys: turn it on or off, check that its checks are really active for
    ktmrm.sys, or run the harness under it and collect the result. Run elevated.

.DESCRIPTION
    The checks, and how each way of turning them on is documented (learn.microsoft.com, "Driver
    Verifier Command Syntax" and "Using Volatile Settings"):
    - After a reboot: the standard set, `/flags 0x209BB` (special pool 0x1, force IRQL checking
      0x2, pool tracking 0x8, I/O verification 0x10, deadlock detection 0x20, DMA checking 0x80,
      security checks 0x100, miscellaneous checks 0x800, DDI compliance checking 0x20000; the
      same as `/standard` less WDF verification, which a WDM driver does not use).
    - Without a reboot on Windows 11 / Server 2025 (build 22000 and later): `/dif 1 4 5 9 12 18
      /now`, the standard rule classes the syntax page marks as startable with /now (rule class N
      is flag bit N-1: 0x20919). Force IRQL checking (2), deadlock detection (6) and DMA checking
      (8) cannot start with /now, and /now "is only valid if no rule classes are already running".
      `/volatile /flags` takes only 0x4, 0x20, 0x80, 0x200 and 0x400 there, so the Windows 10
      set below is refused.
    - Without a reboot on Windows 10: `/volatile /flags 0x9BB` and `/volatile /adddriver
      ktmrm.sys` (the standard flags that can be volatile there; DDI compliance cannot).

    -Mode On       verifier /flags 0x209BB /driver ktmrm.sys; takes effect at the next reboot.
    -Mode Off      verifier /reset; takes effect at the next reboot.
    -Mode Query    verifier /querysettings and /query.
    -Mode Enable   turns the checks on for ktmrm.sys without a reboot, before the driver loads
                   (the service must be stopped): /dif ... /now on Windows 11, /volatile on
                   Windows 10; exit 2, with the reboot recipe, where neither applies or verifier
                   refuses. Then, if `verifier /query` already shows a Level, checks it as
                   -Mode Check does, except that the driver need not be listed yet.
    -Mode Check    asserts from `verifier /query` that the checks are active for ktmrm.sys, which
                   must be loaded: the driver is listed ("Name: ktmrm.sys") and the Level field
                   (the hexadecimal flags in effect) holds one whole set above (0x209BB, or
                   0x20919 on Windows 11, or 0x9BB on Windows 10). A driver name without those
                   flags, or output it cannot read, fails (exit 1). Writes the output it judged
                   to -ResultsDir.
    -Mode Run      (the default) Enable unless a set is already active, install and start the
                   driver (with -PackageDir), Check, run the harness suites scenarios, bad-input
                   and stress, stop the driver (pool leaks are checked at unload), and write
                   everything to -ResultsDir. Exit 0 only if Check and every suite passed.
    -Mode Collect  after a bugcheck and reboot: copies minidumps newer than -Since and the
                   BugCheck events from the System log into -ResultsDir.

    A violation is a bugcheck (0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION, or 0x52504E43 "RPNC" for a
    Rust panic); without a kernel debugger the machine reboots and writes a dump. README.md (Windows section)
    ("Reading a Driver Verifier failure") says how to read it.
#>
[CmdletBinding()]
param(
    [ValidateSet('On', 'Off', 'Query', 'Enable', 'Check', 'Run', 'Collect')][string]$Mode = 'Run',
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

$StandardFlags = [uint64]0x209BB                            # after a reboot
$NowRuleClasses = @('1', '4', '5', '9', '12', '18')         # Windows 11, /dif ... /now
$NowFlags = [uint64]0x20919                                 # the same, as flag bits
$VolatileFlags = [uint64]0x9BB                              # Windows 10, /volatile
$IsWindows11 = [Environment]::OSVersion.Version.Build -ge 22000
# The flag sets that count as "verified" on this system, strongest first.
$AcceptedSets = if ($IsWindows11) { @($StandardFlags, $NowFlags) } else { @($StandardFlags, $VolatileFlags) }

function Invoke-Verifier([string[]]$VerifierArgs) {
    # Native output merged into the pipeline must not become a terminating error.
    $ErrorActionPreference = 'Continue'
    Write-Host "verifier $($VerifierArgs -join ' ')"
    $out = & verifier.exe @VerifierArgs 2>&1 | ForEach-Object { "$_" }
    $code = $LASTEXITCODE
    $out | Out-Host
    return [pscustomobject]@{ Code = $code; Output = ($out -join "`n") }
}

# What `verifier /query` says is in effect now. Its field names (Level, Name) are not localized.
# Level is "the hexadecimal value of options" in effect (the syntax page, /query); each verified
# driver has a "Name: <image>, loads: N, unloads: N" line.
function Get-VerifierState {
    $q = Invoke-Verifier @('/query')
    $level = $null
    if ($q.Output -match '(?im)^\s*Level:\s*(?:0x)?([0-9A-F]{1,16})\s*$') {
        $level = [Convert]::ToUInt64($Matches[1], 16)
    }
    $listed = $q.Output -match ('(?im)^\s*Name:\s*' + [regex]::Escape($Driver) + '\s*(,|$)')
    return [pscustomobject]@{ Level = $level; Listed = $listed; Output = $q.Output }
}

# The first accepted flag set that Level holds whole, or $null.
function Find-ActiveSet($State) {
    if ($null -eq $State.Level) { return $null }
    foreach ($set in $AcceptedSets) {
        if (($State.Level -band $set) -eq $set) { return $set }
    }
    return $null
}

# Fails unless the checks are in effect (and, with -Loaded, ktmrm.sys is listed as verified).
# Keeps the output it judged in $ResultsDir\verifier-query-<Label>.txt.
function Assert-VerifierActive([string]$Label, [switch]$Loaded) {
    $state = Get-VerifierState
    $state.Output | Out-File -FilePath (Join-Path $ResultsDir "verifier-query-$Label.txt") -Encoding utf8
    $wanted = ($AcceptedSets | ForEach-Object { '0x{0:X}' -f $_ }) -join ' or '
    if ($null -eq $state.Level) {
        throw "verifier /query shows no Level field, so the checks for $Driver cannot be confirmed (wanted $wanted); see verifier-query-$Label.txt"
    }
    $set = Find-ActiveSet $state
    if ($null -eq $set) {
        throw ("verifier /query: Level 0x{0:X} lacks the checks wanted for {1} ({2})" -f $state.Level, $Driver, $wanted)
    }
    if ($Loaded -and -not $state.Listed) {
        throw "verifier /query does not list $Driver among the verified drivers (Level 0x$('{0:X}' -f $state.Level))"
    }
    Write-Host ("Driver Verifier active for {0}: Level 0x{1:X} holds 0x{2:X}{3}" -f $Driver, $state.Level, $set, $(if ($Loaded) { ', driver listed' } else { '' }))
    return $set
}

function Write-RebootRecipe([string]$Why) {
    Write-Warning "$Why Turn the checks on for the next boot instead: .\scripts\verifier.ps1 -Mode On, reboot, then run this again."
}

# Turns the checks on without a reboot; returns how, or 'none' (the reason is printed).
function Enable-VerifierNoReboot {
    if ($IsWindows11) {
        $r = Invoke-Verifier (@('/dif') + $NowRuleClasses + @('/now', '/driver', $Driver))
        if ($r.Code -ne 0) {
            Write-RebootRecipe "verifier /dif /now exited $($r.Code) (it refuses when rule classes are already running)."
            return 'none'
        }
        return 'dif-now'
    }
    $r = Invoke-Verifier @('/volatile', '/flags', ('0x{0:X}' -f $VolatileFlags))
    if ($r.Code -ne 0) {
        Write-RebootRecipe "verifier /volatile /flags exited $($r.Code)."
        return 'none'
    }
    $r = Invoke-Verifier @('/volatile', '/adddriver', $Driver)
    if ($r.Code -ne 0) {
        Write-RebootRecipe "verifier /volatile /adddriver exited $($r.Code)."
        return 'none'
    }
    return 'volatile'
}

switch ($Mode) {
    'On' {
        $null = Invoke-Verifier @('/flags', ('0x{0:X}' -f $StandardFlags), '/driver', $Driver)
        $null = Invoke-Verifier @('/querysettings')
        Write-Host "Driver Verifier is set for $Driver; reboot to activate it, then -Mode Check with the driver loaded."
    }
    'Off' {
        $null = Invoke-Verifier @('/reset')
        Write-Host 'Driver Verifier settings cleared; reboot to deactivate it (volatile and /now settings also end at reboot).'
    }
    'Query' {
        $null = Invoke-Verifier @('/querysettings')
        $null = Invoke-Verifier @('/query')
    }
    'Enable' {
        $how = Enable-VerifierNoReboot
        Write-Host "No-reboot verification: $how"
        if ($how -eq 'none') { exit 2 }
        # The driver is not loaded yet, so only the flags can be checked now, if /query already
        # shows them; -Mode Check (and -Mode Run) assert them with the driver loaded.
        if ($null -eq (Get-VerifierState).Level) {
            Write-Host "verifier /query shows no Level before $Driver loads; run -Mode Check once it is started."
        } else {
            try { $null = Assert-VerifierActive 'enabled' }
            catch { Write-Host "FAILED: $($_.Exception.Message)"; exit 1 }
        }
    }
    'Check' {
        try { $null = Assert-VerifierActive 'check' -Loaded }
        catch { Write-Host "FAILED: $($_.Exception.Message)"; exit 1 }
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
            if ($null -eq (Find-ActiveSet (Get-VerifierState))) { $how = Enable-VerifierNoReboot }
            Write-Host "Verifier for ${Driver}: $how"
            if ($how -eq 'none') { throw 'Could not enable Driver Verifier without a reboot; use -Mode On, reboot, and run again.' }

            if ($PackageDir) { & $installer -PackageDir $PackageDir -Start }
            else { & sc.exe start KtmRm | Out-Host }

            # The harness counts only if the checks are really on for the loaded driver.
            $null = Assert-VerifierActive 'loaded' -Loaded
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
