//! The KTM model, exercised with hand-written RMs: phase order, single-phase commit, read-only,
//! vetoes, rollbacks, timeouts, handles, delivery modes and fault injection.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ktm_sim::access::*;
use ktm_sim::{
    Answer, DeliveryMode, EnlistRace, EnlistmentId, EnlistmentState, Ktm, KtmConfig,
    Notification as N, NtStatus, Outcome, Phase, TxState, Violation,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Ktm>();
    assert_send_sync::<ktm_sim::SimDevice>();
    assert_send_sync::<ktm_sim::SimProcess>();
    assert_send_sync::<ktm_sim::SimFile>();
    assert_send_sync::<ktm_sim::SimPort>();
}

#[test]
fn transaction_without_enlistments_just_commits() {
    let k = ktm(DeliveryMode::Inline);
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "empty").unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    let info = k.transaction_info(p, h).unwrap();
    assert_eq!(
        (info.state, info.outcome),
        (TxState::Committed, Outcome::Committed)
    );
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ALREADY_COMMITTED);
    assert_eq!(k.rollback(p, h), NtStatus::TRANSACTION_ALREADY_COMMITTED);
    assert_eq!(k.close_handle(p, h), NtStatus::SUCCESS);
    k.assert_clean();
}

#[test]
fn one_rm_gets_the_three_phases_in_both_modes() {
    for mode in MODES {
        let k = ktm(mode);
        let log = Log::default();
        let rm = rm_with(&k, &log, good());
        let p = k.create_process();
        let h = k.create_transaction(p, 0, "one").unwrap();
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS, "{mode:?}");
        assert_eq!(
            log.kinds(),
            [N::PrePrepare, N::Prepare, N::Commit],
            "{mode:?}"
        );
        // Threaded, the RM closes after answering, perhaps after commit returned: settle first.
        k.assert_clean();
        let e = k.enlistment_info(en).unwrap();
        assert_eq!(e.state, EnlistmentState::Committed);
        assert!(e.closed);
        let c = k.counters();
        assert_eq!(c.sent(N::Prepare), 1);
        assert_eq!(c.answered(Answer::CommitComplete), 1);
        assert_eq!((c.enlistments_created, c.enlistments_open), (1, 0));
        assert_eq!(c.committed, 1);
    }
}

#[test]
fn two_rms_see_each_phase_before_the_next_starts() {
    for mode in MODES {
        let k = ktm(mode);
        let log = Log::default();
        let rm = rm_with(&k, &log, good());
        let p = k.create_process();
        let h = k.create_transaction(p, 0, "two").unwrap();
        let a = enlist(&k, rm, p, h, MASK4).unwrap();
        let b = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        let kinds = log.kinds();
        assert_eq!(
            kinds,
            [
                N::PrePrepare,
                N::PrePrepare,
                N::Prepare,
                N::Prepare,
                N::Commit,
                N::Commit
            ],
            "{mode:?}"
        );
        assert_eq!(log.kinds_of(a), [N::PrePrepare, N::Prepare, N::Commit]);
        assert_eq!(log.kinds_of(b), [N::PrePrepare, N::Prepare, N::Commit]);
        k.assert_clean();
    }
}

#[test]
fn builtin_yes_rm_is_a_second_participant() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } = one_tx(ktm(mode), good());
        enlist(&k, rm, p, h, MASK_SPC).unwrap();
        assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        // Two participants: by default no single-phase commit for ours, but registering for it
        // beside another writer breaks the designer's rule all the same.
        assert_eq!(log.kinds(), [N::PrePrepare, N::Prepare, N::Commit]);
        let c = k.counters();
        assert_eq!(c.sent(N::Commit), 2);
        assert_eq!(c.sent(N::SinglePhaseCommit), 0);
        let v = k.finish();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(matches!(v[0], Violation::SpcBesideWriter { .. }), "{v:?}");
    }
}

#[test]
fn sole_rm_with_spc_bit_gets_single_phase_commit() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } = one_tx(ktm(mode), good());
        enlist(&k, rm, p, h, MASK_SPC).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        assert_eq!(log.kinds(), [N::SinglePhaseCommit]);
        assert_eq!(
            k.transaction_info(p, h).unwrap().outcome,
            Outcome::Committed
        );
        k.assert_clean();
    }
}

#[test]
fn sole_rm_without_spc_bit_gets_two_phases() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds(), [N::PrePrepare, N::Prepare, N::Commit]);
    k.assert_clean();
}

#[test]
fn single_phase_reject_falls_back_to_the_full_protocol() {
    let OneTx { k, log, rm, p, h } = one_tx(
        ktm(DeliveryMode::Inline),
        voting(Answer::PrepareComplete, Answer::SinglePhaseReject),
    );
    enlist(&k, rm, p, h, MASK_SPC).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(
        log.kinds(),
        [N::SinglePhaseCommit, N::PrePrepare, N::Prepare, N::Commit]
    );
    k.assert_clean();
}

#[test]
fn read_only_enlistment_gets_no_commit() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } =
            one_tx(ktm(mode), voting(Answer::ReadOnly, Answer::CommitComplete));
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare]);
        assert_eq!(
            k.enlistment_info(en).unwrap().state,
            EnlistmentState::ReadOnly
        );
        assert_eq!(k.counters().sent(N::Commit), 1, "only the yes RM");
        k.assert_clean();
    }
}

#[test]
fn veto_rm_aborts_and_every_voter_gets_rollback() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } = one_tx(ktm(mode), good());
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.enlist_veto_rm(p, h), NtStatus::SUCCESS);
        assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED, "{mode:?}");
        assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Prepare, N::Rollback]);
        let info = k.transaction_info(p, h).unwrap();
        assert_eq!(
            (info.state, info.outcome),
            (TxState::Aborted, Outcome::Aborted)
        );
        let c = k.counters();
        assert_eq!(c.answered(Answer::RollbackEnlistment), 1);
        // Ours and the veto RM itself (KTM sends ROLLBACK "to all resource managers", docs/ktm.md S4).
        assert_eq!(c.sent(N::Rollback), 2);
        assert_eq!(c.aborted, 1);
        assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
        assert_eq!(k.rollback(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
        k.assert_clean();
    }
}

#[test]
fn own_no_vote_is_followed_by_rollback_and_read_only_is_spared() {
    let k = ktm(DeliveryMode::Inline);
    let log = Log::default();
    let no = rm_with(
        &k,
        &log,
        voting(Answer::RollbackEnlistment, Answer::CommitComplete),
    );
    let ro = rm_with(&k, &log, voting(Answer::ReadOnly, Answer::CommitComplete));
    let yes = rm_with(&k, &log, good());
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    let e_ro = enlist(&k, ro, p, h, MASK4).unwrap();
    let e_no = enlist(&k, no, p, h, MASK4).unwrap();
    let e_yes = enlist(&k, yes, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    assert_eq!(log.kinds_of(e_ro), [N::PrePrepare, N::Prepare]);
    assert_eq!(log.kinds_of(e_no), [N::PrePrepare, N::Prepare, N::Rollback]);
    assert_eq!(
        log.kinds_of(e_yes),
        [N::PrePrepare, N::Prepare, N::Rollback]
    );
    k.assert_clean();
}

#[test]
fn explicit_rollback() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } = one_tx(ktm(mode), good());
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
        assert_eq!(log.kinds(), [N::Rollback]);
        assert_eq!(k.rollback(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
        assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
        // No more enlistments in an ended transaction.
        assert_eq!(
            enlist(&k, rm, p, h, MASK4),
            Err(NtStatus::TRANSACTION_NOT_ACTIVE)
        );
        k.assert_clean();
    }
}

#[test]
fn timeout_rolls_back_only_active_transactions() {
    let k = ktm(DeliveryMode::Inline);
    let log = Log::default();
    let rm = rm_with(&k, &log, good());
    let p = k.create_process();
    let h = k.create_transaction(p, 1000, "times out").unwrap();
    let done = k.create_transaction(p, 1000, "commits first").unwrap();
    let never = k.create_transaction(p, 0, "no timeout").unwrap();
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    enlist(&k, rm, p, done, MASK4).unwrap();
    enlist(&k, rm, p, never, MASK4).unwrap();
    assert_eq!(k.commit(p, done), NtStatus::SUCCESS);
    assert_eq!(k.advance_time(999), 0);
    assert_eq!(k.transaction_info(p, h).unwrap().state, TxState::Active);
    assert_eq!(k.advance_time(1), 1);
    assert_eq!(log.kinds_of(en), [N::Rollback]);
    assert_eq!(k.transaction_info(p, h).unwrap().outcome, Outcome::Aborted);
    assert_eq!(
        k.transaction_info(p, done).unwrap().outcome,
        Outcome::Committed
    );
    assert_eq!(k.advance_time(1_000_000), 0);
    assert_eq!(k.transaction_info(p, never).unwrap().state, TxState::Active);
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ALREADY_ABORTED);
    assert_eq!(k.commit(p, never), NtStatus::SUCCESS);
    assert_eq!(k.now_ms(), 1_001_000);
    k.assert_clean();
}

#[test]
fn timeout_during_preprepare_aborts_the_commit() {
    let k = ktm(DeliveryMode::Inline);
    let log = Log::default();
    let rm = rm_with(&k, &log, |k: &Ktm, d| {
        if d.notification == N::PrePrepare {
            // The clock runs out while KTM is pre-preparing: still before prepare (docs/ktm.md S24).
            assert_eq!(k.advance_time(60_000), 1);
        }
        good()(k, d)
    });
    let p = k.create_process();
    let h = k.create_transaction(p, 50, "").unwrap();
    let en = enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    assert_eq!(log.kinds_of(en), [N::PrePrepare, N::Rollback]);
    k.assert_clean();
}

#[test]
fn rollback_during_preprepare_overtakes_the_commit() {
    let k = ktm(DeliveryMode::Inline);
    let log = Log::default();
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    let rm = rm_with(&k, &log, move |k: &Ktm, d| {
        if d.notification == N::PrePrepare {
            // A second commit while the first is undecided is refused; a rollback wins.
            assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_REQUEST_NOT_VALID);
            assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
        }
        good()(k, d)
    });
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::TRANSACTION_ABORTED);
    assert_eq!(log.kinds(), [N::PrePrepare, N::Rollback]);
    k.assert_clean();
}

#[test]
fn closing_the_last_handle_rolls_back() {
    for mode in MODES {
        let k = ktm(mode);
        let log = Log::default();
        let rm = rm_with(&k, &log, good());
        let p = k.create_process();
        let q = k.create_process();
        let h = k.create_transaction(p, 0, "").unwrap();
        let hq = k.duplicate_handle(p, h, q, None).unwrap();
        let id = k.transaction_info(p, h).unwrap().id;
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.close_handle(p, h), NtStatus::SUCCESS);
        assert!(log.kinds().is_empty(), "another handle is still open");
        assert_eq!(k.transaction_info(q, hq).unwrap().handles, 1);
        assert_eq!(k.close_handle(q, hq), NtStatus::SUCCESS);
        assert_eq!(log.kinds(), [N::Rollback]);
        let info = k.transaction_info_by_id(id).unwrap();
        assert_eq!((info.state, info.handles), (TxState::Aborted, 0));
        k.assert_clean();
    }
}

#[test]
fn closing_the_last_handle_after_commit_does_nothing() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    assert_eq!(k.close_handle(p, h), NtStatus::SUCCESS);
    assert_eq!(log.kinds(), [N::PrePrepare, N::Prepare, N::Commit]);
    k.assert_clean();
}

#[test]
fn process_exit_closes_its_handles() {
    let OneTx { k, log, rm, p, h } = one_tx(ktm(DeliveryMode::Inline), good());
    let id = k.transaction_info(p, h).unwrap().id;
    enlist(&k, rm, p, h, MASK4).unwrap();
    k.terminate_process(p);
    assert_eq!(log.kinds(), [N::Rollback]);
    assert_eq!(
        k.transaction_info_by_id(id).unwrap().state,
        TxState::Aborted
    );
    assert_eq!(k.commit(p, h), NtStatus::INVALID_HANDLE);
    k.assert_clean();
}

#[test]
fn handles_look_like_windows_ones_and_are_checked() {
    let k = ktm(DeliveryMode::Inline);
    let p = k.create_process();
    let q = k.create_process();
    let a = k.create_transaction(p, 0, "").unwrap();
    let ev = k.create_event(p);
    let b = k.create_transaction(p, 0, "").unwrap();
    for h in [a, ev, b] {
        assert!(h != 0 && h % 4 == 0, "{h:#x}");
    }
    assert!(a != ev && ev != b && a != b);
    // Closed handles stay invalid: values are not reused.
    assert_eq!(k.close_handle(p, a), NtStatus::SUCCESS);
    let c = k.create_transaction(p, 0, "").unwrap();
    assert_ne!(c, a);
    assert_eq!(k.close_handle(p, a), NtStatus::INVALID_HANDLE);
    assert_eq!(
        k.reference_transaction(p, a, TRANSACTION_ENLIST)
            .unwrap_err(),
        NtStatus::INVALID_HANDLE
    );
    assert_eq!(
        k.reference_transaction(p, 0x1234, TRANSACTION_ENLIST)
            .unwrap_err(),
        NtStatus::INVALID_HANDLE
    );
    // Handles are per process.
    assert_eq!(
        k.reference_transaction(q, b, TRANSACTION_ENLIST)
            .unwrap_err(),
        NtStatus::INVALID_HANDLE
    );
    assert_eq!(
        k.reference_transaction(p, ev, TRANSACTION_ENLIST)
            .unwrap_err(),
        NtStatus::OBJECT_TYPE_MISMATCH
    );
    assert_eq!(k.commit(p, ev), NtStatus::OBJECT_TYPE_MISMATCH);
    // A duplicate without TRANSACTION_ENLIST (type is checked before access).
    let ro = k
        .duplicate_handle(p, b, q, Some(TRANSACTION_QUERY_INFORMATION))
        .unwrap();
    assert_eq!(
        k.reference_transaction(q, ro, TRANSACTION_ENLIST)
            .unwrap_err(),
        NtStatus::ACCESS_DENIED
    );
    assert_eq!(k.commit(q, ro), NtStatus::ACCESS_DENIED);
    assert_eq!(k.rollback(q, ro), NtStatus::ACCESS_DENIED);
    assert_eq!(k.enlist_veto_rm(q, ro), NtStatus::ACCESS_DENIED);
    // No escalation through DuplicateHandle.
    assert_eq!(
        k.duplicate_handle(q, ro, p, Some(TRANSACTION_ALL_ACCESS)),
        Err(NtStatus::ACCESS_DENIED)
    );
    let r = k.reference_transaction(p, b, TRANSACTION_ENLIST).unwrap();
    assert_eq!(r.id(), k.transaction_info(p, b).unwrap().id);
    drop(r);
    k.assert_clean();
}

#[test]
fn descriptions_and_ids() {
    let k = ktm(DeliveryMode::Inline);
    let p = k.create_process();
    let long = "x".repeat(65);
    assert_eq!(
        k.create_transaction(p, 0, &long),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let h = k.create_transaction(p, 5, &"é".repeat(64)).unwrap();
    let info = k.transaction_info(p, h).unwrap();
    assert_eq!(info.description, "é".repeat(64));
    assert_eq!(info.timeout_ms, 5);
    assert_eq!(
        k.create_transaction_utf16(p, 0, &[0x41]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let h2 = k
        .create_transaction_utf16(p, 0, &[0x41, 0, 0x42, 0])
        .unwrap();
    assert_eq!(k.transaction_info(p, h2).unwrap().description, "AB");
    // Ids are deterministic: a fresh model gives the same sequence.
    let k2 = ktm(DeliveryMode::Inline);
    let p2 = k2.create_process();
    let h21 = k2.create_transaction(p2, 0, "").unwrap();
    assert_eq!(k2.transaction_info(p2, h21).unwrap().id, info.id);
    assert_ne!(k.transaction_info(p, h2).unwrap().id, info.id);
}

#[test]
fn enlisting_is_allowed_in_preprepare_but_not_later() {
    for mode in MODES {
        let k = ktm(mode);
        let log = Log::default();
        let p = k.create_process();
        let h = k.create_transaction(p, 0, "").unwrap();
        let late = Arc::new(Mutex::new(Vec::new()));
        let late2 = late.clone();
        let rm = rm_with(&k, &log, move |k: &Ktm, d| {
            match d.notification {
                // A cache flush at PREPREPARE makes another RM enlist (docs/ktm.md §1).
                N::PrePrepare => late2.lock().unwrap().push(k.enlist_yes_rm(p, h)),
                N::Prepare => late2.lock().unwrap().push(k.enlist_yes_rm(p, h)),
                _ => {}
            }
            good()(k, d)
        });
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        assert_eq!(
            *late.lock().unwrap(),
            [NtStatus::SUCCESS, NtStatus::TRANSACTION_NOT_ACTIVE],
            "{mode:?}"
        );
        let c = k.counters();
        assert_eq!(c.sent(N::PrePrepare), 2, "the late RM got PREPREPARE too");
        assert_eq!(c.sent(N::Commit), 2);
        k.assert_clean();
    }
}

#[test]
fn inline_delivery_runs_on_the_committing_thread_threaded_does_not() {
    for mode in MODES {
        let OneTx { k, log, rm, p, h } = one_tx(ktm(mode), good());
        enlist(&k, rm, p, h, MASK4).unwrap();
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        let me = std::thread::current().id();
        let threads = log.threads();
        assert_eq!(threads.len(), 6);
        match mode {
            DeliveryMode::Inline => assert!(threads.iter().all(|t| *t == me)),
            DeliveryMode::Threaded => assert!(threads.iter().all(|t| *t != me)),
        }
        k.assert_clean();
    }
}

#[test]
fn pending_answers_from_another_thread_are_accepted() {
    for mode in MODES {
        let OneTx { k, rm, p, h, .. } = one_tx(ktm(mode), |k: &Ktm, d| {
            let k = k.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                good()(&k, d);
            });
            NtStatus::PENDING
        });
        enlist(&k, rm, p, h, MASK4).unwrap();
        enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        k.assert_clean();
    }
}

#[test]
fn phase_probe_runs_between_phases() {
    let k = ktm(DeliveryMode::Inline);
    let log = Log::default();
    let rm = rm_with(&k, &log, good());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, log2) = (seen.clone(), log.clone());
    k.set_phase_probe(Arc::new(move |tx, phase| {
        seen2.lock().unwrap().push((tx, phase, log2.kinds().len()));
    }));
    let p = k.create_process();
    let full = k.create_transaction(p, 0, "").unwrap();
    let spc = k.create_transaction(p, 0, "").unwrap();
    let veto = k.create_transaction(p, 0, "").unwrap();
    enlist(&k, rm, p, full, MASK4).unwrap();
    enlist(&k, rm, p, spc, MASK_SPC).unwrap();
    enlist(&k, rm, p, veto, MASK4).unwrap();
    assert_eq!(k.enlist_veto_rm(p, veto), NtStatus::SUCCESS);
    let id = |h| k.transaction_info(p, h).unwrap().id;
    assert_eq!(k.commit(p, full), NtStatus::SUCCESS);
    assert_eq!(k.commit(p, spc), NtStatus::SUCCESS);
    assert_eq!(k.commit(p, veto), NtStatus::TRANSACTION_ABORTED);
    k.clear_phase_probe();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            // The probe after PREPARE runs before COMMIT is delivered (2 deliveries so far).
            (id(full), Phase::PrePrepare, 1),
            (id(full), Phase::Prepare, 2),
            (id(full), Phase::Commit, 3),
            (id(spc), Phase::SinglePhaseCommit, 4),
            (id(veto), Phase::PrePrepare, 5),
            (id(veto), Phase::Rollback, 7),
        ]
    );
    k.assert_clean();
}

#[test]
fn injected_enlist_failures() {
    let OneTx { k, rm, p, h, .. } = one_tx(ktm(DeliveryMode::Inline), good());
    k.fail_next_enlists(2, NtStatus::INSUFFICIENT_RESOURCES);
    assert_eq!(
        enlist(&k, rm, p, h, MASK4),
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    );
    // The built-in RMs are not the RM under test: faults skip them.
    assert_eq!(k.enlist_yes_rm(p, h), NtStatus::SUCCESS);
    assert_eq!(
        enlist(&k, rm, p, h, MASK4),
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    );
    enlist(&k, rm, p, h, MASK4).unwrap();
    assert_eq!(k.counters().enlist_failures, 2);
    assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
    k.assert_clean();
}

/// Enlists a good RM in a new transaction that KTM rolls back before `enlist` returns (`race`).
/// Returns the set-up, the enlistment, and the notifications the RM got before `enlist` returned.
fn enlist_while_rolled_back(mode: DeliveryMode, race: EnlistRace) -> (OneTx, EnlistmentId, Vec<N>) {
    let returned = Arc::new(AtomicBool::new(false));
    let early = Arc::new(Mutex::new(Vec::new()));
    let (r2, e2) = (returned.clone(), early.clone());
    let t = one_tx(ktm(mode), move |k: &Ktm, d| {
        if !r2.load(Ordering::SeqCst) {
            e2.lock().unwrap().push(d.notification);
        }
        good()(k, d)
    });
    t.k.rollback_during_next_enlist(race);
    let en = enlist(&t.k, t.rm, t.p, t.h, MASK4).unwrap();
    returned.store(true, Ordering::SeqCst);
    let early = early.lock().unwrap().clone();
    (t, en, early)
}

#[test]
fn rollback_before_enlist_returns_on_the_same_thread() {
    for mode in MODES {
        let (OneTx { k, log, p, h, .. }, en, early) =
            enlist_while_rolled_back(mode, EnlistRace::SameThread);
        assert!(early.contains(&N::Rollback), "{mode:?} {early:?}");
        assert_eq!(log.kinds_of(en), [N::Rollback]);
        if mode == DeliveryMode::Inline {
            assert_eq!(log.threads(), [std::thread::current().id()]);
        }
        assert_eq!(k.transaction_info(p, h).unwrap().state, TxState::Aborted);
        k.assert_clean();
    }
}

#[test]
fn rollback_before_enlist_returns_from_another_thread() {
    for mode in MODES {
        let (OneTx { k, log, p, h, .. }, en, early) =
            enlist_while_rolled_back(mode, EnlistRace::OtherThread);
        assert!(!early.is_empty(), "{mode:?}");
        assert_ne!(log.threads()[0], std::thread::current().id());
        // Wait for the rolling-back thread to finish.
        let id = k.transaction_info(p, h).unwrap().id;
        while !k.transaction_info_by_id(id).unwrap().state.is_ended() {
            std::thread::yield_now();
        }
        assert_eq!(log.kinds_of(en), [N::Rollback]);
        k.assert_clean();
    }
}

#[test]
fn duplicate_commit_is_delivered_after_commit_complete() {
    for mode in MODES {
        let config = KtmConfig {
            delivery: mode,
            duplicate_commit: true,
            ..KtmConfig::default()
        };
        let OneTx { k, log, rm, p, h } = one_tx(Ktm::new(config), good());
        let en = enlist(&k, rm, p, h, MASK4).unwrap();
        assert_eq!(k.commit(p, h), NtStatus::SUCCESS);
        assert_eq!(
            log.kinds_of(en),
            [N::PrePrepare, N::Prepare, N::Commit, N::Commit]
        );
        assert_eq!(k.counters().answered(Answer::CommitComplete), 2);
        k.assert_clean();
    }
}
