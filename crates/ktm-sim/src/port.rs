//! [`SimPort`]: the engine's [`KtmPort`] over the model, standing in for the driver's
//! Zw*/Tm*/Ob* calls (docs/ktm.md §4, §7).

use ktmrm_core::{Answer, EnlistmentKey, KtmPort, TxId};
use ktmrm_proto::NtStatus;

use crate::ids::{EnlistmentId, ProcessId, RmId};
use crate::ktm::{Ktm, TxRef, access::TRANSACTION_ENLIST};

/// The port of one resource manager of a [`Ktm`]: what the driver does with its RM object.
#[derive(Clone, Debug)]
pub struct SimPort {
    ktm: Ktm,
    rm: RmId,
}

impl SimPort {
    /// The port of RM `rm`.
    #[must_use]
    pub const fn new(ktm: Ktm, rm: RmId) -> Self {
        SimPort { ktm, rm }
    }

    /// The model.
    #[must_use]
    pub const fn ktm(&self) -> &Ktm {
        &self.ktm
    }

    /// The RM this port enlists.
    #[must_use]
    pub const fn rm(&self) -> RmId {
        self.rm
    }
}

impl KtmPort for SimPort {
    type Caller = ProcessId;
    type TxRef = TxRef;
    type Enlistment = EnlistmentId;
    type Target = EnlistmentId;

    /// `ObReferenceObjectByHandle(handle, TRANSACTION_ENLIST, *TmTransactionObjectType, UserMode)`
    /// in the caller's process (docs/ktm.md §4, S25).
    fn reference_transaction(
        &self,
        caller: &ProcessId,
        handle: u64,
    ) -> Result<(TxRef, TxId), NtStatus> {
        let _model = crate::alloc_scope::Scope::model();
        let r = self
            .ktm
            .reference_transaction(*caller, handle, TRANSACTION_ENLIST)?;
        let id = r.id();
        Ok((r, id))
    }

    /// `ZwCreateEnlistment` (docs/ktm.md §7 step 7); see [`Ktm::enlist`].
    fn enlist(&self, tx: &TxRef, key: EnlistmentKey, mask: u32) -> Result<EnlistmentId, NtStatus> {
        let _model = crate::alloc_scope::Scope::model();
        self.ktm.enlist(self.rm, tx, key, mask)
    }

    /// `ZwClose(enlistment)`; see [`Ktm::close_enlistment`].
    fn close_enlistment(&self, enlistment: EnlistmentId) {
        let _model = crate::alloc_scope::Scope::model();
        self.ktm.close_enlistment(enlistment);
    }

    /// The `Tm*Complete` routines; see [`Ktm::answer`].
    fn answer(&self, target: &EnlistmentId, answer: Answer) -> NtStatus {
        let _model = crate::alloc_scope::Scope::model();
        self.ktm.answer(*target, answer)
    }

    /// `ZwCreateTransaction` in the caller's context: the handle lands in the caller's process
    /// with `TRANSACTION_ALL_ACCESS` (docs/ktm.md §4 "a handle created on the IOCTL path lands in the
    /// user process's table", S12b).
    fn create_transaction(
        &self,
        caller: &ProcessId,
        timeout_ms: u32,
        description: &[u8],
    ) -> Result<u64, NtStatus> {
        let _model = crate::alloc_scope::Scope::model();
        self.ktm
            .create_transaction_utf16(*caller, timeout_ms, description)
    }

    /// `TmRecoverEnlistment(enlistment, key)`; see [`Ktm::recover_enlistment`]. The engine owns
    /// the enlistment from then on and closes it after the outcome, like a fresh one.
    fn recover_enlistment(
        &self,
        target: &EnlistmentId,
        key: EnlistmentKey,
    ) -> Result<Option<EnlistmentId>, NtStatus> {
        let _model = crate::alloc_scope::Scope::model();
        let st = self.ktm.recover_enlistment(*target, key);
        if st.is_success() {
            Ok(Some(*target))
        } else {
            Err(st)
        }
    }

    /// Started committing, outcome not decided: the state past Active and before the outcome,
    /// as `TmIsTransactionActive` (FALSE once the commit sequence begins) and
    /// `TRANSACTION_BASIC_INFORMATION.Outcome` (`TransactionOutcomeUndetermined`) tell it.
    fn is_committing(&self, tx: &TxRef) -> bool {
        let _model = crate::alloc_scope::Scope::model();
        self.ktm.transaction_info_by_id(tx.id()).is_some_and(|t| {
            t.state != crate::states::TxState::Active
                && t.outcome == crate::states::Outcome::Undetermined
        })
    }

    /// `ZwRollbackEnlistment(enlistment, NULL)` outside a notification: a no vote KTM takes
    /// until PrepareComplete; see [`Ktm::answer`].
    fn rollback_enlistment(&self, enlistment: &EnlistmentId) -> NtStatus {
        let _model = crate::alloc_scope::Scope::model();
        self.ktm.answer(*enlistment, Answer::RollbackEnlistment)
    }

    /// `ZwYieldExecution`.
    fn yield_now(&self) {
        let _model = crate::alloc_scope::Scope::model();
        std::thread::yield_now();
    }
}
