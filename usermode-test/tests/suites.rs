//! The scenario, bad-input and stress suites against the simulated device: every check must
//! run (nothing skipped on the simulator) and pass.

use ktm_sim::DeliveryMode;
use ktmrm_client::client::Isolation;
use ktmrm_client::suite::{Report, Verdict, bad_input, scenarios, stress};
use ktmrm_client::transport::{Backend, SimConfig};
use std::time::Duration;

fn assert_all_passed(r: &Report) {
    let bad: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| format!("{:?} {}: {}", c.verdict, c.name, c.detail))
        .collect();
    assert!(bad.is_empty(), "{}:\n{}", r.suite, bad.join("\n"));
    assert!(r.passed > 0);
}

/// Asserts that `r` has a check named each of `names` (each a `what`, for the message).
fn assert_has_checks(r: &Report, what: &str, names: &[&str]) {
    let ran: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
    for name in names {
        assert!(ran.contains(name), "{what} {name} missing from {ran:?}");
    }
}

#[test]
fn every_scenario_passes_on_the_simulator() {
    let r = scenarios::run(&Backend::Sim(SimConfig::default()), &[]).unwrap();
    assert_all_passed(&r);
    // One scenario per rule of the README's "Semantics", each run (none skipped on the
    // simulator).
    assert_has_checks(
        &r,
        "scenario",
        &[
            "reads-never-block",
            "own-writes-visible",
            "committed-only-outside",
            "write-write-conflict",
            "non-transacted-conflict",
            "absent-key-not-found",
            "size-limits",
            "commit-atomic",
            "rollback-explicit",
            "rollback-timeout",
            "rollback-veto",
            "rollback-handle-close",
            "ended-tx-not-active",
            "list-order-pagination",
            "read-only-transaction",
            "two-rms-commit",
            "quotas",
        ],
    );
}

#[test]
fn scenarios_pass_with_notifications_on_other_threads() {
    // KTM may deliver notifications on arbitrary threads (docs/ktm.md §3): the same rules must hold.
    let cfg = SimConfig {
        delivery: DeliveryMode::Threaded,
        ..SimConfig::default()
    };
    let r = scenarios::run(&Backend::Sim(cfg), &[]).unwrap();
    assert_all_passed(&r);
}

#[test]
fn named_scenarios_run_alone_and_unknown_names_are_refused() {
    let backend = Backend::Sim(SimConfig::default());
    let r = scenarios::run(&backend, &["rollback-veto".into(), "quotas".into()]).unwrap();
    assert_eq!(r.checks.len(), 2);
    assert_all_passed(&r);
    let e = scenarios::run(&backend, &["no-such".into()]).err().unwrap();
    assert!(e.to_string().contains("no such scenario"), "{e}");
}

#[test]
fn bad_input_suite_passes_and_leaves_the_store_alone() {
    let r = bad_input::run(Backend::Sim(SimConfig::default()).connect().unwrap()).unwrap();
    assert_all_passed(&r);
    assert_has_checks(
        &r,
        "category",
        &[
            "truncated",
            "trailing-bytes",
            "wrong-version",
            "flags-reserved",
            "isolation-level",
            "isolation-without-transaction",
            "isolation-mismatch",
            "body-len-lies",
            "field-len-lies",
            "oversize-fields",
            "tx-where-none-allowed",
            "unknown-codes",
            "output-too-small",
            "access-denied",
            "bad-handle-values",
            "wrong-object-type",
            "closed-transaction",
            "ended-transactions",
            "store-unchanged",
            "no-leaked-transactions",
        ],
    );
}

/// A one-second stress run on the simulator at `isolation`: every check passes, transfers
/// commit, and none fails but by a serializable abort.
fn short_stress(isolation: Isolation) -> stress::StressSummary {
    let cfg = stress::StressConfig {
        threads: 2,
        duration: Duration::from_secs(1),
        accounts: 4,
        progress: false,
        isolation,
    };
    let (r, s) = stress::run(Backend::Sim(SimConfig::default()).connect().unwrap(), &cfg).unwrap();
    assert_all_passed(&r);
    assert!(s.commits > 0);
    assert_eq!(s.failed_commits, 0);
    assert!(s.unexpected.is_empty(), "{:?}", s.unexpected);
    s
}

#[test]
fn short_stress_run_keeps_every_invariant() {
    let s = short_stress(Isolation::ReadCommitted);
    assert_eq!(s.aborts, 0, "read committed never votes no");
}

/// Serializable transfers without the hand-made re-read keep the same invariants: the driver
/// refuses every transfer whose balances moved under it (as a conflict at a write or an abort
/// at commit), and those retry.
#[test]
fn short_serializable_stress_run_keeps_every_invariant_without_the_re_read() {
    let s = short_stress(Isolation::Serializable);
    assert_eq!(s.isolation, "serializable");
    assert_eq!(s.stale_reads, 0, "no re-read at serializable");
}
