//! Unload in the driver's order (driver/src/teardown.rs): requests refused, every transaction
//! ktmrm has not prepared rolled back through its own enlistment, the outcomes awaited, and only
//! then the RM closed. With transactions in every phase, and with clients racing the unload on
//! other threads, no notification may reach the device after its RM close returned (the device
//! records one as a violation), and nothing may be left behind.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::device::{Client, assert_clean, device, one_client};
use common::{Log, MODES, enlist, no_answer_at, rm_with};
use ktm_sim::{Answer, DeliveryMode, Notification as N, NtStatus, SimDevice};
use ktmrm_core::port::notify_bits;

/// Waits until `f` holds (bounded: a hang fails the test instead of stalling it).
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn unprepared_transactions_are_rolled_back_through_the_enlistment_before_the_rm_closes() {
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        assert_eq!(c.put(0, "kept", "1"), NtStatus::SUCCESS);
        let begun = c.begin(0, "begun").unwrap();
        let created = p.create_transaction(0, "ktmw32").unwrap();
        let reader = p.create_transaction(0, "reader").unwrap();
        assert_eq!(c.put(begun, "a", "x"), NtStatus::SUCCESS);
        assert_eq!(c.put(created, "b", "y"), NtStatus::SUCCESS);
        assert_eq!(c.get(reader, "kept").as_deref(), Ok("1"));
        let before = dev.ktm().counters();
        assert_eq!(dev.unload(), 3, "{mode:?}");
        let k = dev.ktm().counters();
        assert_eq!(
            k.sent(N::Rollback) - before.sent(N::Rollback),
            3,
            "{mode:?}: each one rolled back by KTM, after ktmrm asked"
        );
        assert_eq!(c.put(0, "late", "z"), NtStatus::DEVICE_NOT_READY);
        for h in [begun, created, reader] {
            assert_eq!(p.commit(h), NtStatus::TRANSACTION_ALREADY_ABORTED);
            assert_eq!(p.close_handle(h), NtStatus::SUCCESS);
        }
        let s = dev.stats();
        assert_eq!((s.live_transactions, s.rollbacks, s.keys), (0, 3, 1));
        assert_clean(&dev);
    }
}

/// A transaction whose commit is held by a second RM that does not answer `held`: ktmrm has
/// answered PREPREPARE (for `held` = PREPREPARE it is PrePrepared) or voted yes (for PREPARE:
/// Prepared) when the unload starts. Returns the device, the commit's thread and the client.
fn held_commit(mode: DeliveryMode, held: N) -> (SimDevice, thread::JoinHandle<NtStatus>, Client) {
    let (dev, p, c) = one_client(device(mode));
    let tx = p.create_transaction(0, "").unwrap();
    assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
    let log = Log::default();
    let other = rm_with(dev.ktm(), &log, no_answer_at(held, NtStatus::PENDING));
    enlist(dev.ktm(), other, p.id(), tx, notify_bits::ENGINE_MASK).unwrap();
    let committer = {
        let p = p.clone();
        thread::spawn(move || p.commit(tx))
    };
    // Both enlistments got the phase; the other RM is holding it.
    wait_for("the held phase", || dev.ktm().counters().sent(held) >= 2);
    let answer = if held == N::PrePrepare {
        Answer::PrePrepareComplete
    } else {
        Answer::PrepareComplete
    };
    wait_for("ktmrm's answer", || {
        dev.ktm().counters().answered(answer) >= 1
    });
    (dev, committer, c)
}

#[test]
fn a_transaction_held_at_preprepare_is_rolled_back_by_ktmrm_itself() {
    for mode in MODES {
        let (dev, committer, c) = held_commit(mode, N::PrePrepare);
        let before = dev.ktm().counters();
        // PrePrepared is not prepared: ktmrm's ZwRollbackEnlistment ends it, and the unload does
        // not need its wait.
        let started = Instant::now();
        assert_eq!(dev.unload_within(Duration::from_secs(5)), 1, "{mode:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{mode:?}: waited for nothing"
        );
        assert!(dev.ktm().counters().sent(N::Rollback) > before.sent(N::Rollback));
        assert_eq!(
            committer.join().unwrap(),
            NtStatus::TRANSACTION_ABORTED,
            "{mode:?}"
        );
        assert_eq!(c.get(0, "k"), Err(NtStatus::DEVICE_NOT_READY));
        assert_eq!(dev.stats().live_transactions, 0);
        let v = dev.violations();
        assert!(v.is_empty(), "{mode:?}: {v:#?}");
    }
}

#[test]
fn a_prepared_transaction_is_awaited_then_rolled_back_by_the_rm_close() {
    // ktmrm voted yes; only KTM can decide. The unload waits (bounded) for the outcome, then
    // closes the RM, which makes KTM roll the undecided transaction back (delivered inline,
    // during the close).
    let (dev, committer, _c) = held_commit(DeliveryMode::Inline, N::Prepare);
    assert_eq!(dev.unfinished(), 1);
    let started = Instant::now();
    assert_eq!(dev.unload_within(Duration::from_millis(50)), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "the unload waited"
    );
    assert_eq!(committer.join().unwrap(), NtStatus::TRANSACTION_ABORTED);
    assert_eq!(dev.stats().live_transactions, 0);
    assert_eq!(dev.stats().prepared, 0);
    let v = dev.violations();
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn a_prepared_transaction_that_commits_during_the_wait_is_not_rolled_back() {
    // The other RM answers PREPARE while the unload waits: KTM commits, ktmrm answers COMMIT,
    // and the RM closes with nothing left to roll back.
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        let tx = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
        let release = Arc::new(AtomicBool::new(false));
        let log = Log::default();
        let held = {
            let release = release.clone();
            move |k: &ktm_sim::Ktm, d: ktm_sim::Delivery| {
                if d.notification == N::Prepare {
                    while !release.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                common::good()(k, d)
            }
        };
        let other = rm_with(dev.ktm(), &log, held);
        enlist(dev.ktm(), other, p.id(), tx, notify_bits::ENGINE_MASK).unwrap();
        let committer = {
            let p = p.clone();
            thread::spawn(move || p.commit(tx))
        };
        // ktmrm voted yes (the other RM is still inside its PREPARE callback).
        wait_for("ktmrm's vote", || {
            dev.ktm().counters().answered(Answer::PrepareComplete) >= 1
        });
        let unloader = {
            let dev = dev.clone();
            thread::spawn(move || dev.unload_within(Duration::from_secs(5)))
        };
        thread::sleep(Duration::from_millis(20));
        release.store(true, Ordering::SeqCst);
        assert_eq!(unloader.join().unwrap(), 0, "{mode:?}: nothing rolled back");
        assert_eq!(committer.join().unwrap(), NtStatus::SUCCESS, "{mode:?}");
        assert_eq!(dev.stats().commits, 1, "{mode:?}");
        let v = dev.violations();
        assert!(v.is_empty(), "{mode:?}: {v:#?}");
    }
}

#[test]
fn commits_racing_the_unload_leave_nothing_and_no_late_notification() {
    // DriverUnload runs only once no handle to the device is open, so no IOCTL races it; what
    // does is KTM: applications commit and roll back the transactions ktmrm is enlisted in, on
    // their own threads, while the driver unloads.
    // Both ways KTM may take a rollback that overtakes a phase (Interleavings::eager_rollback).
    let configs = MODES.into_iter().flat_map(|mode| {
        [true, false].map(|eager| ktm_sim::SimConfig {
            delivery: mode,
            answer_deadline: Some(Duration::from_secs(5)),
            interleavings: ktm_sim::Interleavings {
                eager_rollback: eager,
                ..ktm_sim::Interleavings::ALL
            },
            ..ktm_sim::SimConfig::default()
        })
    });
    for cfg in configs {
        for round in 0..20u64 {
            let what = format!(
                "{:?} eager {} round {round}",
                cfg.delivery, cfg.interleavings.eager_rollback
            );
            let dev = SimDevice::with_config(cfg.clone());
            let p = dev.process();
            let txs: Vec<u64> = {
                let c = Client::new(&p);
                (0..12u64)
                    .map(|i| {
                        let tx = p.create_transaction(0, "").unwrap();
                        assert_eq!(c.put(tx, &format!("k{i}"), "v"), NtStatus::SUCCESS);
                        tx
                    })
                    .collect()
            }; // the device's handle is closed here
            let go = Arc::new(AtomicBool::new(false));
            let workers: Vec<_> = txs
                .chunks(4)
                .enumerate()
                .map(|(w, chunk)| {
                    let (p, go, chunk) = (p.clone(), go.clone(), chunk.to_vec());
                    thread::spawn(move || {
                        while !go.load(Ordering::SeqCst) {
                            thread::yield_now();
                        }
                        thread::sleep(Duration::from_micros(50 * (round % 4)));
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(i, &tx)| {
                                let st = if (w + i) % 3 == 0 {
                                    p.rollback(tx)
                                } else {
                                    p.commit(tx)
                                };
                                let _ = p.close_handle(tx);
                                st
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            go.store(true, Ordering::SeqCst);
            thread::sleep(Duration::from_micros(100 * (round % 5)));
            dev.unload();
            let mut committed = 0u64;
            for w in workers {
                for st in w.join().unwrap() {
                    assert!(
                        [
                            NtStatus::SUCCESS,
                            NtStatus::TRANSACTION_ABORTED,
                            NtStatus::TRANSACTION_ALREADY_ABORTED
                        ]
                        .contains(&st),
                        "{what}: {st:?}"
                    );
                }
            }
            let s = dev.stats();
            committed += s.commits;
            assert_eq!(
                s.live_transactions,
                0,
                "{what}: {s:?} {:#?} {:#?} {:#?}",
                dev.ktm().counters(),
                dev.violations(),
                (1..=12u64)
                    .filter_map(|i| dev.ktm().enlistment_info(ktm_sim::EnlistmentId(i)))
                    .filter(|e| !e.closed)
                    .map(|e| (e, dev.ktm().transaction_info_by_id(e.tx)))
                    .collect::<Vec<_>>()
            );
            assert_eq!(s.protocol_errors, 0, "{what}");
            assert_eq!(s.keys, committed, "{what}: every commit kept, nothing else");
            let v = dev.finish();
            assert!(v.is_empty(), "{what}: {v:#?}");
            assert_eq!(dev.ktm().counters().enlistments_open, 0, "{what}");
        }
    }
}
