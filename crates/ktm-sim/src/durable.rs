//! The durable transaction manager: KTM's log, crashes and crash points.
//!
//! A durable TM "owns a CLFS log stream ... KTM logs RM/transaction/enlistment state there"
//! (docs/ktm.md §1, S10, S17). The model's log is in-memory state that [`Ktm::crash`] keeps while it
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
//! (then it stays in doubt). Recovery itself is in `recovery.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ktmrm_core::{EnlistmentKey, TxId};
use ktmrm_proto::NtStatus;

use crate::ktm::Ktm;
use crate::model::{
    Enlistment, EnlistmentId, EnlistmentState, KtmConfig, Outcome, ResourceManager, RmId, State,
    Transaction, TxState,
};

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

/// A resource manager's GUID (`ZwCreateResourceManager`'s `RmGuid`, docs/ktm.md §2): what a durable
/// RM re-registers with after a crash so that KTM finds its logged enlistments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RmGuid(pub [u8; 16]);

/// An enlistment's GUID (`EnlistmentId`, docs/ktm.md §3, S19); unlike [`EnlistmentId`] (a handle) it
/// survives a crash. Deterministic in the model: the enlistment's number, then a fixed tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnlistmentGuid(pub [u8; 16]);

impl EnlistmentGuid {
    fn of(n: u64) -> Self {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[8..].copy_from_slice(b"ktm-sim\x02");
        EnlistmentGuid(b)
    }
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

/// A step of the protocol where [`Ktm::crash_at`] can crash the machine. Points are passed only
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

/// One crash point passed (see [`Ktm::crash_points`]).
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

/// What a crash takes away, dropped by the caller once the model's lock is released (a callback
/// may own something whose drop takes the lock).
pub(crate) type Discarded = HashMap<RmId, ResourceManager>;

/// The placeholder owner of a rebuilt enlistment until its RM recovers (ids start at 1).
pub(crate) const UNATTACHED: RmId = RmId(0);

impl State {
    /// Passes crash point `point`: records it and crashes if it is the armed one.
    pub(crate) fn hit(
        &mut self,
        point: CrashPoint,
        tx: TxId,
        en: Option<EnlistmentGuid>,
    ) -> Option<Discarded> {
        self.durable.as_ref()?;
        let index = self.crash.steps.len() as u64;
        let nth = self.crash.steps.iter().filter(|s| s.point == point).count() as u64;
        self.crash.steps.push(CrashStep {
            index,
            point,
            tx,
            enlistment: en,
        });
        let fire = match self.crash.armed {
            Some(Arm::Point(p)) => p == point,
            Some(Arm::Step(n)) => n == index,
            Some(Arm::Nth(p, n)) => p == point && n == nth,
            None => false,
        };
        fire.then(|| self.crash_now())
    }

    /// The crash: everything volatile goes, the log stays (docs/ktm.md §1 "In-doubt / recovery").
    pub(crate) fn crash_now(&mut self) -> Discarded {
        self.epoch += 1;
        self.crash.crashes += 1;
        self.crash.armed = None;
        self.stale_below = self.next_enlistment;
        let open = self.enlistments.values().filter(|e| !e.closed).count() as u64;
        let c = &mut self.checker.counters;
        c.enlistments_open = c.enlistments_open.saturating_sub(open);
        self.processes.clear();
        self.txs.clear();
        self.enlistments.clear();
        self.builtin = (None, None);
        self.faults = crate::model::Faults::default();
        if let Some(d) = self.durable.as_mut() {
            d.online = false;
            d.rms.clear();
            d.reconstructed.clear();
        }
        std::mem::take(&mut self.rms)
    }

    /// The durable RM `e` belongs to, when KTM logs it.
    fn logged_rm(e: &Enlistment) -> Option<RmGuid> {
        e.durable_rm
    }

    /// KTM recorded PrepareComplete on `en`: log the enlistment.
    pub(crate) fn log_prepared(&mut self, en: EnlistmentId) {
        let Some(e) = self.enlistments.get(&en) else {
            return;
        };
        let (Some(rm), tx, guid, mask) = (Self::logged_rm(e), e.tx, e.guid, e.mask) else {
            return;
        };
        let superior = self.txs.get(&tx).is_some_and(|t| t.superior.is_some());
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        let entry = d.log.entry(tx).or_default();
        entry.superior = superior;
        if !entry.enlistments.iter().any(|l| l.guid == guid) {
            entry.enlistments.push(LoggedEnlistment {
                guid,
                rm,
                mask,
                done: false,
            });
        }
    }

    /// The commit decision: writes the commit record if the transaction is logged. Returns
    /// whether it was.
    pub(crate) fn log_commit_record(&mut self, tx: TxId) -> bool {
        self.note_commit(tx);
        let Some(d) = self.durable.as_mut() else {
            return false;
        };
        match d.log.get_mut(&tx) {
            Some(l) => {
                l.committed = true;
                true
            }
            None => false,
        }
    }

    /// Records a commit decision KTM logs nothing for (a single-phase commit) in the test oracle.
    pub(crate) fn note_commit(&mut self, tx: TxId) {
        if let Some(d) = self.durable.as_mut() {
            d.history.insert(tx, Outcome::Committed);
        }
    }

    /// Records an abort decision in the test oracle (KTM itself logs nothing: presumed abort).
    pub(crate) fn note_abort(&mut self, tx: TxId) {
        if let Some(d) = self.durable.as_mut() {
            d.history.entry(tx).or_insert(Outcome::Aborted);
        }
    }

    /// KTM recorded CommitComplete / RollbackComplete on `en`: mark it done; forget the
    /// transaction once all its logged enlistments are.
    pub(crate) fn log_done(&mut self, en: EnlistmentId) {
        let Some(e) = self.enlistments.get(&en) else {
            return;
        };
        let (tx, guid) = (e.tx, e.guid);
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        let Some(l) = d.log.get_mut(&tx) else {
            return;
        };
        for le in l.enlistments.iter_mut().filter(|le| le.guid == guid) {
            le.done = true;
        }
        if l.enlistments.iter().all(|le| le.done) {
            d.log.remove(&tx);
        }
    }

    /// A new enlistment's record.
    pub(crate) fn new_enlistment(
        &mut self,
        rm: RmId,
        tx: TxId,
        key: EnlistmentKey,
        mask: u32,
    ) -> EnlistmentId {
        let id = EnlistmentId(self.next_enlistment);
        self.next_enlistment += 1;
        let durable_rm = self
            .durable
            .as_ref()
            .and_then(|d| d.rms.get(&rm).map(|r| r.guid));
        self.enlistments.insert(
            id,
            Enlistment {
                rm,
                tx,
                key,
                mask,
                state: EnlistmentState::Enlisted,
                outstanding: None,
                last: None,
                closed: false,
                entered: 0,
                returned: 0,
                leak_reported: false,
                guid: EnlistmentGuid::of(id.0),
                durable_rm,
                recovery: EnRecovery::Live,
                recovery_outcomes: 0,
                overtaken: None,
            },
        );
        if let Some(t) = self.txs.get_mut(&tx) {
            t.enlistments.push(id);
        }
        self.checker.counters.enlistments_created += 1;
        self.checker.counters.enlistments_open += 1;
        id
    }

    /// Why a durable TM refuses `rm` to enlist: the TM is not recovered, or the durable RM has
    /// not started its recovery: `STATUS_TRANSACTIONMANAGER_NOT_ONLINE`, "KTM or the resource
    /// manager is not in an operational state"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwcreateenlistment>).
    /// An RM in the middle of its recovery may enlist: "Resource managers are allowed to enlist
    /// in or create new transactions while in the process of performing recovery"
    /// (<https://learn.microsoft.com/windows/win32/ktm/recovery-processing>).
    pub(crate) fn durable_enlist_check(&self, rm: RmId) -> Result<(), NtStatus> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        if !d.online {
            return Err(status::TRANSACTIONMANAGER_NOT_ONLINE);
        }
        match d.rms.get(&rm) {
            Some(r) if r.recovery == RmRecovery::NotStarted => {
                Err(status::TRANSACTIONMANAGER_NOT_ONLINE)
            }
            _ => Ok(()),
        }
    }
}

impl Ktm {
    /// A durable TM (`ZwCreateTransactionManager` with a log file name, docs/ktm.md §2, §1,
    /// S1, S12): its log survives [`Ktm::crash`]. Like a real durable TM it "must be recovered
    /// after create/open" (§1): enlisting fails with `STATUS_TRANSACTIONMANAGER_NOT_ONLINE` until
    /// [`Ktm::recover_transaction_manager`].
    #[must_use]
    pub fn new_durable(config: KtmConfig) -> Self {
        let k = Ktm::new(config);
        k.lock().durable = Some(Durable::default());
        k
    }

    /// True for a durable TM.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.lock().durable.is_some()
    }

    /// The enlistment's GUID (`ZwQueryInformationEnlistment`, EnlistmentBasicInformation): what
    /// a durable RM logs at PREPARE to find the enlistment again in RECOVER's argument.
    #[must_use]
    pub fn enlistment_guid(&self, en: EnlistmentId) -> Option<EnlistmentGuid> {
        self.lock().enlistments.get(&en).map(|e| e.guid)
    }

    /// A machine crash: every process, handle, transaction object, enlistment, RM registration
    /// and delivery in flight is gone; a durable TM keeps its log and goes offline until
    /// [`Ktm::recover_transaction_manager`]. A protocol run in flight stops at its next step and
    /// its call returns `STATUS_TRANSACTIONMANAGER_NOT_ONLINE`; calls on enlistments from before
    /// the crash are ignored (`STATUS_INVALID_HANDLE`, no violation): the threads making them
    /// died with the machine. Counters, violations and the phase probe stay.
    pub fn crash(&self) {
        let discarded = self.lock().crash_now();
        drop(discarded);
        self.changed();
    }

    /// Arms a crash at the next time `point` is passed (replacing any armed crash).
    pub fn crash_at(&self, point: CrashPoint) {
        self.lock().crash.armed = Some(Arm::Point(point));
    }

    /// Arms a crash at crash point number `index` (as [`CrashStep::index`]): rerun a scenario
    /// with each index of a dry run's [`Ktm::crash_points`] to crash at every step.
    pub fn crash_at_step(&self, index: u64) {
        self.lock().crash.armed = Some(Arm::Step(index));
    }

    /// Arms a crash at the `nth` passing (from 0) of `point` since this model was created. Under
    /// [`crate::DeliveryMode::Threaded`] the order in which the phases of different enlistments
    /// pass their points varies, so a point's [`CrashStep::index`] does not name the same step
    /// from run to run; its kind and occurrence do, as long as the run takes the same path.
    pub fn crash_at_nth(&self, point: CrashPoint, nth: u64) {
        self.lock().crash.armed = Some(Arm::Nth(point, nth));
    }

    /// Disarms the crash.
    pub fn disarm_crash(&self) {
        self.lock().crash.armed = None;
    }

    /// Every crash point passed so far, in order (empty on a volatile TM).
    #[must_use]
    pub fn crash_points(&self) -> Vec<CrashStep> {
        self.lock().crash.steps.clone()
    }

    /// How many crashes happened ([`Ktm::crash`] or an armed point).
    #[must_use]
    pub fn crash_count(&self) -> u64 {
        self.lock().crash.crashes
    }

    /// The decision a durable TM made for `tx`, across crashes (the test oracle, not KTM state):
    /// Committed once the commit record was written; Aborted once rolled back or presumed
    /// aborted by recovery; Undetermined otherwise (never decided, in doubt, or volatile TM).
    #[must_use]
    pub fn decision(&self, tx: TxId) -> Outcome {
        self.lock()
            .durable
            .as_ref()
            .and_then(|d| d.history.get(&tx).copied())
            .unwrap_or(Outcome::Undetermined)
    }

    /// Transactions in the durable log (prepared, not yet finished by every logged enlistment).
    #[must_use]
    pub fn logged_transactions(&self) -> Vec<TxId> {
        self.lock()
            .durable
            .as_ref()
            .map(|d| d.log.keys().copied().collect())
            .unwrap_or_default()
    }

    /// `ZwRecoverTransactionManager` (docs/ktm.md §2, §7 step 4): reads the log and brings the TM
    /// online. It "reconstructs the state of the transaction manager object (including all
    /// transactions, enlistments, and resource managers)"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-recovery-operations>):
    /// the RM object of each durable RM with a logged enlistment (see
    /// [`Ktm::open_resource_manager`]), and each logged transaction with its logged enlistments
    /// (prepared, not attached to an RM until their durable RM recovers): with a commit record → Committing,
    /// outcome Committed; without one and with an undecided superior → in doubt (Preparing,
    /// Undetermined); otherwise presumed aborted (RollingBack, Aborted; docs/ktm.md §1, S5, S21).
    /// A volatile TM → `STATUS_TM_VOLATILE` (§7 step 1, S27); already online → success.
    pub fn recover_transaction_manager(&self) -> NtStatus {
        let mut st = self.lock();
        let log = match st.durable.as_mut() {
            None => return NtStatus::TM_VOLATILE,
            Some(d) if d.online => return NtStatus::SUCCESS,
            Some(d) => {
                d.online = true;
                d.log.clone()
            }
        };
        for (id, l) in log {
            let (state, outcome) = if l.committed {
                (TxState::Committing, Outcome::Committed)
            } else if l.superior {
                (TxState::Preparing, Outcome::Undetermined)
            } else {
                st.note_abort(id);
                (TxState::RollingBack, Outcome::Aborted)
            };
            st.txs.insert(
                id,
                Transaction {
                    id,
                    state,
                    outcome,
                    timeout_ms: 0,
                    expires_at: None,
                    description: Vec::new(),
                    handles: 0,
                    references: 0,
                    enlistments: Vec::new(),
                    abort_requested: false,
                    superior: l.superior.then_some(Superior { prepared: true }),
                },
            );
            for le in l.enlistments.iter().filter(|le| !le.done) {
                st.reconstruct_rm(le.rm);
                let en = st.new_enlistment(UNATTACHED, id, EnlistmentKey(0), le.mask);
                let e = st.enlistments.get_mut(&en).expect("just made");
                e.guid = le.guid;
                e.durable_rm = Some(le.rm);
                e.state = EnlistmentState::Prepared;
                e.recovery = EnRecovery::Pending;
                st.checker.counters.enlistments_created -= 1;
            }
        }
        drop(st);
        self.changed();
        NtStatus::SUCCESS
    }
}
