//! The port: everything the engine asks of KTM, implemented by the driver (Zw*/Tm* calls) and by
//! `ktm-sim` (the host model). The engine never calls Windows itself.
//!
//! Rules the engine keeps, and every implementation may rely on:
//! - The engine never holds its state lock while calling a port method, so a port may deliver
//!   notifications re-entrantly (inside `enlist` or `answer`) or on other threads.
//! - Every notification that needs an answer is answered exactly once, through
//!   [`KtmPort::answer`], before [`crate::Engine::notify`] returns — or `notify` returns
//!   `STATUS_PENDING`: the answer is withheld (a durable COMMIT whose record could not be
//!   forced; KTM redelivers COMMIT after a restart), and the host returns that status from its
//!   callback.
//! - Each successful [`KtmPort::enlist`] is matched by exactly one [`KtmPort::close_enlistment`],
//!   after the enlistment's last answer (or at once, if the transaction ended meanwhile).
//!
//! All methods are called at PASSIVE_LEVEL (every KTM routine requires it; docs/ktm.md §2).

use ktmrm_proto::NtStatus;

/// A KTM notification, as `TRANSACTION_NOTIFY_*` (docs/ktm.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notification {
    /// `TRANSACTION_NOTIFY_PREPREPARE` (0x1).
    PrePrepare,
    /// `TRANSACTION_NOTIFY_PREPARE` (0x2).
    Prepare,
    /// `TRANSACTION_NOTIFY_COMMIT` (0x4).
    Commit,
    /// `TRANSACTION_NOTIFY_ROLLBACK` (0x8).
    Rollback,
    /// `TRANSACTION_NOTIFY_SINGLE_PHASE_COMMIT` (0x200).
    SinglePhaseCommit,
    /// `TRANSACTION_NOTIFY_RM_DISCONNECTED` (0x1000000): cleanup only, no answer.
    RmDisconnected,
    /// `TRANSACTION_NOTIFY_RECOVER` (0x100): a durable RM's enlistment from before a restart;
    /// answered with `TmRecoverEnlistment` through [`crate::Engine::recover`], which needs the
    /// notification's UOW.
    Recover,
    /// `TRANSACTION_NOTIFY_LAST_RECOVER` (0x2000): every RECOVER was sent; no answer.
    LastRecover,
    /// `TRANSACTION_NOTIFY_INDOUBT` (0x4000): the outcome comes later (a superior TM has not
    /// decided); no answer.
    InDoubt,
    /// Any other bit: the engine did not ask for it and answers nothing.
    Other(u32),
}

/// `TRANSACTION_NOTIFY_*` values.
pub mod notify_bits {
    /// PREPREPARE.
    pub const PREPREPARE: u32 = 0x1;
    /// PREPARE.
    pub const PREPARE: u32 = 0x2;
    /// COMMIT.
    pub const COMMIT: u32 = 0x4;
    /// ROLLBACK.
    pub const ROLLBACK: u32 = 0x8;
    /// SINGLE_PHASE_COMMIT.
    pub const SINGLE_PHASE_COMMIT: u32 = 0x200;
    /// RM_DISCONNECTED.
    pub const RM_DISCONNECTED: u32 = 0x0100_0000;
    /// RECOVER.
    pub const RECOVER: u32 = 0x100;
    /// LAST_RECOVER.
    pub const LAST_RECOVER: u32 = 0x2000;
    /// INDOUBT.
    pub const INDOUBT: u32 = 0x4000;
    /// The mask ktmrm enlists with: the four phases every RM must take (docs/ktm.md §3). Not
    /// SINGLE_PHASE_COMMIT: "one (and only one) resource manager must register to receive
    /// TRANSACTION_NOTIFY_SINGLE_PHASE_COMMIT notifications for its enlistments. All other
    /// resource managers must be read-only"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-commit-operations>),
    /// and KTM "sends this kind of notification when a transactional client calls
    /// ZwCommitTransaction" without being documented to check the others. ktmrm's transactions
    /// are meant to be shared with the transacted registry or another RM that writes, and the
    /// mask is fixed when ktmrm enlists, before it can know; so it asks for single-phase commit
    /// only when its host promises ktmrm is the only RM that writes
    /// ([`crate::Engine::single_phase`], [`SOLE_WRITER_MASK`]).
    pub const ENGINE_MASK: u32 = PREPREPARE | PREPARE | COMMIT | ROLLBACK;
    /// [`ENGINE_MASK`] plus single-phase commit, for a deployment where no other RM writes.
    pub const SOLE_WRITER_MASK: u32 = ENGINE_MASK | SINGLE_PHASE_COMMIT;
}

impl Notification {
    /// From a `TRANSACTION_NOTIFY_*` value.
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        use notify_bits as n;
        match bits {
            n::PREPREPARE => Notification::PrePrepare,
            n::PREPARE => Notification::Prepare,
            n::COMMIT => Notification::Commit,
            n::ROLLBACK => Notification::Rollback,
            n::SINGLE_PHASE_COMMIT => Notification::SinglePhaseCommit,
            n::RM_DISCONNECTED => Notification::RmDisconnected,
            n::RECOVER => Notification::Recover,
            n::LAST_RECOVER => Notification::LastRecover,
            n::INDOUBT => Notification::InDoubt,
            other => Notification::Other(other),
        }
    }

    /// The `TRANSACTION_NOTIFY_*` value.
    #[must_use]
    pub const fn bits(self) -> u32 {
        use notify_bits as n;
        match self {
            Notification::PrePrepare => n::PREPREPARE,
            Notification::Prepare => n::PREPARE,
            Notification::Commit => n::COMMIT,
            Notification::Rollback => n::ROLLBACK,
            Notification::SinglePhaseCommit => n::SINGLE_PHASE_COMMIT,
            Notification::RmDisconnected => n::RM_DISCONNECTED,
            Notification::Recover => n::RECOVER,
            Notification::LastRecover => n::LAST_RECOVER,
            Notification::InDoubt => n::INDOUBT,
            Notification::Other(b) => b,
        }
    }
}

/// The engine's answer to a notification: one KTM completion routine each (docs/ktm.md §2, §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// `ZwPrePrepareComplete` / `TmPrePrepareComplete`.
    PrePrepareComplete,
    /// `ZwPrepareComplete` / `TmPrepareComplete`: a yes vote.
    PrepareComplete,
    /// `ZwCommitComplete` / `TmCommitComplete` (also after a single-phase commit).
    CommitComplete,
    /// `ZwRollbackComplete` / `TmRollbackComplete`.
    RollbackComplete,
    /// `ZwReadOnlyEnlistment` / `TmReadOnlyEnlistment`: nothing to commit; no more notifications.
    ReadOnly,
    /// `ZwSinglePhaseReject` / `TmSinglePhaseReject`: KTM falls back to the two phases.
    SinglePhaseReject,
    /// `ZwRollbackEnlistment` / `TmRollbackEnlistment`: a no vote (before PrepareComplete only).
    RollbackEnlistment,
}

/// A transaction's identity: its KTM GUID (UOW), as 16 bytes (`TmGetTransactionId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub [u8; 16]);

/// The value the engine passes as `EnlistmentKey` and KTM hands back with each notification.
/// An opaque number, never a pointer, so a stale notification cannot reach freed memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnlistmentKey(pub u64);

/// What the engine needs from KTM.
pub trait KtmPort {
    /// Who sent the request (driver: the IRP's requestor mode; simulator: the calling process).
    type Caller;
    /// A referenced transaction object; dropping it releases the reference
    /// (driver: `ObDereferenceObject`).
    type TxRef;
    /// An enlistment the engine owns until it calls [`KtmPort::close_enlistment`]
    /// (driver: a kernel handle from `ZwCreateEnlistment`).
    type Enlistment;
    /// The enlistment a notification names, used only to answer it (driver: the `PKENLISTMENT`
    /// the callback receives, valid for the callback's duration).
    type Target;

    /// References the transaction behind a caller's handle value with the caller's access mode,
    /// the transaction object type and `TRANSACTION_ENLIST` access, and returns its GUID. Errors:
    /// `STATUS_INVALID_HANDLE`, `STATUS_OBJECT_TYPE_MISMATCH`, `STATUS_ACCESS_DENIED`, or
    /// `STATUS_TRANSACTION_NOT_ACTIVE` when it is known to have ended.
    fn reference_transaction(
        &self,
        caller: &Self::Caller,
        handle: u64,
    ) -> Result<(Self::TxRef, TxId), NtStatus>;

    /// Enlists ktmrm's resource manager in `tx` with `mask` and `key`. Notifications for `key`
    /// may arrive before this returns, on this thread or another.
    fn enlist(
        &self,
        tx: &Self::TxRef,
        key: EnlistmentKey,
        mask: u32,
    ) -> Result<Self::Enlistment, NtStatus>;

    /// Closes an enlistment after its last answer (driver: `ZwClose`).
    fn close_enlistment(&self, enlistment: Self::Enlistment);

    /// Answers a notification (driver: the matching `Tm*Complete` routine).
    fn answer(&self, target: &Self::Target, answer: Answer) -> NtStatus;

    /// Creates a KTM transaction for BEGIN and returns a handle valid in the caller's process
    /// (driver: `ZwCreateTransaction` in the caller's context, without `OBJ_KERNEL_HANDLE`).
    fn create_transaction(
        &self,
        caller: &Self::Caller,
        timeout_ms: u32,
        description: &[u8],
    ) -> Result<u64, NtStatus>;

    /// What the engine keeps for an enlistment KTM rebuilt at recovery, made before RECOVER is
    /// answered: KTM may redeliver the outcome before [`KtmPort::recover_enlistment`] returns,
    /// and the record must be in place by then (the driver keeps there the work item the COMMIT
    /// may need). `None` (the default): nothing to keep, or it comes from `recover_enlistment`.
    fn recovered_enlistment(&self) -> Option<Self::Enlistment> {
        None
    }

    /// Answers RECOVER (driver: `TmRecoverEnlistment(Enlistment, key)`): later notifications for
    /// this enlistment carry `key`. Returns the enlistment for the engine to own and close with
    /// [`KtmPort::close_enlistment`] after its outcome (driver: a kernel handle opened on the
    /// callback's enlistment object), or `None` if there is nothing to close. Only a durable
    /// engine receives RECOVER; a volatile host keeps the default, `STATUS_TM_VOLATILE`.
    fn recover_enlistment(
        &self,
        target: &Self::Target,
        key: EnlistmentKey,
    ) -> Result<Option<Self::Enlistment>, NtStatus> {
        let _ = (target, key);
        Err(NtStatus::TM_VOLATILE)
    }

    /// True when KTM has started committing `tx` (it is no longer active) and has not decided
    /// its outcome yet: PREPREPARE or PREPARE under way, or in doubt. KTM refuses enlistments
    /// by then, so a read naming such a transaction in which ktmrm holds nothing (it never
    /// wrote there, or answered read-only) is served from committed data — exactly that
    /// transaction's view — instead of failing. Driver: `TmIsTransactionActive` is FALSE and
    /// `ZwQueryInformationTransaction(TransactionBasicInformation)` reports
    /// `TransactionOutcomeUndetermined`. Default: false (such a read gets the enlistment's
    /// status, `STATUS_TRANSACTION_NOT_ACTIVE`).
    fn is_committing(&self, tx: &Self::TxRef) -> bool {
        let _ = tx;
        false
    }

    /// Asks KTM to roll back the transaction of an enlistment the engine owns, outside any
    /// notification (driver: `ZwRollbackEnlistment(handle, NULL)`, legal until the enlistment
    /// has answered PrepareComplete). KTM then delivers ROLLBACK, possibly before this returns.
    /// Used at unload ([`crate::Engine::rollback_unprepared`]). Default, for hosts that never
    /// unload: `STATUS_INVALID_DEVICE_REQUEST`, nothing asked.
    fn rollback_enlistment(&self, enlistment: &Self::Enlistment) -> NtStatus {
        let _ = enlistment;
        NtStatus::INVALID_DEVICE_REQUEST
    }

    /// Waits a moment, bounded, while another thread finishes enlisting the same transaction
    /// (or, at unload, while an answer is on its way to KTM); the engine re-checks afterwards,
    /// so a wait that ends early or late only costs time (driver: an event
    /// [`KtmPort::enlist_finished`] signals, with a 1 ms timeout).
    fn yield_now(&self);

    /// An enlistment attempt ended (enlisted or not): wakes threads waiting in
    /// [`KtmPort::yield_now`]. Default: nothing to wake (hosts whose wait is a yield).
    fn enlist_finished(&self) {}
}
