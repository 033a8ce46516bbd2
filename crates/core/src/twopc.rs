//! The two-phase-commit state machine of one enlistment (docs/ktm.md §1, §3, §8):
//! PREPREPARE → PrePrepareComplete; PREPARE → yes vote (slots reserved, so COMMIT cannot fail),
//! no vote (quota exceeded or out of memory), or read-only (nothing written); COMMIT → apply;
//! ROLLBACK → discard; SINGLE_PHASE_COMMIT → apply at once, or reject when it would not fit (or,
//! durable, when its records cannot be forced).
//! Each notification yields exactly one answer; a notification that does not fit the state is
//! counted as a protocol error and answered the way that keeps KTM moving without losing data.
//!
//! Durable engines also log (see `durable.rs`): the Prepare record is appended here, under the
//! lock, and the engine forces it before the yes vote; likewise the Commit record before
//! CommitComplete. [`Reaction::Force`] tells the engine to force, then call
//! [`State::after_force`] for the answer. A single-phase commit is applied only once its records
//! are forced (its writes stay pending, their keys locked, in between), so a failed force leaves
//! nothing visible; a two-phase COMMIT is applied first, since the forced Prepare record and
//! KTM's commit record already make it durable.

use crate::durable::Appended;
use crate::entry::KeyBuf;
use crate::port::{Answer, EnlistmentKey, Notification};
use crate::state::State;
use crate::state::store::Room;
use crate::state::txns::{Hold, Phase, Prepared, Txn};
use crate::wal::{LogPort, Lsn};
use alloc::vec::Vec;
use ktmrm_proto::NtStatus;

/// What the host must do after a notification, outside the lock.
pub(crate) enum Reaction<E> {
    /// Nothing to answer (LAST_RECOVER, an informational notification, or an outcome KTM
    /// reached meanwhile); the callback returns `STATUS_SUCCESS`.
    Silent,
    /// Give KTM this answer, then close the enlistment if the transaction ended with it.
    Answer { answer: Answer, close: Option<E> },
    /// Durable only: force the log up to here, then ask [`State::after_force`] for the answer.
    Force(Lsn),
    /// The answer is withheld and the callback returns `STATUS_PENDING`: a COMMIT whose record
    /// could not be forced (KTM redelivers COMMIT after a restart), or a phase that unload's
    /// rollback request answers.
    Withhold,
}

/// Where one step of the protocol leaves a notification, before the enlistment's fate is
/// settled: what [`State::on_notification`]'s handlers return.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Answer; the transaction goes on.
    Reply(Answer),
    /// Answer, and the transaction is over (its slot freed, its enlistment closed).
    Finish(Answer),
    /// Durable only: force the log up to here before answering ([`State::after_force`]).
    Force(Lsn),
    /// Answer nothing and return `STATUS_PENDING` (see [`Reaction::Withhold`]).
    Withhold,
    /// Nothing to answer.
    Silent,
}

impl<E> State<E> {
    pub(crate) fn protocol_error(&mut self) {
        self.stats.protocol_errors = self.stats.protocol_errors.saturating_add(1);
    }

    /// Handles a notification for `key` and says how to answer it. `log` is used only by a
    /// durable state.
    pub(crate) fn on_notification(
        &mut self,
        key: EnlistmentKey,
        n: Notification,
        log: &dyn LogPort,
    ) -> Reaction<E> {
        let step = self.step(key, n, log);
        self.react(key, step)
    }

    /// Turns a step into what the host does: a finishing answer ends the transaction here.
    fn react(&mut self, key: EnlistmentKey, step: Step) -> Reaction<E> {
        match step {
            Step::Reply(answer) => Reaction::Answer {
                answer,
                close: None,
            },
            Step::Finish(answer) => Reaction::Answer {
                answer,
                close: self.end(key),
            },
            Step::Force(lsn) => Reaction::Force(lsn),
            Step::Withhold => Reaction::Withhold,
            Step::Silent => Reaction::Silent,
        }
    }

    /// The protocol's step for notification `n` in `key`'s current phase.
    fn step(&mut self, key: EnlistmentKey, n: Notification, log: &dyn LogPort) -> Step {
        let phase = self.phase(key);
        match (n, phase) {
            (Notification::PrePrepare, Some(Phase::Active)) => {
                self.set_phase(key, Phase::PrePrepared);
                Step::Reply(Answer::PrePrepareComplete)
            }
            (Notification::Prepare, Some(Phase::Active | Phase::PrePrepared)) => {
                self.prepare(key, log)
            }
            (Notification::Commit, Some(Phase::Prepared(_))) => self.commit_prepared(key, log),
            (Notification::SinglePhaseCommit, Some(Phase::Active | Phase::PrePrepared))
                if self
                    .txn(key)
                    .is_some_and(|t| t.writes().is_empty() && !t.doomed()) =>
            {
                // Offered single-phase commit with nothing written: as read-only as a PREPARE
                // answered ReadOnlyEnlistment, but SPC wants CommitComplete.
                self.stats.read_only = self.stats.read_only.saturating_add(1);
                Step::Finish(Answer::CommitComplete)
            }
            (Notification::SinglePhaseCommit, Some(Phase::Active | Phase::PrePrepared)) => {
                self.single_phase(key, log)
            }
            (Notification::Rollback, Some(p))
                if !matches!(
                    p,
                    Phase::Ended | Phase::Committing { .. } | Phase::Unlogged { .. }
                ) =>
            {
                self.discard(key);
                self.log_abort(key, log);
                self.stats.rollbacks = self.stats.rollbacks.saturating_add(1);
                Step::Finish(Answer::RollbackComplete)
            }
            // Unload asked for the rollback: that no vote (given by the unloading thread, maybe
            // after this callback returns) stands for this phase's answer, so the callback says
            // STATUS_PENDING and answers nothing itself. ROLLBACK follows.
            (
                Notification::PrePrepare | Notification::Prepare | Notification::SinglePhaseCommit,
                Some(Phase::RollbackAsked),
            ) => Step::Withhold,
            (Notification::LastRecover, _) => {
                self.last_recover(log);
                Step::Silent
            }
            (Notification::RmDisconnected | Notification::InDoubt | Notification::Other(_), _) => {
                Step::Silent
            }
            // Withheld until a restart: KTM redelivers it then (docs/ktm.md §8).
            (Notification::Commit, Some(Phase::Unlogged { .. })) => {
                self.protocol_error();
                Step::Withhold
            }
            // RECOVER needs its UOW: hosts call `Engine::recover`, never `notify`, for it.
            (Notification::Recover, _) => {
                self.protocol_error();
                Step::Silent
            }
            // Out of order, repeated, or for an enlistment already ended. A duplicate COMMIT can
            // follow recovery (docs/ktm.md §8, S21): acknowledge it again. Otherwise answer what the
            // notification asks for without touching data: an ended transaction has nothing left.
            // A phase for a transaction already gone is no error: a ROLLBACK overtook it (KTM
            // sends ROLLBACK as soon as the rollback is made, and the callback carrying the phase
            // may run after the ROLLBACK's, https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-rollback-operations).
            (n, _) => {
                let overtaken = phase.is_none()
                    && matches!(
                        n,
                        Notification::PrePrepare
                            | Notification::Prepare
                            | Notification::SinglePhaseCommit
                    );
                if !overtaken {
                    self.protocol_error();
                }
                Step::Reply(match n {
                    Notification::PrePrepare => Answer::PrePrepareComplete,
                    Notification::Prepare if phase.is_none() || phase == Some(Phase::Ended) => {
                        Answer::ReadOnly
                    }
                    Notification::Prepare => Answer::PrepareComplete,
                    Notification::Commit | Notification::SinglePhaseCommit => {
                        Answer::CommitComplete
                    }
                    _ => Answer::RollbackComplete,
                })
            }
        }
    }

    /// The answer after the engine forced the log for `key`'s notification `n`: the yes vote or
    /// CommitComplete when `forced` is `Ok` (a single-phase commit is applied now); on failure
    /// a no vote for a prepare, SinglePhaseReject for a single-phase commit (nothing applied;
    /// its writes stay staged so that the two-phase fallback's PREPARE votes no, the log having
    /// failed), and for a two-phase commit no answer at all (see [`Phase::Unlogged`]).
    pub(crate) fn after_force(
        &mut self,
        key: EnlistmentKey,
        n: Notification,
        forced: Result<(), NtStatus>,
        log: &dyn LogPort,
    ) -> Reaction<E> {
        self.forced(forced);
        let phase = self.phase(key);
        let single = n == Notification::SinglePhaseCommit;
        let step = match (phase, forced) {
            (Some(Phase::Prepared(_)), Ok(())) => Step::Reply(Answer::PrepareComplete),
            (Some(Phase::Committing { .. }), Ok(())) => {
                if single {
                    let hold = self.take_hold(key);
                    self.apply_committed(key, hold);
                    self.stats.single_phase_commits =
                        self.stats.single_phase_commits.saturating_add(1);
                }
                Step::Finish(Answer::CommitComplete)
            }
            (Some(Phase::Prepared(_)), Err(_)) => {
                self.discard(key);
                self.log_abort(key, log);
                self.veto(key)
            }
            (Some(Phase::Committing { .. }), Err(_)) if single => {
                self.release_reservation(key);
                self.set_phase(key, Phase::Active);
                Step::Reply(Answer::SinglePhaseReject)
            }
            (Some(Phase::Committing { .. }), Err(_)) => {
                self.set_phase(key, Phase::Unlogged { logged: false });
                Step::Withhold
            }
            // KTM ended it meanwhile (a ROLLBACK racing our PREPARE): nothing left to answer.
            _ => Step::Silent,
        };
        self.react(key, step)
    }

    /// PREPARE: read-only when nothing was written, a no vote when the commit would not fit
    /// (or, durable, the log cannot take the Prepare record), else a yes vote with everything
    /// commit needs reserved ([`Step::Force`] first when durable).
    fn prepare(&mut self, key: EnlistmentKey, log: &dyn LogPort) -> Step {
        // A serializable transaction whose reads a commit changed (`serializable.rs`).
        if self.txn(key).is_some_and(Txn::doomed) {
            self.discard(key);
            return self.veto(key);
        }
        if self.txn(key).is_some_and(|t| t.writes().is_empty()) {
            self.stats.read_only = self.stats.read_only.saturating_add(1);
            return Step::Finish(Answer::ReadOnly);
        }
        let durable = self.durability.is_durable();
        let hold = self.hold_for_commit(key);
        let Some(hold) = hold else {
            self.discard(key);
            return self.veto(key);
        };
        let prepared = Prepared {
            hold,
            ..Prepared::default()
        };
        self.set_phase(key, Phase::Prepared(prepared));
        self.doom_readers_of(key);
        if !durable {
            return Step::Reply(Answer::PrepareComplete);
        }
        match self.log_prepare(key, log) {
            Appended::Force(lsn) => {
                if let Some(p) = self.txn_mut(key).and_then(Txn::prepared_mut) {
                    p.logged = true;
                    p.outcome_reserved = true;
                }
                Step::Force(lsn)
            }
            Appended::Refused => {
                self.discard(key);
                self.veto(key)
            }
        }
    }

    /// The no vote: writes already discarded; KTM's ROLLBACK ends the transaction.
    fn veto(&mut self, key: EnlistmentKey) -> Step {
        self.set_phase(key, Phase::Vetoed);
        self.stats.vetoes = self.stats.vetoes.saturating_add(1);
        Step::Reply(Answer::RollbackEnlistment)
    }

    /// COMMIT of a prepared transaction: applies it; durable with a Prepare record logged,
    /// appends its Commit record and asks for its force before CommitComplete, or withholds
    /// CommitComplete when the record could not be appended ([`Phase::Unlogged`]).
    fn commit_prepared(&mut self, key: EnlistmentKey, log: &dyn LogPort) -> Step {
        let Some(Phase::Prepared(prepared)) = self.phase(key) else {
            return Step::Finish(Answer::CommitComplete);
        };
        let hold = self.take_hold(key);
        self.apply_committed(key, hold);
        if !self.durability.is_durable() || !prepared.logged {
            return Step::Finish(Answer::CommitComplete);
        }
        match self.log_commit(key, log, prepared.outcome_reserved) {
            Appended::Force(lsn) => {
                let hold = Hold::default();
                self.set_phase(key, Phase::Committing { hold });
                Step::Force(lsn)
            }
            Appended::Refused => {
                self.set_phase(key, Phase::Unlogged { logged: true });
                Step::Withhold
            }
        }
    }

    /// SINGLE_PHASE_COMMIT with writes: applied at once, or rejected when it would not fit (KTM
    /// then falls back to the two phases, where this transaction votes no). Durable: the Prepare
    /// and Commit records are appended together, and [`Step::Force`] asks for one force before
    /// anything is applied ([`State::after_force`]); KTM keeps no record of a single-phase
    /// commit, so one that cannot be logged is rejected with nothing applied.
    fn single_phase(&mut self, key: EnlistmentKey, log: &dyn LogPort) -> Step {
        let durable = self.durability.is_durable();
        // A serializable transaction whose reads a commit changed (`serializable.rs`).
        let doomed = self.txn(key).is_some_and(Txn::doomed);
        let hold = if doomed {
            None
        } else {
            self.hold_for_commit(key)
        };
        let Some(hold) = hold else {
            return Step::Reply(Answer::SinglePhaseReject);
        };
        self.doom_readers_of(key);
        if !durable {
            self.apply_committed(key, hold);
            self.stats.single_phase_commits = self.stats.single_phase_commits.saturating_add(1);
            return Step::Finish(Answer::CommitComplete);
        }
        // The Prepare record's append reserves the Commit record's memory; a Prepare record
        // left with no outcome is presumed aborted after a restart.
        if let Appended::Force(_) = self.log_prepare(key, log)
            && let Appended::Force(lsn) = self.log_commit(key, log, true)
        {
            self.set_phase(key, Phase::Committing { hold });
            return Step::Force(lsn);
        }
        self.release(key, hold);
        Step::Reply(Answer::SinglePhaseReject)
    }

    /// Applies a decided transaction's writes, using what `hold` reserved, and counts the
    /// commit.
    fn apply_committed(&mut self, key: EnlistmentKey, hold: Hold) {
        self.apply(key, hold);
        self.stats.commits = self.stats.commits.saturating_add(1);
    }

    /// What a vote or a single-phase commit holds: `None` when the log has failed (what is
    /// durable is no longer known) or the commit would not fit.
    fn hold_for_commit(&mut self, key: EnlistmentKey) -> Option<Hold> {
        if self.durability.is_durable() && self.durability.failed().is_some() {
            return None;
        }
        self.reserve_for_commit(key)
    }

    /// Checks the quotas and reserves the committed-tree slots commit will use, so that applying
    /// the writes later cannot fail. `None` (and nothing reserved) when it does not fit.
    pub(crate) fn reserve_for_commit(&mut self, key: EnlistmentKey) -> Option<Hold> {
        let t = self.txn(key)?;
        let (puts, d) = (t.writes().puts(), t.writes().delta());
        if !self.fits(d) {
            self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
            return None;
        }
        self.store.reserve(puts).ok()?;
        self.store.charge_prepared(d.keys, d.bytes, true);
        Some(Hold {
            reserved: puts,
            charged: true,
        })
    }

    /// Gives back what `hold` holds for `key`.
    fn release(&mut self, key: EnlistmentKey, hold: Hold) {
        self.store.unreserve(hold.reserved);
        if hold.charged
            && let Some(t) = self.txn(key)
        {
            let d = t.writes().delta();
            self.store.charge_prepared(d.keys, d.bytes, false);
        }
    }

    /// Takes what `key`'s phase holds, leaving it empty.
    fn take_hold(&mut self, key: EnlistmentKey) -> Hold {
        self.txn_mut(key)
            .and_then(Txn::hold_mut)
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// Gives back what `key`'s phase holds.
    pub(crate) fn release_reservation(&mut self, key: EnlistmentKey) {
        let hold = self.take_hold(key);
        self.release(key, hold);
    }

    /// Takes the transaction's write list, leaving it empty.
    fn take_writes(&mut self, key: EnlistmentKey) -> Vec<crate::tree::SlotId> {
        self.txn_mut(key)
            .map(|t| t.writes_mut().take_ids())
            .unwrap_or_default()
    }

    /// Moves every pending write into the committed store, using the slots `hold` reserved,
    /// and gives back the rest of it.
    fn apply(&mut self, key: EnlistmentKey, hold: Hold) {
        let writes = self.take_writes(key);
        let reserved = hold.reserved;
        let mut used = 0usize;
        for node in writes {
            let Some(k) = self
                .pending
                .slot(node)
                .and_then(|p| KeyBuf::new(p.entry.key()))
            else {
                self.protocol_error();
                continue;
            };
            let Some(p) = self.pending.remove(k.as_slice()) else {
                continue;
            };
            if p.delete {
                self.store.remove(k.as_slice());
                continue;
            }
            let room = if used < reserved {
                used = used.saturating_add(1);
                Room::ReservedAt(p.leaf)
            } else {
                Room::Alloc
            };
            // Unreachable while reservations hold; counted so a test would see it.
            if self.store.put(p.entry, room).is_err() {
                self.protocol_error();
            }
        }
        let rest = Hold {
            reserved: reserved.saturating_sub(used),
            charged: hold.charged,
        };
        self.release(key, rest);
    }

    /// Drops every pending write (releasing the key locks) and any reservation.
    pub(crate) fn discard(&mut self, key: EnlistmentKey) {
        for node in self.take_writes(key) {
            if let Some(k) = self
                .pending
                .slot(node)
                .and_then(|p| KeyBuf::new(p.entry.key()))
            {
                self.pending.remove(k.as_slice());
            }
        }
        self.release_reservation(key);
    }

    /// Marks a transaction ended and frees its slot unless a thread is still enlisting it (that
    /// thread frees it). Returns the enlistment to close.
    pub(crate) fn end(&mut self, key: EnlistmentKey) -> Option<E> {
        self.set_phase(key, Phase::Ended);
        if self.txn(key)?.is_enlisting() {
            return None;
        }
        self.remove_txn(key)
    }
}
