//! Step 1 of a commit (see `Ktm::drive_commit`): single-phase commit, for an enlistment that
//! registered for it. "One (and only one) resource manager must register to receive
//! TRANSACTION_NOTIFY_SINGLE_PHASE_COMMIT notifications for its enlistments. All other resource
//! managers must be read-only"; on SinglePhaseReject "KTM immediately changes the commit operation
//! from single-phase to multi-phase"; a TPS with a superior cannot use it
//! (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-commit-operations>).

use ktmrm_core::{Answer, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::checker::Phase;
use crate::driver::{CRASHED, select_ids};
use crate::ids::EnlistmentId;
use crate::ktm::Ktm;
use crate::states::{Outcome, TxState};
use crate::violation::Violation;

impl Ktm {
    /// Step 1 of [`Ktm::drive_commit`]; `None` when single-phase commit does not apply or was
    /// rejected.
    pub(crate) fn single_phase(&self, id: TxId, epoch: u64) -> Option<NtStatus> {
        let targets = {
            let Some(mut st) = self.live(epoch) else {
                return Some(CRASHED);
            };
            // "single-phase commit is off" with a superior enlistment (docs/ktm.md §1, S9).
            if st.txs[&id].superior.is_some() {
                return None;
            }
            let in_play: Vec<EnlistmentId> = st.txs[&id]
                .enlistments
                .iter()
                .copied()
                .filter(|en| {
                    let e = &st.enlistments[en];
                    !e.closed && e.state.in_play()
                })
                .collect();
            let spc = Notification::SinglePhaseCommit.bits();
            let only = *in_play
                .iter()
                .find(|en| st.enlistments[*en].mask & spc != 0)?;
            if in_play.len() > 1 {
                st.checker.violation(Violation::SpcBesideWriter {
                    enlistment: only,
                    tx: id,
                    others: in_play.len() - 1,
                });
                if !st.config.interleavings.spc_beside_writers {
                    return None;
                }
            }
            st.txs.get_mut(&id).expect("driven").state = TxState::SinglePhaseCommitting;
            select_ids(&mut st, id, Notification::SinglePhaseCommit, &[only])
        };
        let Some(results) = self.deliver_and_wait(targets, epoch) else {
            return Some(CRASHED);
        };
        match results.first().and_then(|(_, a)| *a) {
            Some(Answer::CommitComplete | Answer::ReadOnly) => {
                {
                    let Some(mut st) = self.live(epoch) else {
                        return Some(CRASHED);
                    };
                    st.txs.get_mut(&id).expect("driven").outcome = Outcome::Committed;
                    st.note_commit(id);
                }
                if !self.end(id, TxState::Committed, epoch) {
                    return Some(CRASHED);
                }
                self.probe(id, Phase::SinglePhaseCommit);
                Some(NtStatus::SUCCESS)
            }
            Some(Answer::SinglePhaseReject) => {
                let Some(mut st) = self.live(epoch) else {
                    return Some(CRASHED);
                };
                st.txs.get_mut(&id).expect("driven").state = TxState::PrePreparing;
                None
            }
            _ => Some(self.abort_commit(id, epoch)),
        }
    }
}
