//! Behaviours KTM's documentation allows that are uncomfortable for an RM, with hand-written
//! RMs: single-phase commit beside another writer, ROLLBACK over an outstanding PREPARE, a
//! timeout while preparing, a withheld answer, the RM handle closed mid-commit,
//! RM_DISCONNECTED, and answers made before any notification asks for them.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ktm_sim::{
    Answer, DeliveryMode, EnlistRace, EnlistmentId, EnlistmentState, Interleavings, Ktm,
    Notification as N, NtStatus, Outcome, ProcessId, RmId, Violation,
};

/// [`ktm`] with every allowed interleaving on.
fn allowing(mode: DeliveryMode) -> Ktm {
    let k = ktm(mode);
    k.set_interleavings(Interleavings::ALL);
    k
}

/// A commit in the background that has reached an RM which answers `at` later: the RM returns
/// STATUS_PENDING and leaves the answer (or none) to the test.
struct Parked {
    k: Ktm,
    log: Log,
    rm: RmId,
    p: ProcessId,
    h: u64,
    /// The parking RM's enlistment.
    en: EnlistmentId,
    /// The commit's status, once it returns.
    commit: mpsc::Receiver<NtStatus>,
}

/// On `k`: an RM that parks `at`, enlisted with `mask` in a transaction with `timeout_ms`;
/// `setup` runs before the commit starts; returns once the RM holds `at`.
fn parked_commit(
    k: Ktm,
    at: N,
    mask: u32,
    timeout_ms: u32,
    setup: impl FnOnce(&Ktm, RmId, ProcessId, u64),
) -> Parked {
    let log = Log::default();
    let parked: Arc<Mutex<Vec<EnlistmentId>>> = Arc::default();
    let held = Arc::clone(&parked);
    let rm = rm_with(&k, &log, move |k: &Ktm, d| {
        if d.notification == at {
            held.lock().unwrap().push(d.enlistment);
            return NtStatus::PENDING;
        }
        good()(k, d)
    });
    let p = k.create_process();
    let h = k.create_transaction(p, timeout_ms, "").unwrap();
    let en = enlist(&k, rm, p, h, mask).unwrap();
    setup(&k, rm, p, h);
    let (tx, commit) = mpsc::channel();
    let k2 = k.clone();
    std::thread::spawn(move || {
        let _ = tx.send(k2.commit(p, h));
    });
    for _ in 0..500 {
        if parked.lock().unwrap().contains(&en) {
            return Parked {
                k,
                log,
                rm,
                p,
                h,
                en,
                commit,
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the notification never came");
}

/// The commit's status within 5 s.
fn status(commit: &mpsc::Receiver<NtStatus>) -> Result<NtStatus, mpsc::RecvTimeoutError> {
    commit.recv_timeout(Duration::from_secs(5))
}

const NOTHING: fn(&Ktm, RmId, ProcessId, u64) = |_, _, _, _| {};

#[test]
fn single_phase_commit_beside_another_writer_is_delivered_when_allowed_and_flagged() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } = one_tx(allowing(mode), good());
        let en = enlist(&k, rm, p, h, MASK_SPC).unwrap();
        assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        // KTM sent SINGLE_PHASE_COMMIT to the RM registered for it; the other writer never got
        // PREPARE: its writes are not part of the commit.
        assert_eq!(log.kinds_of(en), [N::SinglePhaseCommit]);
        let c = k.counters();
        assert_eq!((c.sent(N::Prepare), c.sent(N::Commit)), (0, 0));
        let v = k.finish();
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::SpcBesideWriter { .. })),
            "{v:?}"
        );
    }
}

#[test]
fn a_sole_enlistment_registered_for_single_phase_commit_is_not_flagged() {
    let OneTx { k, log, rm, p, h } = one_tx(allowing(DeliveryMode::Inline), good());
    enlist(&k, rm, p, h, MASK_SPC).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds(), [N::SinglePhaseCommit]);
    k.assert_clean();
}

#[test]
fn rollback_during_prepare_overtakes_the_outstanding_prepare() {
    for mode in MODES {
        let Parked {
            k,
            log,
            p,
            h,
            en,
            commit,
            ..
        } = parked_commit(allowing(mode), N::Prepare, MASK4, 0, NOTHING);
        // ROLLBACK is sent when the rollback is made, over the PREPARE still outstanding.
        assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
        assert_eq!(status(&commit), Ok(NtStatus::TRANSACTION_ABORTED));
        // The late answer to the overtaken PREPARE is refused, and is no violation.
        assert_eq!(
            k.answer(en, Answer::PrepareComplete),
            NtStatus::TRANSACTION_NOT_REQUESTED
        );
        assert_eq!(k.transaction_info(p, h).unwrap().outcome, Outcome::Aborted);
        k.assert_clean();
    }
}

#[test]
fn without_eager_rollback_the_rollback_waits_for_the_prepare_answers() {
    let Parked {
        k,
        log,
        p,
        h,
        en,
        commit,
        ..
    } = parked_commit(ktm(DeliveryMode::Inline), N::Prepare, MASK4, 0, NOTHING);
    assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare]);
    assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
    assert_eq!(status(&commit), Ok(NtStatus::TRANSACTION_ABORTED));
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
    k.assert_clean();
}

#[test]
fn a_timeout_while_preparing_rolls_back() {
    let Parked {
        k, log, en, commit, ..
    } = parked_commit(
        allowing(DeliveryMode::Inline),
        N::Prepare,
        MASK4,
        1000,
        NOTHING,
    );
    // "aborted when the interval elapses if it has not already reached the prepared state".
    assert_eq!(k.advance_time(1000), 1);
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
    assert_eq!(status(&commit), Ok(NtStatus::TRANSACTION_ABORTED));
    k.assert_clean();
}

#[test]
fn a_no_vote_rolls_back_at_once_over_the_other_outstanding_prepare() {
    let veto = |k: &Ktm, _, p, h| assert_eq!(k.enlist_veto_rm(p, h), NtStatus::SUCCESS);
    let Parked {
        k, log, en, commit, ..
    } = parked_commit(allowing(DeliveryMode::Inline), N::Prepare, MASK4, 0, veto);
    assert_eq!(status(&commit), Ok(NtStatus::TRANSACTION_ABORTED));
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
    assert_eq!(
        k.answer(en, Answer::PrepareComplete),
        NtStatus::TRANSACTION_NOT_REQUESTED
    );
    k.assert_clean();
}

#[test]
fn a_withheld_answer_leaves_the_commit_waiting() {
    let k = ktm(DeliveryMode::Inline);
    k.set_answer_deadline(None);
    let Parked { k, en, commit, .. } = parked_commit(k, N::Prepare, MASK4, 0, NOTHING);
    // The bound is the test's: KTM itself waits however long it takes.
    assert_eq!(
        commit.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
    assert_eq!(status(&commit), Ok(NtStatus::SUCCESS));
    k.assert_clean();
}

#[test]
fn an_error_return_leaves_the_phase_waiting_by_default() {
    let k = ktm(DeliveryMode::Inline);
    k.set_answer_deadline(None);
    let OneTx { k, rm, p, h, .. } = one_tx(
        k,
        no_answer_at(N::Prepare, NtStatus::INSUFFICIENT_RESOURCES),
    );
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    let (tx, commit) = mpsc::channel();
    let k2 = k.clone();
    std::thread::spawn(move || {
        let _ = tx.send(k2.commit(p, h));
    });
    assert_eq!(
        commit.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    assert_eq!(k.answer(en, Answer::RollbackEnlistment), NtStatus::SUCCESS);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::TRANSACTION_ABORTED)
    );
    let v = k.finish();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(matches!(v[0], Violation::CallbackFailed { .. }), "{v:?}");
}

#[test]
fn closing_the_rm_mid_commit_rolls_the_transaction_back() {
    for eager in [false, true] {
        let k = ktm(DeliveryMode::Inline);
        if eager {
            k.set_interleavings(Interleavings::ALL);
        }
        let Parked {
            k,
            log,
            rm,
            en,
            commit,
            ..
        } = parked_commit(k, N::Prepare, MASK4, 0, NOTHING);
        // "enlistments to transactions that have not been committed" are rolled back.
        assert_eq!(k.close_resource_manager(rm), 1);
        if !eager {
            assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
        }
        assert_eq!(status(&commit), Ok(NtStatus::TRANSACTION_ABORTED));
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
        k.assert_clean();
    }
}

#[test]
fn closing_the_single_phase_enlistment_sends_rm_disconnected_to_the_others() {
    // A read-only participant that asked for RM_DISCONNECTED, as the page tells it to.
    let other: Arc<Mutex<Option<EnlistmentId>>> = Arc::default();
    let o = Arc::clone(&other);
    let read_only = move |k: &Ktm, rm, p, h| {
        let en = enlist(k, rm, p, h, MASK4 | N::RmDisconnected.bits()).unwrap();
        assert_eq!(k.answer(en, Answer::ReadOnly), NtStatus::SUCCESS);
        *o.lock().unwrap() = Some(en);
    };
    let Parked {
        k,
        log,
        en: spc,
        commit,
        ..
    } = parked_commit(
        allowing(DeliveryMode::Inline),
        N::SinglePhaseCommit,
        MASK_SPC,
        0,
        read_only,
    );
    let other = other.lock().unwrap().unwrap();
    k.close_enlistment(spc);
    assert_eq!(log.kinds_of(other), [N::RmDisconnected]);
    assert_eq!(status(&commit), Ok(NtStatus::TRANSACTION_ABORTED));
    k.close_enlistment(other);
    let v = k.finish();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        matches!(v[0], Violation::ClosedWhileOutstanding { .. }),
        "{v:?}"
    );
}

#[test]
fn read_only_right_after_enlisting_drops_out_of_the_commit() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    let ro = enlist(&k, rm, p, h, MASK4).unwrap();
    let rw = enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.answer(ro, Answer::ReadOnly), NtStatus::SUCCESS);
    assert_eq!(
        k.enlistment_info(ro).unwrap().state,
        EnlistmentState::ReadOnly
    );
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds_of(ro), []);
    assert_eq!(log.kinds_of(rw), [N::PrePrepare, N::Prepare, N::Commit]);
    k.close_enlistment(ro);
    k.assert_clean();
}

#[test]
fn rollback_enlistment_right_after_enlisting_rolls_back() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.answer(en, Answer::RollbackEnlistment), NtStatus::SUCCESS);
    // KTM sends ROLLBACK "to all resource managers", the one that asked for it too.
    assert_eq!(log.kinds_of(en), [N::Rollback]);
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
    k.assert_clean();
}

#[test]
fn a_second_commit_while_the_first_is_undecided_is_not_valid() {
    let Parked {
        k,
        p,
        h,
        en,
        commit,
        ..
    } = parked_commit(ktm(DeliveryMode::Inline), N::Prepare, MASK4, 0, NOTHING);
    // "The commit operation for this transaction has already been started."
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_REQUEST_NOT_VALID);
    assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
    assert_eq!(status(&commit), Ok(NtStatus::SUCCESS));
    k.assert_clean();
}

#[test]
fn a_rollback_racing_prepare_from_the_same_thread_reaches_the_rm_first() {
    // Answers PREPARE like `good`, without insisting that KTM still wants the answer.
    let lenient = |k: &Ktm, d: ktm_sim::Delivery| {
        if d.notification == N::Prepare {
            assert_eq!(
                k.answer(d.enlistment, Answer::PrepareComplete),
                NtStatus::TRANSACTION_NOT_REQUESTED
            );
            return NtStatus::SUCCESS;
        }
        good()(k, d)
    };
    let OneTx { k, log, rm, p, h } = one_tx(allowing(DeliveryMode::Inline), lenient);
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    k.rollback_during_next(N::Prepare, EnlistRace::SameThread);
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    // The PREPARE callback lost the race to the ROLLBACK's; its late answer is refused quietly.
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Rollback, N::Prepare]);
    k.assert_clean();
}

#[test]
fn a_single_phase_commit_is_in_the_decision_oracle() {
    let k = Ktm::new_durable(ktm_sim::KtmConfig {
        answer_deadline: Some(Duration::from_secs(5)),
        ..ktm_sim::KtmConfig::default()
    });
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    let OneTx { k, log, rm, p, h } = one_tx(k, good());
    enlist(&k, rm, p, h, MASK_SPC).unwrap();
    let id = k.transaction_info(p, h).unwrap().id;
    assert_eq!(k.decision(id), Outcome::Undetermined);
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds(), [N::SinglePhaseCommit]);
    // KTM logs nothing for it, but it was decided: committed.
    assert_eq!(k.decision(id), Outcome::Committed);
    k.assert_clean();
}
