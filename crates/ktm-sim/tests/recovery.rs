//! The durable TM: crashes at every crash point of a one-RM and a two-RM commit, restart and
//! KTM-style recovery, presumed abort, duplicate COMMIT, a superior that decides late or
//! crashes, and the checker's recovery rules — with a small hand-written durable RM.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MASK4, MODES, enlist};
use ktm_sim::{
    Answer, CrashPoint, Delivery, DeliveryMode, EnlistmentGuid, EnlistmentKey, Interleavings, Ktm,
    KtmConfig, Notification as N, NtStatus, Outcome, RmGuid, RmId, TxId, TxState, Violation as V,
    notify, status,
};

/// What the test RM forces to its log (it "logs before PrepareComplete", docs/ktm.md §8, S22).
#[derive(Clone, Debug, PartialEq)]
enum Rec {
    Prepared {
        uow: TxId,
        en: EnlistmentGuid,
        writes: Vec<(String, u64)>,
    },
    Committed(TxId),
    Aborted(TxId),
}

/// The RM's stable storage: survives `crash()`.
#[derive(Default)]
struct Disk {
    store: BTreeMap<String, u64>,
    log: Vec<Rec>,
    /// COMMITs seen (a duplicate after recovery counts too) and applied.
    commits_seen: u32,
    applied: u32,
}

/// What the RM's stable state says about a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RmTx {
    Unknown,
    InDoubt,
    Committed,
    Aborted,
}

impl Disk {
    fn state_of(&self, tx: TxId) -> RmTx {
        if self.log.contains(&Rec::Committed(tx)) {
            RmTx::Committed
        } else if self.log.contains(&Rec::Aborted(tx)) {
            RmTx::Aborted
        } else if self.prepared(tx).is_some() {
            RmTx::InDoubt
        } else {
            RmTx::Unknown
        }
    }

    fn prepared(&self, tx: TxId) -> Option<(EnlistmentGuid, Vec<(String, u64)>)> {
        self.log.iter().find_map(|r| match r {
            Rec::Prepared { uow, en, writes } if *uow == tx => Some((*en, writes.clone())),
            _ => None,
        })
    }
}

type Shared<T> = Arc<Mutex<T>>;

/// One incarnation of a durable test RM: its volatile state (pending writes, notifications
/// seen) dies with the crash; its disk does not.
#[derive(Clone)]
struct TestRm {
    id: RmId,
    disk: Shared<Disk>,
    pending: Shared<HashMap<TxId, Vec<(String, u64)>>>,
    seen: Shared<Vec<N>>,
    /// Transactions KTM sent RECOVER for in this incarnation.
    recovered: Shared<Vec<TxId>>,
}

impl TestRm {
    fn write(&self, tx: TxId, key: &str, value: u64) {
        let mut p = self.pending.lock().unwrap();
        p.entry(tx).or_default().push((key.into(), value));
    }

    fn seen(&self) -> Vec<N> {
        self.seen.lock().unwrap().clone()
    }
}

/// How the RM answers RECOVER.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnRecover {
    Answer,
    /// Returns STATUS_PENDING and never calls `recover_enlistment`.
    Ignore,
    /// Returns STATUS_PENDING and answers from a worker thread a little later.
    Later,
}

/// The RM's callback: logs at PREPARE, applies at COMMIT idempotently (the Committed record
/// guards it), answers RECOVER with `recover_enlistment` after finding its prepare record.
fn on_notify(k: &Ktm, rm: &TestRm, d: Delivery, on_recover: OnRecover) -> NtStatus {
    rm.seen.lock().unwrap().push(d.notification);
    let answer = match d.notification {
        N::PrePrepare => Answer::PrePrepareComplete,
        N::Prepare => {
            let writes = rm.pending.lock().unwrap().remove(&d.tx).unwrap_or_default();
            // A delivery racing a crash (Threaded mode) finds its enlistment gone, as a real RM's
            // calls would fail once KTM went down: nothing to log, nobody to answer.
            let Some(en) = k.enlistment_guid(d.enlistment) else {
                return ktm_sim::status::TRANSACTIONMANAGER_NOT_ONLINE;
            };
            let rec = Rec::Prepared {
                uow: d.tx,
                en,
                writes,
            };
            rm.disk.lock().unwrap().log.push(rec);
            Answer::PrepareComplete
        }
        N::Commit => {
            let mut disk = rm.disk.lock().unwrap();
            disk.commits_seen += 1;
            if disk.state_of(d.tx) != RmTx::Committed {
                let (_, writes) = disk.prepared(d.tx).expect("COMMIT only after PREPARE");
                disk.store.extend(writes);
                disk.log.push(Rec::Committed(d.tx));
                disk.applied += 1;
            }
            Answer::CommitComplete
        }
        N::Rollback => {
            rm.pending.lock().unwrap().remove(&d.tx);
            let mut disk = rm.disk.lock().unwrap();
            assert_ne!(
                disk.state_of(d.tx),
                RmTx::Committed,
                "ROLLBACK after COMMIT"
            );
            if disk.state_of(d.tx) == RmTx::InDoubt {
                disk.log.push(Rec::Aborted(d.tx));
            }
            Answer::RollbackComplete
        }
        notify::RECOVER => {
            if on_recover == OnRecover::Ignore {
                return NtStatus::PENDING;
            }
            if on_recover == OnRecover::Later {
                let (k, rm) = (k.clone(), rm.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    recover(&k, &rm, d);
                });
                return NtStatus::PENDING;
            }
            recover(k, rm, d);
            return NtStatus::SUCCESS;
        }
        notify::LAST_RECOVER => {
            // Presumed abort on the RM's side: a prepare record KTM sent no RECOVER for was
            // never recorded by KTM (docs/ktm.md §1 "a prepared transaction without RECOVER counts
            // as rolled back").
            let recovered = rm.recovered.lock().unwrap().clone();
            let mut disk = rm.disk.lock().unwrap();
            let orphans: Vec<TxId> = disk
                .log
                .iter()
                .filter_map(|r| match r {
                    Rec::Prepared { uow, .. } => Some(*uow),
                    _ => None,
                })
                .filter(|uow| disk.state_of(*uow) == RmTx::InDoubt && !recovered.contains(uow))
                .collect();
            for uow in orphans {
                disk.log.push(Rec::Aborted(uow));
            }
            return NtStatus::SUCCESS;
        }
        _ => return NtStatus::SUCCESS, // INDOUBT: wait for the outcome
    };
    // A crash inside `answer` makes later calls no-ops: the statuses do not matter here.
    let _ = k.answer(d.enlistment, answer);
    if matches!(answer, Answer::CommitComplete | Answer::RollbackComplete)
        && k.enlistment_info(d.enlistment).is_some_and(|e| !e.closed)
    {
        k.close_enlistment(d.enlistment);
    }
    NtStatus::SUCCESS
}

/// The RM's answer to RECOVER: find its prepare record, then `recover_enlistment`.
fn recover(k: &Ktm, rm: &TestRm, d: Delivery) {
    let arg = d.recovery.expect("RECOVER carries its argument");
    let (en, _) = rm.disk.lock().unwrap().prepared(arg.uow).expect("logged");
    assert_eq!(en, arg.enlistment);
    rm.recovered.lock().unwrap().push(arg.uow);
    k.recover_enlistment(d.enlistment, EnlistmentKey(0xEC0));
}

/// Registers a durable RM with `guid` over `disk` (a new incarnation) and recovers it.
fn start_rm(
    k: &Ktm,
    guid: RmGuid,
    disk: &Shared<Disk>,
    on_recover: OnRecover,
) -> (TestRm, NtStatus) {
    let weak = k.downgrade();
    let slot: Arc<Mutex<Option<TestRm>>> = Arc::default();
    let slot2 = slot.clone();
    let callback: ktm_sim::RmCallback = Arc::new(move |d| {
        let rm = slot2.lock().unwrap().clone();
        match (weak.upgrade(), rm) {
            (Some(k), Some(rm)) => on_notify(&k, &rm, d, on_recover),
            _ => NtStatus::RM_DISCONNECTED,
        }
    });
    // As "Recovery Processing" says: open the RM object TM recovery rebuilt, else create it
    // (also before TM recovery, which some tests start the RM before).
    let id = match k.open_resource_manager(guid, callback.clone()) {
        Err(status::RESOURCEMANAGER_NOT_FOUND | status::TRANSACTIONMANAGER_NOT_ONLINE) => {
            k.create_durable_resource_manager(guid, callback)
        }
        other => other,
    }
    .unwrap();
    let rm = TestRm {
        id,
        disk: disk.clone(),
        pending: Arc::default(),
        seen: Arc::default(),
        recovered: Arc::default(),
    };
    *slot.lock().unwrap() = Some(rm.clone());
    let s = k.recover_resource_manager(id);
    (rm, s)
}

fn guid(i: u8) -> RmGuid {
    RmGuid([i; 16])
}

fn durable(mode: DeliveryMode) -> Ktm {
    Ktm::new_durable(KtmConfig {
        delivery: mode,
        answer_deadline: Some(Duration::from_secs(5)),
        ..KtmConfig::default()
    })
}

/// Boot: recover the TM, then start (register + recover) each RM. Returns the RMs; asserts
/// success unless a crash is armed.
fn boot(k: &Ktm, disks: &[Shared<Disk>]) -> Vec<TestRm> {
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (rm, s) = start_rm(k, guid(i as u8 + 1), d, OnRecover::Answer);
            assert_eq!(s, NtStatus::SUCCESS);
            rm
        })
        .collect()
}

/// [`boot`] with RMs that answer RECOVER `on_recover`.
fn boot_with(k: &Ktm, disks: &[Shared<Disk>], on_recover: OnRecover) -> Vec<TestRm> {
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| start_rm(k, guid(i as u8 + 1), d, on_recover).0)
        .collect()
}

/// A transaction in which each RM writes `k{i} = 7`; committed with `commit`. Returns its id
/// and the commit status.
fn write_and_commit(k: &Ktm, rms: &[TestRm]) -> (TxId, NtStatus) {
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "t").unwrap();
    let tx = k.transaction_info(p, h).unwrap().id;
    for (i, rm) in rms.iter().enumerate() {
        enlist(k, rm.id, p, h, MASK4).unwrap();
        rm.write(tx, &format!("k{i}"), 7);
    }
    let s = k.commit(p, h);
    if k.crash_count() == 0 {
        assert_eq!(k.close_handle(p, h), NtStatus::SUCCESS);
    }
    (tx, s)
}

/// After recovery: every RM is all-or-nothing and matches KTM's decision; nothing is left in
/// doubt or in KTM's log; no violation.
fn assert_consistent(k: &Ktm, disks: &[Shared<Disk>], tx: TxId, what: &str) -> bool {
    let committed = k.decision(tx) == Outcome::Committed;
    for (i, d) in disks.iter().enumerate() {
        let d = d.lock().unwrap();
        let v = d.store.get(&format!("k{i}")).copied();
        assert_eq!(v, committed.then_some(7), "{what}: RM {i} store");
        let st = d.state_of(tx);
        if committed {
            assert_eq!(st, RmTx::Committed, "{what}: RM {i}");
        } else {
            assert!(
                matches!(st, RmTx::Aborted | RmTx::Unknown),
                "{what}: RM {i} {st:?}"
            );
        }
        assert!(d.applied <= 1, "{what}: applied twice");
    }
    assert!(k.logged_transactions().is_empty(), "{what}");
    let v = k.finish();
    assert!(v.is_empty(), "{what}: {v:?}");
    committed
}

/// Crash at every crash point of an `n`-RM commit; restart and recover; check. Returns
/// (points tried, how many ended committed).
fn crash_matrix(mode: DeliveryMode, n: usize) -> (usize, usize) {
    // Dry run: the points the scenario passes after boot.
    let k = durable(mode);
    let disks: Vec<Shared<Disk>> = (0..n).map(|_| Arc::default()).collect();
    let rms = boot(&k, &disks);
    let base = k.crash_points().len();
    let (tx, s) = write_and_commit(&k, &rms);
    assert_eq!(s, NtStatus::SUCCESS);
    assert_consistent(&k, &disks, tx, "dry run");
    let points: Vec<_> = k.crash_points()[base..].to_vec();
    drop(rms);

    let mut committed = 0;
    for p in &points {
        let what = format!("{mode:?}, {n} RM(s), crash at {:?} (#{})", p.point, p.index);
        let k = durable(mode);
        let disks: Vec<Shared<Disk>> = (0..n).map(|_| Arc::default()).collect();
        let rms = boot(&k, &disks);
        k.crash_at_step(p.index);
        let (tx, s) = write_and_commit(&k, &rms);
        assert_eq!(k.crash_count(), 1, "{what}");
        assert_eq!(s, status::TRANSACTIONMANAGER_NOT_ONLINE, "{what}");
        // Only an RM that prepared but has no outcome is in doubt now.
        let before = k.decision(tx);
        drop(rms);
        let rms = boot(&k, &disks);
        let after = k.decision(tx);
        assert!(before == after || before == Outcome::Undetermined, "{what}");
        let expect_commit = !matches!(
            p.point,
            CrashPoint::BeforePrepare
                | CrashPoint::BeforePrepareComplete
                | CrashPoint::AfterPrepareComplete
        );
        if assert_consistent(&k, &disks, tx, &what) {
            committed += 1;
        }
        assert_eq!(
            k.decision(tx) == Outcome::Committed,
            expect_commit,
            "{what}"
        );
        if let Some(info) = k.transaction_info_by_id(tx) {
            assert!(info.state.is_ended(), "{what}: {info:?}");
        }
        // Recovery delivered LAST_RECOVER exactly once to each RM.
        for rm in &rms {
            let last = rm
                .seen()
                .iter()
                .filter(|n| **n == notify::LAST_RECOVER)
                .count();
            assert_eq!(last, 1, "{what}");
        }
    }
    (points.len(), committed)
}

#[test]
fn every_crash_point_of_a_one_and_a_two_rm_commit_recovers_all_or_nothing() {
    let mut tried = 0;
    for mode in MODES {
        let (one, c1) = crash_matrix(mode, 1);
        // BeforePrepare, Before/AfterPrepareComplete, AfterCommitRecord, Before/AfterCommitComplete.
        assert_eq!((one, c1), (6, 3), "{mode:?}");
        let (two, c2) = crash_matrix(mode, 2);
        assert_eq!((two, c2), (10, 5), "{mode:?}");
        tried += one + two;
    }
    println!("crash matrix: {tried} crash points tried, 0 violations");
    assert_eq!(tried, 32);
}

/// `crash_at_nth` names a point by kind and occurrence, which stays the same step when the
/// enlistments of a phase pass their points in another order (Threaded delivery): three RMs,
/// crash at the second CommitComplete, whichever RM's it is.
#[test]
fn crash_at_nth_crashes_at_that_occurrence_of_the_point() {
    let k = durable(DeliveryMode::Threaded);
    let disks: Vec<Shared<Disk>> = (0..3).map(|_| Arc::default()).collect();
    let rms = boot(&k, &disks);
    k.crash_at_nth(CrashPoint::BeforeCommitComplete, 1);
    let (_, s) = write_and_commit(&k, &rms);
    assert_eq!(s, status::TRANSACTIONMANAGER_NOT_ONLINE);
    assert_eq!(k.crash_count(), 1);
    let points = k.crash_points();
    let count = |p| points.iter().filter(|q| q.point == p).count();
    assert_eq!(
        points.last().map(|p| p.point),
        Some(CrashPoint::BeforeCommitComplete)
    );
    assert_eq!(count(CrashPoint::BeforeCommitComplete), 2);
    assert_eq!(count(CrashPoint::BeforePrepareComplete), 3);
    assert!(
        k.wait_callbacks(),
        "no callback left running after the crash"
    );
}

#[test]
fn presumed_abort_rolls_back_a_prepared_transaction_without_commit_record() {
    let k = durable(DeliveryMode::Inline);
    let disks: Vec<Shared<Disk>> = vec![Arc::default(), Arc::default()];
    let rms = boot(&k, &disks);
    // Both RMs prepared and logged; KTM crashes before its commit record.
    k.crash_at(CrashPoint::AfterPrepareComplete);
    let (tx, _) = write_and_commit(&k, &rms);
    assert_eq!(k.crash_count(), 1);
    // The first RM's PrepareComplete was recorded and logged; the second never got PREPARE.
    assert_eq!(disks[0].lock().unwrap().state_of(tx), RmTx::InDoubt);
    assert_eq!(k.logged_transactions(), [tx]);
    assert_eq!(k.transaction_info_by_id(tx), None, "volatile state is gone");
    // Before recovery the TM is offline.
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    let (early, s) = start_rm(&k, guid(1), &disks[0], OnRecover::Answer);
    assert_eq!(s, status::TRANSACTIONMANAGER_NOT_ONLINE);
    assert_eq!(
        enlist(&k, early.id, p, h, MASK4),
        Err(status::TRANSACTIONMANAGER_NOT_ONLINE)
    );
    k.crash();
    let rms = boot(&k, &disks);
    assert_eq!(k.decision(tx), Outcome::Aborted);
    assert_eq!(
        rms[0].seen(),
        [notify::RECOVER, notify::LAST_RECOVER, N::Rollback]
    );
    assert_eq!(rms[1].seen(), [notify::LAST_RECOVER]);
    assert_eq!(
        k.transaction_info_by_id(tx).unwrap().state,
        TxState::Aborted
    );
    assert!(!assert_consistent(&k, &disks, tx, "presumed abort"));
}

#[test]
fn duplicate_commit_after_recovery_is_harmless() {
    for mode in MODES {
        let k = durable(mode);
        let disks: Vec<Shared<Disk>> = vec![Arc::default()];
        let rms = boot(&k, &disks);
        // The RM applied COMMIT; KTM crashed before recording its CommitComplete.
        k.crash_at(CrashPoint::BeforeCommitComplete);
        let (tx, _) = write_and_commit(&k, &rms);
        assert_eq!(disks[0].lock().unwrap().state_of(tx), RmTx::Committed);
        let rms = boot(&k, &disks);
        assert_eq!(
            rms[0].seen(),
            [notify::RECOVER, notify::LAST_RECOVER, N::Commit]
        );
        let d = disks[0].lock().unwrap();
        assert_eq!((d.commits_seen, d.applied), (2, 1), "{mode:?}");
        drop(d);
        assert!(assert_consistent(&k, &disks, tx, "duplicate COMMIT"));
    }
}

#[test]
fn crash_during_recovery_before_last_recover_recovers_again() {
    let k = durable(DeliveryMode::Inline);
    let disks: Vec<Shared<Disk>> = vec![Arc::default()];
    let rms = boot(&k, &disks);
    k.crash_at(CrashPoint::AfterCommitRecord);
    let (tx, _) = write_and_commit(&k, &rms);
    assert_eq!(k.decision(tx), Outcome::Committed);
    // Restart; crash after RECOVER was answered, before LAST_RECOVER.
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    k.crash_at(CrashPoint::BeforeLastRecover);
    let (rm, s) = start_rm(&k, guid(1), &disks[0], OnRecover::Answer);
    assert_eq!(s, status::TRANSACTIONMANAGER_NOT_ONLINE);
    assert_eq!(rm.seen(), [notify::RECOVER]);
    assert_eq!(k.crash_count(), 2);
    // And once more: crash when the redelivered COMMIT is being completed.
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    k.crash_at(CrashPoint::BeforeCommitComplete);
    let (rm, s) = start_rm(&k, guid(1), &disks[0], OnRecover::Answer);
    assert_eq!(s, status::TRANSACTIONMANAGER_NOT_ONLINE);
    assert_eq!(
        rm.seen(),
        [notify::RECOVER, notify::LAST_RECOVER, N::Commit]
    );
    let rms = boot(&k, &disks);
    assert_eq!(
        rms[0].seen(),
        [notify::RECOVER, notify::LAST_RECOVER, N::Commit]
    );
    assert_eq!(k.crash_count(), 3);
    assert_eq!(disks[0].lock().unwrap().commits_seen, 2);
    assert!(assert_consistent(&k, &disks, tx, "crash during recovery"));
    let c = k.counters();
    assert_eq!(c.sent(notify::RECOVER), 3);
    // Boot, the recovery that crashed after LAST_RECOVER, the last one (not the one that
    // crashed before it).
    assert_eq!(c.sent(notify::LAST_RECOVER), 3);
}

/// A promoted transaction with `n` durable RMs, prepared by the superior.
fn superior_prepared(k: &Ktm, rms: &[TestRm]) -> TxId {
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "dtc").unwrap();
    let tx = k.transaction_info(p, h).unwrap().id;
    assert_eq!(k.create_superior_enlistment(p, h), NtStatus::SUCCESS);
    assert_eq!(
        k.create_superior_enlistment(p, h),
        status::TRANSACTION_SUPERIOR_EXISTS
    );
    for (i, rm) in rms.iter().enumerate() {
        enlist(k, rm.id, p, h, MASK4 | 0x200).unwrap();
        rm.write(tx, &format!("k{i}"), 7);
    }
    assert_eq!(k.commit(p, h), status::TRANSACTION_SUPERIOR_EXISTS);
    assert_eq!(k.superior_prepare(tx), NtStatus::SUCCESS);
    assert_eq!(k.rollback(p, h), NtStatus::TRANSACTION_REQUEST_NOT_VALID);
    tx
}

#[test]
fn superior_decides_late_in_doubt_until_then() {
    for mode in MODES {
        let k = durable(mode);
        let disks: Vec<Shared<Disk>> = vec![Arc::default(), Arc::default()];
        let rms = boot(&k, &disks);
        let tx = superior_prepared(&k, &rms);
        let boot_and_prepare = [notify::LAST_RECOVER, N::PrePrepare, N::Prepare];
        assert_eq!(rms[0].seen(), boot_and_prepare, "{mode:?}");
        let info = k.transaction_info_by_id(tx).unwrap();
        assert_eq!(
            (info.state, info.outcome),
            (TxState::Preparing, Outcome::Undetermined)
        );
        assert_eq!(disks[1].lock().unwrap().state_of(tx), RmTx::InDoubt);
        assert_eq!(k.decision(tx), Outcome::Undetermined);
        // KTM crashes while the superior has not decided: recovery says INDOUBT, not ROLLBACK.
        k.crash();
        let rms = boot(&k, &disks);
        for rm in &rms {
            assert_eq!(
                rm.seen(),
                [notify::RECOVER, notify::LAST_RECOVER, notify::INDOUBT]
            );
        }
        assert_eq!(disks[0].lock().unwrap().state_of(tx), RmTx::InDoubt);
        assert_eq!(k.logged_transactions(), [tx]);
        // The superior decides, late.
        assert_eq!(k.superior_decide(tx, true), NtStatus::SUCCESS);
        assert_eq!(
            k.superior_decide(tx, true),
            NtStatus::TRANSACTION_REQUEST_NOT_VALID
        );
        assert_eq!(
            k.transaction_info_by_id(tx).unwrap().state,
            TxState::Committed
        );
        assert!(assert_consistent(&k, &disks, tx, "superior late"));
    }
}

#[test]
fn superior_decides_without_a_ktm_crash() {
    let k = durable(DeliveryMode::Inline);
    let disks: Vec<Shared<Disk>> = vec![Arc::default()];
    let rms = boot(&k, &disks);
    let tx = superior_prepared(&k, &rms);
    // The sole RM asked for SINGLE_PHASE_COMMIT, but a superior turns it off (docs/ktm.md §1, S9).
    let boot_and_prepare = [notify::LAST_RECOVER, N::PrePrepare, N::Prepare];
    assert_eq!(rms[0].seen(), boot_and_prepare);
    assert_eq!(k.superior_decide(tx, false), NtStatus::SUCCESS);
    assert_eq!(rms[0].seen()[3..], [N::Rollback]);
    assert!(!assert_consistent(&k, &disks, tx, "superior abort"));
}

#[test]
fn superior_crash_leaves_subordinates_in_doubt_across_ktm_crashes() {
    let k = durable(DeliveryMode::Inline);
    let disks: Vec<Shared<Disk>> = vec![Arc::default()];
    let rms = boot(&k, &disks);
    let tx = superior_prepared(&k, &rms);
    assert_eq!(k.superior_crash(tx), NtStatus::SUCCESS);
    for round in 0..2 {
        k.crash();
        let rms = boot(&k, &disks);
        assert_eq!(
            rms[0].seen(),
            [notify::RECOVER, notify::LAST_RECOVER, notify::INDOUBT],
            "round {round}"
        );
        assert_eq!(disks[0].lock().unwrap().state_of(tx), RmTx::InDoubt);
        assert_eq!(k.decision(tx), Outcome::Undetermined);
        assert_eq!(
            k.transaction_info_by_id(tx).unwrap().outcome,
            Outcome::Undetermined
        );
        // In doubt is not a violation: the outcome is the superior's to give.
        assert_eq!(k.finish(), Vec::<V>::new());
    }
    // The superior comes back and (presumed abort, nothing logged) rolls back; then a crash
    // before the ROLLBACK completes still ends in rollback: KTM's log no longer waits for it.
    k.crash_at(CrashPoint::BeforeRollbackComplete);
    assert_eq!(
        k.superior_decide(tx, false),
        status::TRANSACTIONMANAGER_NOT_ONLINE
    );
    let rms = boot(&k, &disks);
    assert_eq!(
        rms[0].seen(),
        [notify::RECOVER, notify::LAST_RECOVER, N::Rollback]
    );
    assert!(!assert_consistent(&k, &disks, tx, "superior crash"));
}

#[test]
fn an_rm_that_ignores_recover_is_reported() {
    let k = durable(DeliveryMode::Inline);
    k.set_answer_deadline(Some(Duration::from_secs(1)));
    let disks: Vec<Shared<Disk>> = vec![Arc::default()];
    let rms = boot(&k, &disks);
    k.crash_at(CrashPoint::AfterPrepareComplete);
    let (tx, _) = write_and_commit(&k, &rms);
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    let (rm, s) = start_rm(&k, guid(1), &disks[0], OnRecover::Ignore);
    assert_eq!(s, NtStatus::SUCCESS);
    assert_eq!(rm.seen(), [notify::RECOVER, notify::LAST_RECOVER]);
    // No outcome without ZwRecoverEnlistment: KTM still has the transaction in its log.
    assert_eq!(k.logged_transactions(), [tx]);
    assert_eq!(k.counters().sent(N::Rollback), 0);
    let v = k.finish();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        matches!(
            v[0],
            V::NeverAnswered {
                notification: N::Recover,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn an_rm_that_never_recovers_and_stray_recover_answers_are_reported() {
    let k = durable(DeliveryMode::Inline);
    let disks: Vec<Shared<Disk>> = vec![Arc::default()];
    let rms = boot(&k, &disks);
    // A recover_enlistment nobody asked for, and a second recovery of the same RM.
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    let en = enlist(&k, rms[0].id, p, h, MASK4).unwrap();
    assert_eq!(
        k.recover_enlistment(en, EnlistmentKey(1)),
        NtStatus::TRANSACTION_NOT_REQUESTED
    );
    assert_eq!(
        k.recover_resource_manager(rms[0].id),
        NtStatus::TRANSACTION_REQUEST_NOT_VALID
    );
    assert_eq!(k.rollback(p, h), NtStatus::SUCCESS);
    // Prepared, crash, then the RM registers again but never recovers.
    k.crash_at(CrashPoint::AfterPrepareComplete);
    let (tx, _) = write_and_commit(&k, &rms);
    assert_eq!(k.recover_transaction_manager(), NtStatus::SUCCESS);
    let weak = k.downgrade();
    // TM recovery rebuilt the RM object: creating it again collides, opening it works.
    assert_eq!(
        k.create_durable_resource_manager(guid(1), Arc::new(|_| NtStatus::SUCCESS)),
        Err(status::OBJECT_NAME_COLLISION)
    );
    let rm = k
        .open_resource_manager(
            guid(1),
            Arc::new(move |_| {
                let _ = weak.upgrade();
                NtStatus::SUCCESS
            }),
        )
        .unwrap();
    assert_eq!(
        k.create_durable_resource_manager(guid(1), Arc::new(|_| NtStatus::SUCCESS)),
        Err(status::OBJECT_NAME_COLLISION)
    );
    // It cannot enlist before starting its recovery: "KTM or the resource manager is not in an
    // operational state" (ZwCreateEnlistment).
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    assert_eq!(
        enlist(&k, rm, p, h, MASK4),
        Err(status::TRANSACTIONMANAGER_NOT_ONLINE)
    );
    let v = k.finish();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(matches!(v[0], V::RecoverNotOutstanding { .. }), "{v:?}");
    assert!(matches!(v[1], V::RecoveryMissing { .. }), "{v:?}");
    assert_eq!(disks[0].lock().unwrap().state_of(tx), RmTx::InDoubt);
}

#[test]
fn a_volatile_tm_refuses_durable_calls() {
    let k = common::ktm(DeliveryMode::Inline);
    assert!(!k.is_durable());
    assert_eq!(k.recover_transaction_manager(), NtStatus::TM_VOLATILE);
    assert_eq!(
        k.create_durable_resource_manager(guid(1), Arc::new(|_| NtStatus::SUCCESS)),
        Err(NtStatus::TM_VOLATILE)
    );
    assert_eq!(k.recover_resource_manager(RmId(1)), NtStatus::TM_VOLATILE);
    // A crash of a volatile TM loses everything; nothing is recovered.
    let p = k.create_process();
    let h = k.create_transaction(p, 0, "").unwrap();
    k.crash();
    assert_eq!(k.commit(p, h), NtStatus::INVALID_HANDLE);
    assert!(k.crash_points().is_empty());
    assert_eq!(k.crash_count(), 1);
    k.assert_clean();
}

#[test]
fn last_recover_may_come_before_a_late_recover_call() {
    for early in [false, true] {
        let k = durable(DeliveryMode::Inline);
        if early {
            k.set_interleavings(Interleavings::ALL);
        }
        let disks: Vec<Shared<Disk>> = vec![Arc::default()];
        let rms = boot(&k, &disks);
        // KTM logged its commit decision; the RM never got COMMIT.
        k.crash_at(CrashPoint::AfterCommitRecord);
        let (tx, _) = write_and_commit(&k, &rms);
        drop(rms);
        // The RM answers RECOVER from a worker, after its callback returned.
        let rms = boot_with(&k, &disks, OnRecover::Later);
        assert_eq!(
            rms[0].seen(),
            [notify::RECOVER, notify::LAST_RECOVER, N::Commit],
            "early {early}"
        );
        // With LAST_RECOVER as soon as RECOVER was sent, this RM's presumed abort at
        // LAST_RECOVER (it had not recovered the transaction yet) hits a transaction KTM
        // committed: the interleaving is real, and an RM must not rely on the other order.
        let wrongly_aborted = disks[0].lock().unwrap().log.contains(&Rec::Aborted(tx));
        assert_eq!(wrongly_aborted, early);
        assert_eq!(k.decision(tx), Outcome::Committed);
        assert!(k.finish().is_empty());
    }
}
