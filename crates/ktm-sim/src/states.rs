//! The progress of the model's objects: a transaction's state and outcome, an enlistment's
//! place in the protocol.

/// A transaction's state in the model (docs/ktm.md §1; `RollingBack` and `SinglePhaseCommitting` are
/// the model's names for the time a rollback or a single-phase commit is being delivered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    /// Open for work and enlistments.
    Active,
    /// SINGLE_PHASE_COMMIT delivered to the only enlistment.
    SinglePhaseCommitting,
    /// PREPREPARE being delivered; RMs may still enlist (docs/ktm.md §1, S3).
    PrePreparing,
    /// PREPARE being delivered; no more enlistments. Also a transaction whose every vote is in
    /// while its outcome comes from a superior TM that has not decided (in doubt, docs/ktm.md §1).
    Preparing,
    /// The commit decision is made; COMMIT being delivered.
    Committing,
    /// ROLLBACK being delivered.
    RollingBack,
    /// Ended: committed.
    Committed,
    /// Ended: rolled back.
    Aborted,
}

impl TxState {
    /// True once the outcome is delivered.
    #[must_use]
    pub const fn is_ended(self) -> bool {
        matches!(self, TxState::Committed | TxState::Aborted)
    }
}

/// `TRANSACTION_OUTCOME` (docs/ktm.md §1: Undetermined 1, Committed 2, Aborted 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Outcome {
    /// Not decided yet.
    Undetermined = 1,
    /// Committed.
    Committed = 2,
    /// Rolled back.
    Aborted = 3,
}

/// An enlistment's progress through the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnlistmentState {
    /// Enlisted; no phase answered yet (also after SinglePhaseReject).
    Enlisted,
    /// Answered PrePrepareComplete.
    PrePrepared,
    /// Answered PrepareComplete (a yes vote): it must now get COMMIT or ROLLBACK (docs/ktm.md §3).
    Prepared,
    /// Answered ReadOnly: no more notifications (docs/ktm.md §1, S1).
    ReadOnly,
    /// Answered RollbackEnlistment (a no vote): gets only the ROLLBACK that follows, which KTM
    /// sends "to all resource managers" (docs/ktm.md §1, S4, handling-rollback-operations).
    VotedNo,
    /// Answered CommitComplete.
    Committed,
    /// Answered RollbackComplete.
    RolledBack,
    /// Never answered by the deadline, or its callback failed without answering.
    Abandoned,
}

impl EnlistmentState {
    /// Still takes part in the phases: it has neither finished, voted no nor dropped out.
    #[must_use]
    pub const fn in_play(self) -> bool {
        matches!(
            self,
            EnlistmentState::Enlisted | EnlistmentState::PrePrepared | EnlistmentState::Prepared
        )
    }

    /// Gets a ROLLBACK when the transaction rolls back: every enlistment in play, and one that
    /// voted no ("KTM sends a TRANSACTION_NOTIFY_ROLLBACK notification to all resource
    /// managers", docs/ktm.md §1, S4); not a read-only one ("no more notifications", §1, S1).
    #[must_use]
    pub const fn owes_rollback(self) -> bool {
        self.in_play() || matches!(self, EnlistmentState::VotedNo)
    }
}
