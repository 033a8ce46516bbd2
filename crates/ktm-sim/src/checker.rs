//! The protocol checker's record and the counters: every rule the model enforces on an RM ends
//! up here as a [`Violation`]. The end-of-test checks that read them are in `finish.rs`.

use std::collections::{HashMap, HashSet};

use ktmrm_core::{Answer, Notification};

use crate::ids::EnlistmentId;
use crate::violation::Violation;

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
    /// other notification left pending is [`Violation::NeverAnswered`]).
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
    pub violations: Vec<Violation>,
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
    pub fn violation(&mut self, v: Violation) {
        self.violations.push(v);
    }

    pub fn sent(&mut self, n: Notification) {
        *self.counters.notifications.entry(n).or_default() += 1;
    }

    pub fn answered(&mut self, a: Answer) {
        *self.counters.answers.entry(a).or_default() += 1;
    }
}
