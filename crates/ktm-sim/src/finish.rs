//! The end of a test: the violations and counters the checker recorded, the leak checks
//! (enlistments never closed, references never released) and [`Ktm::finish`].

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::checker::Counters;
use crate::ids::EnlistmentId;
use crate::ktm::Ktm;
use crate::model::{Enlistment, State};
use crate::violation::Violation;

impl Ktm {
    /// Records a violation found outside the model (by [`crate::SimDevice`]).
    pub(crate) fn record_violation(&self, v: Violation) {
        self.lock().checker.violation(v);
    }

    /// Every violation recorded so far.
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().checker.violations.clone()
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.lock().checker.counters.clone()
    }

    /// Enlistments still open although their transaction has ended (the RM must close each one
    /// after its last answer, docs/ktm.md §3 table, §7 "Callback").
    /// Waits first for threaded callbacks still running (at least 5 s), since an RM closes its
    /// enlistment after answering.
    #[must_use]
    pub fn leaked_enlistments(&self) -> Vec<Violation> {
        let st = self.settle();
        st.enlistments
            .iter()
            .filter(|(_, e)| !e.closed && st.txs[&e.tx].state.is_ended())
            .map(|(id, e)| Self::leak(&st, *id, e))
            .collect()
    }

    /// Waits until no threaded callback is running any more (up to 5 s, or the answer deadline
    /// if longer); false if some still run then. A commit or rollback can end while a callback
    /// it overtook (a PREPARE a ROLLBACK overtook, [`crate::Interleavings::eager_rollback`])
    /// still runs: what that callback does (log, force, crash) belongs to the run all the same.
    #[must_use]
    pub fn wait_callbacks(&self) -> bool {
        self.settle().inflight == 0
    }

    /// Waits for threaded callbacks still running (see [`Ktm::finish_wait`]): they are expected
    /// to return (a panicking one may take a while to unwind).
    fn settle(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        let until = Instant::now() + Self::finish_wait(&st);
        while st.inflight > 0 && Instant::now() < until {
            st = self.wait(st, until);
        }
        st
    }

    /// How long the end-of-test checks wait for callbacks to return and enlistments to close:
    /// 5 s, or the answer deadline if longer (a bound of the test, not KTM behaviour).
    fn finish_wait(st: &State) -> Duration {
        st.config
            .answer_deadline
            .unwrap_or_default()
            .max(Duration::from_secs(5))
    }

    fn leak(st: &State, id: EnlistmentId, e: &Enlistment) -> Violation {
        Violation::LeakedEnlistment {
            enlistment: id,
            rm: e.rm,
            key: e.key,
            tx: e.tx,
            state: st.txs[&e.tx].state,
            last: e.last.map(|(_, a)| a),
        }
    }

    /// Ends a test: waits for threaded callbacks still running and for enlistments of ended
    /// transactions to close (each up to 5 s, or the answer deadline if longer), records leaked
    /// enlistments and unreleased transaction references as violations, and the recovery rules
    /// of a durable TM ([`Violation::RecoveryMissing`], [`Violation::LastRecoverCount`],
    /// [`Violation::NoOutcomeAfterRecovery`], see `recovery.rs`), and returns every violation.
    pub fn finish(&self) -> Vec<Violation> {
        let mut st = self.settle();
        let until = Instant::now() + Self::finish_wait(&st);
        while st
            .enlistments
            .values()
            .any(|e| !e.closed && st.txs[&e.tx].state.is_ended())
            && Instant::now() < until
        {
            st = self.wait(st, until);
        }
        if st.inflight > 0 {
            let deliveries = st.inflight;
            st.checker
                .violation(Violation::CallbackStillRunning { deliveries });
        }
        let leaks: Vec<(EnlistmentId, Violation)> = st
            .enlistments
            .iter()
            .filter(|(_, e)| !e.closed && !e.leak_reported && st.txs[&e.tx].state.is_ended())
            .map(|(id, e)| (*id, Self::leak(&st, *id, e)))
            .collect();
        for (id, leak) in leaks {
            st.enlistments.get_mut(&id).expect("present").leak_reported = true;
            st.checker.violation(leak);
        }
        let refs: Vec<Violation> = st
            .txs
            .values()
            .filter(|t| t.references > 0)
            .map(|t| Violation::LeakedReference {
                tx: t.id,
                references: t.references,
            })
            .collect();
        let recovery = st.recovery_violations();
        for r in refs.into_iter().chain(recovery) {
            if !st.checker.violations.contains(&r) {
                st.checker.violation(r);
            }
        }
        st.checker.violations.clone()
    }

    /// [`Ktm::finish`], panicking with the list if there is any violation.
    pub fn assert_clean(&self) {
        let v = self.finish();
        let lines: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(
            v.is_empty(),
            "KTM protocol violations:\n  {}",
            lines.join("\n  ")
        );
    }
}
