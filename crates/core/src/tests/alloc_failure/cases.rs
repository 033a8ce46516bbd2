//! The tests: every allocation point of every scenario, in the volatile engine, over the
//! in-memory log and over the file log.

use super::*;

/// Asserts that README.md states `n` between `before` and `after`: the counts these tests reach
/// are printed there, and a change to the engine's allocations must update them.
fn readme_states(before: &str, n: u64, after: &str) {
    let readme = include_str!("../../../../../README.md");
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let phrase = format!("{before}{grouped}{after}");
    assert!(
        readme.contains(&phrase),
        "README.md must say {phrase:?} (the count this test reached)"
    );
}

#[test]
fn every_allocation_failure_is_clean() {
    let injected = inject_everywhere(Run::new);
    readme_states("engine scenarios (", injected, " injection points)");
}

/// The same in a durable engine, where the log's allocations fail too; besides the checks
/// above, a crash and restart after each run must give back exactly the committed store.
#[test]
fn every_allocation_failure_in_a_durable_engine_is_clean_and_recoverable() {
    let injected = inject_everywhere(Run::durable);
    readme_states("over the in-memory log (", injected, " points)");
}

/// The same with the file log the driver uses.
#[test]
fn every_allocation_failure_with_the_file_log_is_clean_and_recoverable() {
    let injected = inject_everywhere(Run::durable_file);
    readme_states("over the file log the driver uses (", injected, " points)");
}

/// Runs every scenario once per allocation point, failing that allocation; returns how many
/// points were reached.
fn inject_everywhere(make: fn() -> Run) -> u64 {
    let value = vec![7u8; 4096];
    let mut injected = 0u64;
    for (name, steps) in scenarios() {
        for fail_at in 0.. {
            let mut statuses: Vec<S> = Vec::with_capacity(steps.len());
            TRACKING.with(|t| t.set(true));
            LIVE.with(|l| l.set(0));
            let run = make();
            COUNT.with(|c| c.set(0));
            FAIL_AT.with(|f| f.set(fail_at));
            ARMED.with(|a| a.set(true));
            for s in &steps {
                statuses.push(run.step(*s, s.value(&value)));
            }
            ARMED.with(|a| a.set(false));
            let hit = COUNT.with(Cell::get) > fail_at;
            // The snapshot is the test's own memory: keep it out of the leak count.
            TRACKING.with(|t| t.set(false));
            let got = run.snapshot();
            TRACKING.with(|t| t.set(true));
            if run.log.is_some() {
                // Tracked: the crash frees log records the run allocated, and whatever the
                // restart allocates is freed with it or with the run's log.
                let state = run.engine.with_state(State::check_consistency);
                assert_eq!(state, Ok(()), "{name} @{fail_at}");
                let recovered = run.crash_and_recover();
                assert_eq!(
                    recovered.snapshot(),
                    got,
                    "{name} @{fail_at}: after restart"
                );
            }
            let stats = run.engine.stats();
            let durable = run.log.is_some();
            // Leaving no live transaction behind: end every transaction, as KTM would.
            for i in 1..TXS {
                run.step(Step::Rollback(i), &[]);
            }
            // A withheld CommitComplete keeps its transaction until a restart redelivers COMMIT.
            let withheld = unarmed(|| run.withheld.borrow().len()) as u64;
            assert_eq!(
                run.engine.stats().live_transactions,
                withheld,
                "{name} @{fail_at}"
            );
            drop(run);
            TRACKING.with(|t| t.set(false));
            assert_eq!(LIVE.with(Cell::get), 0, "{name} @{fail_at}: leaked bytes");
            if !hit {
                break; // the scenario completed without reaching allocation `fail_at`
            }
            injected += 1;
            // Failed steps report INSUFFICIENT_RESOURCES, or a no vote at commit.
            let failed: Vec<usize> = statuses
                .iter()
                .enumerate()
                .filter(|(_, st)| {
                    **st == S::INSUFFICIENT_RESOURCES || **st == S::TRANSACTION_ABORTED
                })
                .map(|(i, _)| i)
                .collect();
            // A durable engine may absorb a failure where logging is optional (an Abort record:
            // presumed abort covers it); the restart check above shows nothing was lost.
            assert!(
                durable
                    || !failed.is_empty()
                    || statuses.iter().all(|s| {
                        s.is_success()
                            || *s == S::OBJECT_NAME_NOT_FOUND
                            || *s == S::TRANSACTIONAL_CONFLICT
                    }),
                "{name} @{fail_at}: a failed allocation went unreported: {statuses:?}"
            );
            // The same scenario without the failed steps gives the same store and counters.
            let reference = Run::new();
            for (i, s) in steps.iter().enumerate() {
                if failed.contains(&i) {
                    if let Step::Commit(t) | Step::SinglePhase(t) = s {
                        reference.step(Step::Rollback(*t), &[]);
                    }
                    continue;
                }
                reference.step(*s, s.value(&value));
            }
            assert_eq!(
                got,
                reference.snapshot(),
                "{name} @{fail_at}: store differs"
            );
            assert_eq!(
                stats.keys,
                reference.engine.stats().keys,
                "{name} @{fail_at}"
            );
            assert_eq!(
                stats.bytes,
                reference.engine.stats().bytes,
                "{name} @{fail_at}"
            );
        }
    }
    eprintln!("allocation failures injected: {injected}");
    injected
}
