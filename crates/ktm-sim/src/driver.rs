//! The outcome driver: delivers the phases of a commit or rollback in KTM's order and waits for
//! the answers (docs/ktm.md §1 "2PC", "Single-phase commit"; §3 table).
//!
//! Only the thread that moved a transaction out of Active drives it, so the phases of one
//! transaction never overlap. The model's lock is never held while a callback or the phase
//! probe runs: callbacks re-enter (they answer, close and enlist from any thread).
//!
//! A run notes the crash epoch when it starts and stops at its next step once
//! [`Ktm::crash`] (or an armed crash point) has happened: the machine it ran on is gone.

use std::sync::MutexGuard;
use std::time::Instant;

use ktmrm_core::{Answer, EnlistmentKey, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::checker::{Phase, needs_answer};
use crate::durable::{CrashPoint, RecoveryArgument, status::TRANSACTIONMANAGER_NOT_ONLINE};
use crate::ids::EnlistmentId;
use crate::ktm::Ktm;
use crate::model::{Delivery, DeliveryMode, Enlistment, Outstanding, RmCallback, State};
use crate::states::{EnlistmentState, Outcome, TxState};
use crate::violation::Violation;

/// One notification on its way to one enlistment.
#[derive(Clone)]
pub(crate) struct Target {
    pub en: EnlistmentId,
    seq: u64,
    pub tx: TxId,
    key: EnlistmentKey,
    pub notification: Notification,
    callback: RmCallback,
    pub recovery: Option<RecoveryArgument>,
}

/// What a protocol run cut short by a crash returns.
pub(crate) const CRASHED: NtStatus = TRANSACTIONMANAGER_NOT_ONLINE;

/// A threaded delivery in progress: counted in `inflight` until dropped, even when the callback
/// panics (which is recorded as a violation).
struct Inflight(Ktm, Target);

impl Drop for Inflight {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.inflight -= 1;
        if std::thread::panicking() {
            let t = &self.1;
            st.checker.violation(Violation::CallbackPanicked {
                notification: t.notification,
                enlistment: t.en,
                key: t.key,
                tx: t.tx,
            });
        }
        drop(st);
        self.0.changed();
    }
}

/// What each enlistment of a phase answered (`None`: never, or its callback failed).
pub(crate) type Results = Vec<(EnlistmentId, Option<Answer>)>;

pub(crate) fn any_no(results: &Results) -> bool {
    results
        .iter()
        .any(|(_, a)| matches!(a, None | Some(Answer::RollbackEnlistment)))
}

/// Another thread has taken the transaction into its rollback while this one committed.
pub(crate) const fn overtaken(state: TxState) -> bool {
    matches!(state, TxState::RollingBack | TxState::Aborted)
}

/// The state an enlistment reaches when a phase it did not ask for (its mask lacks the bit) is
/// skipped: KTM does not wait for notifications outside the mask (docs/ktm.md §3, S2).
fn skipped(n: Notification) -> EnlistmentState {
    match n {
        Notification::PrePrepare => EnlistmentState::PrePrepared,
        Notification::Prepare => EnlistmentState::Prepared,
        Notification::Commit | Notification::SinglePhaseCommit => EnlistmentState::Committed,
        _ => EnlistmentState::RolledBack,
    }
}

/// Marks `n` outstanding on every enlistment of `id` that `filter` accepts and returns the
/// deliveries to make. Must run under the model's lock, in the same critical section as the
/// state change that goes with the phase, so no enlistment slips between the two.
pub(crate) fn select(
    st: &mut State,
    id: TxId,
    n: Notification,
    filter: impl Fn(&Enlistment) -> bool,
) -> Vec<Target> {
    let mut chosen = Vec::new();
    for en in st.txs[&id].enlistments.clone() {
        let e = st.enlistments.get_mut(&en).expect("present");
        if !filter(e) {
            continue;
        }
        if e.mask & n.bits() == 0 {
            e.state = skipped(n);
            continue;
        }
        chosen.push(en);
    }
    select_ids(st, id, n, &chosen)
}

/// In play, still open and at `state`.
pub(crate) fn at(state: EnlistmentState) -> impl Fn(&Enlistment) -> bool {
    move |e| !e.closed && e.state == state
}

impl Ktm {
    /// Drives a commit the caller has claimed (moved from Active to PrePreparing), in KTM's
    /// order (docs/ktm.md §1, §3):
    /// 1. an enlistment in play whose mask has SINGLE_PHASE_COMMIT, and no other in play →
    ///    SINGLE_PHASE_COMMIT (§1, S3); another in play is [`crate::Violation::SpcBesideWriter`],
    ///    and SINGLE_PHASE_COMMIT goes to it anyway with
    ///    [`crate::Interleavings::spc_beside_writers`]. CommitComplete (or ReadOnly) commits,
    ///    SinglePhaseReject falls back to 2–4, RollbackEnlistment or no answer rolls back;
    /// 2. PREPREPARE to every enlistment, repeated for RMs that enlist meanwhile, until all
    ///    answered (§1 "flush caches so all RMs that need to enlist have enlisted");
    /// 3. PREPARE to every enlistment still in play; ReadOnly drops it from later phases (§1,
    ///    S1); a RollbackEnlistment (or no answer) is a no vote: ROLLBACK to every enlistment
    ///    not read-only, the no voter included ([`Ktm::drive_rollback`]), outcome Aborted,
    ///    `STATUS_TRANSACTION_ABORTED`;
    /// 4. the commit decision (a rollback requested until here wins), then COMMIT to every
    ///    prepared enlistment, and after CommitComplete optionally a duplicate COMMIT (§8, S21).
    ///
    /// A transaction with no enlistments just commits.
    pub(crate) fn drive_commit(&self, id: TxId) -> NtStatus {
        let epoch = self.lock().epoch;
        if let Some(status) = self.single_phase(id, epoch) {
            return status;
        }
        if let Err(status) = self.prepare_phases(id, epoch) {
            return status;
        }
        let targets = {
            let Some(mut st) = self.live(epoch) else {
                return CRASHED;
            };
            let tx = st.txs.get_mut(&id).expect("driven");
            if overtaken(tx.state) {
                drop(st);
                return self.await_rollback(id, epoch);
            }
            if tx.abort_requested {
                drop(st);
                return self.abort_commit(id, epoch);
            }
            tx.state = TxState::Committing;
            tx.outcome = Outcome::Committed;
            // KTM's commit record, before any COMMIT (docs/ktm.md §1, S10, S17).
            if st.log_commit_record(id)
                && let Some(gone) = st.hit(CrashPoint::AfterCommitRecord, id, None)
            {
                drop(st);
                drop(gone);
                self.changed();
                return CRASHED;
            }
            // Selected in the same critical section: nothing can change the set any more.
            select(
                &mut st,
                id,
                Notification::Commit,
                at(EnlistmentState::Prepared),
            )
        };
        self.probe(id, Phase::Prepare);

        let Some(results) = self.deliver_and_wait(targets, epoch) else {
            return CRASHED;
        };
        if self.lock().config.duplicate_commit {
            let again: Vec<EnlistmentId> = results
                .iter()
                .filter(|(_, a)| *a == Some(Answer::CommitComplete))
                .map(|(en, _)| *en)
                .collect();
            // As after recovery, the RM has finished with the first COMMIT: wait until its
            // callbacks have returned (it may close the enlistment in between).
            let targets = {
                let Some(mut st) = self.live(epoch) else {
                    return CRASHED;
                };
                let until = st.config.answer_deadline.map(|d| Instant::now() + d);
                while again.iter().any(|en| {
                    st.enlistments
                        .get(en)
                        .is_some_and(|e| e.returned < e.entered)
                }) && until.is_none_or(|u| Instant::now() < u)
                {
                    st = self.wait_until(st, until);
                }
                if st.epoch != epoch {
                    return CRASHED;
                }
                select_ids(&mut st, id, Notification::Commit, &again)
            };
            if self.deliver_and_wait(targets, epoch).is_none() {
                return CRASHED;
            }
        }
        if !self.end(id, TxState::Committed, epoch) {
            return CRASHED;
        }
        self.probe(id, Phase::Commit);
        NtStatus::SUCCESS
    }

    /// Steps 2–3 of [`Ktm::drive_commit`] (also what a superior drives, `recovery.rs`):
    /// PREPREPARE until every enlistment has it, then PREPARE. `Err` carries the status of a
    /// commit that rolled back instead, or [`CRASHED`].
    pub(crate) fn prepare_phases(&self, id: TxId, epoch: u64) -> Result<(), NtStatus> {
        // PrePrepare, until no enlistment is left without it.
        loop {
            let targets = {
                let Some(mut st) = self.live(epoch) else {
                    return Err(CRASHED);
                };
                if overtaken(st.txs[&id].state) {
                    drop(st);
                    return Err(self.await_rollback(id, epoch));
                }
                let t = select(
                    &mut st,
                    id,
                    Notification::PrePrepare,
                    at(EnlistmentState::Enlisted),
                );
                if t.is_empty() {
                    let tx = st.txs.get_mut(&id).expect("driven");
                    tx.state = TxState::Preparing;
                    if tx.abort_requested {
                        drop(st);
                        return Err(self.abort_commit(id, epoch));
                    }
                }
                t
            };
            if targets.is_empty() {
                break;
            }
            let results = self.deliver_and_wait(targets, epoch);
            self.after_phase(id, epoch, results)?;
        }
        self.probe(id, Phase::PrePrepare);

        let targets = {
            let Some(mut st) = self.live(epoch) else {
                return Err(CRASHED);
            };
            if overtaken(st.txs[&id].state) {
                drop(st);
                return Err(self.await_rollback(id, epoch));
            }
            let durable = st.txs[&id]
                .enlistments
                .iter()
                .any(|en| st.enlistments[en].durable_rm.is_some());
            if durable && let Some(gone) = st.hit(CrashPoint::BeforePrepare, id, None) {
                drop(st);
                drop(gone);
                self.changed();
                return Err(CRASHED);
            }
            select(
                &mut st,
                id,
                Notification::Prepare,
                at(EnlistmentState::PrePrepared),
            )
        };
        let results = self.deliver_and_wait(targets, epoch);
        self.after_phase(id, epoch, results)
    }

    /// What the committing thread does once a PREPREPARE or PREPARE phase's answers are in:
    /// stop at a crash, give way to a rollback that overtook the phase, roll back on a no vote.
    fn after_phase(&self, id: TxId, epoch: u64, results: Option<Results>) -> Result<(), NtStatus> {
        let Some(r) = results else {
            return Err(CRASHED);
        };
        let Some(st) = self.live(epoch) else {
            return Err(CRASHED);
        };
        if overtaken(st.txs[&id].state) {
            drop(st);
            return Err(self.await_rollback(id, epoch));
        }
        drop(st);
        if any_no(&r) {
            return Err(self.abort_commit(id, epoch));
        }
        Ok(())
    }

    /// Waits, however long it takes, for the rollback another thread is delivering over this
    /// commit ([`crate::Interleavings::eager_rollback`]) to end the transaction.
    pub(crate) fn await_rollback(&self, id: TxId, epoch: u64) -> NtStatus {
        let mut st = self.lock();
        loop {
            if st.epoch != epoch {
                return CRASHED;
            }
            if st.txs.get(&id).is_none_or(|t| t.state.is_ended()) {
                return NtStatus::TRANSACTION_ABORTED;
            }
            st = self.wait_until(st, None);
        }
    }

    /// The model's lock, if no crash happened since `epoch`.
    pub(crate) fn live(&self, epoch: u64) -> Option<MutexGuard<'_, State>> {
        let st = self.lock();
        (st.epoch == epoch).then_some(st)
    }

    /// A commit turned into a rollback (a no vote, no answer, or a rollback request).
    pub(crate) fn abort_commit(&self, id: TxId, epoch: u64) -> NtStatus {
        {
            let Some(mut st) = self.live(epoch) else {
                return CRASHED;
            };
            let tx = st.txs.get_mut(&id).expect("driven");
            if overtaken(tx.state) {
                drop(st);
                return self.await_rollback(id, epoch);
            }
            tx.state = TxState::RollingBack;
            tx.outcome = Outcome::Aborted;
            st.note_abort(id);
        }
        if !self.drive_rollback_in(id, epoch) {
            return CRASHED;
        }
        NtStatus::TRANSACTION_ABORTED
    }

    /// Delivers ROLLBACK to every open enlistment that has not finished or gone read-only —
    /// including one that voted no: "When a call to ZwRollbackEnlistment or
    /// ZwRollbackTransaction is made, or when a time-out value is exceeded, KTM sends a
    /// TRANSACTION_NOTIFY_ROLLBACK notification to all resource managers" (docs/ktm.md §1, S4) —
    /// and waits for RollbackComplete (§3 table). The caller has set the state to RollingBack.
    pub(crate) fn drive_rollback(&self, id: TxId) {
        let epoch = {
            let mut st = self.lock();
            st.note_abort(id);
            st.epoch
        };
        self.drive_rollback_in(id, epoch);
    }

    /// [`Ktm::drive_rollback`] in crash epoch `epoch`; false if a crash cut it short.
    fn drive_rollback_in(&self, id: TxId, epoch: u64) -> bool {
        let targets = {
            let Some(mut st) = self.live(epoch) else {
                return false;
            };
            select(&mut st, id, Notification::Rollback, |e| {
                !e.closed && e.state.owes_rollback()
            })
        };
        if self.deliver_and_wait(targets, epoch).is_none() || !self.end(id, TxState::Aborted, epoch)
        {
            return false;
        }
        self.probe(id, Phase::Rollback);
        true
    }

    /// Ends the transaction; false if a crash came first.
    pub(crate) fn end(&self, id: TxId, state: TxState, epoch: u64) -> bool {
        {
            let Some(mut st) = self.live(epoch) else {
                return false;
            };
            st.txs.get_mut(&id).expect("driven").state = state;
            if state == TxState::Committed {
                st.checker.counters.committed += 1;
            } else {
                st.checker.counters.aborted += 1;
            }
        }
        self.changed();
        true
    }

    pub(crate) fn probe(&self, id: TxId, phase: Phase) {
        let probe = self.lock().probe.clone();
        if let Some(p) = probe {
            p(id, phase);
        }
    }

    /// Delivers `targets` and waits for their answers; `None` if a crash came first.
    pub(crate) fn deliver_and_wait(&self, targets: Vec<Target>, epoch: u64) -> Option<Results> {
        self.deliver(&targets);
        self.wait_answers(&targets, epoch)
    }

    /// Delivers `targets` (inline: each callback has returned when this does).
    pub(crate) fn deliver(&self, targets: &[Target]) {
        let mode = self.lock().config.delivery;
        self.race_rollback(targets);
        for t in targets {
            match mode {
                DeliveryMode::Inline => self.call(t),
                DeliveryMode::Threaded => {
                    self.lock().inflight += 1;
                    let guard = Inflight(self.clone(), t.clone());
                    std::thread::spawn(move || {
                        guard.0.call(&guard.1);
                        drop(guard);
                    });
                }
            }
        }
    }

    /// Runs one callback (no lock held) and checks how it returned (docs/ktm.md §3 "Delivery B",
    /// S16: answer and return `STATUS_SUCCESS`, or return `STATUS_PENDING` and answer later).
    fn call(&self, t: &Target) {
        match self.lock().enlistments.get_mut(&t.en) {
            Some(e) => e.entered += 1,
            // Gone with a crash (an earlier callback of this phase crashed the machine).
            None => return,
        }
        self.changed();
        let status = (t.callback)(Delivery {
            enlistment: t.en,
            key: t.key,
            notification: t.notification,
            tx: t.tx,
            recovery: t.recovery,
        });
        let mut st = self.lock();
        // Enlistments are removed only by a crash: then nobody is waiting any more.
        let Some(e) = st.enlistments.get_mut(&t.en) else {
            return;
        };
        e.returned += 1;
        let due = e.outstanding.is_some_and(|o| o.seq == t.seq);
        self.changed();
        if status == NtStatus::PENDING {
            if !needs_answer(t.notification) {
                st.checker.violation(Violation::PendingWithoutAnswer {
                    notification: t.notification,
                    enlistment: t.en,
                    key: Some(t.key),
                    tx: t.tx,
                });
            } else if due {
                st.checker.pending.insert((t.en, t.seq));
                st.checker.counters.pending_returns += 1;
            }
            return;
        }
        if !due {
            return;
        }
        if status.is_success() {
            st.checker.violation(Violation::UnansweredReturn {
                status,
                notification: t.notification,
                enlistment: t.en,
                key: t.key,
                tx: t.tx,
            });
        } else {
            // A no vote only with the invented `error_return_is_no_vote`; else the phase waits.
            if st.config.error_return_is_no_vote
                && let Some(e) = st.enlistments.get_mut(&t.en)
            {
                e.outstanding = None;
                if e.state.owes_rollback() {
                    e.state = EnlistmentState::Abandoned;
                }
            }
            st.checker.violation(Violation::CallbackFailed {
                status,
                notification: t.notification,
                enlistment: t.en,
                key: t.key,
                tx: t.tx,
            });
            drop(st);
            self.changed();
        }
    }

    /// Waits until every target is answered, or the deadline: then each unanswered one is
    /// recorded ([`crate::Violation::NeverAnswered`]) and taken out of play.
    pub(crate) fn wait_answers(&self, targets: &[Target], epoch: u64) -> Option<Results> {
        let mut st = self.lock();
        let until = st.config.answer_deadline.map(|d| Instant::now() + d);
        let deadline = st.config.answer_deadline.unwrap_or_default();
        let pending = |st: &State, t: &Target| {
            st.enlistments
                .get(&t.en)
                .and_then(|e| e.outstanding)
                .is_some_and(|o| o.seq == t.seq)
        };
        // A no vote rolls back at once, over the answers still outstanding.
        let stop_on_no = st.config.interleavings.eager_rollback
            && targets.first().is_some_and(|t| {
                matches!(
                    t.notification,
                    Notification::PrePrepare | Notification::Prepare
                )
            });
        let voted_no = |st: &State, t: &Target| {
            st.enlistments.get(&t.en).and_then(|e| e.last)
                == Some((t.seq, Answer::RollbackEnlistment))
        };
        loop {
            if st.epoch != epoch {
                return None;
            }
            if !targets.iter().any(|t| pending(&st, t))
                || (stop_on_no && targets.iter().any(|t| voted_no(&st, t)))
            {
                break;
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                for t in targets {
                    if !pending(&st, t) {
                        continue;
                    }
                    if t.notification == Notification::Commit
                        && st.checker.pending.contains(&(t.en, t.seq))
                    {
                        // The RM said it would answer later: a durable RM that cannot log its
                        // commit holds CommitComplete until a restart (docs/ktm.md §3
                        // "Obligations"), and KTM keeps waiting. Any other answer left
                        // pending past the deadline is still "never answered".
                        st.checker.counters.withheld += 1;
                    } else {
                        st.checker.violation(Violation::NeverAnswered {
                            notification: t.notification,
                            enlistment: t.en,
                            key: t.key,
                            tx: t.tx,
                            within: deadline,
                        });
                    }
                    let e = st.enlistments.get_mut(&t.en).expect("present");
                    e.outstanding = None;
                    if e.state.owes_rollback() {
                        e.state = EnlistmentState::Abandoned;
                    }
                }
                break;
            }
            st = self.wait_until(st, until);
        }
        Some(
            targets
                .iter()
                .map(|t| {
                    let last = st.enlistments[&t.en].last;
                    (t.en, last.filter(|(s, _)| *s == t.seq).map(|(_, a)| a))
                })
                .collect(),
        )
    }
}

/// Marks `n` outstanding on exactly the enlistments `ids` (open or not: a duplicate COMMIT after
/// recovery reaches an enlistment the RM may have closed). Skips an enlistment whose RM is not
/// registered (rebuilt from the log, its RM not recovered yet). Checks the recovery rules: an
/// outcome only for a prepared enlistment, one outcome per recovery (`recovery.rs`).
pub(crate) fn select_ids(
    st: &mut State,
    id: TxId,
    n: Notification,
    ids: &[EnlistmentId],
) -> Vec<Target> {
    let mut out = Vec::new();
    for &en in ids {
        let e = &st.enlistments[&en];
        let Some(rm) = st.rms.get(&e.rm) else {
            continue;
        };
        let callback = rm.callback.clone();
        st.check_outcome(en, n);
        let e = &st.enlistments[&en];
        let key = e.key;
        let seq = st.next_seq;
        st.next_seq += 1;
        let e = st.enlistments.get_mut(&en).expect("present");
        if n == Notification::Rollback && e.outstanding.is_some() {
            e.overtaken = e.outstanding;
        }
        e.outstanding = Some(Outstanding {
            notification: n,
            seq,
        });
        st.checker.sent(n);
        out.push(Target {
            en,
            seq,
            tx: id,
            key,
            notification: n,
            callback,
            recovery: None,
        });
    }
    out
}
