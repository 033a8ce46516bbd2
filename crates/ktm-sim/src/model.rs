//! Plain data of the model: objects, handle tables, configuration and the one [`State`] behind
//! the model's lock. No threading here; everything is reached through the one lock in
//! [`crate::Ktm`]. Below it are only its parts: identifiers (`ids.rs`), states (`states.rs`),
//! the checker's record (`checker.rs`) and the durable TM's (`durable.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ktmrm_core::{Answer, EnlistmentKey, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::checker::{Checker, Phase};
use crate::durable::{CrashCtl, Durable, EnRecovery, RecoveryArgument, Superior};
use crate::ids::{EnlistmentGuid, EnlistmentId, ProcessId, RmGuid, RmId, tx_id};
use crate::states::{EnlistmentState, Outcome, TxState};

/// One notification handed to an RM's callback, like the arguments of `PTM_RM_NOTIFICATION`
/// (docs/ktm.md §3 "Delivery B", S15, S16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The enlistment the notification is for (answer through it).
    pub enlistment: EnlistmentId,
    /// The `EnlistmentKey` given at enlist time.
    pub key: EnlistmentKey,
    /// What KTM asks for.
    pub notification: Notification,
    /// The transaction's GUID (the real callback can get it with `TmGetTransactionId`).
    /// All zero for `LAST_RECOVER`, which is for the RM, not for a transaction.
    pub tx: TxId,
    /// `TRANSACTION_NOTIFICATION_RECOVERY_ARGUMENT` (docs/ktm.md §3, S19): set on RECOVER only.
    pub recovery: Option<RecoveryArgument>,
}

/// An RM's notification callback, as registered by `TmEnableCallbacks` (docs/ktm.md §3, S15). It
/// answers through [`crate::Ktm::answer`] (inside the call or later) and returns
/// `STATUS_SUCCESS`, or `STATUS_PENDING` when the answer comes later, S16.
pub type RmCallback = Arc<dyn Fn(Delivery) -> NtStatus + Send + Sync>;

/// Called after each phase of a transaction's outcome protocol completes and before the next
/// phase is delivered (see [`crate::Ktm::set_phase_probe`]).
pub type PhaseProbe = Arc<dyn Fn(TxId, Phase) + Send + Sync>;

/// How notifications reach callbacks (docs/ktm.md §3 "Delivery B": the callback runs "in an arbitrary
/// thread (possibly inside the harness's commit call)").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// On the thread driving the outcome (the one in `commit`/`rollback`/`close_handle`/
    /// `advance_time`), one enlistment after another; answers may arrive inside the callback.
    #[default]
    Inline,
    /// Each notification from a thread of its own, all enlistments of a phase at once.
    Threaded,
}

/// Where the notification injected by [`crate::Ktm::rollback_during_next_enlist`] comes from.
/// docs/ktm.md §3, S21: "Notifications may arrive before `TmCreateEnlistment` returns"; the port
/// contract says "on this thread or another".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnlistRace {
    /// The enlisting thread itself rolls the transaction back before `enlist` returns (the
    /// ROLLBACK is delivered to the new enlistment from inside `enlist` in `Inline` mode).
    SameThread,
    /// Another thread rolls the transaction back; `enlist` returns only once the RM has handled
    /// the ROLLBACK for the new enlistment (its callback returned or it answered), or the answer
    /// deadline passed.
    OtherThread,
}

/// The model's configuration (see also the fault setters on [`crate::Ktm`]).
#[derive(Clone, Debug, Default)]
pub struct KtmConfig {
    /// How notifications are delivered.
    pub delivery: DeliveryMode,
    /// Wall-clock time a phase waits for answers; `None` (the default) waits forever, as KTM
    /// does: no KTM-side limit on an answer is documented, and `ZwCommitTransaction` with
    /// `Wait` "returns after the commit operation is complete"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwcommittransaction>).
    /// `Some(d)` is the model's invention: after `d` it records
    /// [`crate::Violation::NeverAnswered`] and treats the missing vote as a no vote, so a broken
    /// RM fails a test instead of hanging it.
    pub answer_deadline: Option<Duration>,
    /// After a COMMIT is answered with CommitComplete, deliver COMMIT once more, as recovery can
    /// (docs/ktm.md §1, §8, S21: "duplicate COMMITs are possible").
    pub duplicate_commit: bool,
    /// A callback that returns an error status without answering counts as a no vote (and as
    /// having answered). The model's invention, off by default: `PTM_RM_NOTIFICATION` says to
    /// "return a failure status on error" but not what KTM does then, so by default the
    /// notification stays outstanding and the phase keeps waiting for its answer.
    pub error_return_is_no_vote: bool,
    /// Behaviours KTM's documentation allows that the model does not produce unless asked.
    pub interleavings: Interleavings,
}

/// Interleavings and choices KTM's documentation allows but does not promise (docs/ktm.md §9),
/// each off by default; the fuzzers, the crash matrix and the engine's suites run with
/// [`Interleavings::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interleavings {
    /// SINGLE_PHASE_COMMIT goes to the enlistment registered for it even when other
    /// enlistments are still in play: "If a resource manager has registered to receive
    /// TRANSACTION_NOTIFY_SINGLE_PHASE_COMMIT notifications, KTM sends this kind of notification
    /// when a transactional client calls ZwCommitTransaction", and keeping the others read-only
    /// is the designer's duty ("one (and only one) resource manager must register ... All other
    /// resource managers must be read-only",
    /// <https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-commit-operations>).
    /// Off: the model falls back to the two phases then. Either way the checker flags the
    /// registration ([`crate::Violation::SpcBesideWriter`]).
    pub spc_beside_writers: bool,
    /// A rollback requested while PREPREPARE or PREPARE is still being answered (a client's
    /// rollback, a timeout, an enlistment closed, another RM's no vote) sends ROLLBACK at once,
    /// over the outstanding notification: "When a call to ZwRollbackEnlistment or
    /// ZwRollbackTransaction is made, or when a time-out value is exceeded, KTM sends a
    /// TRANSACTION_NOTIFY_ROLLBACK notification to all resource managers"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-rollback-operations>).
    /// An answer to the overtaken notification is then refused quietly. Off: the rollback waits
    /// until every answer of the phase is in.
    pub eager_rollback: bool,
    /// LAST_RECOVER as soon as every RECOVER was sent (each callback has returned), before the
    /// RM has called `ZwRecoverEnlistment` for them: "After KTM has sent a
    /// TRANSACTION_NOTIFY_RECOVER notification for each enlistment, it sends a
    /// TRANSACTION_NOTIFY_LAST_RECOVER notification"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-recovery-operations>);
    /// each outcome follows its recover call. Off: LAST_RECOVER waits for every recover call.
    pub early_last_recover: bool,
}

impl Interleavings {
    /// Every allowed interleaving on.
    pub const ALL: Interleavings = Interleavings {
        spc_beside_writers: true,
        eager_rollback: true,
        early_last_recover: true,
    };
}

/// What [`crate::Ktm::transaction_info`] reports (like `GetTransactionInformation`, docs/ktm.md §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    /// The GUID.
    pub id: TxId,
    /// State.
    pub state: TxState,
    /// Outcome.
    pub outcome: Outcome,
    /// Timeout given at creation (0 = none).
    pub timeout_ms: u32,
    /// Description.
    pub description: String,
    /// Open handles in all processes.
    pub handles: u32,
    /// Enlistments ever created in it.
    pub enlistments: usize,
}

/// What [`crate::Ktm::enlistment_info`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnlistmentInfo {
    /// Owner.
    pub rm: RmId,
    /// Transaction.
    pub tx: TxId,
    /// Key.
    pub key: EnlistmentKey,
    /// Notification mask.
    pub mask: u32,
    /// Progress.
    pub state: EnlistmentState,
    /// The notification awaiting an answer, if any.
    pub outstanding: Option<Notification>,
    /// The last answer accepted.
    pub last_answer: Option<Answer>,
    /// Closed by its RM.
    pub closed: bool,
}

/// An object a handle can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Object {
    Transaction(TxId),
    /// Any non-transaction object (an event), for `STATUS_OBJECT_TYPE_MISMATCH`.
    Event,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct HandleEntry {
    pub object: Object,
    pub access: u32,
}

pub(crate) struct Process {
    pub handles: BTreeMap<u64, HandleEntry>,
    pub next_handle: u64,
}

impl Process {
    /// First handle value; Windows handle values are multiples of 4 (the low two bits are tag
    /// bits) and never 0 (docs/ktm.md §6: the harness passes the handle *value* as a `u64`).
    const FIRST_HANDLE: u64 = 0x84;

    pub fn new() -> Self {
        Process {
            handles: BTreeMap::new(),
            next_handle: Self::FIRST_HANDLE,
        }
    }

    /// Inserts an entry under a fresh value; values are never reused, so a closed handle stays
    /// invalid.
    pub fn insert(&mut self, entry: HandleEntry) -> u64 {
        let h = self.next_handle;
        self.next_handle += 4;
        self.handles.insert(h, entry);
        h
    }
}

pub(crate) struct Transaction {
    pub id: TxId,
    pub state: TxState,
    pub outcome: Outcome,
    pub timeout_ms: u32,
    /// Virtual time at which an Active transaction times out.
    pub expires_at: Option<u64>,
    pub description: Vec<u16>,
    pub handles: u32,
    /// Kernel references ([`crate::TxRef`]) not yet released.
    pub references: u32,
    pub enlistments: Vec<EnlistmentId>,
    /// A rollback was asked for while the commit was still undecided; the committing thread
    /// rolls back before the decision.
    pub abort_requested: bool,
    /// The superior enlistment, if the transaction was promoted (docs/ktm.md §1, S9).
    pub superior: Option<Superior>,
}

pub(crate) struct ResourceManager {
    pub callback: RmCallback,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Outstanding {
    pub notification: Notification,
    pub seq: u64,
}

pub(crate) struct Enlistment {
    pub rm: RmId,
    pub tx: TxId,
    pub key: EnlistmentKey,
    pub mask: u32,
    pub state: EnlistmentState,
    pub outstanding: Option<Outstanding>,
    /// The last accepted answer and the delivery it answered.
    pub last: Option<(u64, Answer)>,
    pub closed: bool,
    /// Callbacks entered and returned for this enlistment (for [`EnlistRace::OtherThread`]).
    pub entered: u64,
    pub returned: u64,
    pub leak_reported: bool,
    /// `EnlistmentId` of `ZwQueryInformationEnlistment`: stable across a crash (logged).
    pub guid: EnlistmentGuid,
    /// The durable RM's GUID when KTM logs this enlistment (durable TM and RM).
    pub durable_rm: Option<RmGuid>,
    /// Where the enlistment is in recovery (see `durable.rs`).
    pub recovery: EnRecovery,
    /// A PREPREPARE/PREPARE/SINGLE_PHASE_COMMIT a ROLLBACK overtook
    /// ([`Interleavings::eager_rollback`]): a late answer to it is refused without a violation.
    pub overtaken: Option<Outstanding>,
    /// COMMIT/ROLLBACK delivered since its RM recovered it (checker: exactly one).
    pub recovery_outcomes: u32,
}

#[derive(Default)]
pub(crate) struct Faults {
    pub fail_enlists: Option<(u32, NtStatus)>,
    pub races: Vec<EnlistRace>,
    /// Armed by [`crate::Ktm::rollback_during_next`]: the next delivery of this notification
    /// races a rollback of its transaction.
    pub rollback_during: Vec<(Notification, EnlistRace)>,
}

pub(crate) struct State {
    pub config: KtmConfig,
    pub faults: Faults,
    pub now_ms: u64,
    pub next_tx: u64,
    pub next_rm: u32,
    pub next_enlistment: u64,
    pub next_process: u32,
    pub next_seq: u64,
    pub processes: HashMap<ProcessId, Process>,
    pub txs: HashMap<TxId, Transaction>,
    pub rms: HashMap<RmId, ResourceManager>,
    pub enlistments: BTreeMap<EnlistmentId, Enlistment>,
    /// Ids of the built-in voting RMs, created on first use: (yes, veto).
    pub builtin: (Option<RmId>, Option<RmId>),
    pub next_builtin_key: u64,
    pub checker: Checker,
    pub probe: Option<PhaseProbe>,
    /// Threaded deliveries whose callback has not returned yet.
    pub inflight: usize,
    /// Crashes so far: a protocol run started in an earlier epoch stops at its next step.
    pub epoch: u64,
    /// Enlistment ids below this one are from before the last crash (calls on them are
    /// ignored: the thread that makes them died with the machine).
    pub stale_below: u64,
    /// The durable TM's log and recovery state; `None` for a volatile TM.
    pub durable: Option<Durable>,
    /// Crash points: the trace, the armed crash, the count.
    pub crash: CrashCtl,
}

impl State {
    pub fn new(config: KtmConfig) -> Self {
        State {
            config,
            faults: Faults::default(),
            now_ms: 0,
            next_tx: 1,
            next_rm: 1,
            next_enlistment: 1,
            next_process: 1,
            next_seq: 1,
            processes: HashMap::new(),
            txs: HashMap::new(),
            rms: HashMap::new(),
            enlistments: BTreeMap::new(),
            builtin: (None, None),
            next_builtin_key: 1,
            checker: Checker::default(),
            probe: None,
            inflight: 0,
            epoch: 0,
            stale_below: 0,
            durable: None,
            crash: CrashCtl::default(),
        }
    }

    /// The next transaction's id (see [`tx_id`]).
    pub fn new_tx_id(&mut self) -> TxId {
        let n = self.next_tx;
        self.next_tx += 1;
        tx_id(n)
    }

    /// A new enlistment's record.
    pub fn new_enlistment(
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
}
