//! `ktmrm-test crash-matrix`: crash a durable simulated machine at every step of every protocol
//! path of a set of scenarios, restart it, and check what recovery left (README "Durability").
//!
//! For each scenario and delivery mode a dry run lists the crash points the scenario passes:
//! KTM's ([`ktm_sim::CrashPoint`]: before PREPARE, around each PrepareComplete, after the commit
//! record, around each CommitComplete or RollbackComplete) and the RM's log forces
//! ([`LogCrash`]: during the force, losing the unforced records whole or torn, and after it,
//! before the engine answers). Each point is then a run of its own: crash there, restart
//! (optionally crashing again during recovery: before LAST_RECOVER, or in the recovery's
//! first log force), and check with `verify::check`: every unit all-or-nothing, KTM's
//! decision respected, everything the app was told committed visible, an in-doubt promoted
//! transaction invisible with its keys locked until its superior decides; then once more after
//! a clean restart, and the KTM checker's findings. Then the same forces again, with the log
//! device failing from each one on without a crash (`failures.rs`).

mod failures;
mod scenarios;
mod verify;

pub use scenarios::Scenario;

use ktm_sim::{CrashPoint, DeliveryMode, LogCrash, Outcome, SimConfig, SimDevice};
use scenarios::Unit;
use serde::Serialize;
use std::time::Duration;
use verify::Seen;

/// Which runs to make.
#[derive(Clone, Debug)]
pub struct Options {
    /// Scenarios to crash in.
    pub scenarios: Vec<Scenario>,
    /// Delivery modes to run each in.
    pub modes: Vec<DeliveryMode>,
    /// Also crash a second time during each recovery.
    pub recovery_crashes: bool,
    /// Bytes of a torn record that reach the disk in the torn variant of a log crash.
    pub torn_bytes: usize,
    /// Also fail the log device, without a crash, from each log force on.
    pub log_failures: bool,
}

impl Options {
    /// Everything: every scenario, both delivery modes, crashes during recovery.
    #[must_use]
    pub fn full() -> Self {
        Options {
            scenarios: Scenario::ALL.to_vec(),
            modes: vec![DeliveryMode::Inline, DeliveryMode::Threaded],
            recovery_crashes: true,
            torn_bytes: 30,
            log_failures: true,
        }
    }
}

/// One crash to arm: the `nth` passing (from 0, counted from boot) of a KTM crash point, or a
/// log force by number. Not a [`ktm_sim::CrashStep::index`]: under Threaded delivery the
/// enlistments of a phase pass their points in either order, so an index names different
/// steps in different runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    Ktm { point: CrashPoint, nth: u64 },
    Log(LogCrash),
}

impl Crash {
    /// Whether `dev`'s run so far passed this point (armed or not). Under Threaded delivery a
    /// point can lie on one interleaving's path and not another's: a ROLLBACK that overtakes
    /// ktmrm's PREPARE (`ktm_sim::Interleavings::eager_rollback`) before the engine handled it
    /// leaves no Prepare record to force and no PrepareComplete.
    fn passed(self, dev: &SimDevice) -> bool {
        match self {
            Crash::Ktm { point, nth } => {
                let n = dev
                    .ktm()
                    .crash_points()
                    .iter()
                    .filter(|p| p.point == point)
                    .count();
                n as u64 > nth
            }
            Crash::Log(LogCrash::DuringForce { force, .. } | LogCrash::AfterForce { force }) => {
                dev.log().forces() > force
            }
        }
    }
}

/// Runs per armed crash that may take another path before the matrix reports the point as not
/// reached: each is a fresh machine, and the run's own trace (not its timing) tells whether it
/// passed the point.
const ATTEMPTS: usize = 50;

/// Dry runs per scenario under Threaded delivery, whose crash points are joined with the Inline
/// dry run's: a point on the path of only some interleavings is crashed at too. The Inline path
/// is one of the interleavings Threaded delivery allows, and joining it keeps the set whole
/// when a loaded machine makes every threaded dry run take the same shorter path (a veto that
/// overtakes ktmrm's PREPARE eight times in a row dropped the Prepare force's points).
const THREADED_DRY_RUNS: usize = 8;

/// A second crash, during recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Again {
    No,
    BeforeLastRecover,
    RecoveryForce,
}

/// Totals of one scenario in one mode.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario.
    pub scenario: &'static str,
    /// `inline` or `threaded`.
    pub mode: &'static str,
    /// Distinct crash points the dry run passed.
    pub points: usize,
    /// Crashes made (first crashes plus crashes during recovery that fired).
    pub crashes: usize,
    /// Runs with the log device failing without a crash (one per log force).
    pub failures: usize,
    /// Units found applied / absent after the first recovery, over all runs.
    pub applied: usize,
    /// Absent after recovery.
    pub absent: usize,
    /// In doubt after recovery, then resolved by the superior.
    pub in_doubt: usize,
}

/// The matrix's result.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// One row per scenario and mode.
    pub rows: Vec<Row>,
    /// Crash points tried (sum of the rows' `points`).
    pub crash_points: usize,
    /// Crashes made.
    pub crashes: usize,
    /// Runs (one crash, restart and checks each; and each dry run that failed) that found no
    /// violation.
    pub passed: usize,
    /// Runs that found a violation, and dry runs that failed.
    pub failed: usize,
    /// Always 0: every planned run runs (kept for the suites' common summary line).
    pub skipped: usize,
    /// Runs with the log device failing without a crash.
    pub log_failures: usize,
    /// Crash runs made again because their interleaving (Threaded delivery) did not pass the
    /// armed point; each counts once above, as the run that crashed.
    pub reruns: usize,
    /// Every violation found.
    pub violations: Vec<String>,
}

/// The device of scenario `s` in `mode`, with every interleaving KTM's documentation allows
/// (`SimConfig`'s default).
fn config(s: Scenario, mode: DeliveryMode) -> SimConfig {
    SimConfig {
        delivery: mode,
        single_phase: s.single_phase(),
        answer_deadline: Some(Duration::from_secs(5)),
        ..SimConfig::default()
    }
}

/// A booted durable device with the base keys written.
fn fresh(s: Scenario, mode: DeliveryMode) -> Result<SimDevice, String> {
    let (dev, _) = SimDevice::durable(config(s, mode)).map_err(|e| format!("boot: {e}"))?;
    if !scenarios::preload(&scenarios::App::new(&dev)) {
        return Err("preload failed".into());
    }
    Ok(dev)
}

/// The dry runs: the crash points `s` passes after the preload, and the log forces it makes.
/// Inline delivery takes one path; under Threaded delivery the points of several dry runs are
/// joined (see [`THREADED_DRY_RUNS`]).
fn points(
    s: Scenario,
    mode: DeliveryMode,
    torn: usize,
) -> Result<(Vec<Crash>, std::ops::Range<u64>), String> {
    let runs: &[DeliveryMode] = match mode {
        DeliveryMode::Inline => &[DeliveryMode::Inline],
        DeliveryMode::Threaded => &[DeliveryMode::Threaded; THREADED_DRY_RUNS + 1],
    };
    let mut ktm: Vec<Crash> = Vec::new();
    let mut forces: Option<std::ops::Range<u64>> = None;
    for (i, &m) in runs.iter().enumerate() {
        let m = if i == 0 { DeliveryMode::Inline } else { m };
        let (k, f) = dry_run(s, m)?;
        for c in k {
            if !ktm.contains(&c) {
                ktm.push(c);
            }
        }
        forces = Some(match forces {
            None => f,
            Some(r) => r.start.min(f.start)..r.end.max(f.end),
        });
    }
    let forces = forces.unwrap_or(0..0);
    let mut out = ktm;
    for force in forces.clone() {
        out.push(Crash::Log(LogCrash::DuringForce { force, torn: 0 }));
        out.push(Crash::Log(LogCrash::DuringForce { force, torn }));
        out.push(Crash::Log(LogCrash::AfterForce { force }));
    }
    Ok((out, forces))
}

/// One dry run: the KTM crash points passed after the preload, and the log forces made.
fn dry_run(s: Scenario, mode: DeliveryMode) -> Result<(Vec<Crash>, std::ops::Range<u64>), String> {
    let dev = fresh(s, mode)?;
    let (steps, forces) = (dev.ktm().crash_points().len(), dev.log().forces());
    let mut units = Vec::new();
    scenarios::run(s, &dev, &mut units);
    if !dev.ktm().wait_callbacks() {
        return Err("callbacks still running after the scenario".into());
    }
    // Taken before the checks, whose lock probes pass crash points of their own.
    let passed = dev.ktm().crash_points();
    let forces_end = dev.log().forces();
    if let Err(v) = verify::check(&dev, &units, "dry run") {
        return Err(v.join("\n"));
    }
    let mut out = Vec::new();
    for (i, p) in passed.iter().enumerate().skip(steps) {
        let nth = passed.iter().take(i).filter(|q| q.point == p.point).count() as u64;
        out.push(Crash::Ktm {
            point: p.point,
            nth,
        });
    }
    let v: Vec<String> = dev.finish().iter().map(ToString::to_string).collect();
    if !v.is_empty() {
        return Err(v.join("\n"));
    }
    Ok((out, forces..forces_end))
}

/// What one run found.
struct RunResult {
    crashes: usize,
    /// Runs made again first because their interleaving did not pass the armed point.
    reruns: usize,
    seen: Vec<Seen>,
    violations: Vec<String>,
}

impl RunResult {
    /// A fresh machine for the run `what`, or the result of a run that could not start.
    fn start(
        what: &str,
        s: Scenario,
        mode: DeliveryMode,
    ) -> Result<(SimDevice, RunResult), RunResult> {
        let mut r = RunResult {
            crashes: 0,
            reruns: 0,
            seen: Vec::new(),
            violations: Vec::new(),
        };
        match fresh(s, mode) {
            Ok(d) => Ok((d, r)),
            Err(e) => {
                r.violations.push(format!("{what}: {e}"));
                Err(r)
            }
        }
    }
}

impl Row {
    /// Counts what the first recovery of a run found.
    fn count(&mut self, seen: &[Seen]) {
        for s in seen {
            match s {
                Seen::Applied => self.applied += 1,
                Seen::Absent => self.absent += 1,
                Seen::InDoubt => self.in_doubt += 1,
            }
        }
    }
}

/// Crashes `s` at `crash`, restarts (crashing again per `again`), and checks.
fn run_one(s: Scenario, mode: DeliveryMode, crash: Crash, again: Again) -> RunResult {
    let what = format!(
        "{} ({mode:?}), crash at {crash:?}, again {again:?}",
        s.name()
    );
    let mut attempt = 0;
    let (dev, units, mut r) = loop {
        attempt += 1;
        let (dev, mut r) = match RunResult::start(&what, s, mode) {
            Ok(started) => started,
            Err(r) => return r,
        };
        match crash {
            Crash::Ktm { point, nth } => dev.ktm().crash_at_nth(point, nth),
            Crash::Log(c) => dev.log().arm(c),
        }
        let mut units: Vec<Unit> = Vec::new();
        scenarios::run(s, &dev, &mut units);
        // A callback the outcome overtook may still run, and crash the machine.
        if !dev.ktm().wait_callbacks() {
            r.violations.push(format!(
                "{what}: callbacks still running after the scenario"
            ));
            return r;
        }
        match dev.ktm().crash_count() {
            1 => break (dev, units, r),
            0 if !crash.passed(&dev) && attempt < ATTEMPTS => {}
            0 if !crash.passed(&dev) => {
                r.violations.push(format!(
                    "{what}: no interleaving of {ATTEMPTS} runs passed the crash point"
                ));
                return r;
            }
            0 => {
                r.violations.push(format!(
                    "{what}: the run passed the crash point, but the armed crash did not happen"
                ));
                return r;
            }
            n => {
                r.violations
                    .push(format!("{what}: the armed crash happened {n} times"));
                return r;
            }
        }
    };
    r.crashes = 1;
    r.reruns = attempt - 1;
    match again {
        Again::No => {}
        Again::BeforeLastRecover => dev.ktm().crash_at(CrashPoint::BeforeLastRecover),
        Again::RecoveryForce => dev.log().arm(LogCrash::DuringForce {
            force: dev.log().forces(),
            torn: 0,
        }),
    }
    let before = dev.ktm().crash_count();
    let mut booted = dev.restart();
    if dev.ktm().crash_count() > before {
        r.crashes += 1;
        booted = dev.restart();
    } else if again != Again::No {
        // Nothing to crash in (no force during this recovery): the run is an `Again::No` one.
        dev.ktm().disarm_crash();
        dev.log().disarm();
    }
    let dev2 = match booted {
        Ok((d, _)) => d,
        Err(e) => {
            r.violations.push(format!("{what}: restart: {e}"));
            return r;
        }
    };
    match verify::check(&dev2, &units, &format!("{what}, after recovery")) {
        Ok(seen) => r.seen = seen,
        Err(v) => r.violations.extend(v),
    }
    // The superior comes back and decides: commit.
    for u in units.iter().filter(|u| u.superior) {
        if let Some(id) = u.tx
            && dev2.ktm().decision(id) == Outcome::Undetermined
            && dev2.ktm().transaction_info_by_id(id).is_some()
        {
            let st = dev2.ktm().superior_decide(id, true);
            if !st.is_success() {
                r.violations
                    .push(format!("{what}: the superior's late commit: {st:?}"));
            }
        }
    }
    let check_all = |dev: &SimDevice, when: &str, r: &mut RunResult| match verify::check(
        dev,
        &units,
        &format!("{what}, {when}"),
    ) {
        Ok(seen) if seen.contains(&Seen::InDoubt) => {
            r.violations.push(format!("{what}, {when}: still in doubt"));
        }
        Ok(_) => {}
        Err(v) => r.violations.extend(v),
    };
    check_all(&dev2, "after the outcome", &mut r);
    // What recovery and the late outcome wrote must itself survive a crash.
    match dev2.restart() {
        Ok((dev3, _)) => {
            check_all(&dev3, "after a second restart", &mut r);
            r.violations.extend(
                dev3.finish()
                    .into_iter()
                    .map(|v| format!("{what}: checker: {v}")),
            );
        }
        Err(e) => r.violations.push(format!("{what}: second restart: {e}")),
    }
    r
}

/// Runs the matrix; `progress` is called after each run with (runs done, runs planned).
pub fn run(opts: &Options, mut progress: impl FnMut(usize, usize)) -> Summary {
    let mut plan = Vec::new();
    let mut violations = Vec::new();
    let mut rows = Vec::new();
    let (mut passed, mut failed, mut reruns) = (0, 0, 0);
    for &mode in &opts.modes {
        for &s in &opts.scenarios {
            match points(s, mode, opts.torn_bytes) {
                Ok(p) => plan.push((s, mode, p)),
                Err(e) => {
                    failed += 1;
                    violations.push(format!("{} ({mode:?}) dry run: {e}", s.name()));
                }
            }
        }
    }
    let agains: &[Again] = if opts.recovery_crashes {
        &[Again::No, Again::BeforeLastRecover, Again::RecoveryForce]
    } else {
        &[Again::No]
    };
    let fails = |f: &std::ops::Range<u64>| {
        if opts.log_failures {
            f.clone().count()
        } else {
            0
        }
    };
    let total: usize = plan
        .iter()
        .map(|(_, _, (p, f))| p.len() * agains.len() + fails(f))
        .sum();
    let mut done = 0;
    for (s, mode, (pts, forces)) in plan {
        let mut row = Row {
            scenario: s.name(),
            mode: match mode {
                DeliveryMode::Inline => "inline",
                DeliveryMode::Threaded => "threaded",
            },
            points: pts.len(),
            crashes: 0,
            failures: 0,
            applied: 0,
            absent: 0,
            in_doubt: 0,
        };
        for &crash in &pts {
            for &again in agains {
                let r = run_one(s, mode, crash, again);
                row.crashes += r.crashes;
                reruns += r.reruns;
                if again == Again::No {
                    row.count(&r.seen);
                }
                if r.violations.is_empty() {
                    passed += 1;
                } else {
                    failed += 1;
                }
                violations.extend(r.violations);
                done += 1;
                progress(done, total);
            }
        }
        let n = fails(&forces);
        for force in forces.take(n) {
            let r = failures::run_one(s, mode, force);
            row.failures += 1;
            row.count(&r.seen);
            if r.violations.is_empty() {
                passed += 1;
            } else {
                failed += 1;
            }
            violations.extend(r.violations);
            done += 1;
            progress(done, total);
        }
        rows.push(row);
    }
    Summary {
        crash_points: rows.iter().map(|r| r.points).sum(),
        crashes: rows.iter().map(|r| r.crashes).sum(),
        log_failures: rows.iter().map(|r| r.failures).sum(),
        reruns,
        rows,
        passed,
        failed,
        skipped: 0,
        violations,
    }
}
