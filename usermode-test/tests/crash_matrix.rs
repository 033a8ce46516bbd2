//! The crash matrix, bounded for `cargo test`: every scenario, Inline delivery, each
//! crash point with and without a second crash during recovery, and the log device failing
//! without a crash from each log force on. `ktmrm-test crash-matrix` runs the full matrix (both
//! delivery modes).

mod common;

use ktm_sim::DeliveryMode;
use ktmrm_client::suite::crash_matrix::{Options, Scenario, run};

#[test]
fn every_crash_point_of_every_scenario_recovers_all_or_nothing() {
    let opts = Options {
        modes: vec![DeliveryMode::Inline],
        ..Options::full()
    };
    let s = run(&opts, |_, _| {});
    println!(
        "crash matrix: {} log-device failures, {} crash points tried, {} crashes, {} violations",
        s.log_failures,
        s.crash_points,
        s.crashes,
        s.violations.len()
    );
    assert!(s.violations.is_empty(), "{:#?}", s.violations);
    common::assert_readme_says(&format!(
        "`cargo test` runs the Inline half ({} log-device failures, {} crash points, {} crashes)",
        s.log_failures, s.crash_points, s.crashes
    ));
    assert_eq!(s.rows.len(), Scenario::ALL.len());
    for r in &s.rows {
        // Each scenario passes KTM's points and at least one log force.
        assert!(r.points >= 5, "{r:?}");
        // A crash during recovery fired for at least every point (BeforeLastRecover always).
        assert!(r.crashes >= 2 * r.points, "{r:?}");
        // The log device failed without a crash at each of its forces (at least one).
        assert!(r.failures >= 1, "{r:?}");
    }
    assert_eq!(
        s.log_failures,
        s.rows.iter().map(|r| r.failures).sum::<usize>()
    );
    let row = |name: &str| s.rows.iter().find(|r| r.scenario == name).unwrap();
    // Runs end both ways, and the promoted transaction is found in doubt after a crash between
    // its prepare and the superior's decision.
    assert!(row("two-phase").applied > 0 && row("two-phase").absent > 0);
    assert_eq!(row("vetoed").applied, 0);
    assert_eq!(row("rollback-race").applied, 0);
    assert!(row("promoted").in_doubt > 0);
}

/// Under Threaded delivery a ROLLBACK can overtake ktmrm's PREPARE (another RM's no vote, or
/// the app's rollback during the Prepare force): the commit returns while the overtaken
/// callback still runs, and whether the engine forced a Prepare record depends on which ran
/// first. Each crash point is still crashed at, with the same counts, run after run: every run
/// waits for the callbacks, and a run whose interleaving did not pass its point is run again.
#[test]
fn the_threaded_half_crashes_at_every_point_of_the_overtaken_prepare() {
    let opts = Options {
        scenarios: vec![Scenario::Vetoed, Scenario::RollbackRace],
        modes: vec![DeliveryMode::Threaded],
        ..Options::full()
    };
    for _ in 0..3 {
        let s = run(&opts, |_, _| {});
        assert!(s.violations.is_empty(), "{:#?}", s.violations);
        let points: Vec<usize> = s.rows.iter().map(|r| r.points).collect();
        // As Inline: vetoed 7, rollback-race 5 (the Prepare force's three and two of KTM's).
        assert_eq!(points, [7, 5]);
        assert_eq!(s.crashes, 48);
    }
}

#[test]
fn the_cli_prints_the_summary_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktmrm-test"))
        .args(["crash-matrix", "--quick", "vetoed"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("vetoed           inline"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let (totals, last) = (lines[lines.len() - 2], lines[lines.len() - 1]);
    assert!(
        totals.starts_with("crash matrix: ") && totals.ends_with("crashes, 0 violations"),
        "{totals}"
    );
    // The suites' closing line: with --quick each crash run crashes once, so runs = crashes
    // plus the log-device failure runs.
    let count = |what: &str| -> usize {
        totals
            .trim_start_matches("crash matrix: ")
            .split(", ")
            .find_map(|f| f.strip_suffix(what))
            .unwrap()
            .parse()
            .unwrap()
    };
    let runs = count(" crashes") + count(" log-device failures");
    assert!(count(" log-device failures") > 0, "{totals}");
    assert_eq!(
        last,
        format!("crash-matrix: {runs} passed, 0 failed, 0 skipped")
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ktmrm-test"))
        .args(["crash-matrix", "nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
