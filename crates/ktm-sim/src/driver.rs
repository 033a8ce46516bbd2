//! The outcome driver: delivers the phases of a commit or rollback in KTM's order and waits for
//! the answers (ktm.md §1 "2PC", "Single-phase commit"; §3 table).
//!
//! Only the thread that moved a transaction out of Active drives it, so the phases of one
//! transaction never overlap. The model's lock is never held while a callback or the phase
//! probe runs: callbacks re-enter (they answer, close and enlist from any thread).

use std::time::Instant;

use ktmrm_core::{Answer, EnlistmentKey, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::checker::{Phase, notification_name};
use crate::ktm::Ktm;
use crate::model::{
    Delivery, DeliveryMode, Enlistment, EnlistmentId, EnlistmentState, Outcome, Outstanding,
    RmCallback, State, TxState,
};

/// One notification on its way to one enlistment.
#[derive(Clone)]
struct Target {
    en: EnlistmentId,
    seq: u64,
    tx: TxId,
    key: EnlistmentKey,
    notification: Notification,
    callback: RmCallback,
}

/// A threaded delivery in progress: counted in `inflight` until dropped, even when the callback
/// panics (which is recorded as a violation).
struct Inflight(Ktm, Target);

impl Drop for Inflight {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.inflight -= 1;
        if std::thread::panicking() {
            let t = &self.1;
            st.checker.violation(format!(
                "callback panicked: {} on {} (key {}, {})",
                notification_name(t.notification),
                t.en,
                t.key.0,
                State::tx_name(t.tx)
            ));
        }
        drop(st);
        self.0.changed();
    }
}

/// What each enlistment of a phase answered (`None`: never, or its callback failed).
type Results = Vec<(EnlistmentId, Option<Answer>)>;

fn any_no(results: &Results) -> bool {
    results
        .iter()
        .any(|(_, a)| matches!(a, None | Some(Answer::RollbackEnlistment)))
}

/// The state an enlistment reaches when a phase it did not ask for (its mask lacks the bit) is
/// skipped: KTM does not wait for notifications outside the mask (ktm.md §3 [S2]).
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
fn select(
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
fn at(state: EnlistmentState) -> impl Fn(&Enlistment) -> bool {
    move |e| !e.closed && e.state == state
}

impl Ktm {
    /// Drives a commit the caller has claimed (moved from Active to PrePreparing), in KTM's
    /// order (ktm.md §1, §3):
    /// 1. exactly one enlistment in play whose mask has SINGLE_PHASE_COMMIT → SINGLE_PHASE_COMMIT
    ///    (§1 [S3]); CommitComplete (or ReadOnly) commits, SinglePhaseReject falls back to 2–4,
    ///    RollbackEnlistment or no answer rolls back;
    /// 2. PREPREPARE to every enlistment, repeated for RMs that enlist meanwhile, until all
    ///    answered (§1 "flush caches so all RMs that need to enlist have enlisted");
    /// 3. PREPARE to every enlistment still in play; ReadOnly drops it from later phases (§1
    ///    [S1]); a RollbackEnlistment (or no answer) is a no vote: ROLLBACK to every enlistment
    ///    not read-only, the no voter included ([`Ktm::drive_rollback`]), outcome Aborted,
    ///    `STATUS_TRANSACTION_ABORTED`;
    /// 4. the commit decision (a rollback requested until here wins), then COMMIT to every
    ///    prepared enlistment, and after CommitComplete optionally a duplicate COMMIT (§8 [S21]).
    ///
    /// A transaction with no enlistments just commits.
    pub(crate) fn drive_commit(&self, id: TxId) -> NtStatus {
        if let Some(status) = self.single_phase(id) {
            return status;
        }
        // PrePrepare, until no enlistment is left without it.
        loop {
            let targets = {
                let mut st = self.lock();
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
                        return self.abort_commit(id);
                    }
                }
                t
            };
            if targets.is_empty() {
                break;
            }
            if any_no(&self.deliver_and_wait(targets)) {
                return self.abort_commit(id);
            }
        }
        self.probe(id, Phase::PrePrepare);

        let targets = {
            let mut st = self.lock();
            select(
                &mut st,
                id,
                Notification::Prepare,
                at(EnlistmentState::PrePrepared),
            )
        };
        if any_no(&self.deliver_and_wait(targets)) {
            return self.abort_commit(id);
        }
        let targets = {
            let mut st = self.lock();
            let tx = st.txs.get_mut(&id).expect("driven");
            if tx.abort_requested {
                drop(st);
                return self.abort_commit(id);
            }
            tx.state = TxState::Committing;
            tx.outcome = Outcome::Committed;
            // Selected in the same critical section: nothing can change the set any more.
            select(
                &mut st,
                id,
                Notification::Commit,
                at(EnlistmentState::Prepared),
            )
        };
        self.probe(id, Phase::Prepare);

        let results = self.deliver_and_wait(targets);
        if self.lock().config.duplicate_commit {
            let again: Vec<EnlistmentId> = results
                .iter()
                .filter(|(_, a)| *a == Some(Answer::CommitComplete))
                .map(|(en, _)| *en)
                .collect();
            // As after recovery, the RM has finished with the first COMMIT: wait until its
            // callbacks have returned (it may close the enlistment in between).
            let targets = {
                let mut st = self.lock();
                let until = Instant::now() + st.config.answer_deadline;
                while again.iter().any(|en| {
                    let e = &st.enlistments[en];
                    e.returned < e.entered
                }) && Instant::now() < until
                {
                    st = self.wait(st, until);
                }
                select_ids(&mut st, id, Notification::Commit, &again)
            };
            self.deliver_and_wait(targets);
        }
        self.end(id, TxState::Committed);
        self.probe(id, Phase::Commit);
        NtStatus::SUCCESS
    }

    /// Step 1 of [`Ktm::drive_commit`]; `None` when single-phase commit does not apply or was
    /// rejected.
    fn single_phase(&self, id: TxId) -> Option<NtStatus> {
        let targets = {
            let mut st = self.lock();
            let in_play: Vec<EnlistmentId> = st.txs[&id]
                .enlistments
                .iter()
                .copied()
                .filter(|en| {
                    let e = &st.enlistments[en];
                    !e.closed && e.state.in_play()
                })
                .collect();
            let [only] = in_play[..] else {
                return None;
            };
            if st.enlistments[&only].mask & Notification::SinglePhaseCommit.bits() == 0 {
                return None;
            }
            st.txs.get_mut(&id).expect("driven").state = TxState::SinglePhaseCommitting;
            select_ids(&mut st, id, Notification::SinglePhaseCommit, &[only])
        };
        let results = self.deliver_and_wait(targets);
        match results.first().and_then(|(_, a)| *a) {
            Some(Answer::CommitComplete | Answer::ReadOnly) => {
                {
                    let mut st = self.lock();
                    st.txs.get_mut(&id).expect("driven").outcome = Outcome::Committed;
                }
                self.end(id, TxState::Committed);
                self.probe(id, Phase::SinglePhaseCommit);
                Some(NtStatus::SUCCESS)
            }
            Some(Answer::SinglePhaseReject) => {
                self.lock().txs.get_mut(&id).expect("driven").state = TxState::PrePreparing;
                None
            }
            _ => Some(self.abort_commit(id)),
        }
    }

    /// A commit turned into a rollback (a no vote, no answer, or a rollback request).
    fn abort_commit(&self, id: TxId) -> NtStatus {
        {
            let mut st = self.lock();
            let tx = st.txs.get_mut(&id).expect("driven");
            tx.state = TxState::RollingBack;
            tx.outcome = Outcome::Aborted;
        }
        self.drive_rollback(id);
        NtStatus::TRANSACTION_ABORTED
    }

    /// Delivers ROLLBACK to every open enlistment that has not finished or gone read-only —
    /// including one that voted no: "When a call to ZwRollbackEnlistment or
    /// ZwRollbackTransaction is made, or when a time-out value is exceeded, KTM sends a
    /// TRANSACTION_NOTIFY_ROLLBACK notification to all resource managers" (ktm.md §1 [S4]) —
    /// and waits for RollbackComplete (§3 table). The caller has set the state to RollingBack.
    pub(crate) fn drive_rollback(&self, id: TxId) {
        let targets = {
            let mut st = self.lock();
            select(&mut st, id, Notification::Rollback, |e| {
                !e.closed && e.state.owes_rollback()
            })
        };
        self.deliver_and_wait(targets);
        self.end(id, TxState::Aborted);
        self.probe(id, Phase::Rollback);
    }

    fn end(&self, id: TxId, state: TxState) {
        {
            let mut st = self.lock();
            st.txs.get_mut(&id).expect("driven").state = state;
            if state == TxState::Committed {
                st.checker.counters.committed += 1;
            } else {
                st.checker.counters.aborted += 1;
            }
        }
        self.changed();
    }

    fn probe(&self, id: TxId, phase: Phase) {
        let probe = self.lock().probe.clone();
        if let Some(p) = probe {
            p(id, phase);
        }
    }

    fn deliver_and_wait(&self, targets: Vec<Target>) -> Results {
        let mode = self.lock().config.delivery;
        for t in &targets {
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
        self.wait_answers(&targets)
    }

    /// Runs one callback (no lock held) and checks how it returned (ktm.md §3 "Delivery B"
    /// [S16]: answer and return `STATUS_SUCCESS`, or return `STATUS_PENDING` and answer later).
    fn call(&self, t: &Target) {
        if let Some(e) = self.lock().enlistments.get_mut(&t.en) {
            e.entered += 1;
        }
        self.changed();
        let status = (t.callback)(Delivery {
            enlistment: t.en,
            key: t.key,
            notification: t.notification,
            tx: t.tx,
        });
        let mut st = self.lock();
        let e = st
            .enlistments
            .get_mut(&t.en)
            .expect("enlistments are never removed");
        e.returned += 1;
        self.changed();
        if status == NtStatus::PENDING || e.outstanding.is_none_or(|o| o.seq != t.seq) {
            return;
        }
        let what = format!(
            "{} on {} (key {}, {})",
            notification_name(t.notification),
            t.en,
            t.key.0,
            State::tx_name(t.tx)
        );
        if status.is_success() {
            st.checker.violation(format!(
                "unanswered return: callback returned {status:?} for {what} without answering \
                 (return STATUS_PENDING to answer later)"
            ));
        } else {
            e.outstanding = None;
            if e.state.owes_rollback() {
                e.state = EnlistmentState::Abandoned;
            }
            st.checker.violation(format!(
                "callback failed: returned {status:?} for {what} without answering"
            ));
            drop(st);
            self.changed();
        }
    }

    /// Waits until every target is answered, or the deadline: then each unanswered one is
    /// recorded as "never answered" and taken out of play.
    fn wait_answers(&self, targets: &[Target]) -> Results {
        let mut st = self.lock();
        let until = Instant::now() + st.config.answer_deadline;
        let deadline = st.config.answer_deadline;
        let pending = |st: &State, t: &Target| {
            st.enlistments[&t.en]
                .outstanding
                .is_some_and(|o| o.seq == t.seq)
        };
        loop {
            if !targets.iter().any(|t| pending(&st, t)) {
                break;
            }
            if Instant::now() >= until {
                for t in targets {
                    if !pending(&st, t) {
                        continue;
                    }
                    st.checker.violation(format!(
                        "never answered: {} on {} (key {}, {}) got no answer within {:?}",
                        notification_name(t.notification),
                        t.en,
                        t.key.0,
                        State::tx_name(t.tx),
                        deadline
                    ));
                    let e = st.enlistments.get_mut(&t.en).expect("present");
                    e.outstanding = None;
                    if e.state.owes_rollback() {
                        e.state = EnlistmentState::Abandoned;
                    }
                }
                break;
            }
            st = self.wait(st, until);
        }
        targets
            .iter()
            .map(|t| {
                let last = st.enlistments[&t.en].last;
                (t.en, last.filter(|(s, _)| *s == t.seq).map(|(_, a)| a))
            })
            .collect()
    }
}

/// Marks `n` outstanding on exactly the enlistments `ids` (open or not: a duplicate COMMIT after
/// recovery reaches an enlistment the RM may have closed).
fn select_ids(st: &mut State, id: TxId, n: Notification, ids: &[EnlistmentId]) -> Vec<Target> {
    let mut out = Vec::new();
    for &en in ids {
        let e = &st.enlistments[&en];
        let callback = st.rms[&e.rm].callback.clone();
        let key = e.key;
        let seq = st.next_seq;
        st.next_seq += 1;
        st.enlistments.get_mut(&en).expect("present").outstanding = Some(Outstanding {
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
        });
    }
    out
}
