//! Crashes: the crash points a run passes, the armed crash, and what a crash keeps (KTM's log)
//! and discards (everything volatile).

use std::collections::HashMap;

use ktmrm_core::TxId;

use crate::durable::{Arm, CrashPoint, CrashStep};
use crate::ids::{EnlistmentGuid, RmId};
use crate::ktm::Ktm;
use crate::model::{Faults, ResourceManager, State};

/// What a crash takes away, dropped by the caller once the model's lock is released (a callback
/// may own something whose drop takes the lock).
pub(crate) type Discarded = HashMap<RmId, ResourceManager>;

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
        self.faults = Faults::default();
        if let Some(d) = self.durable.as_mut() {
            d.online = false;
            d.rms.clear();
            d.reconstructed.clear();
        }
        std::mem::take(&mut self.rms)
    }
}

impl Ktm {
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
}
