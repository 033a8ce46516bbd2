//! The durable transaction manager's data: KTM's log, its recovery state and crash points. What
//! the TM does with them is in `durable_tm.rs` (logging, TM recovery), `crash.rs` (crashes) and
//! `recovery.rs` (RM recovery).
//!
//! A durable TM "owns a CLFS log stream ... KTM logs RM/transaction/enlistment state there"
//! (docs/ktm.md §1, S10, S17). The model's log is in-memory state that [`crate::Ktm::crash`] keeps while it
//! discards everything volatile. What the model logs **(unverified granularity; the sources say
//! only that KTM logs this state)**:
//! - an enlistment of a durable RM when KTM records its PrepareComplete;
//! - the commit record, when KTM decides to commit a transaction with a logged enlistment,
//!   before any COMMIT is delivered;
//! - an enlistment's CommitComplete / RollbackComplete; once every logged enlistment of a
//!   transaction has one, the transaction is forgotten.
//!
//! Nothing is logged for an abort: "presumed abort: a prepared transaction without `RECOVER`
//! counts as rolled back" (docs/ktm.md §1, S5, S21) — after a crash a prepared transaction without a
//! commit record is rolled back, unless its outcome comes from a superior TM that has not decided
//! (then it stays in doubt).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ktmrm_core::TxId;

use crate::ids::{EnlistmentGuid, RmGuid, RmId};
use crate::states::Outcome;

/// NTSTATUS values the durable model returns that `ktmrm_proto` does not name (docs/ktm.md §5 table).
pub mod status {
    use ktmrm_proto::NtStatus;

    /// `STATUS_TRANSACTIONMANAGER_NOT_ONLINE` (0xC0190052, "TM not operational"): a durable TM
    /// not recovered yet, and the model's answer to a call cut short by [`crate::Ktm::crash`]
    /// **(unverified: on a real crash the caller never returns)**.
    pub const TRANSACTIONMANAGER_NOT_ONLINE: NtStatus = NtStatus(0xC019_0052_u32 as i32);
    /// `STATUS_TRANSACTION_SUPERIOR_EXISTS` (0xC0190012): "a superior enlistment exists, so
    /// commit is refused" (docs/ktm.md §1, S9, §5).
    pub const TRANSACTION_SUPERIOR_EXISTS: NtStatus = NtStatus(0xC019_0012_u32 as i32);
    /// `STATUS_OBJECT_NAME_COLLISION` (0xC0000035): `ZwCreateResourceManager`'s "The GUID that
    /// ResourceManagerGuid specifies already exists"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwcreateresourcemanager>).
    pub const OBJECT_NAME_COLLISION: NtStatus = NtStatus(0xC000_0035_u32 as i32);
    /// `STATUS_RESOURCEMANAGER_NOT_FOUND` (0xC019004F): `ZwOpenResourceManager`'s "The specified
    /// resource manager could not be found"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwopenresourcemanager>).
    pub const RESOURCEMANAGER_NOT_FOUND: NtStatus = NtStatus(0xC019_004F_u32 as i32);
}

/// The recovery notifications (docs/ktm.md §3 table), as `ktmrm_core::Notification` names them.
pub mod notify {
    use ktmrm_core::Notification;

    /// `TRANSACTION_NOTIFY_RECOVER` (0x100): durable RM → `ZwRecoverEnlistment`.
    pub const RECOVER: Notification = Notification::Recover;
    /// `TRANSACTION_NOTIFY_LAST_RECOVER` (0x2000): recovery done.
    pub const LAST_RECOVER: Notification = Notification::LastRecover;
    /// `TRANSACTION_NOTIFY_INDOUBT` (0x4000): wait for the outcome.
    pub const INDOUBT: Notification = Notification::InDoubt;
}

/// `TRANSACTION_NOTIFICATION_RECOVERY_ARGUMENT {GUID EnlistmentId; GUID UOW}` (docs/ktm.md §3, S19),
/// the argument of RECOVER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryArgument {
    /// The enlistment's GUID.
    pub enlistment: EnlistmentGuid,
    /// The transaction's GUID.
    pub uow: TxId,
}

/// A step of the protocol where [`crate::Ktm::crash_at`] can crash the machine. Points are passed only
/// for durable enlistments (those KTM logs) on a durable TM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// PREPREPARE answered by all; PREPARE not delivered yet (no RM has logged).
    BeforePrepare,
    /// An RM called PrepareComplete (it has logged, docs/ktm.md §8, S22); KTM has not recorded it.
    BeforePrepareComplete,
    /// KTM recorded and logged an RM's PrepareComplete.
    AfterPrepareComplete,
    /// KTM's commit record is logged; no COMMIT delivered yet.
    AfterCommitRecord,
    /// An RM got COMMIT and called CommitComplete (it has applied); KTM has not recorded it.
    BeforeCommitComplete,
    /// KTM recorded and logged an RM's CommitComplete.
    AfterCommitComplete,
    /// An RM called RollbackComplete; KTM has not recorded it.
    BeforeRollbackComplete,
    /// Recovery: every RECOVER of an RM delivered (and answered, unless
    /// [`crate::Interleavings::early_last_recover`]), LAST_RECOVER not delivered yet.
    BeforeLastRecover,
}

/// One crash point passed (see [`crate::Ktm::crash_points`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashStep {
    /// Its position: `crash_at_step(index)` crashes here in a rerun of the same scenario.
    pub index: u64,
    /// Which point.
    pub point: CrashPoint,
    /// The transaction (zero for [`CrashPoint::BeforeLastRecover`]).
    pub tx: TxId,
    /// The enlistment, for points of one enlistment.
    pub enlistment: Option<EnlistmentGuid>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Arm {
    Point(CrashPoint),
    Step(u64),
    /// The `n`-th passing (from 0) of the point since the model was created.
    Nth(CrashPoint, u64),
}

#[derive(Default)]
pub(crate) struct CrashCtl {
    pub steps: Vec<CrashStep>,
    pub armed: Option<Arm>,
    pub crashes: u64,
}

/// A transaction's superior enlistment (ENLISTMENT_SUPERIOR, docs/ktm.md §1, S9).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Superior {
    /// The superior has driven PREPREPARE and PREPARE; it alone decides now.
    pub prepared: bool,
}

/// An enlistment's place in recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnRecovery {
    /// Created before the last crash: no recovery.
    Live,
    /// Rebuilt from the log; its RM has not answered RECOVER yet (or not recovered at all).
    Pending,
    /// Its RM answered RECOVER with `recover_enlistment`.
    Recovered,
}

/// A durable RM's recovery progress (volatile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmRecovery {
    NotStarted,
    Running,
    Done,
}

pub(crate) struct DurableRm {
    pub guid: RmGuid,
    pub recovery: RmRecovery,
    pub last_recover: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct LoggedEnlistment {
    pub guid: EnlistmentGuid,
    pub rm: RmGuid,
    pub mask: u32,
    pub done: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct LoggedTx {
    pub committed: bool,
    pub superior: bool,
    pub enlistments: Vec<LoggedEnlistment>,
}

/// A durable TM's state.
#[derive(Default)]
pub(crate) struct Durable {
    /// The log: survives a crash.
    pub log: BTreeMap<TxId, LoggedTx>,
    /// Every decision (the test oracle, not KTM state): survives a crash.
    pub history: HashMap<TxId, Outcome>,
    /// Recovered (volatile).
    pub online: bool,
    /// Durable RM registrations (volatile).
    pub rms: HashMap<RmId, DurableRm>,
    /// RM objects TM recovery rebuilt from the log that no RM has opened yet (volatile).
    pub reconstructed: BTreeSet<RmGuid>,
}

/// The placeholder owner of a rebuilt enlistment until its RM recovers (ids start at 1).
pub(crate) const UNATTACHED: RmId = RmId(0);
