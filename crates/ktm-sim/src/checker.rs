//! The protocol checker and the counters.
//!
//! Every rule the model enforces on an RM ends up here as a human-readable violation string.
//! Each string starts with a stable tag (`"answer not outstanding"`, `"wrong answer"`, `"never
//! answered"`, ...) so tests can match on it.

use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use ktmrm_core::{Answer, Notification};

use crate::ktm::Ktm;
use crate::model::{Enlistment, EnlistmentId, State};

/// A point in a transaction's outcome protocol, passed to the phase probe once that phase has
/// been answered by every enlistment and before the next phase is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// SINGLE_PHASE_COMMIT answered with CommitComplete (the transaction committed).
    SinglePhaseCommit,
    /// PREPREPARE answered by all.
    PrePrepare,
    /// PREPARE answered by all, commit decided (COMMIT not yet delivered): data must not be
    /// visible outside the transaction yet.
    Prepare,
    /// COMMIT answered by all: data must be visible.
    Commit,
    /// ROLLBACK answered by all.
    Rollback,
}

/// Whether `answer` is a legal reply to `notification` (docs/ktm.md §3 table, S2, S22):
/// - PREPREPARE → PrePrepareComplete, or RollbackEnlistment on error; ReadOnly is allowed "until
///   PrepareComplete would be due" (§1, S1).
/// - PREPARE → PrepareComplete, RollbackEnlistment (veto) or ReadOnly.
/// - COMMIT → CommitComplete only ("no rollback after PrepareComplete", §8, S4).
/// - ROLLBACK → RollbackComplete.
/// - SINGLE_PHASE_COMMIT → CommitComplete or SinglePhaseReject (§1, S3); the model also takes
///   RollbackEnlistment and ReadOnly, both legal before PrepareComplete (§1, §8, S1, S4).
#[must_use]
pub fn answer_fits(notification: Notification, answer: Answer) -> bool {
    use Answer as A;
    match notification {
        Notification::PrePrepare => matches!(
            answer,
            A::PrePrepareComplete | A::RollbackEnlistment | A::ReadOnly
        ),
        Notification::Prepare => {
            matches!(
                answer,
                A::PrepareComplete | A::RollbackEnlistment | A::ReadOnly
            )
        }
        Notification::Commit => answer == A::CommitComplete,
        Notification::Rollback => answer == A::RollbackComplete,
        Notification::SinglePhaseCommit => matches!(
            answer,
            A::CommitComplete | A::SinglePhaseReject | A::RollbackEnlistment | A::ReadOnly
        ),
        Notification::RmDisconnected
        | Notification::Recover
        | Notification::LastRecover
        | Notification::InDoubt
        | Notification::Other(_) => false,
    }
}

/// The `TRANSACTION_NOTIFY_*` name of a notification, for messages.
#[must_use]
pub fn notification_name(n: Notification) -> String {
    match n {
        Notification::PrePrepare => "PREPREPARE".into(),
        Notification::Prepare => "PREPARE".into(),
        Notification::Commit => "COMMIT".into(),
        Notification::Rollback => "ROLLBACK".into(),
        Notification::SinglePhaseCommit => "SINGLE_PHASE_COMMIT".into(),
        Notification::RmDisconnected => "RM_DISCONNECTED".into(),
        Notification::Recover => "RECOVER".into(),
        Notification::LastRecover => "LAST_RECOVER".into(),
        Notification::InDoubt => "INDOUBT".into(),
        Notification::Other(b) => format!("notification 0x{b:X}"),
    }
}

/// Counters for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Notifications delivered, per kind.
    pub notifications: HashMap<Notification, u64>,
    /// Answers received (legal or not), per kind.
    pub answers: HashMap<Answer, u64>,
    /// Transactions created.
    pub transactions_created: u64,
    /// Transactions committed.
    pub committed: u64,
    /// Transactions rolled back.
    pub aborted: u64,
    /// Successful enlist calls.
    pub enlistments_created: u64,
    /// Enlistments not closed yet.
    pub enlistments_open: u64,
    /// Enlist calls refused (by the model's rules or by injected faults).
    pub enlist_failures: u64,
    /// Callbacks that returned `STATUS_PENDING` with their answer still due (docs/ktm.md §3
    /// "Delivery B": the RM answers later).
    pub pending_returns: u64,
    /// Of those, COMMITs still unanswered when the model stopped waiting: withheld, as a
    /// durable RM whose commit cannot be logged does until a restart; not a violation (any
    /// other notification left pending is "never answered").
    pub withheld: u64,
}

impl Counters {
    /// Notifications of one kind delivered.
    #[must_use]
    pub fn sent(&self, n: Notification) -> u64 {
        self.notifications.get(&n).copied().unwrap_or(0)
    }

    /// Answers of one kind received.
    #[must_use]
    pub fn answered(&self, a: Answer) -> u64 {
        self.answers.get(&a).copied().unwrap_or(0)
    }
}

/// Violations and counters; lives inside the model's lock.
#[derive(Default)]
pub(crate) struct Checker {
    pub violations: Vec<String>,
    pub counters: Counters,
    /// (enlistment, delivery sequence) of each callback that returned `STATUS_PENDING` with
    /// its answer still due: only these may stay unanswered without a violation.
    pub pending: HashSet<(EnlistmentId, u64)>,
}

/// Whether `n` wants an answer (a `Tm*Complete`, or `TmRecoverEnlistment` for RECOVER): only
/// those may be left pending (docs/ktm.md §3 "Delivery B", S16).
#[must_use]
pub(crate) const fn needs_answer(n: Notification) -> bool {
    !matches!(
        n,
        Notification::RmDisconnected
            | Notification::LastRecover
            | Notification::InDoubt
            | Notification::Other(_)
    )
}

impl Checker {
    pub fn violation(&mut self, text: String) {
        self.violations.push(text);
    }

    pub fn sent(&mut self, n: Notification) {
        *self.counters.notifications.entry(n).or_default() += 1;
    }

    pub fn answered(&mut self, a: Answer) {
        *self.counters.answers.entry(a).or_default() += 1;
    }
}

impl Ktm {
    /// Records a violation found outside the model (by [`crate::SimDevice`]).
    pub(crate) fn record_violation(&self, text: String) {
        self.lock().checker.violation(text);
    }

    /// Every violation recorded so far.
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
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
    pub fn leaked_enlistments(&self) -> Vec<String> {
        let st = self.settle();
        st.enlistments
            .iter()
            .filter(|(_, e)| !e.closed && st.txs[&e.tx].state.is_ended())
            .map(|(id, e)| Self::leak_text(&st, *id, e))
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

    fn leak_text(st: &State, id: EnlistmentId, e: &Enlistment) -> String {
        format!(
            "leaked enlistment: {id} (RM {}, key {}, {} {:?}) still open after the transaction \
             ended (last answer {:?})",
            e.rm.0,
            e.key.0,
            State::tx_name(e.tx),
            st.txs[&e.tx].state,
            e.last.map(|(_, a)| a)
        )
    }

    /// Ends a test: waits for threaded callbacks still running and for enlistments of ended
    /// transactions to close (each up to 5 s, or the answer deadline if longer), records leaked
    /// enlistments and unreleased transaction references as violations, and the recovery rules
    /// of a durable TM ("recovery missing", "LAST_RECOVER count", "no outcome after recovery",
    /// see `recovery.rs`), and returns every violation.
    pub fn finish(&self) -> Vec<String> {
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
            let n = st.inflight;
            st.checker.violation(format!(
                "callback still running: {n} deliveries never returned"
            ));
        }
        let leaks: Vec<(EnlistmentId, String)> = st
            .enlistments
            .iter()
            .filter(|(_, e)| !e.closed && !e.leak_reported && st.txs[&e.tx].state.is_ended())
            .map(|(id, e)| (*id, Self::leak_text(&st, *id, e)))
            .collect();
        for (id, text) in leaks {
            st.enlistments.get_mut(&id).expect("present").leak_reported = true;
            st.checker.violation(text);
        }
        let refs: Vec<String> = st
            .txs
            .values()
            .filter(|t| t.references > 0)
            .map(|t| {
                format!(
                    "leaked reference: {} still has {} kernel reference(s)",
                    State::tx_name(t.id),
                    t.references
                )
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
        assert!(
            v.is_empty(),
            "KTM protocol violations:\n  {}",
            v.join("\n  ")
        );
    }
}
