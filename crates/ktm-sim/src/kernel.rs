//! The kernel calls (Tm*/Ob* equivalents) an RM makes: registering, referencing a user's
//! transaction handle, enlisting, answering and closing enlistments.

use std::time::Instant;

use ktmrm_core::{Answer, EnlistmentKey, Notification, TxId};
use ktmrm_proto::NtStatus;

use crate::checker::answer_fits;
use crate::durable::{CrashPoint, status};
use crate::ids::{EnlistmentId, ProcessId, RmId};
use crate::ktm::access::*;
use crate::ktm::{Ktm, TxRef};
use crate::model::{Delivery, EnlistRace, EnlistmentInfo, ResourceManager, RmCallback, State};
use crate::states::{EnlistmentState, TxState};
use crate::violation::{Call, Violation};

impl Ktm {
    // ---- kernel calls (Tm* / Ob*) -------------------------------------------------------------

    /// Registers an RM with its notification callback (`ZwCreateResourceManager` +
    /// `TmEnableCallbacks`, docs/ktm.md §7 steps 2–3, S15).
    #[must_use]
    pub fn create_resource_manager(&self, callback: RmCallback) -> RmId {
        let mut st = self.lock();
        let id = RmId(st.next_rm);
        st.next_rm += 1;
        st.rms.insert(id, ResourceManager { callback });
        id
    }

    /// Closes an RM (`ZwClose` on its handle, as the driver does at unload): "if the resource
    /// manager still has enlistments to transactions that have not been committed, KTM sends
    /// TRANSACTION_NOTIFY_ROLLBACK notifications to all resource managers for the transactions
    /// that are associated with those enlistments"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/resource-manager-objects>):
    /// every transaction it is enlisted in that is not decided yet — Active, or in PrePrepare or
    /// Prepare — is rolled back as [`Ktm::rollback_tx`] does. One decided or in doubt under a
    /// superior is left to finish. Returns how many transactions were rolled back or marked for
    /// rollback.
    pub fn close_resource_manager(&self, rm: RmId) -> usize {
        let txs: Vec<TxId> = {
            let st = self.lock();
            let mut v: Vec<TxId> = st
                .enlistments
                .values()
                .filter(|e| e.rm == rm && !e.closed)
                .map(|e| e.tx)
                .filter(|tx| {
                    st.txs.get(tx).is_some_and(|t| {
                        matches!(
                            t.state,
                            TxState::Active | TxState::PrePreparing | TxState::Preparing
                        ) && !t.superior.is_some_and(|s| s.prepared)
                    })
                })
                .collect();
            v.sort();
            v.dedup();
            v
        };
        txs.into_iter()
            .filter(|id| self.rollback_tx(*id) == NtStatus::SUCCESS)
            .count()
    }

    /// `ObReferenceObjectByHandle(h, required, *TmTransactionObjectType, UserMode, ..)` in
    /// process `p` (docs/ktm.md §4, S25); see `Ktm::lookup_tx` for the errors. Succeeds on ended
    /// transactions too (referencing does not look at the state; [`Ktm::enlist`] does).
    pub fn reference_transaction(
        &self,
        p: ProcessId,
        h: u64,
        required: u32,
    ) -> Result<TxRef, NtStatus> {
        let mut st = self.lock();
        let id = Self::lookup_tx(&st, p, h, required)?;
        if let Some(tx) = st.txs.get_mut(&id) {
            tx.references += 1;
        }
        Ok(TxRef {
            ktm: self.clone(),
            id,
        })
    }

    /// `TmCreateEnlistment(rm, tx, 0, mask, key)` (docs/ktm.md §2, §7 step 7). The enlistment exists
    /// before any notification for it is delivered; notifications may arrive before this
    /// returns (§3, S21), which [`Ktm::rollback_during_next_enlist`] forces. Errors, in order:
    /// an injected failure ([`Ktm::fail_next_enlists`]); unknown RM → `STATUS_RM_NOT_ACTIVE`;
    /// bits outside `TRANSACTION_NOTIFY_MASK` or unsupported ones (§3, S2) →
    /// `STATUS_INVALID_PARAMETER` **(unverified code)**; a transaction neither Active nor in
    /// PrePrepare (where KTM still takes enlistments, §1, S3) → `STATUS_TRANSACTION_NOT_ACTIVE`.
    /// A mask without PREPREPARE|PREPARE|COMMIT is accepted but recorded as a violation ("Every
    /// RM must request PREPREPARE|PREPARE|COMMIT", §3, S2); phases outside the mask are skipped.
    pub fn enlist(
        &self,
        rm: RmId,
        tx: &TxRef,
        key: EnlistmentKey,
        mask: u32,
    ) -> Result<EnlistmentId, NtStatus> {
        self.enlist_with(rm, tx, key, mask, true)
    }

    /// [`Ktm::enlist`], with or without the injected faults.
    pub(crate) fn enlist_with(
        &self,
        rm: RmId,
        tx: &TxRef,
        key: EnlistmentKey,
        mask: u32,
        faults: bool,
    ) -> Result<EnlistmentId, NtStatus> {
        let (id, race) = {
            let mut st = self.lock();
            match Self::check_enlist(&mut st, rm, tx.id, mask, faults) {
                Ok(()) => {}
                Err(s) => {
                    st.checker.counters.enlist_failures += 1;
                    return Err(s);
                }
            }
            let id = st.new_enlistment(rm, tx.id, key, mask);
            let race = (faults && !st.faults.races.is_empty()).then(|| st.faults.races.remove(0));
            (id, race)
        };
        match race {
            None => {}
            Some(EnlistRace::SameThread) => {
                let _ = self.rollback_tx(tx.id);
            }
            Some(EnlistRace::OtherThread) => {
                let k = self.clone();
                let txid = tx.id;
                std::thread::spawn(move || {
                    let _ = k.rollback_tx(txid);
                });
                // Return only once the RM has handled the notification: the callback returned,
                // or it answered (a callback may also wait for this enlist to return first —
                // docs/ktm.md §3 "Delivery A" — which then costs the deadline, not a deadlock).
                let mut st = self.lock();
                let until = st.config.answer_deadline.map(|d| Instant::now() + d);
                while st
                    .enlistments
                    .get(&id)
                    .is_some_and(|e| e.returned == 0 && e.last.is_none())
                    && st.txs.get(&tx.id).is_some_and(|t| !t.state.is_ended())
                    && until.is_none_or(|u| Instant::now() < u)
                {
                    st = self.wait_until(st, until);
                }
            }
        }
        Ok(id)
    }

    fn check_enlist(
        st: &mut State,
        rm: RmId,
        tx: TxId,
        mask: u32,
        faults: bool,
    ) -> Result<(), NtStatus> {
        if faults && let Some((n, status)) = st.faults.fail_enlists {
            st.faults.fail_enlists = (n > 1).then_some((n - 1, status));
            return Err(status);
        }
        if !st.rms.contains_key(&rm) {
            return Err(NtStatus::RM_NOT_ACTIVE);
        }
        st.durable_enlist_check(rm)?;
        if mask & !NOTIFY_MASK != 0 || mask & NOTIFY_UNSUPPORTED != 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        use ktmrm_core::port::notify_bits as nb;
        let required = nb::PREPREPARE | nb::PREPARE | nb::COMMIT;
        if mask & required != required {
            st.checker.violation(Violation::BadMask { rm, tx, mask });
        }
        match st.txs.get(&tx).map(|t| t.state) {
            Some(TxState::Active | TxState::PrePreparing) => Ok(()),
            Some(_) => Err(NtStatus::TRANSACTION_NOT_ACTIVE),
            None => Err(NtStatus::INVALID_TRANSACTION),
        }
    }

    /// An RM's answer to the notification outstanding on `en` (the `Tm*Complete` routines,
    /// docs/ktm.md §2, §3). Checked against the outstanding notification ([`crate::answer_fits`]):
    /// - nothing outstanding (a second answer, an answer nobody asked for, or one after the
    ///   deadline) → [`crate::Violation::AnswerNotOutstanding`], `STATUS_TRANSACTION_NOT_REQUESTED`
    ///   ("a `*Complete` nobody asked for", §5);
    /// - the wrong kind → [`crate::Violation::WrongAnswer`], `STATUS_TRANSACTION_REQUEST_NOT_VALID`; the
    ///   notification stays outstanding.
    ///
    /// On a durable TM KTM logs a durable enlistment's PrepareComplete, CommitComplete and
    /// RollbackComplete (see `durable.rs`), and the crash points around them are passed here.
    pub fn answer(&self, en: EnlistmentId, answer: Answer) -> NtStatus {
        let mut st = self.lock();
        if en.0 < st.stale_below && !st.enlistments.contains_key(&en) {
            return NtStatus::INVALID_HANDLE;
        }
        st.checker.answered(answer);
        let Some(e) = st.enlistments.get(&en) else {
            st.checker.violation(Violation::UnknownEnlistment {
                call: Call::Answer(answer),
                enlistment: en,
            });
            return NtStatus::INVALID_HANDLE;
        };
        let (key, tx, closed) = (e.key, e.tx, e.closed);
        if !e
            .outstanding
            .is_some_and(|o| answer_fits(o.notification, answer))
        {
            // A late answer to a notification a ROLLBACK overtook: KTM no longer waits for it;
            // refused without a violation (the status is the model's choice, unverified).
            if e.overtaken
                .is_some_and(|o| answer_fits(o.notification, answer))
            {
                return NtStatus::TRANSACTION_NOT_REQUESTED;
            }
            if e.outstanding.is_none()
                && let Some(rollback) = Self::unprompted(&mut st, en, answer)
            {
                drop(st);
                self.changed();
                if rollback {
                    let _ = self.rollback_tx(tx);
                }
                return NtStatus::SUCCESS;
            }
            // A rollback asked for once the transaction is decided (an unloading RM racing
            // KTM's outcome): "The enlistment cannot be rolled back" (ZwRollbackEnlistment's
            // page), no protocol error.
            if answer == Answer::RollbackEnlistment
                && !closed
                && st
                    .enlistments
                    .get(&en)
                    .is_some_and(|e| e.outstanding.is_none())
                && !st.txs.get(&tx).is_some_and(|t| {
                    matches!(
                        t.state,
                        TxState::Active | TxState::PrePreparing | TxState::Preparing
                    )
                })
            {
                return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
            }
        }
        let e = &st.enlistments[&en];
        let Some(out) = e.outstanding else {
            let last = e.last.map(|(_, a)| a);
            st.checker.violation(Violation::AnswerNotOutstanding {
                answer,
                enlistment: en,
                key,
                tx,
                last,
                closed,
            });
            return NtStatus::TRANSACTION_NOT_REQUESTED;
        };
        // RollbackEnlistment is a request as much as an answer: an RM may ask for a rollback
        // "at any time before it calls ZwPrepareComplete", and once its transaction is already
        // rolling back the call fails with STATUS_TRANSACTION_REQUEST_NOT_VALID, "The enlistment
        // cannot be rolled back"
        // (https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-zwrollbackenlistment).
        // An unloading RM races KTM's ROLLBACK this way; it still owes RollbackComplete. (After
        // its PrepareComplete, RollbackEnlistment stays a wrong answer to COMMIT.)
        if answer == Answer::RollbackEnlistment && out.notification == Notification::Rollback {
            return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
        }
        if !answer_fits(out.notification, answer) {
            st.checker.violation(Violation::WrongAnswer {
                answer,
                notification: out.notification,
                enlistment: en,
                key,
                tx,
            });
            return NtStatus::TRANSACTION_REQUEST_NOT_VALID;
        }
        let (before, after) = match answer {
            Answer::PrepareComplete => (
                Some(CrashPoint::BeforePrepareComplete),
                Some(CrashPoint::AfterPrepareComplete),
            ),
            Answer::CommitComplete => (
                Some(CrashPoint::BeforeCommitComplete),
                Some(CrashPoint::AfterCommitComplete),
            ),
            Answer::RollbackComplete => (Some(CrashPoint::BeforeRollbackComplete), None),
            _ => (None, None),
        };
        let logged = st.enlistments[&en].durable_rm.is_some();
        let guid = st.enlistments[&en].guid;
        if logged
            && let Some(p) = before
            && let Some(gone) = st.hit(p, tx, Some(guid))
        {
            drop(st);
            drop(gone);
            self.changed();
            return status::TRANSACTIONMANAGER_NOT_ONLINE;
        }
        let e = st.enlistments.get_mut(&en).expect("present");
        // A no vote given by RollbackEnlistment outside the callback (an unloading RM) answers
        // the phase KTM had sent; the callback still running for that phase may answer it again
        // too late, which KTM refuses like an answer a ROLLBACK overtook.
        if answer == Answer::RollbackEnlistment {
            e.overtaken = e.outstanding;
        }
        e.outstanding = None;
        e.last = Some((out.seq, answer));
        e.state = match answer {
            Answer::PrePrepareComplete => EnlistmentState::PrePrepared,
            Answer::PrepareComplete => EnlistmentState::Prepared,
            Answer::CommitComplete => EnlistmentState::Committed,
            Answer::RollbackComplete => EnlistmentState::RolledBack,
            Answer::ReadOnly => EnlistmentState::ReadOnly,
            Answer::RollbackEnlistment => EnlistmentState::VotedNo,
            Answer::SinglePhaseReject => EnlistmentState::Enlisted,
        };
        match answer {
            Answer::PrepareComplete => st.log_prepared(en),
            Answer::CommitComplete | Answer::RollbackComplete => st.log_done(en),
            _ => {}
        }
        let gone = if logged && let Some(p) = after {
            st.hit(p, tx, Some(guid))
        } else {
            None
        };
        drop(st);
        let crashed = gone.is_some();
        drop(gone);
        self.changed();
        if crashed {
            return status::TRANSACTIONMANAGER_NOT_ONLINE;
        }
        NtStatus::SUCCESS
    }

    /// `ZwReadOnlyEnlistment` / `ZwRollbackEnlistment` with no notification outstanding,
    /// which the documentation allows any time before PrepareComplete: "After the resource
    /// manager has called ZwCreateEnlistment to enlist in a transaction, it can roll back the
    /// transaction at any time before it calls ZwPrepareComplete"
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-rollback-operations>),
    /// and a read-only enlistment can be made "at any time before the resource manager calls
    /// ZwPrepareComplete" (docs/ktm.md §1, S1). Accepted while the enlistment is open, has not
    /// voted, and its transaction is undecided: ReadOnly drops it from later phases,
    /// RollbackEnlistment is a no vote. `Some(true)`: roll the transaction back now; `None`:
    /// not such an answer.
    fn unprompted(st: &mut State, en: EnlistmentId, answer: Answer) -> Option<bool> {
        let e = st.enlistments.get(&en)?;
        let undecided = st.txs.get(&e.tx).is_some_and(|t| {
            matches!(
                t.state,
                TxState::Active | TxState::PrePreparing | TxState::Preparing
            ) && !t.superior.is_some_and(|s| s.prepared)
        });
        let early = matches!(
            e.state,
            EnlistmentState::Enlisted | EnlistmentState::PrePrepared
        );
        if e.closed || !undecided || !early {
            return None;
        }
        let state = match answer {
            Answer::ReadOnly => EnlistmentState::ReadOnly,
            Answer::RollbackEnlistment => EnlistmentState::VotedNo,
            _ => return None,
        };
        let e = st.enlistments.get_mut(&en)?;
        e.state = state;
        e.last = Some((0, answer));
        let tx = e.tx;
        let no = state == EnlistmentState::VotedNo;
        // The no vote binds the commit under way in the same critical section: the enlistment
        // leaves the phases now, so a commit deciding before the caller's `rollback_tx` runs
        // must already see the abort.
        if no
            && let Some(t) = st.txs.get_mut(&tx)
            && matches!(
                t.state,
                TxState::Active | TxState::PrePreparing | TxState::Preparing
            )
        {
            t.abort_requested = true;
        }
        Some(no)
    }

    /// `ZwClose` of an enlistment handle. Checks: a second close → [`crate::Violation::DoubleClose`];
    /// a notification still outstanding → [`crate::Violation::ClosedWhileOutstanding`]; closed after
    /// PrepareComplete but before the outcome → [`crate::Violation::ClosedBeforeOutcome`] (a prepared RM
    /// must take COMMIT or ROLLBACK, docs/ktm.md §3 "Obligations"). Closing an enlistment that is still
    /// in play rolls its transaction back if that is still possible (§3, S18; as
    /// [`Ktm::rollback_tx`] does). Closing one with SINGLE_PHASE_COMMIT outstanding sends
    /// TRANSACTION_NOTIFY_RM_DISCONNECTED to every other open enlistment that asked for it, "if
    /// the resource manager that is handling the single-phase commit operation closes the
    /// enlistment handle without indicating that it has committed or rolled back the
    /// transaction" (<https://learn.microsoft.com/windows-hardware/drivers/kernel/handling-commit-operations>);
    /// the commit then rolls back **(unverified: the page does not give the outcome)**.
    pub fn close_enlistment(&self, en: EnlistmentId) {
        let (rollback, disconnected) = {
            let mut st = self.lock();
            if en.0 < st.stale_below && !st.enlistments.contains_key(&en) {
                return;
            }
            let Some(e) = st.enlistments.get_mut(&en) else {
                st.checker.violation(Violation::UnknownEnlistment {
                    call: Call::Close,
                    enlistment: en,
                });
                return;
            };
            if e.closed {
                let (key, tx) = (e.key, e.tx);
                st.checker.violation(Violation::DoubleClose {
                    enlistment: en,
                    key,
                    tx,
                });
                return;
            }
            e.closed = true;
            let (key, txid, state, out) = (e.key, e.tx, e.state, e.outstanding);
            st.checker.counters.enlistments_open -= 1;
            if let Some(o) = out {
                st.checker.violation(Violation::ClosedWhileOutstanding {
                    enlistment: en,
                    key,
                    tx: txid,
                    notification: o.notification,
                });
            }
            let disconnected = match out {
                Some(o) if o.notification == Notification::SinglePhaseCommit => {
                    st.enlistments.get_mut(&en).expect("present").outstanding = None;
                    Self::disconnected(&mut st, txid, en)
                }
                _ => Vec::new(),
            };
            let eager = st.config.interleavings.eager_rollback;
            let tx = st
                .txs
                .get_mut(&txid)
                .expect("enlistment names a transaction");
            let mut rollback = false;
            if state.in_play() {
                match tx.state {
                    TxState::Active => rollback = true,
                    TxState::PrePreparing | TxState::Preparing if eager => rollback = true,
                    TxState::PrePreparing | TxState::Preparing => tx.abort_requested = true,
                    _ if state == EnlistmentState::Prepared => {
                        st.checker.violation(Violation::ClosedBeforeOutcome {
                            enlistment: en,
                            key,
                            tx: txid,
                        });
                    }
                    _ => {}
                }
            }
            (rollback.then_some(txid), disconnected)
        };
        self.changed();
        for (callback, d) in disconnected {
            let _ = callback(d);
        }
        if let Some(id) = rollback {
            let _ = self.rollback_tx(id);
        }
    }

    /// The RM_DISCONNECTED deliveries (no answer) to the open enlistments of `tx` other than
    /// `en` whose mask asks for it.
    fn disconnected(st: &mut State, tx: TxId, en: EnlistmentId) -> Vec<(RmCallback, Delivery)> {
        let n = Notification::RmDisconnected;
        let mut out = Vec::new();
        for other in st.txs[&tx].enlistments.clone() {
            let e = &st.enlistments[&other];
            if other == en || e.closed || e.mask & n.bits() == 0 {
                continue;
            }
            let Some(rm) = st.rms.get(&e.rm) else {
                continue;
            };
            out.push((
                rm.callback.clone(),
                Delivery {
                    enlistment: other,
                    key: e.key,
                    notification: n,
                    tx,
                    recovery: None,
                },
            ));
            st.checker.sent(n);
        }
        out
    }

    /// Closes `en` unless it is already closed (for the built-in RMs, which may see a
    /// duplicate COMMIT after closing).
    pub(crate) fn close_if_open(&self, en: EnlistmentId) {
        let open = self.lock().enlistments.get(&en).is_some_and(|e| !e.closed);
        if open {
            self.close_enlistment(en);
        }
    }

    /// The state of an enlistment.
    #[must_use]
    pub fn enlistment_info(&self, en: EnlistmentId) -> Option<EnlistmentInfo> {
        let st = self.lock();
        st.enlistments.get(&en).map(|e| EnlistmentInfo {
            rm: e.rm,
            tx: e.tx,
            key: e.key,
            mask: e.mask,
            state: e.state,
            outstanding: e.outstanding.map(|o| o.notification),
            last_answer: e.last.map(|(_, a)| a),
            closed: e.closed,
        })
    }

    /// Every enlistment of a transaction, in creation order.
    #[must_use]
    pub fn enlistments_of(&self, id: TxId) -> Vec<EnlistmentId> {
        self.lock()
            .txs
            .get(&id)
            .map(|t| t.enlistments.clone())
            .unwrap_or_default()
    }
}
