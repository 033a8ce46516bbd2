//! What the KTM notification callback decides, kept here so it is tested on any OS: whether a
//! notification is handled in the callback or on a work item, what happens when no work item
//! can be had, and when a checkpoint follows. The kernel shell only gathers the inputs
//! (`KeAreAllApcsDisabled`, `IoGetStackLimits`) and carries out the answer.
//!
//! Why a worker at all: a durable engine forces its log (`ZwWriteFile`, `ZwFlushBuffersFile`)
//! while it handles PREPARE, COMMIT and SINGLE_PHASE_COMMIT, and a checkpoint also closes,
//! renames and reopens the file (`ZwSetInformationFile`, `ZwCreateFile`). Those routines need
//! PASSIVE_LEVEL *with special kernel APCs enabled* (their DDI pages; Driver Verifier bug checks
//! 0xC4/0xE9 otherwise), and enough stack for the file system below them, while the
//! ResourceManagerNotification callback is only promised PASSIVE_LEVEL, on any thread, possibly
//! nested inside a client's commit or inside the driver's own `Tm*` calls. A system worker
//! thread (`IoQueueWorkItem`) runs at PASSIVE_LEVEL with APCs enabled on a fresh stack.
//!
//! Which notifications may be finished later: the callback's page
//! (learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-ptm_rm_notification, "Return
//! value") lets a resource manager return `STATUS_PENDING` only for a notification it answers
//! with a `TmXxxComplete`/`ZwXxxComplete` routine, and then call that routine later: PREPREPARE,
//! PREPARE, COMMIT, ROLLBACK and SINGLE_PHASE_COMMIT (answered with CommitComplete). RECOVER
//! (answered with `TmRecoverEnlistment`) and LAST_RECOVER (no answer) are not among them.
//! Of those, only PREPARE, COMMIT and SINGLE_PHASE_COMMIT reach the log file: ROLLBACK and
//! PREPREPARE at most append a record to the log's memory buffer (`wal::FileLog::append` writes
//! nothing; only a force does), so they stay in the callback.

use crate::durable::CHECKPOINT_EVERY_BYTES;
use core::sync::atomic::{AtomicBool, Ordering};
use ktmrm_core::{Answer, Notification};

/// Below this much remaining kernel stack the callback leaves log I/O to a worker. A forced
/// write goes from the engine through `ZwWriteFile` into the I/O manager, the filter manager,
/// the file system, the volume and the storage stack, whose depth is not the driver's to know;
/// the x64 kernel stack is 24 KiB (`KERNEL_STACK_SIZE`), and a callback entered with less than
/// half of it left is already nested deep (inside a client's commit and a `Tm*` call of the
/// driver's own). The driver's own frames on that path are at most 4 KiB each
/// (`scripts/kernel-check.sh` checks it); the emulated suite reports the deepest use it saw.
pub const MIN_STACK_FOR_LOG_IO: usize = 12 * 1024;

/// What the callback knows about the thread it was called on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thread {
    /// The engine has a log (durable mode); a volatile engine does no I/O at all.
    pub durable: bool,
    /// `KeAreAllApcsDisabled()`: a guarded region, or IRQL >= APC_LEVEL. Special kernel APCs,
    /// which synchronous file I/O completes through, cannot run.
    pub all_apcs_disabled: bool,
    /// `IoGetRemainingStackSize()` (computed from `IoGetStackLimits`), in bytes.
    pub stack_remaining: usize,
}

impl Thread {
    /// Whether the log's `Zw*File` calls may run on this thread.
    #[must_use]
    pub const fn fit_for_log_io(&self) -> bool {
        !self.all_apcs_disabled && self.stack_remaining >= MIN_STACK_FOR_LOG_IO
    }
}

/// Where a notification is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// In the callback, as before.
    Inline,
    /// On a work item: the callback returns `STATUS_PENDING` and the worker answers.
    Worker,
}

/// Whether the callback may return `STATUS_PENDING` for `n` and answer later (see the module
/// docs: the notifications answered with a `*Complete` routine).
#[must_use]
pub const fn may_pend(n: Notification) -> bool {
    matches!(
        n,
        Notification::PrePrepare
            | Notification::Prepare
            | Notification::Commit
            | Notification::Rollback
            | Notification::SinglePhaseCommit
    )
}

/// Whether a durable engine forces its log (file I/O) while it handles `n`.
#[must_use]
pub const fn forces_log(n: Notification) -> bool {
    matches!(
        n,
        Notification::Prepare | Notification::Commit | Notification::SinglePhaseCommit
    )
}

/// Where `n` is handled on `thread`: on a worker when it forces a durable log and the thread is
/// unfit for the file I/O; everything else in the callback. RECOVER always stays in the
/// callback: `Engine::recover` must run before the callback returns (KTM may send LAST_RECOVER,
/// which presumes abort for whatever was not recovered, once every RECOVER callback returned).
#[must_use]
pub const fn route(n: Notification, thread: &Thread) -> Route {
    if thread.durable && forces_log(n) && may_pend(n) && !thread.fit_for_log_io() {
        Route::Worker
    } else {
        Route::Inline
    }
}

/// What the callback does with a notification it meant to defer when no work item can be had
/// (`IoAllocateWorkItem` or the pool block for its context failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Handle it in the callback after all.
    Inline,
    /// Give this answer at once, without the engine (no log I/O), and return its status.
    Answer(Answer),
    /// Answer nothing and return `STATUS_PENDING`.
    Pend,
}

/// The fallback for `n` on `thread` when the work item for it cannot be allocated.
///
/// With APCs enabled only the stack was short: the callback handles it itself, as the driver
/// always did (the `Zw*File` contract holds; the file system below posts its own work when it
/// runs short of stack). With all APCs disabled the file I/O must not run here, so the
/// notification fails the way the engine fails it when its log cannot be forced:
/// - PREPARE: a no vote (`TmRollbackEnlistment`, legal until PrepareComplete); KTM rolls the
///   transaction back and sends ROLLBACK, which needs no file I/O. Nothing was visible yet.
/// - SINGLE_PHASE_COMMIT: `TmSinglePhaseReject`; KTM runs the two phases instead, each of which
///   gets this decision again.
/// - COMMIT: it cannot be refused after the yes vote (docs/ktm.md §3, Obligations). It does not
///   get here when its enlistment holds the spare work item each durable enlistment is given
///   (`kmode::worker`); without one (an enlistment KTM rebuilt at recovery when none could be
///   had, or unload's rundown wait begun) it is withheld with `STATUS_PENDING`, as the engine
///   withholds a COMMIT whose record cannot be forced: KTM keeps the transaction and
///   redelivers COMMIT after a restart (docs/ktm.md §8), when recovery applies it from the
///   forced Prepare record.
#[must_use]
pub const fn without_worker(n: Notification, thread: &Thread) -> Fallback {
    if !thread.all_apcs_disabled {
        return Fallback::Inline;
    }
    match n {
        Notification::Prepare => Fallback::Answer(Answer::RollbackEnlistment),
        Notification::SinglePhaseCommit => Fallback::Answer(Answer::SinglePhaseReject),
        Notification::Commit => Fallback::Pend,
        _ => Fallback::Inline,
    }
}

/// Whether a durable engine writes a checkpoint after handling `n`, with
/// `bytes_since_checkpoint` logged since the last one: once recovery is over (LAST_RECOVER), and
/// at a commit (two-phase or single-phase) once [`CHECKPOINT_EVERY_BYTES`] were logged. The
/// checkpoint always runs on a worker (it closes, renames and reopens the log file); the
/// driver also writes one at unload.
#[must_use]
pub const fn checkpoint_due(n: Notification, bytes_since_checkpoint: u64) -> bool {
    match n {
        Notification::LastRecover => true,
        Notification::Commit | Notification::SinglePhaseCommit => {
            bytes_since_checkpoint >= CHECKPOINT_EVERY_BYTES
        }
        _ => false,
    }
}

/// At most one checkpoint queued or running: every commit past the threshold asks for one
/// until a checkpoint resets the count, and a second one queued behind the first would only
/// encode, force and rewrite the whole state again. Whoever [`CheckpointSlot::claim`]s it queues
/// (or runs) the checkpoint and releases it once done or once queueing failed.
pub struct CheckpointSlot(AtomicBool);

impl CheckpointSlot {
    /// Free.
    #[must_use]
    pub const fn new() -> Self {
        CheckpointSlot(AtomicBool::new(false))
    }

    /// True for exactly one caller until [`CheckpointSlot::release`].
    pub fn claim(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Frees it: the checkpoint ran, or could not be queued.
    pub fn release(&self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Default for CheckpointSlot {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_checkpoint_at_a_time() {
        let slot = CheckpointSlot::new();
        assert!(slot.claim());
        assert!(!slot.claim(), "claimed twice");
        slot.release();
        assert!(slot.claim(), "free again after release");
        slot.release();
        for _ in 0..50 {
            let winners = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        if slot.claim() {
                            winners.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            assert_eq!(winners.load(Ordering::Relaxed), 1, "racing claims");
            slot.release();
        }
    }

    const ALL: [Notification; 10] = [
        Notification::PrePrepare,
        Notification::Prepare,
        Notification::Commit,
        Notification::Rollback,
        Notification::SinglePhaseCommit,
        Notification::Recover,
        Notification::LastRecover,
        Notification::InDoubt,
        Notification::RmDisconnected,
        Notification::Other(0x800),
    ];

    const FIT: Thread = Thread {
        durable: true,
        all_apcs_disabled: false,
        stack_remaining: 20 * 1024,
    };

    #[test]
    fn a_fit_thread_handles_everything_inline() {
        for n in ALL {
            assert_eq!(route(n, &FIT), Route::Inline, "{n:?}");
        }
    }

    #[test]
    fn apcs_off_or_a_short_stack_defers_exactly_the_forcing_notifications() {
        let no_apcs = Thread {
            all_apcs_disabled: true,
            ..FIT
        };
        let short = Thread {
            stack_remaining: MIN_STACK_FOR_LOG_IO - 1,
            ..FIT
        };
        for thread in [no_apcs, short] {
            let deferred: Vec<_> = ALL
                .into_iter()
                .filter(|n| route(*n, &thread) == Route::Worker)
                .collect();
            assert_eq!(
                deferred,
                [
                    Notification::Prepare,
                    Notification::Commit,
                    Notification::SinglePhaseCommit
                ]
            );
        }
        // The bound itself is enough stack.
        let at_bound = Thread {
            stack_remaining: MIN_STACK_FOR_LOG_IO,
            ..FIT
        };
        assert_eq!(route(Notification::Commit, &at_bound), Route::Inline);
    }

    #[test]
    fn a_volatile_engine_never_defers() {
        let worst = Thread {
            durable: false,
            all_apcs_disabled: true,
            stack_remaining: 0,
        };
        for n in ALL {
            assert_eq!(route(n, &worst), Route::Inline, "{n:?}");
        }
    }

    #[test]
    fn only_notifications_answered_by_a_complete_routine_may_pend() {
        let pend: Vec<_> = ALL.into_iter().filter(|n| may_pend(*n)).collect();
        assert_eq!(
            pend,
            [
                Notification::PrePrepare,
                Notification::Prepare,
                Notification::Commit,
                Notification::Rollback,
                Notification::SinglePhaseCommit
            ]
        );
        // Every deferred notification is one that may pend.
        for n in ALL {
            assert!(!forces_log(n) || may_pend(n), "{n:?}");
        }
        assert!(
            !may_pend(Notification::Recover),
            "RECOVER is answered inline"
        );
    }

    #[test]
    fn without_a_worker_a_short_stack_goes_inline_and_no_apcs_fails_safely() {
        let short = Thread {
            stack_remaining: 1024,
            ..FIT
        };
        for n in ALL {
            assert_eq!(without_worker(n, &short), Fallback::Inline, "{n:?}");
        }
        let no_apcs = Thread {
            all_apcs_disabled: true,
            ..FIT
        };
        assert_eq!(
            without_worker(Notification::Prepare, &no_apcs),
            Fallback::Answer(Answer::RollbackEnlistment)
        );
        assert_eq!(
            without_worker(Notification::SinglePhaseCommit, &no_apcs),
            Fallback::Answer(Answer::SinglePhaseReject)
        );
        assert_eq!(
            without_worker(Notification::Commit, &no_apcs),
            Fallback::Pend
        );
        // The answers given without the engine are legal for their notification (docs/ktm.md
        // §3): a no vote answers PREPARE, a reject answers SINGLE_PHASE_COMMIT.
        for n in ALL.into_iter().filter(|n| forces_log(*n)) {
            match without_worker(n, &no_apcs) {
                Fallback::Answer(Answer::RollbackEnlistment) => {
                    assert_eq!(n, Notification::Prepare)
                }
                Fallback::Answer(Answer::SinglePhaseReject) => {
                    assert_eq!(n, Notification::SinglePhaseCommit)
                }
                Fallback::Pend => assert!(may_pend(n)),
                other => panic!("{n:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn checkpoints_after_recovery_and_after_a_commit_past_the_threshold() {
        assert!(checkpoint_due(Notification::LastRecover, 0));
        for n in [Notification::Commit, Notification::SinglePhaseCommit] {
            assert!(!checkpoint_due(n, 0));
            assert!(!checkpoint_due(n, CHECKPOINT_EVERY_BYTES - 1));
            assert!(checkpoint_due(n, CHECKPOINT_EVERY_BYTES));
            assert!(checkpoint_due(n, u64::MAX));
        }
        for n in ALL.into_iter().filter(|n| {
            !matches!(
                n,
                Notification::LastRecover | Notification::Commit | Notification::SinglePhaseCommit
            )
        }) {
            assert!(!checkpoint_due(n, u64::MAX), "{n:?}");
        }
        assert_eq!(CHECKPOINT_EVERY_BYTES, 64 << 20);
    }
}
