//! The check suites: `scenarios`, `bad-input`, `stress`.

use std::io::IsTerminal;
use std::time::Duration;

use ktmrm_client::Backend;
use ktmrm_client::client::Isolation;
use ktmrm_client::suite::{Report, bad_input, scenarios, stress};
use serde_json::json;

use super::done;
use crate::cli::Cli;
use crate::out;
use crate::outcome::{Outcome, Verdict, usage};

pub fn scenarios(cli: &Cli, backend: &Backend, names: &[String], list: bool) -> Outcome {
    if list {
        let all = scenarios::all();
        let text = all
            .iter()
            .map(|s| format!("{:<30} {}", s.name, s.rule))
            .collect::<Vec<_>>()
            .join("\n");
        let v: Vec<_> = all
            .iter()
            .map(|s| json!({ "name": s.name, "rule": s.rule }))
            .collect();
        return Ok(done(cli, text, json!(v)));
    }
    if let Some(bad) = names
        .iter()
        .find(|n| !scenarios::all().iter().any(|s| s.name == n.as_str()))
    {
        return usage(format!(
            "no scenario named {bad:?} (see `ktmrm-test scenarios --list`)"
        ));
    }
    let report = scenarios::run(backend, names)?;
    Ok(print_report(cli, &report, None))
}

pub fn bad_input(cli: &Cli, backend: &Backend) -> Outcome {
    let report = bad_input::run(backend.connect()?)?;
    Ok(print_report(cli, &report, None))
}

pub fn stress(
    cli: &Cli,
    backend: &Backend,
    (threads, seconds, accounts): (usize, f64, usize),
    isolation: Isolation,
) -> Outcome {
    if !seconds.is_finite() || seconds < 0.0 {
        return usage(format!(
            "--seconds {seconds} is not a duration: use {}–86,400",
            stress::SECONDS.start()
        ));
    }
    if !stress::SECONDS.contains(&seconds) {
        return usage(format!(
            "--seconds {seconds} is out of range: use {}–86,400",
            stress::SECONDS.start()
        ));
    }
    let cfg = stress::StressConfig {
        threads,
        duration: Duration::from_secs_f64(seconds),
        accounts,
        progress: !cli.json && std::io::stderr().is_terminal(),
        isolation,
    };
    if let Err(msg) = cfg.check() {
        return usage(msg);
    }
    let (report, summary) = stress::run(backend.connect()?, &cfg)?;
    if !cli.json {
        out::line(format!(
            "{} threads × {:.1} s, {}: {} commits ({:.0}/s), {} conflicts retried, {} stale reads retried, {} aborts retried, {} failed commits",
            cfg.threads,
            summary.seconds,
            summary.isolation,
            summary.commits,
            summary.commits_per_second,
            summary.conflicts,
            summary.stale_reads,
            summary.aborts,
            summary.failed_commits
        ));
    }
    Ok(print_report(
        cli,
        &report,
        serde_json::to_value(&summary).ok(),
    ))
}

/// Prints a suite's report (with `summary` under that name in the JSON) and its verdict.
fn print_report(cli: &Cli, report: &Report, summary: Option<serde_json::Value>) -> Verdict {
    if cli.json {
        let mut v = serde_json::to_value(report).unwrap_or_default();
        if let (Some(obj), Some(summary)) = (v.as_object_mut(), summary) {
            obj.insert("summary".into(), summary);
        }
        out::line(v);
    } else {
        out::print(&report.human(true));
    }
    Verdict::of(report.ok())
}
