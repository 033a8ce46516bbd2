//! The durable engine over a [`MemLog`]: what is logged and forced before each answer, what a
//! crash (losing unforced records) and a restart rebuild, KTM's recovery notifications, log
//! failures, and checkpoints.

use std::boxed::Box;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::vec::Vec;

use crate::port::{Answer, Notification as N, TxId};
use crate::testing::Harness;
use crate::wal::{Lsn, MemLog, Record, decode};
use ktmrm_proto::NtStatus as S;

type Durable<'a> = Harness<&'a MemLog>;

/// A fresh durable engine over `log`, through KTM's recovery with nothing to recover.
fn boot(log: &MemLog) -> Durable<'_> {
    let (h, _) = Harness::durable(log).unwrap();
    h.last_recover();
    h
}

/// A transaction writes a = new and prepares, then the machine crashes: the log holds it in
/// doubt. Its id.
fn crash_after_prepare(log: &MemLog) -> TxId {
    let h = boot(log);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "new"), S::SUCCESS);
    assert_eq!(h.notify(t, N::PrePrepare), Some(Answer::PrePrepareComplete));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    log.crash();
    uow
}

/// The kinds of the records in the log, in order.
fn kinds(log: &MemLog) -> Vec<&'static str> {
    log.with_records(|rs| {
        rs.iter()
            .map(|r| match decode(&r.bytes).unwrap().1 {
                Record::Prepare(_) => "prepare",
                Record::Commit(_) => "commit",
                Record::Abort(_) => "abort",
                Record::Checkpoint(_) => "checkpoint",
            })
            .collect()
    })
}

/// A durable engine over a shared log whose port asserts, at every yes vote and
/// CommitComplete, that the log is forced up to its last record. Returns the count of checks.
fn boot_checked(log: &Arc<MemLog>) -> (Harness<Arc<MemLog>>, Rc<Cell<u32>>) {
    let (h, _) = Harness::durable(log.clone()).unwrap();
    h.last_recover();
    let checked = Rc::new(Cell::new(0u32));
    let (c, log) = (checked.clone(), log.clone());
    *h.port.on_answer.borrow_mut() = Some(Box::new(move |a| {
        if matches!(a, Answer::PrepareComplete | Answer::CommitComplete) {
            assert_eq!(
                log.forced(),
                log.last_lsn(),
                "{a:?} before the log was forced"
            );
            c.set(c.get() + 1);
        }
    }));
    (h, checked)
}

#[test]
fn votes_and_completes_only_after_the_log_is_forced() {
    let log = Arc::new(MemLog::new());
    let (h, checked) = boot_checked(&log);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.delete(t, "a"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "2"), S::SUCCESS);
    assert!(log.is_empty(), "nothing is logged before PREPARE");
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    assert_eq!(kinds(&log), ["prepare", "commit"]);
    let d = h.engine.durability();
    assert_eq!((d.records, d.forces, d.failed), (2, 2, None));
    // A read-only transaction logs nothing.
    let u = h.port.new_tx();
    assert_eq!(h.get(u, "b"), Ok("2".into()));
    assert_eq!(h.commit(u), Answer::ReadOnly);
    assert_eq!(log.len(), 2);
    assert_eq!(
        checked.get(),
        2,
        "the yes vote and CommitComplete were checked"
    );
}

#[test]
fn committed_data_survives_a_crash_and_unforced_data_does_not_exist() {
    let log = MemLog::new();
    let h = boot(&log);
    assert_eq!(h.put(0, "x", "autocommit"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    assert_eq!(h.put(0, "y", "gone"), S::SUCCESS);
    assert_eq!(h.delete(0, "y"), S::SUCCESS);
    let live = h.port.new_tx();
    assert_eq!(h.put(live, "z", "never prepared"), S::SUCCESS);
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (2, 0));
    assert_eq!(
        h.put(0, "q", "1"),
        S::DEVICE_NOT_READY,
        "not before LAST_RECOVER"
    );
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.get(0, "x"), Ok("autocommit".into()));
    assert_eq!(h.get(0, "y"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.get(0, "z"), Err(S::OBJECT_NAME_NOT_FOUND));
    let s = h.stats();
    assert_eq!((s.keys, s.live_transactions), (2, 0));
}

#[test]
fn a_prepared_transaction_is_in_doubt_and_locked_until_recovery_commits_it() {
    let log = MemLog::new();
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "old"), S::SUCCESS);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "new"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "1"), S::SUCCESS);
    assert_eq!(h.notify(t, N::PrePrepare), Some(Answer::PrePrepareComplete));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (1, 1));
    let key = h.recover(uow, 41);
    h.last_recover();
    assert_eq!(h.engine.durability().presumed_aborts, 0);
    // In doubt: committed view unchanged, keys locked.
    assert_eq!(h.get(0, "a"), Ok("old".into()));
    assert_eq!(h.put(0, "a", "x"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(h.stats().prepared, 1);
    // KTM redelivers COMMIT to the recovered enlistment.
    assert_eq!(
        h.notify_key(key, 41, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(
        h.port.closed.borrow().as_slice(),
        [41],
        "recovered enlistment closed"
    );
    assert_eq!(h.get(0, "a"), Ok("new".into()));
    assert_eq!(h.get(0, "b"), Ok("1".into()));
    assert_eq!(h.put(0, "a", "x"), S::SUCCESS, "lock released");
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(report.in_doubt, 0, "the Commit record was forced");
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("x".into()));
}

#[test]
fn recovery_rolls_back_an_in_doubt_transaction_ktm_aborts() {
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    log.crash();
    let (h, _) = Harness::durable(&log).unwrap();
    let key = h.recover(uow, 9);
    h.last_recover();
    // A superior has not decided yet: INDOUBT changes nothing.
    assert_eq!(h.notify_key(key, 9, N::InDoubt), None);
    assert_eq!(h.put(0, "a", "x"), S::TRANSACTIONAL_CONFLICT);
    assert_eq!(
        h.notify_key(key, 9, N::Rollback),
        Some(Answer::RollbackComplete)
    );
    assert_eq!(h.get(0, "a"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(kinds(&log), ["prepare", "abort"]);
}

#[test]
fn last_recover_presumes_abort_for_a_prepare_ktm_never_recorded() {
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(report.in_doubt, 1);
    h.last_recover();
    let d = h.engine.durability();
    assert_eq!((d.presumed_aborts, d.recovered), (1, 0));
    assert_eq!(h.put(0, "a", "2"), S::SUCCESS, "lock released");
    assert_eq!(h.stats().live_transactions, 0);
    drop(h);
    log.crash();
    let (_, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.in_doubt), (1, 0));
}

#[test]
fn recover_for_a_transaction_already_committed_acknowledges_the_duplicate_commit() {
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.commit(t), Answer::PrepareComplete);
    drop(h);
    log.crash();
    // KTM crashed before it recorded CommitComplete: it sends RECOVER, then COMMIT again.
    let (h, _) = Harness::durable(&log).unwrap();
    let records = log.len();
    let key = h.recover(uow, 5);
    h.last_recover();
    assert_eq!(
        h.notify_key(key, 5, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.port.closed.borrow().as_slice(), [5]);
    assert_eq!(log.len(), records, "nothing new to log");
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.stats().protocol_errors, 0);
}

#[test]
fn a_failed_force_at_prepare_is_a_no_vote_and_stops_the_log() {
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    log.fail_forces(Some(S::UNSUCCESSFUL));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::RollbackEnlistment));
    assert_eq!(h.notify(t, N::Rollback), Some(Answer::RollbackComplete));
    assert_eq!(h.engine.durability().failed, Some(S::UNSUCCESSFUL));
    log.fail_forces(None);
    // Even with the device back, nothing more is appended until a restart.
    let records = log.len();
    let u = h.port.new_tx();
    assert_eq!(h.put(u, "b", "1"), S::SUCCESS);
    assert_eq!(h.commit(u), Answer::RollbackEnlistment);
    assert_eq!(h.put(0, "c", "1"), S::UNSUCCESSFUL);
    assert_eq!(log.len(), records);
    assert_eq!(h.get(0, "a"), Err(S::OBJECT_NAME_NOT_FOUND));
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    h.last_recover();
    assert_eq!(report.entries, 0);
    assert_eq!(h.engine.durability().presumed_aborts, report.in_doubt);
}

#[test]
fn a_failed_append_at_prepare_is_a_no_vote() {
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    log.fail_appends(Some(S::INSUFFICIENT_RESOURCES));
    assert_eq!(h.commit(t), Answer::RollbackEnlistment);
    assert!(log.is_empty());
    log.fail_appends(None);
    // Out of memory before anything reached the log does not stop it.
    assert_eq!(h.engine.durability().failed, None);
    let u = h.port.new_tx();
    assert_eq!(h.put(u, "a", "2"), S::SUCCESS);
    assert_eq!(h.commit(u), Answer::PrepareComplete);
    assert_eq!(h.get(0, "a"), Ok("2".into()));
}

#[test]
fn a_failed_force_at_commit_withholds_commit_complete_until_recovery() {
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    log.fail_forces(Some(S::UNSUCCESSFUL));
    let key = h.port.enlisted.borrow()[&uow];
    let answers = h.port.answers.borrow().len();
    for _ in 0..2 {
        // The callback says the answer comes later; also when KTM delivers COMMIT again.
        assert_eq!(h.engine.notify(&h.port, key, N::Commit, &7), S::PENDING);
    }
    assert_eq!(
        h.port.answers.borrow().len(),
        answers,
        "CommitComplete withheld"
    );
    assert!(h.port.closed.borrow().is_empty(), "enlistment kept for KTM");
    // Visible: the forced Prepare record and KTM's commit record make it durable already.
    assert_eq!(h.get(0, "a"), Ok("1".into()), "applied in memory");
    // Reads naming the transaction still work while ktmrm holds it; writes do not.
    assert_eq!(h.get(t, "a"), Ok("1".into()));
    assert_eq!(h.put(t, "b", "1"), S::TRANSACTION_NOT_ACTIVE);
    drop(h);
    log.crash();
    log.fail_forces(None);
    // KTM still has the transaction committing: RECOVER, then COMMIT again.
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(report.in_doubt, 1);
    let key = h.recover(uow, 3);
    h.last_recover();
    assert_eq!(
        h.notify_key(key, 3, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "a"), Ok("1".into()));
}

#[test]
fn single_phase_commit_logs_both_records_and_forces_once() {
    let log = Arc::new(MemLog::new());
    let (h, checked) = boot_checked(&log);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "a", "1"), S::SUCCESS);
    assert_eq!(
        h.notify(t, N::SinglePhaseCommit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(kinds(&log), ["prepare", "commit"]);
    assert_eq!((h.engine.durability().forces, checked.get()), (1, 1));
    assert_eq!(h.port.closed.borrow().len(), 1);
    drop(h);
    log.crash();
    let (h, _) = Harness::durable(&*log).unwrap();
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    // With the log failed, single-phase commit is rejected (KTM falls back to the two phases).
    log.fail_forces(Some(S::UNSUCCESSFUL));
    assert_eq!(h.put(0, "b", "1"), S::UNSUCCESSFUL);
    log.fail_forces(None);
    let u = h.port.new_tx();
    assert_eq!(h.put(u, "c", "1"), S::SUCCESS);
    assert_eq!(
        h.notify(u, N::SinglePhaseCommit),
        Some(Answer::SinglePhaseReject)
    );
}

#[test]
fn a_checkpoint_replaces_the_log_and_keeps_in_doubt_transactions() {
    let log = MemLog::new();
    let h = boot(&log);
    for i in 0..50 {
        assert_eq!(h.put(0, &format!("k{i:02}"), &i.to_string()), S::SUCCESS);
    }
    assert_eq!(h.delete(0, "k07"), S::SUCCESS);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "k01", "in doubt"), S::SUCCESS);
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    assert_eq!(log.len(), 2 * 51 + 1);
    let lsn = h.engine.checkpoint().unwrap();
    assert_eq!(lsn, Lsn(2 * 51 + 2));
    assert_eq!(kinds(&log), ["checkpoint"]);
    assert_eq!(h.engine.durability().bytes_since_checkpoint, 0);
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(
        (report.entries, report.in_doubt, report.checkpoint),
        (49, 1, Some(lsn))
    );
    let key = h.recover(uow, 1);
    h.last_recover();
    assert_eq!(
        h.notify_key(key, 1, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "k01"), Ok("in doubt".into()));
    assert_eq!(h.get(0, "k07"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.get(0, "k49"), Ok("49".into()));
    assert_eq!(kinds(&log), ["checkpoint", "commit"]);
}

#[test]
fn a_torn_tail_is_dropped_and_the_log_continues_after_it() {
    let log = MemLog::new();
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "1"), S::SUCCESS);
    let t = h.port.new_tx();
    assert_eq!(h.put(t, "b", "2"), S::SUCCESS);
    // The crash tears the Prepare record being written (PREPARE never answered).
    log.fail_forces(Some(S::UNSUCCESSFUL));
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::RollbackEnlistment));
    drop(h);
    log.crash_torn(10);
    let (h, report) = Harness::durable(&log).unwrap();
    log.fail_forces(None);
    let tail = report.dropped_tail.expect("torn record dropped");
    assert_eq!(tail.from, Lsn(3));
    h.last_recover();
    assert_eq!(h.get(0, "a"), Ok("1".into()));
    assert_eq!(h.put(0, "c", "3"), S::SUCCESS);
    drop(h);
    log.crash();
    let (_, report) = Harness::durable(&log).unwrap();
    assert_eq!((report.entries, report.dropped_tail), (2, None));
}

#[test]
fn a_corrupt_log_refuses_to_start() {
    let log = MemLog::new();
    let h = boot(&log);
    assert_eq!(h.put(0, "a", "1"), S::SUCCESS);
    assert_eq!(h.put(0, "b", "1"), S::SUCCESS);
    drop(h);
    log.with_records(|rs| rs[1].bytes[30] ^= 1);
    let err = Harness::durable(&log)
        .err()
        .expect("corruption before the tail");
    assert_eq!(err.status(), crate::wal::STATUS_LOG_CORRUPTION_DETECTED);
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn an_in_doubt_delete_of_its_own_new_key_recovers() {
    // Put then delete a new key in one transaction: the Prepare record holds a delete of a key
    // the store does not have. Found by the durable fuzz target: recovery refused it.
    let log = MemLog::new();
    let h = boot(&log);
    let t = h.port.new_tx();
    let uow = h.tx_id(t);
    assert_eq!(h.put(t, "new", "1"), S::SUCCESS);
    assert_eq!(h.delete(t, "new"), S::SUCCESS);
    assert_eq!(h.put(t, "b", "2"), S::SUCCESS);
    assert_eq!(h.notify(t, N::Prepare), Some(Answer::PrepareComplete));
    drop(h);
    log.crash();
    let (h, report) = Harness::durable(&log).unwrap();
    assert_eq!(report.in_doubt, 1);
    let key = h.recover(uow, 2);
    h.last_recover();
    assert_eq!(
        h.put(0, "new", "x"),
        S::TRANSACTIONAL_CONFLICT,
        "still locked"
    );
    assert_eq!(
        h.notify_key(key, 2, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.get(0, "new"), Err(S::OBJECT_NAME_NOT_FOUND));
    assert_eq!(h.get(0, "b"), Ok("2".into()));
    // Deleting a key that is absent is still refused to a caller.
    let u = h.port.new_tx();
    assert_eq!(h.delete(u, "nope"), S::OBJECT_NAME_NOT_FOUND);
}

#[test]
fn a_recover_after_last_recover_is_counted_as_a_protocol_error() {
    // KTM may send LAST_RECOVER as soon as every RECOVER callback has returned (docs/ktm.md §9):
    // a RECOVER answered later arrives after the presumed abort.
    let log = MemLog::new();
    let uow = crash_after_prepare(&log);
    let (h, _) = Harness::durable(&log).unwrap();
    let key = h.recover(uow, 3);
    h.last_recover();
    assert_eq!(h.stats().protocol_errors, 0, "in time");
    assert_eq!(
        h.notify_key(key, 3, N::Commit),
        Some(Answer::CommitComplete)
    );
    drop(h);
    log.crash();
    let t2 = {
        let (h, _) = Harness::durable(&log).unwrap();
        h.last_recover();
        let t2 = h.port.new_tx();
        let uow2 = h.tx_id(t2);
        assert_eq!(h.put(t2, "b", "1"), S::SUCCESS);
        assert_eq!(
            h.notify(t2, N::PrePrepare),
            Some(Answer::PrePrepareComplete)
        );
        assert_eq!(h.notify(t2, N::Prepare), Some(Answer::PrepareComplete));
        uow2
    };
    log.crash();
    let (h, _) = Harness::durable(&log).unwrap();
    h.last_recover();
    assert_eq!(h.engine.durability().presumed_aborts, 1);
    let key = h.recover(t2, 4);
    assert_eq!(h.stats().protocol_errors, 1, "too late");
    // Still answered: the redelivered outcome is acknowledged and the enlistment closed.
    assert_eq!(
        h.notify_key(key, 4, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.port.closed.borrow().as_slice(), [4]);
}

#[test]
fn a_recovered_enlistment_is_kept_before_ktm_is_answered() {
    // 'static, so the hook below (a 'static closure) may point at the engine that borrows it.
    let log: &'static MemLog = Box::leak(Box::new(MemLog::new()));
    let uow = crash_after_prepare(log);
    let (h, _) = Harness::durable(log).unwrap();
    *h.port.early_recovered.borrow_mut() = Some(77);
    let seen = Rc::new(Cell::new(None));
    let engine: *const crate::testing::TestEngine<&'static MemLog> = &h.engine;
    let inside = seen.clone();
    *h.port.during_recover.borrow_mut() = Some(Box::new(move |key| {
        // SAFETY: test only; the engine outlives this call, which runs inside h.recover below.
        let engine = unsafe { &*engine };
        inside.set(engine.with_enlistment(key, |e| *e));
    }));
    let key = h.recover(uow, 41);
    assert_eq!(
        seen.get(),
        Some(77),
        "what the port kept is in place while KTM is answered"
    );
    assert_eq!(
        h.port.closed.borrow().as_slice(),
        [77],
        "replaced by what recover_enlistment gave, and closed"
    );
    assert_eq!(h.engine.with_enlistment(key, |e| *e), Some(41));
    h.last_recover();
    assert_eq!(
        h.notify_key(key, 41, N::Commit),
        Some(Answer::CommitComplete)
    );
    assert_eq!(h.port.closed.borrow().as_slice(), [77, 41]);
    assert_eq!(h.get(0, "a"), Ok("new".into()));
}
