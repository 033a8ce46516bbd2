//! A rollback racing a commit's PREPREPARE, PREPARE or SINGLE_PHASE_COMMIT, armed by
//! [`Ktm::rollback_during_next`]: a client may roll back "at any time before it calls
//! ZwCommitTransaction", an RM "at any time before it calls ZwPrepareComplete", and KTM rolls
//! back on a timeout
//! (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-rollback-operations>);
//! another client thread holding the handle can do it while the commit's phases are delivered.

use crate::driver::Target;
use crate::ktm::Ktm;
use crate::model::EnlistRace;

impl Ktm {
    /// Takes the armed race for the notification `targets` carry, if any, and starts it: on
    /// this thread before the callbacks run, or on another thread alongside them.
    pub(crate) fn race_rollback(&self, targets: &[Target]) {
        let Some(first) = targets.first() else {
            return;
        };
        let race = {
            let mut st = self.lock();
            let q = &mut st.faults.rollback_during;
            let Some(i) = q.iter().position(|(n, _)| *n == first.notification) else {
                return;
            };
            q.remove(i).1
        };
        let tx = first.tx;
        match race {
            EnlistRace::SameThread => {
                let _ = self.rollback_tx(tx);
            }
            EnlistRace::OtherThread => {
                let k = self.clone();
                std::thread::spawn(move || {
                    let _ = k.rollback_tx(tx);
                });
            }
        }
    }
}
