//! `crash-matrix`: a simulated durable machine crashed at every step, restarted and checked.

use std::io::IsTerminal;

use ktmrm_client::suite::crash_matrix::{self, Options, Scenario};
use serde_json::json;

use super::done;
use crate::cli::Cli;
use crate::out;
use crate::outcome::{Outcome, Verdict, usage};

pub fn matrix(cli: &Cli, names: &[String], list: bool, quick: bool) -> Outcome {
    if list {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        return Ok(done(cli, names.join("\n"), json!(names)));
    }
    let mut opts = Options::full();
    if quick {
        opts.modes = vec![ktm_sim::DeliveryMode::Inline];
        opts.recovery_crashes = false;
    }
    if !names.is_empty() {
        let mut picked = Vec::new();
        for n in names {
            match Scenario::ALL.iter().find(|s| s.name() == n) {
                Some(s) => picked.push(*s),
                None => {
                    return usage(format!(
                        "no crash scenario named {n:?} (see `ktmrm-test crash-matrix --list`)"
                    ));
                }
            }
        }
        opts.scenarios = picked;
    }
    let bar = if !cli.json && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let summary = crash_matrix::run(&opts, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    if cli.json {
        out::line(serde_json::to_value(&summary).unwrap_or_default());
    } else {
        out::print(&table(&summary));
    }
    Ok(Verdict::of(summary.violations.is_empty()))
}

/// The summary as text: a row per scenario and mode, each violation, the totals.
fn table(summary: &crash_matrix::Summary) -> String {
    let mut text = format!(
        "{:<16} {:<9} {:>6} {:>7} {:>8} {:>8} {:>7} {:>9}\n",
        "scenario", "mode", "points", "crashes", "failures", "applied", "absent", "in doubt"
    );
    for r in &summary.rows {
        text.push_str(&format!(
            "{:<16} {:<9} {:>6} {:>7} {:>8} {:>8} {:>7} {:>9}\n",
            r.scenario, r.mode, r.points, r.crashes, r.failures, r.applied, r.absent, r.in_doubt
        ));
    }
    for v in &summary.violations {
        text.push_str(&format!("VIOLATION: {v}\n"));
    }
    text.push_str(&format!(
        "crash matrix: {} log-device failures, {} crash points tried, {} crashes, {} \
         violations\n\
         crash-matrix: {} passed, {} failed, {} skipped\n",
        summary.log_failures,
        summary.crash_points,
        summary.crashes,
        summary.violations.len(),
        summary.passed,
        summary.failed,
        summary.skipped
    ));
    text
}
