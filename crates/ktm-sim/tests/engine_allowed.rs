//! The engine under the behaviours KTM's documentation allows that are uncomfortable for an RM
//! (`ktm_sim::Interleavings`, on in `SimConfig`'s default): it never relies on KTM falling back
//! from single-phase commit, and a rollback racing its PREPREPARE or PREPARE (also while its
//! durable PREPARE forces the log) leaves nothing behind.

mod common;

use std::time::Duration;

use common::MODES;
use common::device::{assert_clean, device, one_client, sole_writer};
use ktm_sim::{
    DeliveryMode, EnlistRace, Notification as N, NtStatus, SimConfig, SimDevice, Violation,
};

#[test]
fn the_engine_never_relies_on_the_single_phase_fallback() {
    for mode in MODES {
        // Beside the transacted registry (the built-in yes RM), with KTM free to send
        // SINGLE_PHASE_COMMIT to whoever registered for it: ktmrm never does.
        let (dev, p, c) = one_client(device(mode));
        let tx = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
        assert_eq!(p.commit(tx), NtStatus::SUCCESS, "{mode:?}");
        let k = dev.ktm().counters();
        assert_eq!((k.sent(N::SinglePhaseCommit), k.sent(N::Prepare)), (0, 2));
        assert_eq!(c.get(0, "k").as_deref(), Ok("v"));
        p.close_handle(tx);
        assert_clean(&dev);
    }
}

#[test]
fn an_engine_asking_for_single_phase_beside_another_writer_is_caught() {
    // What the test above guards against: with single-phase commit asked for, KTM may commit
    // ktmrm alone while the other RM never hears of the commit.
    let (dev, p, c) = one_client(sole_writer(DeliveryMode::Inline));
    let tx = p.create_transaction(0, "").unwrap();
    assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
    assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
    assert_eq!(p.commit(tx), NtStatus::SUCCESS);
    let k = dev.ktm().counters();
    assert_eq!((k.sent(N::SinglePhaseCommit), k.sent(N::Prepare)), (1, 0));
    p.close_handle(tx);
    let v = dev.finish();
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::SpcBesideWriter { .. })),
        "{v:?}"
    );
}

#[test]
fn a_rollback_racing_each_phase_leaves_nothing() {
    for mode in MODES {
        for phase in [N::PrePrepare, N::Prepare] {
            for race in [EnlistRace::SameThread, EnlistRace::OtherThread] {
                let what = format!("{mode:?} {phase:?} {race:?}");
                let (dev, p, c) = one_client(device(mode));
                let tx = p.create_transaction(0, "").unwrap();
                assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
                assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
                dev.ktm().rollback_during_next(phase, race);
                let st = p.commit(tx);
                // From another thread the rollback may also come too late to win.
                let won = st == NtStatus::TRANSACTION_ABORTED;
                assert!(won || st == NtStatus::SUCCESS, "{what}: {st:?}");
                if race == EnlistRace::SameThread {
                    assert!(won, "{what}");
                }
                let want = if won { None } else { Some("v") };
                assert_eq!(c.get(0, "k").ok().as_deref(), want, "{what}");
                // The key lock is gone either way.
                let t2 = p.create_transaction(0, "").unwrap();
                assert_eq!(c.put(t2, "k", "w"), NtStatus::SUCCESS, "{what}");
                assert_eq!(p.commit(t2), NtStatus::SUCCESS, "{what}");
                p.close_handle(tx);
                p.close_handle(t2);
                assert_clean(&dev);
                assert_eq!(dev.stats().protocol_errors, 0, "{what}");
            }
        }
    }
}

#[test]
fn a_rollback_during_the_durable_prepare_force_leaves_nothing_across_a_restart() {
    for mode in MODES {
        let (dev, _) = SimDevice::durable(SimConfig {
            delivery: mode,
            answer_deadline: Some(Duration::from_secs(5)),
            ..SimConfig::default()
        })
        .unwrap();
        let (dev, p, c) = one_client(dev);
        let tx = p.create_transaction(0, "").unwrap();
        assert_eq!(c.put(tx, "k", "v"), NtStatus::SUCCESS);
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
        let id = p.transaction_info(tx).unwrap().id;
        // The rollback arrives while the engine forces its Prepare record, its lock released.
        dev.log().rollback_during_force(dev.log().forces(), id);
        assert_eq!(p.commit(tx), NtStatus::TRANSACTION_ABORTED, "{mode:?}");
        assert_eq!(c.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        p.close_handle(tx);
        assert_clean(&dev);
        // Nothing of it comes back: KTM never recorded the prepare (presumed abort).
        let (dev2, report) = dev.restart().unwrap();
        assert!(report.in_doubt <= 1, "{report:?}");
        let (dev2, p2, c2) = one_client(dev2);
        assert_eq!(c2.get(0, "k"), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
        let t2 = p2.create_transaction(0, "").unwrap();
        assert_eq!(c2.put(t2, "k", "w"), NtStatus::SUCCESS);
        assert_eq!(p2.commit(t2), NtStatus::SUCCESS);
        p2.close_handle(t2);
        assert_clean(&dev2);
    }
}

#[test]
fn rollbacks_racing_commits_from_other_threads_leave_all_or_nothing() {
    // Many rounds, so the racing rollback lands at different moments of the engine's PREPARE.
    for mode in MODES {
        let (dev, p, c) = one_client(device(mode));
        for round in 0..100u32 {
            let phase = if round % 2 == 0 {
                N::PrePrepare
            } else {
                N::Prepare
            };
            let tx = p.create_transaction(0, "").unwrap();
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            assert_eq!(c.put(tx, &a, "1"), NtStatus::SUCCESS);
            assert_eq!(c.put(tx, &b, "1"), NtStatus::SUCCESS);
            assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
            dev.ktm()
                .rollback_during_next(phase, EnlistRace::OtherThread);
            let st = p.commit(tx);
            let want = match st {
                NtStatus::SUCCESS => Ok("1".to_string()),
                NtStatus::TRANSACTION_ABORTED => Err(NtStatus::OBJECT_NAME_NOT_FOUND),
                other => panic!("{mode:?} round {round}: {other:?}"),
            };
            assert_eq!(c.get(0, &a), want, "{mode:?} round {round}");
            assert_eq!(c.get(0, &b), want, "{mode:?} round {round}");
            p.close_handle(tx);
        }
        assert_clean(&dev);
        assert_eq!(dev.stats().protocol_errors, 0, "{mode:?}");
    }
}
