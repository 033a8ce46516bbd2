//! Recovery after a crash and the superior TM (the MSDTC-promoted path), with the checker's
//! recovery rules.
//!
//! docs/ktm.md §1 "In-doubt / recovery (durable)": "prepared but outcome not logged. On restart
//! recover TM then RM; KTM sends `RECOVER` per enlistment then `LAST_RECOVER`;
//! `ZwRecoverEnlistment` redelivers COMMIT / ROLLBACK / INDOUBT. Presumed abort ...; duplicate
//! COMMITs are possible, S5, S21." A superior TM "coordinates commits for others" (§1, S20);
//! with a superior enlistment "`ZwCommitTransaction` is refused and single-phase commit is off"
//! (§1, S9).

use ktmrm_core::{EnlistmentKey, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::driver::{CRASHED, Target, select_ids};
use crate::durable::{
    CrashPoint, EnRecovery, RecoveryArgument, RmRecovery, Superior, UNATTACHED, notify,
    status::{TRANSACTION_SUPERIOR_EXISTS, TRANSACTIONMANAGER_NOT_ONLINE},
};
use crate::ids::{EnlistmentId, ProcessId, RmId};
use crate::ktm::Ktm;
use crate::ktm::access::TRANSACTION_ENLIST;
use crate::model::{Delivery, RmCallback, State};
use crate::states::{EnlistmentState, Outcome, TxState};
use crate::violation::{Call, Violation};

/// `LAST_RECOVER` is for the RM, not for an enlistment: the model delivers it with enlistment 0,
/// key 0 (NULL) and an all-zero transaction **(unverified: the sources do not say what the
/// callback's enlistment and key are then)**.
const NO_ENLISTMENT: EnlistmentId = EnlistmentId(0);

impl State {
    /// The checker's rules for an outcome about to be delivered to `en`: COMMIT or INDOUBT only
    /// for a prepared enlistment ([`crate::Violation::OutcomeForUnprepared`]; a duplicate COMMIT to a
    /// committed one is legal, docs/ktm.md §8, S21); after recovery exactly one COMMIT/ROLLBACK
    /// ([`crate::Violation::OutcomeTwiceAfterRecovery`]).
    pub(crate) fn check_outcome(&mut self, en: EnlistmentId, n: Notification) {
        let e = self.enlistments.get_mut(&en).expect("present");
        let prepared = matches!(e.state, EnlistmentState::Prepared);
        let bad = match n {
            Notification::Commit => !prepared && e.state != EnlistmentState::Committed,
            notify::INDOUBT => !prepared,
            _ => false,
        };
        let twice = e.recovery == EnRecovery::Recovered
            && matches!(n, Notification::Commit | Notification::Rollback)
            && {
                e.recovery_outcomes += 1;
                e.recovery_outcomes > 1
            };
        let (state, tx) = (e.state, e.tx);
        if bad {
            self.checker.violation(Violation::OutcomeForUnprepared {
                notification: n,
                enlistment: en,
                tx,
                state,
            });
        }
        if twice {
            self.checker
                .violation(Violation::OutcomeTwiceAfterRecovery {
                    notification: n,
                    enlistment: en,
                    tx,
                });
        }
    }

    /// Violations of the recovery rules visible only at the end (see [`Ktm::finish`]).
    pub(crate) fn recovery_violations(&self) -> Vec<Violation> {
        let Some(d) = &self.durable else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rms: Vec<_> = d.rms.iter().collect();
        rms.sort_by_key(|(id, _)| **id);
        for (rm, r) in rms {
            let waiting = self
                .enlistments
                .values()
                .filter(|e| e.rm == UNATTACHED && e.durable_rm == Some(r.guid))
                .count();
            if r.recovery == RmRecovery::NotStarted && waiting > 0 {
                out.push(Violation::RecoveryMissing { rm: *rm, waiting });
            }
            if r.recovery == RmRecovery::Done && r.last_recover != 1 {
                out.push(Violation::LastRecoverCount {
                    rm: *rm,
                    count: r.last_recover,
                });
            }
        }
        for (id, e) in &self.enlistments {
            let rm_done = d
                .rms
                .get(&e.rm)
                .is_some_and(|r| r.recovery == RmRecovery::Done);
            let decided = matches!(
                self.txs[&e.tx].state,
                TxState::Committing | TxState::RollingBack
            );
            if e.recovery == EnRecovery::Recovered && e.recovery_outcomes == 0 && rm_done && decided
            {
                out.push(Violation::NoOutcomeAfterRecovery {
                    enlistment: *id,
                    tx: e.tx,
                });
            }
        }
        out
    }
}

impl Ktm {
    /// `ZwRecoverResourceManager` (docs/ktm.md §2 "queues RECOVER..., LAST_RECOVER", §7 step 4), for a
    /// durable RM after [`Ktm::recover_transaction_manager`]. On the calling thread:
    /// 1. RECOVER to each logged, unfinished enlistment of this RM's GUID, with
    ///    [`Delivery::recovery`] = `{EnlistmentId, UOW}` (§3, S19) and key 0 (NULL) until the
    ///    RM gives one; the RM answers with [`Ktm::recover_enlistment`] (checker: "recover not
    ///    answered" after the answer deadline);
    /// 2. crash point [`CrashPoint::BeforeLastRecover`], then LAST_RECOVER once, with no
    ///    enlistment (see `NO_ENLISTMENT`) — with [`crate::Interleavings::early_last_recover`]
    ///    as soon as every RECOVER callback has returned, before the recover calls the RM may
    ///    still make from a worker ("After KTM has sent a TRANSACTION_NOTIFY_RECOVER notification
    ///    for each enlistment, it sends a TRANSACTION_NOTIFY_LAST_RECOVER notification",
    ///    <https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-recovery-operations>);
    /// 3. to each recovered enlistment, the outcome: COMMIT if the commit record exists (the RM
    ///    may have applied it already: "duplicate COMMITs are possible", §1, S21), ROLLBACK if
    ///    presumed aborted, INDOUBT (no answer; it waits for [`Ktm::superior_decide`]) if a
    ///    superior has not decided; waits for CommitComplete / RollbackComplete.
    ///
    /// Errors: volatile TM → `STATUS_TM_VOLATILE`; TM not recovered →
    /// `STATUS_TRANSACTIONMANAGER_NOT_ONLINE`; a volatile or unknown RM, or one already
    /// recovering → `STATUS_TRANSACTION_REQUEST_NOT_VALID` **(unverified codes)**; a crash
    /// during recovery → `STATUS_TRANSACTIONMANAGER_NOT_ONLINE`.
    pub fn recover_resource_manager(&self, rm: RmId) -> NtStatus {
        let (epoch, ids, targets, callback) = {
            let mut st = self.lock();
            let guid = match st.durable.as_mut() {
                None => return NtStatus::TM_VOLATILE,
                Some(d) if !d.online => return TRANSACTIONMANAGER_NOT_ONLINE,
                Some(d) => match d.rms.get_mut(&rm) {
                    Some(r) if r.recovery == RmRecovery::NotStarted => {
                        r.recovery = RmRecovery::Running;
                        r.guid
                    }
                    _ => return NtStatus::TRANSACTION_REQUEST_NOT_VALID,
                },
            };
            let ids: Vec<EnlistmentId> = st
                .enlistments
                .iter()
                .filter(|(_, e)| e.rm == UNATTACHED && e.durable_rm == Some(guid))
                .map(|(id, _)| *id)
                .collect();
            let mut targets: Vec<Target> = Vec::new();
            for id in &ids {
                let e = st.enlistments.get_mut(id).expect("listed");
                e.rm = rm;
                let (tx, enlistment) = (e.tx, e.guid);
                for mut t in select_ids(&mut st, tx, notify::RECOVER, &[*id]) {
                    t.recovery = Some(RecoveryArgument {
                        enlistment,
                        uow: tx,
                    });
                    targets.push(t);
                }
            }
            let callback = st.rms[&rm].callback.clone();
            (st.epoch, ids, targets, callback)
        };
        let early = self.lock().config.interleavings.early_last_recover;
        if early {
            if !self.sent(&targets, epoch) {
                return CRASHED;
            }
        } else if self.deliver_and_wait(targets.clone(), epoch).is_none() {
            return CRASHED;
        }
        {
            let Some(mut st) = self.live(epoch) else {
                return CRASHED;
            };
            if let Some(gone) = st.hit(CrashPoint::BeforeLastRecover, TxId([0; 16]), None) {
                drop(st);
                drop(gone);
                self.changed();
                return CRASHED;
            }
            st.checker.sent(notify::LAST_RECOVER);
            let d = st.durable.as_mut().expect("durable");
            let r = d.rms.get_mut(&rm).expect("registered");
            r.last_recover += 1;
            r.recovery = RmRecovery::Done;
        }
        self.notify_only(
            &callback,
            NO_ENLISTMENT,
            TxId([0; 16]),
            notify::LAST_RECOVER,
        );
        self.changed();
        // Each outcome follows its recover call, however late.
        if early && self.wait_answers(&targets, epoch).is_none() {
            return CRASHED;
        }

        let (targets, indoubt, txs) = {
            let Some(mut st) = self.live(epoch) else {
                return CRASHED;
            };
            let mut targets = Vec::new();
            let mut indoubt = Vec::new();
            let mut txs = Vec::new();
            for id in ids {
                let e = &st.enlistments[&id];
                if e.recovery != EnRecovery::Recovered || e.closed {
                    continue;
                }
                let tx = e.tx;
                txs.push(tx);
                match st.txs[&tx].state {
                    TxState::Committing => {
                        targets.extend(select_ids(&mut st, tx, Notification::Commit, &[id]));
                    }
                    TxState::RollingBack => {
                        targets.extend(select_ids(&mut st, tx, Notification::Rollback, &[id]));
                    }
                    _ => {
                        st.check_outcome(id, notify::INDOUBT);
                        st.checker.sent(notify::INDOUBT);
                        indoubt.push((id, tx));
                    }
                }
            }
            (targets, indoubt, txs)
        };
        for (id, tx) in indoubt {
            self.notify_only(&callback, id, tx, notify::INDOUBT);
        }
        if self.deliver_and_wait(targets, epoch).is_none() {
            return CRASHED;
        }
        for tx in txs {
            self.end_if_done(tx, epoch);
        }
        NtStatus::SUCCESS
    }

    /// Delivers RECOVER `targets` and waits until each was sent: its callback has returned (or
    /// the RM answered first), whether or not it called `ZwRecoverEnlistment` yet. False if a
    /// crash came first. "Sent" is not taken to mean "handed to a thread that may not have run
    /// yet": an RM could then never tell at LAST_RECOVER which RECOVERs it missed, and the
    /// presumed abort "Recovery Processing" asks of it would be impossible.
    fn sent(&self, targets: &[Target], epoch: u64) -> bool {
        let before: Vec<u64> = {
            let st = self.lock();
            targets
                .iter()
                .map(|t| st.enlistments.get(&t.en).map_or(0, |e| e.returned))
                .collect()
        };
        self.deliver(targets);
        let mut st = self.lock();
        loop {
            if st.epoch != epoch {
                return false;
            }
            let done = targets.iter().zip(&before).all(|(t, b)| {
                st.enlistments
                    .get(&t.en)
                    .is_none_or(|e| e.returned > *b || e.outstanding.is_none())
            });
            if done {
                return true;
            }
            st = self.wait_until(st, None);
        }
    }

    /// A notification that needs no answer (LAST_RECOVER, INDOUBT), on this thread, no lock held.
    fn notify_only(&self, callback: &RmCallback, en: EnlistmentId, tx: TxId, n: Notification) {
        let key = EnlistmentKey(0);
        let status = callback(Delivery {
            enlistment: en,
            key,
            notification: n,
            tx,
            recovery: None,
        });
        // Nothing to answer, so nothing to answer later (docs/ktm.md §3 "Delivery B").
        if status == NtStatus::PENDING {
            self.record_violation(Violation::PendingWithoutAnswer {
                notification: n,
                enlistment: en,
                key: None,
                tx,
            });
        }
    }

    /// `ZwRecoverEnlistment(enlistment, key)` (docs/ktm.md §2): the RM's answer to RECOVER, naming
    /// the key later notifications carry. Checked like [`Ktm::answer`]: no RECOVER outstanding
    /// → [`crate::Violation::RecoverNotOutstanding`], `STATUS_TRANSACTION_NOT_REQUESTED`.
    pub fn recover_enlistment(&self, en: EnlistmentId, key: EnlistmentKey) -> NtStatus {
        let mut st = self.lock();
        if en.0 < st.stale_below && !st.enlistments.contains_key(&en) {
            return NtStatus::INVALID_HANDLE;
        }
        let Some(e) = st.enlistments.get_mut(&en) else {
            st.checker.violation(Violation::UnknownEnlistment {
                call: Call::RecoverEnlistment,
                enlistment: en,
            });
            return NtStatus::INVALID_HANDLE;
        };
        if e.outstanding
            .is_none_or(|o| o.notification != notify::RECOVER)
        {
            let tx = e.tx;
            st.checker
                .violation(Violation::RecoverNotOutstanding { enlistment: en, tx });
            return NtStatus::TRANSACTION_NOT_REQUESTED;
        }
        e.outstanding = None;
        e.key = key;
        e.recovery = EnRecovery::Recovered;
        drop(st);
        self.changed();
        NtStatus::SUCCESS
    }

    /// Ends a decided transaction once none of its enlistments is in play any more.
    fn end_if_done(&self, tx: TxId, epoch: u64) {
        let Some(mut st) = self.live(epoch) else {
            return;
        };
        let Some(t) = st.txs.get(&tx) else {
            return;
        };
        let state = match t.state {
            TxState::Committing => TxState::Committed,
            TxState::RollingBack => TxState::Aborted,
            _ => return,
        };
        if t.enlistments.iter().any(|en| {
            let e = &st.enlistments[en];
            e.state.in_play() && !e.closed
        }) {
            return;
        }
        st.txs.get_mut(&tx).expect("present").state = state;
        if state == TxState::Committed {
            st.checker.counters.committed += 1;
        } else {
            st.checker.counters.aborted += 1;
        }
        drop(st);
        self.changed();
    }

    // ---- the superior TM (the MSDTC-promoted path) -----------------------------------------------

    /// Gives the transaction behind `h` a superior enlistment (`ZwCreateEnlistment` with
    /// `ENLISTMENT_SUPERIOR`, docs/ktm.md §1, S9), as MSDTC does when it promotes a transaction:
    /// from then on its outcome comes from the superior ([`Ktm::superior_prepare`],
    /// [`Ktm::superior_decide`]); [`Ktm::commit`] is refused with
    /// `STATUS_TRANSACTION_SUPERIOR_EXISTS` and single-phase commit is off. At most one per
    /// transaction (a second → `STATUS_TRANSACTION_SUPERIOR_EXISTS`); the transaction must be
    /// Active (`STATUS_TRANSACTION_NOT_ACTIVE`). Needs `TRANSACTION_ENLIST` on `h`.
    pub fn create_superior_enlistment(&self, p: ProcessId, h: u64) -> NtStatus {
        let mut st = self.lock();
        let id = match Self::lookup_tx(&st, p, h, TRANSACTION_ENLIST) {
            Ok(id) => id,
            Err(s) => return s,
        };
        let tx = st.txs.get_mut(&id).expect("handle names a transaction");
        if tx.superior.is_some() {
            return TRANSACTION_SUPERIOR_EXISTS;
        }
        if tx.state != TxState::Active {
            return NtStatus::TRANSACTION_NOT_ACTIVE;
        }
        tx.superior = Some(Superior::default());
        NtStatus::SUCCESS
    }

    /// The superior's `ZwPrePrepareEnlistment` + `ZwPrepareEnlistment` (docs/ktm.md §2 "superior
    /// side"): PREPREPARE and PREPARE as in a commit; then, with every vote yes, the transaction
    /// is prepared and in doubt (state Preparing, outcome Undetermined) until
    /// [`Ktm::superior_decide`] — across crashes too: recovery sends INDOUBT instead of presuming
    /// abort. A no vote rolls back (`STATUS_TRANSACTION_ABORTED`). Not promoted, or not Active →
    /// `STATUS_TRANSACTION_REQUEST_NOT_VALID`.
    pub fn superior_prepare(&self, tx: TxId) -> NtStatus {
        let epoch = {
            let mut st = self.lock();
            let Some(t) = st.txs.get_mut(&tx) else {
                return NtStatus::INVALID_TRANSACTION;
            };
            if t.superior.is_none() || t.state != TxState::Active {
                return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
            }
            t.state = TxState::PrePreparing;
            st.epoch
        };
        if let Err(s) = self.prepare_phases(tx, epoch) {
            return s;
        }
        let Some(mut st) = self.live(epoch) else {
            return CRASHED;
        };
        let t = st.txs.get_mut(&tx).expect("driven");
        if t.abort_requested {
            drop(st);
            return self.abort_commit(tx, epoch);
        }
        t.superior = Some(Superior { prepared: true });
        NtStatus::SUCCESS
    }

    /// The superior's decision for a prepared, in-doubt transaction (`ZwCommitEnlistment` /
    /// `ZwRollbackEnlistment` on the superior enlistment, docs/ktm.md §2), late or after crashes on
    /// either side. Commit: KTM writes its commit record (crash point
    /// [`CrashPoint::AfterCommitRecord`]) and delivers COMMIT; rollback: the log's superior mark
    /// is cleared, so a crash from here on presumes abort, and ROLLBACK is delivered. Only to
    /// enlistments whose RM is online (recovered after a crash); an RM that recovers later gets
    /// the outcome from its recovery. Errors: TM offline → `STATUS_TRANSACTIONMANAGER_NOT_ONLINE`;
    /// unknown → `STATUS_INVALID_TRANSACTION`; not prepared by a superior or already decided →
    /// `STATUS_TRANSACTION_REQUEST_NOT_VALID`.
    pub fn superior_decide(&self, tx: TxId, commit: bool) -> NtStatus {
        let (epoch, targets) = {
            let mut st = self.lock();
            if st.durable.as_ref().is_some_and(|d| !d.online) {
                return TRANSACTIONMANAGER_NOT_ONLINE;
            }
            let Some(t) = st.txs.get_mut(&tx) else {
                return NtStatus::INVALID_TRANSACTION;
            };
            if !(t.superior.is_some_and(|s| s.prepared) && t.state == TxState::Preparing) {
                return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
            }
            let n = if commit {
                t.state = TxState::Committing;
                t.outcome = Outcome::Committed;
                if st.log_commit_record(tx)
                    && let Some(gone) = st.hit(CrashPoint::AfterCommitRecord, tx, None)
                {
                    drop(st);
                    drop(gone);
                    self.changed();
                    return CRASHED;
                }
                Notification::Commit
            } else {
                t.state = TxState::RollingBack;
                t.outcome = Outcome::Aborted;
                st.note_abort(tx);
                if let Some(l) = st.durable.as_mut().and_then(|d| d.log.get_mut(&tx)) {
                    l.superior = false;
                }
                Notification::Rollback
            };
            let ids: Vec<EnlistmentId> = st.txs[&tx]
                .enlistments
                .iter()
                .copied()
                .filter(|en| {
                    let e = &st.enlistments[en];
                    e.state == EnlistmentState::Prepared
                        && !e.closed
                        && e.recovery != EnRecovery::Pending
                })
                .collect();
            (st.epoch, select_ids(&mut st, tx, n, &ids))
        };
        if self.deliver_and_wait(targets, epoch).is_none() {
            return CRASHED;
        }
        self.end_if_done(tx, epoch);
        NtStatus::SUCCESS
    }

    /// The superior TM crashes before deciding. KTM sees nothing: its prepared subordinates stay
    /// in doubt — across KTM crashes too, where recovery delivers INDOUBT — until the superior
    /// is back and calls [`Ktm::superior_decide`] (for a presumed-abort superior without a
    /// logged decision, a rollback). Not prepared by a superior →
    /// `STATUS_TRANSACTION_REQUEST_NOT_VALID`.
    pub fn superior_crash(&self, tx: TxId) -> NtStatus {
        let st = self.lock();
        match st.txs.get(&tx) {
            None => NtStatus::INVALID_TRANSACTION,
            Some(t) if t.superior.is_some_and(|s| s.prepared) && t.state == TxState::Preparing => {
                NtStatus::SUCCESS
            }
            Some(_) => NtStatus::TRANSACTION_REQUEST_NOT_VALID,
        }
    }
}
