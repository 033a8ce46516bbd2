//! [`Ktm`]: the model's shared handle, its lock, its configuration and fault setters, and
//! [`TxRef`]. The calls are in `client.rs` (processes, handles, ktmw32), `kernel.rs` (Tm*/Ob*),
//! `durable_tm.rs`, `crash.rs` and `recovery.rs` (the durable TM) and `finish.rs` (violations,
//! leaks), the outcome driver in `driver.rs`.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ktmrm_core::TxId;
use ktmrm_proto::NtStatus;

use crate::ids::tx_name;
use crate::model::{DeliveryMode, EnlistRace, KtmConfig, PhaseProbe, State};

/// Access rights and notification-mask bits the model checks (docs/ktm.md §3, §4; winnt.h values).
pub mod access {
    /// `TRANSACTION_QUERY_INFORMATION`.
    pub const TRANSACTION_QUERY_INFORMATION: u32 = 0x1;
    /// `TRANSACTION_SET_INFORMATION`.
    pub const TRANSACTION_SET_INFORMATION: u32 = 0x2;
    /// `TRANSACTION_ENLIST`: what the driver references a user handle with (docs/ktm.md §4).
    pub const TRANSACTION_ENLIST: u32 = 0x4;
    /// `TRANSACTION_COMMIT`.
    pub const TRANSACTION_COMMIT: u32 = 0x8;
    /// `TRANSACTION_ROLLBACK`.
    pub const TRANSACTION_ROLLBACK: u32 = 0x10;
    /// `TRANSACTION_PROPAGATE`.
    pub const TRANSACTION_PROPAGATE: u32 = 0x20;
    /// `TRANSACTION_ALL_ACCESS` (docs/ktm.md §4 table): what `CreateTransaction` grants.
    pub const TRANSACTION_ALL_ACCESS: u32 = 0x001F_003F;
    /// `EVENT_ALL_ACCESS`, for the non-transaction object.
    pub const EVENT_ALL_ACCESS: u32 = 0x001F_0003;
    /// `TRANSACTION_NOTIFY_MASK`: every valid notification bit (docs/ktm.md §3).
    pub const NOTIFY_MASK: u32 = 0x3FFF_FFFF;
    /// Bits KTM does not support in an RM's mask (docs/ktm.md §3 "Unsupported bits", S2).
    pub const NOTIFY_UNSUPPORTED: u32 = 0x400
        | 0x1000
        | 0x8000
        | 0x10000
        | 0x20000
        | 0x40000
        | 0x0200_0000
        | 0x0800_0000
        | 0x1000_0000
        | 0x4000_0000;
}

/// The model of the Kernel Transaction Manager. Cheap to clone; all clones share one model.
#[derive(Clone)]
pub struct Ktm {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    cond: Condvar,
}

impl Default for Ktm {
    fn default() -> Self {
        Ktm::new(KtmConfig::default())
    }
}

impl fmt::Debug for Ktm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Ktm")
            .field("config", &st.config)
            .field("transactions", &st.txs.len())
            .field("enlistments", &st.enlistments.len())
            .field("violations", &st.checker.violations.len())
            .finish()
    }
}

/// A weak handle to a [`Ktm`], for RM callbacks: the model holds every callback, so a callback
/// holding the model strongly would be a reference cycle.
#[derive(Clone)]
pub struct WeakKtm(std::sync::Weak<Inner>);

impl WeakKtm {
    /// The model, if it still exists.
    #[must_use]
    pub fn upgrade(&self) -> Option<Ktm> {
        self.0.upgrade().map(Ktm::from_inner)
    }
}

/// A kernel reference to a transaction, like the `PKTRANSACTION` that `ObReferenceObjectByHandle`
/// returns (docs/ktm.md §4); dropping it is `ObDereferenceObject`. References still held at
/// [`Ktm::finish`] are reported as leaks (docs/ktm.md §8 "balance every reference").
pub struct TxRef {
    pub(crate) ktm: Ktm,
    pub(crate) id: TxId,
}

impl TxRef {
    /// The transaction's GUID (`TmGetTransactionId`).
    #[must_use]
    pub const fn id(&self) -> TxId {
        self.id
    }
}

impl fmt::Debug for TxRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxRef({})", tx_name(self.id))
    }
}

impl Drop for TxRef {
    fn drop(&mut self) {
        let _model = crate::alloc_scope::Scope::model();
        let mut st = self.ktm.lock();
        if let Some(tx) = st.txs.get_mut(&self.id) {
            tx.references = tx.references.saturating_sub(1);
        }
    }
}

impl Ktm {
    /// A model with no processes, transactions or RMs.
    #[must_use]
    pub fn new(config: KtmConfig) -> Self {
        Ktm {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(config)),
                cond: Condvar::new(),
            }),
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Ktm { inner }
    }

    /// A weak handle, for callbacks.
    #[must_use]
    pub fn downgrade(&self) -> WeakKtm {
        WeakKtm(Arc::downgrade(&self.inner))
    }

    /// Locks the model. A poisoned lock (a test thread panicked) is taken as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a change of the model (any answer, close or state change), at most until
    /// `until`.
    pub(crate) fn wait<'a>(
        &'a self,
        guard: MutexGuard<'a, State>,
        until: Instant,
    ) -> MutexGuard<'a, State> {
        let d = until.saturating_duration_since(Instant::now());
        match self.inner.cond.wait_timeout(guard, d) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    /// [`Ktm::wait`] until `until`, or for the next change however long it takes (`None`).
    pub(crate) fn wait_until<'a>(
        &'a self,
        guard: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        match until {
            Some(t) => self.wait(guard, t),
            None => match self.inner.cond.wait(guard) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            },
        }
    }

    /// Wakes every waiter after a change.
    pub(crate) fn changed(&self) {
        self.inner.cond.notify_all();
    }

    // ---- configuration and faults ------------------------------------------------------------

    /// The current configuration.
    #[must_use]
    pub fn config(&self) -> KtmConfig {
        self.lock().config.clone()
    }

    /// Switches the delivery mode (takes effect with the next phase).
    pub fn set_delivery(&self, mode: DeliveryMode) {
        self.lock().config.delivery = mode;
    }

    /// Sets how long a phase waits for answers (`None`: forever, as KTM; see
    /// [`KtmConfig::answer_deadline`]).
    pub fn set_answer_deadline(&self, d: Option<Duration>) {
        self.lock().config.answer_deadline = d;
    }

    /// Makes a callback's error return count as a no vote (see
    /// [`KtmConfig::error_return_is_no_vote`]).
    pub fn set_error_return_is_no_vote(&self, on: bool) {
        self.lock().config.error_return_is_no_vote = on;
    }

    /// Turns the allowed interleavings on or off (see [`crate::Interleavings`]).
    pub fn set_interleavings(&self, i: crate::Interleavings) {
        self.lock().config.interleavings = i;
    }

    /// Turns the duplicate COMMIT (docs/ktm.md §8, S21) on or off.
    pub fn set_duplicate_commit(&self, on: bool) {
        self.lock().config.duplicate_commit = on;
    }

    /// Makes the next `n` [`Ktm::enlist`] calls fail with `status` (before any other check), as
    /// `TmCreateEnlistment` can (e.g. `STATUS_INSUFFICIENT_RESOURCES`, docs/ktm.md §5). Calls for the
    /// built-in RMs are not affected.
    pub fn fail_next_enlists(&self, n: u32, status: NtStatus) {
        self.lock().faults.fail_enlists = (n > 0).then_some((n, status));
    }

    /// Makes the next successful [`Ktm::enlist`] roll its transaction back before returning, so a
    /// ROLLBACK for the new enlistment precedes `enlist`'s return (docs/ktm.md §3, S21). Calls queue
    /// up: each arms one more enlist.
    pub fn rollback_during_next_enlist(&self, race: EnlistRace) {
        self.lock().faults.races.push(race);
    }

    /// Makes the next delivery of `n` (PREPREPARE, PREPARE or SINGLE_PHASE_COMMIT, to any
    /// transaction) race a rollback of its transaction, as a client's `RollbackTransaction`, a
    /// timeout or another RM's `ZwRollbackEnlistment` can at any time before the decision
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-rollback-operations>):
    /// [`EnlistRace::SameThread`] rolls back before the notification's callbacks run (with
    /// [`crate::Interleavings::eager_rollback`] the ROLLBACK is then handled before the
    /// overtaken notification reaches the RM, a callback thread that lost the race);
    /// [`EnlistRace::OtherThread`] rolls back from another thread while they run. Calls queue up.
    pub fn rollback_during_next(&self, n: ktmrm_core::Notification, race: EnlistRace) {
        self.lock().faults.rollback_during.push((n, race));
    }

    /// Installs the visibility probe (see [`crate::Phase`]).
    pub fn set_phase_probe(&self, probe: PhaseProbe) {
        self.lock().probe = Some(probe);
    }

    /// Removes the probe.
    pub fn clear_phase_probe(&self) {
        self.lock().probe = None;
    }
}
