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
    Notification as N, NtStatus, Outcome,
};

/// [`ktm`] with every allowed interleaving on.
fn allowing(mode: DeliveryMode) -> Ktm {
    let k = ktm(mode);
    k.set_interleavings(Interleavings::ALL);
    k
}

/// A well-behaved RM, except that it answers `at` later: it returns STATUS_PENDING and parks
/// the enlistment in `parked` for the test to answer (or not).
fn parks_at(
    at: N,
    parked: Arc<Mutex<Vec<EnlistmentId>>>,
) -> impl Fn(&Ktm, ktm_sim::Delivery) -> NtStatus + Send + Sync {
    move |k: &Ktm, d| {
        if d.notification == at {
            parked.lock().unwrap().push(d.enlistment);
            return NtStatus::PENDING;
        }
        good()(k, d)
    }
}

/// Runs `k.commit(p, h)` on a thread of its own; the receiver gets its status.
fn commit_in_background(k: &Ktm, p: ktm_sim::ProcessId, h: u64) -> mpsc::Receiver<NtStatus> {
    let (tx, rx) = mpsc::channel();
    let k = k.clone();
    std::thread::spawn(move || {
        let _ = tx.send(k.commit(p, h));
    });
    rx
}

/// Waits until `parked` holds something (the RM got the notification).
fn wait_parked(parked: &Arc<Mutex<Vec<EnlistmentId>>>) -> EnlistmentId {
    for _ in 0..500 {
        if let Some(en) = parked.lock().unwrap().first() {
            return *en;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the notification never came");
}

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
            v.iter().any(|v| v.starts_with("spc beside writer: ")),
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
        let parked = Arc::default();
        let OneTx { k, log, rm, p, h } =
            one_tx(allowing(mode), parks_at(N::Prepare, Arc::clone(&parked)));
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        let commit = commit_in_background(&k, p, h);
        let parked_en = wait_parked(&parked);
        assert_eq!(parked_en, en);
        // ROLLBACK is sent when the rollback is made, over the PREPARE still outstanding.
        assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
        assert_eq!(
            commit.recv_timeout(Duration::from_secs(5)),
            Ok(NtStatus::TRANSACTION_ABORTED)
        );
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
    let parked = Arc::default();
    let OneTx { k, log, rm, p, h } = one_tx(
        ktm(DeliveryMode::Inline),
        parks_at(N::Prepare, Arc::clone(&parked)),
    );
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    let commit = commit_in_background(&k, p, h);
    wait_parked(&parked);
    assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare]);
    assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::TRANSACTION_ABORTED)
    );
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
    k.assert_clean();
}

#[test]
fn a_timeout_while_preparing_rolls_back() {
    let parked = Arc::default();
    let k = allowing(DeliveryMode::Inline);
    let log = Log::default();
    let rm = rm_with(&k, &log, parks_at(N::Prepare, Arc::clone(&parked)));
    let p = k.create_process();
    let h = k.create_transaction(p, 1000, "").unwrap();
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    let commit = commit_in_background(&k, p, h);
    wait_parked(&parked);
    // "aborted when the interval elapses if it has not already reached the prepared state".
    assert_eq!(k.advance_time(1000), 1);
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::TRANSACTION_ABORTED)
    );
    k.assert_clean();
}

#[test]
fn a_no_vote_rolls_back_at_once_over_the_other_outstanding_prepare() {
    let parked = Arc::default();
    let OneTx { k, log, rm, p, h } = one_tx(
        allowing(DeliveryMode::Inline),
        parks_at(N::Prepare, Arc::clone(&parked)),
    );
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.enlist_veto_rm(p, h), NtStatus::SUCCESS);
    let commit = commit_in_background(&k, p, h);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::TRANSACTION_ABORTED)
    );
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
    assert_eq!(
        k.answer(en, Answer::PrepareComplete),
        NtStatus::TRANSACTION_NOT_REQUESTED
    );
    k.assert_clean();
}

#[test]
fn a_withheld_answer_leaves_the_commit_waiting() {
    let parked = Arc::default();
    let k = ktm(DeliveryMode::Inline);
    k.set_answer_deadline(None);
    let OneTx { k, rm, p, h, .. } = one_tx(k, parks_at(N::Prepare, Arc::clone(&parked)));
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    let commit = commit_in_background(&k, p, h);
    wait_parked(&parked);
    // The bound is the test's: KTM itself waits however long it takes.
    assert_eq!(
        commit.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::SUCCESS)
    );
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
    let commit = commit_in_background(&k, p, h);
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
    assert!(v[0].starts_with("callback failed: "), "{v:?}");
}

#[test]
fn closing_the_rm_mid_commit_rolls_the_transaction_back() {
    for eager in [false, true] {
        let parked = Arc::default();
        let k = ktm(DeliveryMode::Inline);
        if eager {
            k.set_interleavings(Interleavings::ALL);
        }
        let OneTx { k, log, rm, p, h } = one_tx(k, parks_at(N::Prepare, Arc::clone(&parked)));
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        let commit = commit_in_background(&k, p, h);
        wait_parked(&parked);
        // "enlistments to transactions that have not been committed" are rolled back.
        assert_eq!(k.close_resource_manager(rm), 1);
        if !eager {
            assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
        }
        assert_eq!(
            commit.recv_timeout(Duration::from_secs(5)),
            Ok(NtStatus::TRANSACTION_ABORTED)
        );
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
        k.assert_clean();
    }
}

#[test]
fn closing_the_single_phase_enlistment_sends_rm_disconnected_to_the_others() {
    let parked = Arc::default();
    let OneTx { k, log, rm, p, h } = one_tx(
        allowing(DeliveryMode::Inline),
        parks_at(N::SinglePhaseCommit, Arc::clone(&parked)),
    );
    let spc = enlist(&k, rm, p, h, MASK_SPC).unwrap();
    // A read-only participant that asked for RM_DISCONNECTED, as the page tells it to.
    let other = enlist(&k, rm, p, h, MASK4 | N::RmDisconnected.bits()).unwrap();
    assert_eq!(k.answer(other, Answer::ReadOnly), NtStatus::SUCCESS);
    let commit = commit_in_background(&k, p, h);
    wait_parked(&parked);
    k.close_enlistment(spc);
    assert_eq!(log.kinds_of(other), [N::RmDisconnected]);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::TRANSACTION_ABORTED)
    );
    k.close_enlistment(other);
    let v = k.finish();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("closed while outstanding: "), "{v:?}");
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
    let parked = Arc::default();
    let OneTx { k, rm, p, h, .. } = one_tx(
        ktm(DeliveryMode::Inline),
        parks_at(N::Prepare, Arc::clone(&parked)),
    );
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    let commit = commit_in_background(&k, p, h);
    wait_parked(&parked);
    // "The commit operation for this transaction has already been started."
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_REQUEST_NOT_VALID);
    assert_eq!(k.answer(en, Answer::PrepareComplete), NtStatus::SUCCESS);
    assert_eq!(
        commit.recv_timeout(Duration::from_secs(5)),
        Ok(NtStatus::SUCCESS)
    );
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
