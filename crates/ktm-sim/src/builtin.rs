//! The built-in "other" RMs: a second durable participant that votes yes (like the transacted
//! registry, docs/ktm.md §0, §6) and one that vetoes, so multi-RM commits and another RM's no vote are
//! exercised without a second real RM.

use std::sync::{Arc, Weak};

use ktmrm_core::port::notify_bits as nb;
use ktmrm_core::{Answer, EnlistmentKey, Notification};
use ktmrm_proto::NtStatus;

use crate::ids::{ProcessId, RmId};
use crate::ktm::{Inner, Ktm, access::TRANSACTION_ENLIST};
use crate::model::{Delivery, ResourceManager, RmCallback};

/// How a built-in RM votes at PREPARE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vote {
    Yes,
    Veto,
}

/// The mask the built-in RMs enlist with: the four phases every RM takes (docs/ktm.md §3, S2).
const BUILTIN_MASK: u32 = nb::PREPREPARE | nb::PREPARE | nb::COMMIT | nb::ROLLBACK;

/// A well-behaved RM (docs/ktm.md §7 "Callback"): answers each notification inside the callback and
/// closes its enlistment after its last answer. The veto RM answers PREPARE with
/// RollbackEnlistment, then takes the ROLLBACK that KTM sends to every RM (docs/ktm.md §1, S4).
fn callback(ktm: Weak<Inner>, vote: Vote) -> RmCallback {
    Arc::new(move |d: Delivery| {
        let Some(inner) = ktm.upgrade() else {
            return NtStatus::RM_DISCONNECTED;
        };
        let ktm = Ktm::from_inner(inner);
        let (answer, last) = match (d.notification, vote) {
            (Notification::PrePrepare, _) => (Answer::PrePrepareComplete, false),
            (Notification::Prepare, Vote::Yes) => (Answer::PrepareComplete, false),
            // The ROLLBACK that follows a no vote reaches the voter too (docs/ktm.md §1, S4).
            (Notification::Prepare, Vote::Veto) => (Answer::RollbackEnlistment, false),
            (Notification::Commit, _) => (Answer::CommitComplete, true),
            (Notification::Rollback, _) => (Answer::RollbackComplete, true),
            (Notification::SinglePhaseCommit, _) => (Answer::SinglePhaseReject, false),
            (
                Notification::RmDisconnected
                | Notification::Recover
                | Notification::LastRecover
                | Notification::InDoubt
                | Notification::Other(_),
                _,
            ) => {
                return NtStatus::SUCCESS;
            }
        };
        let _ = ktm.answer(d.enlistment, answer);
        if last {
            ktm.close_if_open(d.enlistment);
        }
        NtStatus::SUCCESS
    })
}

impl Ktm {
    fn builtin_rm(&self, vote: Vote) -> RmId {
        let weak = Arc::downgrade(&self.inner);
        let mut st = self.lock();
        let slot = match vote {
            Vote::Yes => st.builtin.0,
            Vote::Veto => st.builtin.1,
        };
        if let Some(id) = slot {
            return id;
        }
        let id = RmId(st.next_rm);
        st.next_rm += 1;
        st.rms.insert(
            id,
            ResourceManager {
                callback: callback(weak, vote),
            },
        );
        match vote {
            Vote::Yes => st.builtin.0 = Some(id),
            Vote::Veto => st.builtin.1 = Some(id),
        }
        id
    }

    fn enlist_builtin(&self, p: ProcessId, h: u64, vote: Vote) -> NtStatus {
        let tx = match self.reference_transaction(p, h, TRANSACTION_ENLIST) {
            Ok(tx) => tx,
            Err(s) => return s,
        };
        let rm = self.builtin_rm(vote);
        let key = {
            let mut st = self.lock();
            let k = st.next_builtin_key;
            st.next_builtin_key += 1;
            EnlistmentKey(k)
        };
        match self.enlist_with(rm, &tx, key, BUILTIN_MASK, false) {
            Ok(_) => NtStatus::SUCCESS,
            Err(s) => s,
        }
    }

    /// Enlists a second RM in the transaction behind `h` (in process `p`) that votes yes, like
    /// the transacted registry next to ktmrm (docs/ktm.md §0, §6, S7, S26): it answers
    /// PrePrepareComplete, PrepareComplete, CommitComplete / RollbackComplete inside the callback
    /// and closes its enlistment after the last answer (§7 "Callback"). Injected enlist faults do
    /// not apply to it. Errors as [`Ktm::reference_transaction`] with `TRANSACTION_ENLIST`.
    pub fn enlist_yes_rm(&self, p: ProcessId, h: u64) -> NtStatus {
        self.enlist_builtin(p, h, Vote::Yes)
    }

    /// Enlists a second RM in the transaction behind `h` that votes no: PrePrepareComplete, then
    /// RollbackEnlistment at PREPARE (a veto, docs/ktm.md §3 table), then RollbackComplete to the
    /// ROLLBACK KTM sends every RM (§1, S4). Injected enlist faults do not apply to it.
    pub fn enlist_veto_rm(&self, p: ProcessId, h: u64) -> NtStatus {
        self.enlist_builtin(p, h, Vote::Veto)
    }
}
