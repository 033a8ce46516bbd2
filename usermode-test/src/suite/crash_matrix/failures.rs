//! The crash matrix's other half: the log device fails without a crash. For each log force a
//! scenario makes, the device fails from that force on ([`ktm_sim::SimLog::fail_from`]); the
//! scenario runs to its end on the live machine, which is checked as it is (the rule: visible
//! only once durable; a failure reported to the app leaves no trace), then restarted twice and
//! checked again (nothing visible is lost). A COMMIT whose record cannot be forced is withheld
//! (its callback returns `STATUS_PENDING`) and KTM waits for it: the run then restarts the
//! machine at once, as an operator would, instead of waiting.

use super::RunResult;
use super::scenarios::{self, Unit};
use super::verify::{Seen, check_no_trace};
use ktm_sim::{DeliveryMode, NtStatus, SimDevice};
use std::time::{Duration, Instant};

/// `STATUS_IO_DEVICE_ERROR`: what the failing log device answers.
const IO_DEVICE_ERROR: NtStatus = NtStatus(0xC000_0185_u32 as i32);

/// How long a run may take before the machine is restarted anyway.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `s` with the log device failing from force number `force` on.
pub(super) fn run_one(s: scenarios::Scenario, mode: DeliveryMode, force: u64) -> RunResult {
    let what = format!(
        "{} ({mode:?}), log device fails from force {force}",
        s.name()
    );
    let (dev, mut r) = match RunResult::start(&what, s, mode) {
        Ok(started) => started,
        Err(r) => return r,
    };
    dev.log().fail_from(force, IO_DEVICE_ERROR);
    let pending = dev.ktm().counters().pending_returns;
    let app = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            let mut units: Vec<Unit> = Vec::new();
            scenarios::run(s, &dev, &mut units);
            units
        })
    };
    let until = Instant::now() + PATIENCE;
    while !app.is_finished()
        && dev.ktm().counters().pending_returns == pending
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let withheld = !app.is_finished();
    let booted = if withheld {
        // KTM waits for the withheld CommitComplete: restart, which ends the app's wait.
        let b = dev.restart();
        (b, app.join())
    } else {
        let units = app.join();
        // A callback the outcome overtook may still run: the live machine is checked once
        // it has returned.
        if !dev.ktm().wait_callbacks() {
            r.violations.push(format!(
                "{what}: callbacks still running after the scenario"
            ));
        }
        if let Ok(units) = &units
            && let Err(v) = check_no_trace(&dev, units, &format!("{what}, before restart"))
        {
            r.violations.extend(v);
        }
        (dev.restart(), units)
    };
    let (dev2, units) = match booted {
        (Ok((d, _)), Ok(units)) => (d, units),
        (Err(e), _) => {
            r.violations.push(format!("{what}: restart: {e}"));
            return r;
        }
        (_, Err(_)) => {
            r.violations
                .push(format!("{what}: the app thread panicked"));
            return r;
        }
    };
    match check_no_trace(&dev2, &units, &format!("{what}, after restart")) {
        Ok(seen) if seen.contains(&Seen::InDoubt) => {
            r.violations.push(format!("{what}: in doubt after restart"));
        }
        Ok(seen) => r.seen = seen,
        Err(v) => r.violations.extend(v),
    }
    again(&dev2, &units, &what, &mut r);
    r
}

/// What recovery left must itself survive one more restart; then the checker's findings.
fn again(dev: &SimDevice, units: &[Unit], what: &str, r: &mut RunResult) {
    match dev.restart() {
        Ok((dev3, _)) => {
            if let Err(v) = check_no_trace(&dev3, units, &format!("{what}, second restart")) {
                r.violations.extend(v);
            }
            r.violations.extend(
                dev3.finish()
                    .into_iter()
                    .map(|v| format!("{what}: checker: {v}")),
            );
        }
        Err(e) => r.violations.push(format!("{what}: second restart: {e}")),
    }
}
