//! The engine behind `SimDevice`, driven only through `SimFile::ioctl` bytes, under KTM
//! behaviours the engine's own unit tests do not produce: both delivery modes, notifications
//! before `enlist` returns, duplicate COMMITs, enlist failures, other RMs' votes, timeouts,
//! handle closes, and the visibility of data between phases.

mod common;

use std::sync::{Arc, Mutex};

use common::MODES;
use common::device::{Client, assert_clean, device, one_client, sole_writer};

use ktm_sim::access::TRANSACTION_QUERY_INFORMATION;
use ktm_sim::{
    DeliveryMode, EnlistRace, Notification as N, NtStatus, Phase, SimConfig, SimDevice, TxState,
};
use ktmrm_proto::{Call, FILE_READ_DATA, Limits, Request, STATS_LEN};

#[test]
fn commit_through_ioctls_in_both_modes() {
    for mode in MODES {
        let (dev, p, c) = one_client(sole_writer(mode));
        let tx = p.create_transaction(0, "app").unwrap();
        assert_eq!(c.put(tx, "k", "v1"), NtStatus::SUCCESS);
        assert_eq!(c.get(tx, "k").as_deref(), Ok("v1"));
        assert_eq!(c.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        assert_eq!(p.commit(tx), NtStatus::SUCCESS, "{mode:?}");
        assert_eq!(c.get(0, "k").as_deref(), Ok("v1"));
        // Any use of the ended transaction.
        assert_eq!(c.put(tx, "k", "v2"), NtStatus::TRANSACTION_NOT_ACTIVE);
        assert_eq!(p.close_handle(tx), NtStatus::SUCCESS);
        let s = c.stats();
        assert_eq!(
            (s.commits, s.single_phase_commits, s.enlistments),
            (1, 1, 1)
        );
        // The sole RM asked for SINGLE_PHASE_COMMIT, so KTM used it.
        assert_eq!(dev.ktm().counters().sent(N::SinglePhaseCommit), 1);
        assert_clean(&dev);
    }
}

#[test]
fn begin_creates_a_handle_in_the_callers_process() {
    let dev = device(DeliveryMode::Inline);
    let p = dev.process();
    let q = dev.process();
    let c = Client::new(&p);
    let tx = c.begin(0, "from BEGIN").unwrap();
    let info = p.transaction_info(tx).unwrap();
    assert_eq!(info.description, "from BEGIN");
    assert_eq!(info.state, TxState::Active);
    assert_eq!(c.put(tx, "a", "1"), NtStatus::SUCCESS);
    // The value means nothing in another process.
    assert_eq!(Client::new(&q).put(tx, "b", "1"), NtStatus::INVALID_HANDLE);
    assert_eq!(p.commit(tx), NtStatus::SUCCESS);
    assert_eq!(c.get(0, "a").as_deref(), Ok("1"));
    assert_eq!(p.close_handle(tx), NtStatus::SUCCESS);
    assert_clean(&dev);
}

#[test]
fn handle_errors_reach_the_caller() {
    let dev = device(DeliveryMode::Inline);
    let p = dev.process();
    let q = dev.process();
    let c = Client::new(&p);
    let ev = p.create_event();
    assert_eq!(c.put(ev, "k", "v"), NtStatus::OBJECT_TYPE_MISMATCH);
    assert_eq!(c.put(0x7FF0, "k", "v"), NtStatus::INVALID_HANDLE);
    let tx = p.create_transaction(0, "").unwrap();
    let weak = p
        .duplicate_handle(tx, &q, Some(TRANSACTION_QUERY_INFORMATION))
        .unwrap();
    assert_eq!(Client::new(&q).put(weak, "k", "v"), NtStatus::ACCESS_DENIED);
    assert_eq!(p.close_handle(tx), NtStatus::SUCCESS);
    assert_eq!(q.close_handle(weak), NtStatus::SUCCESS);
    assert_clean(&dev);
}

#[test]
fn file_access_is_checked_before_the_driver() {
    let dev = device(DeliveryMode::Inline);
    let p = dev.process();
    let ro = p.open(FILE_READ_DATA);
    let none = p.open(0);
    let mut input = vec![0u8; 64];
    let n = Request::Put {
        tx: 0,
        key: b"k",
        value: b"v",
    }
    .encode(&mut input)
    .unwrap();
    assert_eq!(
        ro.ioctl(Call::Put.code(), &input[..n], &mut []),
        (NtStatus::ACCESS_DENIED, 0)
    );
    let mut out = [0u8; 64];
    let (s, got) = none.ioctl(Call::GetVersion.code(), &[], &mut out);
    assert_eq!((s, got), (NtStatus::SUCCESS, 48));
    let mut stats = [0u8; STATS_LEN];
    assert_eq!(
        none.ioctl(Call::Stats.code(), &input[..0], &mut stats).0,
        NtStatus::ACCESS_DENIED
    );
    assert_clean(&dev);
}

#[test]
fn nothing_is_visible_before_commit_and_everything_after() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let reader = Client::new(&dev.process());
        c.put(0, "k", "old");
        let tx = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(tx, "k", "new"), NtStatus::SUCCESS);
        assert_eq!(c.put(tx, "k2", "new"), NtStatus::SUCCESS);
        // A second durable RM (like the registry): the full protocol, not single-phase.
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, r2) = (seen.clone(), reader.clone());
        dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
            seen2
                .lock()
                .unwrap()
                .push((phase, r2.get(0, "k"), r2.get(0, "k2")));
        }));
        assert_eq!(p.commit(tx), NtStatus::SUCCESS);
        dev.ktm().clear_phase_probe();
        let old = || Ok("old".to_string());
        let new = || Ok("new".to_string());
        let missing = || Err(NtStatus::OBJECT_NAME_NOT_FOUND);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Phase::PrePrepare, old(), missing()),
                (Phase::Prepare, old(), missing()),
                (Phase::Commit, new(), new()),
            ],
            "{mode:?}"
        );
        assert_eq!(c.stats().single_phase_commits, 0);
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn single_phase_commit_is_visible_once_it_completes() {
    let (dev, p, c) = one_client(sole_writer(DeliveryMode::Inline));
    let reader = Client::new(&dev.process());
    let tx = p.create_transaction(0, "").unwrap();
    c.put(tx, "k", "v");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, r2) = (seen.clone(), reader.clone());
    dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
        seen2.lock().unwrap().push((phase, r2.get(0, "k")));
    }));
    assert_eq!(reader.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
    assert_eq!(p.commit(tx), NtStatus::SUCCESS);
    assert_eq!(
        *seen.lock().unwrap(),
        [(Phase::SinglePhaseCommit, Ok("v".to_string()))]
    );
    p.close_handle(tx);
    assert_clean(&dev);
}

#[test]
fn another_rms_veto_discards_the_writes() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let tx = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
        assert_eq!(p.enlist_veto_rm(tx), NtStatus::SUCCESS);
        assert_eq!(p.commit(tx), NtStatus::TRANSACTION_ABORTED, "{mode:?}");
        assert_eq!(c.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        // The key lock is gone: a new transaction may write it.
        let tx2 = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(tx2, "k", "w"), NtStatus::SUCCESS);
        assert_eq!(p.commit(tx2), NtStatus::SUCCESS);
        assert_eq!(c.get(0, "k").as_deref(), Ok("w"));
        let s = c.stats();
        assert_eq!((s.rollbacks, s.commits, s.vetoes), (1, 1, 0));
        p.close_handle(tx);
        p.close_handle(tx2);
        assert_clean(&dev);
    }
}

#[test]
fn engine_veto_after_single_phase_reject() {
    for mode in MODES {
        let (dev, p, c) = one_client(SimDevice::with_config(SimConfig {
            delivery: mode,
            limits: Limits {
                max_keys: 1,
                ..Limits::default()
            },
            single_phase: true,
            ..SimConfig::default()
        }));
        let t1 = p.create_transaction(0, "").unwrap();
        let t2 = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(t1, "a", "1"), NtStatus::SUCCESS);
        assert_eq!(c.put(t2, "b", "2"), NtStatus::SUCCESS);
        assert_eq!(p.commit(t1), NtStatus::SUCCESS);
        // t2 no longer fits: SINGLE_PHASE_COMMIT is rejected, then PREPARE gets a no vote.
        assert_eq!(p.commit(t2), NtStatus::TRANSACTION_ABORTED, "{mode:?}");
        let k = dev.ktm().counters();
        assert_eq!(k.sent(N::SinglePhaseCommit), 2);
        assert_eq!(k.sent(N::Rollback), 1);
        assert_eq!(c.get(0, "b"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        let s = c.stats();
        assert_eq!((s.commits, s.vetoes, s.rollbacks), (1, 1, 1));
        p.close_handle(t1);
        p.close_handle(t2);
        assert_clean(&dev);
    }
}

#[test]
fn read_only_transaction_with_another_rm() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        c.put(0, "k", "v");
        let tx = p.create_transaction(0, "").unwrap();
        assert_eq!(c.get(tx, "k").as_deref(), Ok("v"));
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
        assert_eq!(p.commit(tx), NtStatus::SUCCESS);
        assert_eq!(c.stats().read_only, 1);
        // Only the other RM got COMMIT.
        assert_eq!(dev.ktm().counters().sent(N::Commit), 1);
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn timeout_rolls_back_and_the_transaction_is_dead() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let tx = c.begin(500, "short").unwrap();
        assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
        assert_eq!(dev.ktm().advance_time(500), 1);
        assert_eq!(c.put(tx, "k2", "v"), NtStatus::TRANSACTION_NOT_ACTIVE);
        assert_eq!(c.get(tx, "k"), Err(NtStatus::TRANSACTION_NOT_ACTIVE));
        assert_eq!(c.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        assert_eq!(p.commit(tx), NtStatus::TRANSACTION_ALREADY_ABORTED);
        assert_eq!(c.stats().rollbacks, 1);
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn closing_the_last_handle_or_exiting_rolls_back() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let t1 = p.create_transaction(0, "").unwrap();
        c.put(t1, "a", "1");
        assert_eq!(p.close_handle(t1), NtStatus::SUCCESS);
        let q = dev.process();
        let cq = Client::new(&q);
        let t2 = q.create_transaction(0, "").unwrap();
        cq.put(t2, "b", "1");
        q.exit();
        assert_eq!(c.get(0, "a"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        assert_eq!(c.get(0, "b"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        assert_eq!(c.stats().rollbacks, 2);
        // Their keys are free again.
        assert_eq!(c.put(0, "a", "2"), NtStatus::SUCCESS);
        assert_eq!(c.put(0, "b", "2"), NtStatus::SUCCESS);
        assert_clean(&dev);
    }
}

#[test]
fn rollback_before_enlist_returns() {
    for mode in MODES {
        for race in [EnlistRace::SameThread, EnlistRace::OtherThread] {
            let (dev, p, c) = one_client(device(mode));
            let tx = p.create_transaction(0, "").unwrap();
            dev.ktm().rollback_during_next_enlist(race);
            // The first use enlists; KTM rolls back before the enlist call returns.
            assert_eq!(
                c.put(tx, "k", "v"),
                NtStatus::TRANSACTION_NOT_ACTIVE,
                "{mode:?} {race:?}"
            );
            assert_eq!(c.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
            assert_eq!(c.put(tx, "k", "v"), NtStatus::TRANSACTION_NOT_ACTIVE);
            assert_eq!(c.put(0, "k", "v"), NtStatus::SUCCESS, "key lock released");
            assert_eq!(dev.ktm().counters().sent(N::Rollback), 1);
            p.close_handle(tx);
            assert_clean(&dev);
        }
    }
}

#[test]
fn rollback_before_enlist_returns_on_a_read() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        c.put(0, "k", "v");
        let tx = p.create_transaction(0, "").unwrap();
        dev.ktm()
            .rollback_during_next_enlist(EnlistRace::SameThread);
        assert_eq!(c.get(tx, "k"), Err(NtStatus::TRANSACTION_NOT_ACTIVE));
        assert_eq!(c.get(0, "k").as_deref(), Ok("v"));
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn duplicate_commit_is_acknowledged_and_applied_once() {
    for mode in MODES {
        let (dev, p, c) = one_client(SimDevice::with_config(SimConfig {
            delivery: mode,
            duplicate_commit: true,
            ..SimConfig::default()
        }));
        let tx = p.create_transaction(0, "").unwrap();
        c.put(tx, "k", "v");
        c.put(tx, "d", "x");
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
        assert_eq!(p.commit(tx), NtStatus::SUCCESS, "{mode:?}");
        let k = dev.ktm().counters();
        assert_eq!(k.sent(N::Commit), 4, "two RMs, each twice");
        assert_eq!(k.answered(ktm_sim::Answer::CommitComplete), 4);
        let s = c.stats();
        assert_eq!((s.commits, s.keys), (1, 2));
        assert_eq!(
            s.protocol_errors, 1,
            "the engine saw one COMMIT it did not expect"
        );
        assert_eq!(c.get(0, "k").as_deref(), Ok("v"));
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn enlist_failure_is_reported_and_the_next_use_enlists() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let tx = p.create_transaction(0, "").unwrap();
        dev.ktm()
            .fail_next_enlists(1, NtStatus::INSUFFICIENT_RESOURCES);
        assert_eq!(c.put(tx, "k", "v"), NtStatus::INSUFFICIENT_RESOURCES);
        assert_eq!(c.stats().live_transactions, 0);
        assert_eq!(c.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        dev.ktm()
            .fail_next_enlists(1, NtStatus::TRANSACTION_NOT_ACTIVE);
        assert_eq!(c.get(tx, "k"), Err(NtStatus::TRANSACTION_NOT_ACTIVE));
        assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
        assert_eq!(p.commit(tx), NtStatus::SUCCESS);
        assert_eq!(c.get(0, "k").as_deref(), Ok("v"));
        assert_eq!(dev.ktm().counters().enlist_failures, 2);
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn writes_during_a_commit_are_refused_reads_work() {
    // The app keeps using the transaction from another thread while KTM prepares it.
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let tx = p.create_transaction(0, "").unwrap();
        c.put(tx, "k", "v");
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, c2) = (seen.clone(), c.clone());
        dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
            if phase == Phase::PrePrepare {
                seen2
                    .lock()
                    .unwrap()
                    .push((c2.put(tx, "k2", "v"), c2.get(tx, "k")));
            }
        }));
        assert_eq!(p.commit(tx), NtStatus::SUCCESS);
        assert_eq!(
            *seen.lock().unwrap(),
            [(NtStatus::TRANSACTION_NOT_ACTIVE, Ok("v".to_string()))]
        );
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn concurrent_clients_in_threaded_mode() {
    let dev = device(DeliveryMode::Threaded);
    std::thread::scope(|s| {
        for t in 0..8 {
            let dev = dev.clone();
            s.spawn(move || {
                let p = dev.process();
                let c = Client::new(&p);
                for i in 0..25 {
                    let tx = p.create_transaction(0, "").unwrap();
                    let key = format!("t{t}-{i}");
                    assert_eq!(c.put(tx, &key, "v"), NtStatus::SUCCESS);
                    // Contended by every thread: written or refused at once, never blocked.
                    let shared = c.put(tx, "shared", &key);
                    assert!(
                        matches!(shared, NtStatus::SUCCESS | NtStatus::TRANSACTIONAL_CONFLICT),
                        "{shared:?}"
                    );
                    let expect = match i % 4 {
                        0 => {
                            assert_eq!(p.enlist_veto_rm(tx), NtStatus::SUCCESS);
                            NtStatus::TRANSACTION_ABORTED
                        }
                        1 => {
                            assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
                            NtStatus::SUCCESS
                        }
                        _ => NtStatus::SUCCESS,
                    };
                    assert_eq!(p.commit(tx), expect);
                    let visible = c.get(0, &key).is_ok();
                    assert_eq!(visible, expect == NtStatus::SUCCESS);
                    p.close_handle(tx);
                }
            });
        }
    });
    let s = dev.stats();
    // i % 4 == 0 for 7 of 25 rounds: vetoed.
    assert_eq!(s.commits + s.rollbacks, 200);
    assert_eq!(s.rollbacks, 8 * 7);
    assert_clean(&dev);
}

#[test]
fn dropping_the_device_frees_the_model() {
    let dev = device(DeliveryMode::Inline);
    let p = dev.process();
    let tx = p.create_transaction(0, "").unwrap();
    Client::new(&p).put(tx, "k", "v");
    p.commit(tx);
    let weak = dev.ktm().downgrade();
    assert_clean(&dev);
    drop(p);
    drop(dev);
    assert!(
        weak.upgrade().is_none(),
        "an Arc cycle keeps the model alive"
    );
}

#[test]
fn unload_with_live_transactions_rolls_them_back_and_releases_everything() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        assert_eq!(c.put(0, "kept", "1"), NtStatus::SUCCESS);
        let begun = c.begin(0, "begun").unwrap();
        let created = p.create_transaction(0, "ktmw32").unwrap();
        let read_only = p.create_transaction(0, "reader").unwrap();
        assert_eq!(c.put(begun, "a", "x"), NtStatus::SUCCESS);
        assert_eq!(c.put(created, "b", "y"), NtStatus::SUCCESS);
        assert_eq!(c.get(read_only, "kept"), Ok("1".into()));
        assert_eq!(c.stats().live_transactions, 3);
        assert_eq!(
            dev.unload(),
            3,
            "{mode:?}: every live transaction rolled back"
        );
        assert_eq!(c.put(0, "late", "z"), NtStatus::DEVICE_NOT_READY);
        for h in [begun, created, read_only] {
            assert_eq!(
                p.commit(h),
                NtStatus::TRANSACTION_ALREADY_ABORTED,
                "{mode:?}"
            );
            assert_eq!(p.close_handle(h), NtStatus::SUCCESS);
        }
        let s = dev.stats();
        assert_eq!(
            (s.live_transactions, s.rollbacks, s.keys),
            (0, 3, 1),
            "{mode:?}"
        );
        assert_clean(&dev);
    }
}
