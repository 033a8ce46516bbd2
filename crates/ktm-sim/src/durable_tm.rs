//! The durable TM at work: what it logs at each step of the protocol (see `durable.rs` for what
//! and why), when it refuses an enlistment, and its own recovery from the log
//! (`ZwRecoverTransactionManager`).

use ktmrm_core::{EnlistmentKey, TxId};
use ktmrm_proto::NtStatus;

use crate::durable::{
    Durable, EnRecovery, LoggedEnlistment, RmRecovery, Superior, UNATTACHED, status,
};
use crate::ids::{EnlistmentGuid, EnlistmentId, RmGuid, RmId};
use crate::ktm::Ktm;
use crate::model::{Enlistment, KtmConfig, State, Transaction};
use crate::states::{EnlistmentState, Outcome, TxState};

impl State {
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
