//! Hand-written RMs for testing the model itself (not the engine), and the set-up most tests
//! start from.
#![allow(dead_code)]

pub mod device;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use ktm_sim::{
    Answer, Delivery, DeliveryMode, EnlistmentId, EnlistmentKey, Ktm, KtmConfig, Notification,
    NtStatus, ProcessId, RmId, access::TRANSACTION_ENLIST,
};

/// Every delivery an RM saw, in order, with the thread it ran on.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(Delivery, ThreadId)>>>);

impl Log {
    pub fn push(&self, d: Delivery) {
        self.0
            .lock()
            .unwrap()
            .push((d, std::thread::current().id()));
    }

    /// The notifications, in order.
    pub fn kinds(&self) -> Vec<Notification> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(d, _)| d.notification)
            .collect()
    }

    /// The notifications one enlistment got, in order.
    pub fn kinds_of(&self, en: EnlistmentId) -> Vec<Notification> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d.enlistment == en)
            .map(|(d, _)| d.notification)
            .collect()
    }

    pub fn threads(&self) -> Vec<ThreadId> {
        self.0.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }
}

pub type Behaviour = dyn Fn(&Ktm, Delivery) -> NtStatus + Send + Sync;

/// Registers an RM that logs each delivery and then runs `f`.
pub fn rm_with(
    ktm: &Ktm,
    log: &Log,
    f: impl Fn(&Ktm, Delivery) -> NtStatus + Send + Sync + 'static,
) -> RmId {
    let weak = ktm.downgrade();
    let log = log.clone();
    ktm.create_resource_manager(Arc::new(move |d: Delivery| {
        log.push(d);
        match weak.upgrade() {
            Some(k) => f(&k, d),
            None => NtStatus::RM_DISCONNECTED,
        }
    }))
}

/// A well-behaved RM that votes `vote` at PREPARE and answers SINGLE_PHASE_COMMIT with `spc`,
/// closing its enlistment after its last answer.
pub fn voting(vote: Answer, spc: Answer) -> impl Fn(&Ktm, Delivery) -> NtStatus + Send + Sync {
    move |k: &Ktm, d: Delivery| {
        let (answer, last) = match d.notification {
            Notification::PrePrepare => (Answer::PrePrepareComplete, false),
            Notification::Prepare => (vote, vote == Answer::ReadOnly),
            Notification::Commit => (Answer::CommitComplete, true),
            Notification::Rollback => (Answer::RollbackComplete, true),
            Notification::SinglePhaseCommit => (spc, spc != Answer::SinglePhaseReject),
            _ => return NtStatus::SUCCESS,
        };
        assert_eq!(k.answer(d.enlistment, answer), NtStatus::SUCCESS);
        if last && !k.enlistment_info(d.enlistment).unwrap().closed {
            k.close_enlistment(d.enlistment);
        }
        NtStatus::SUCCESS
    }
}

/// A well-behaved RM that votes yes.
pub fn good() -> impl Fn(&Ktm, Delivery) -> NtStatus + Send + Sync {
    voting(Answer::PrepareComplete, Answer::CommitComplete)
}

/// A well-behaved RM, except that its callback for `at` returns `status` without answering.
pub fn no_answer_at(
    at: Notification,
    status: NtStatus,
) -> impl Fn(&Ktm, Delivery) -> NtStatus + Send + Sync {
    move |k: &Ktm, d: Delivery| {
        if d.notification == at {
            return status;
        }
        good()(k, d)
    }
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1000);

/// References `h` in `p` and enlists `rm` with `mask`.
pub fn enlist(
    ktm: &Ktm,
    rm: RmId,
    p: ProcessId,
    h: u64,
    mask: u32,
) -> Result<EnlistmentId, NtStatus> {
    let tx = ktm.reference_transaction(p, h, TRANSACTION_ENLIST)?;
    ktm.enlist(
        rm,
        &tx,
        EnlistmentKey(NEXT_KEY.fetch_add(1, Ordering::Relaxed)),
        mask,
    )
}

/// One RM (logging into `log`), one process and one transaction in it (no timeout, no
/// description): what most tests start from.
pub struct OneTx {
    pub k: Ktm,
    pub log: Log,
    pub rm: RmId,
    pub p: ProcessId,
    pub h: u64,
}

/// Registers an RM running `f` with `k` (as [`rm_with`]), then creates a process and a
/// transaction in it.
pub fn one_tx(k: Ktm, f: impl Fn(&Ktm, Delivery) -> NtStatus + Send + Sync + 'static) -> OneTx {
    let log = Log::default();
    let rm = rm_with(&k, &log, f);
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    OneTx { k, log, rm, p, h }
}

/// A model with `mode` and a short answer deadline.
pub fn ktm(mode: DeliveryMode) -> Ktm {
    Ktm::new(KtmConfig {
        delivery: mode,
        answer_deadline: Some(Duration::from_secs(5)),
        ..KtmConfig::default()
    })
}

/// Both delivery modes, for tests that must pass in each.
pub const MODES: [DeliveryMode; 2] = [DeliveryMode::Inline, DeliveryMode::Threaded];

/// The four phases every RM takes (docs/ktm.md §3).
pub const MASK4: u32 = 0xF;
/// The four phases and SINGLE_PHASE_COMMIT.
pub const MASK_SPC: u32 = 0x20F;
