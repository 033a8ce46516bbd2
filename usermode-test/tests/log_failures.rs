//! A log device that fails without a crash, and reads while KTM commits, on the simulated
//! device as an app sees them: a change is visible only once it is durable, a failure reported
//! to the app leaves no visible trace (before or after a restart), nothing visible is lost at
//! restart, and a read in a transaction KTM is committing keeps working.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ktm_sim::access::TRANSACTION_ENLIST;
use ktm_sim::{
    Answer, Delivery, DeliveryMode, EnlistmentKey, Notification as N, NtStatus, Phase, SimConfig,
    SimDevice,
};
use ktmrm_client::Client;
use ktmrm_client::transport::{SimTransport, Transport};

/// `STATUS_IO_DEVICE_ERROR`: the log device failed.
const IO_DEVICE_ERROR: NtStatus = NtStatus(0xC000_0185_u32 as i32);

fn config(mode: DeliveryMode) -> SimConfig {
    SimConfig {
        delivery: mode,
        answer_deadline: Some(Duration::from_secs(5)),
        ..SimConfig::default()
    }
}

fn durable(mode: DeliveryMode) -> SimDevice {
    SimDevice::durable(config(mode)).unwrap().0
}

/// A durable device whose engine asks for single-phase commit (for transactions only it
/// writes in).
fn durable_single_phase(mode: DeliveryMode) -> SimDevice {
    let cfg = SimConfig {
        single_phase: true,
        ..config(mode)
    };
    SimDevice::durable(cfg).unwrap().0
}

/// A new process with an open of `dev`.
fn app(dev: &SimDevice) -> (Arc<SimTransport>, Client) {
    let t = Arc::new(SimTransport::attach(dev));
    let c = Client::unchecked(t.clone());
    (t, c)
}

/// The committed value of `key`, `None` when absent.
fn get(c: &Client, key: &str) -> Option<String> {
    match c.get(key.as_bytes()) {
        Ok(v) => Some(String::from_utf8(v).unwrap()),
        Err(e) if e.status() == Some(NtStatus::OBJECT_NAME_NOT_FOUND) => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

/// The value of `key` in transaction `tx`, or the status it got.
fn get_in(c: &Client, tx: u64, key: &str) -> Result<String, NtStatus> {
    c.get_in(tx, key.as_bytes())
        .map(|v| String::from_utf8(v).unwrap())
        .map_err(|e| e.status().unwrap())
}

fn some(v: &str) -> Option<String> {
    Some(v.into())
}

/// Restarts `dev` and returns the new device with a client on it.
fn restart(dev: &SimDevice) -> (SimDevice, Client) {
    let (dev, _) = dev.restart().unwrap();
    let (_, c) = app(&dev);
    (dev, c)
}

fn assert_clean(dev: &SimDevice) {
    let v = dev.finish();
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn a_non_transacted_write_whose_force_fails_is_invisible_then_and_after_a_restart() {
    let dev = durable(DeliveryMode::Inline);
    let (_, c) = app(&dev);
    c.put(b"k", b"before").unwrap();
    dev.log().mem().fail_forces(Some(IO_DEVICE_ERROR));
    let err = c.put(b"k", b"failed-write").unwrap_err();
    assert_eq!(err.status(), Some(IO_DEVICE_ERROR));
    assert_eq!(get(&c, "k"), some("before"));
    dev.log().mem().fail_forces(None);
    let (dev, c) = restart(&dev);
    assert_eq!(get(&c, "k"), some("before"));
    assert_clean(&dev);
}

#[test]
fn a_single_phase_commit_whose_force_fails_is_rejected_and_rolled_back_with_nothing_visible() {
    for mode in [DeliveryMode::Inline, DeliveryMode::Threaded] {
        let dev = durable_single_phase(mode);
        let (t, c) = app(&dev);
        c.put(b"a", b"old").unwrap();
        let tx = t.create_transaction(0, "").unwrap();
        c.put_in(tx, b"a", b"new").unwrap();
        c.put_in(tx, b"b", b"new").unwrap();
        dev.log().mem().fail_forces(Some(IO_DEVICE_ERROR));
        // While KTM falls back to the two phases, readers still see the old state.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, c2) = (seen.clone(), Client::unchecked(t.clone()));
        dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
            if phase == Phase::PrePrepare {
                s.lock().unwrap().push((get(&c2, "a"), get(&c2, "b")));
            }
        }));
        assert_eq!(t.commit_transaction(tx), NtStatus::TRANSACTION_ABORTED);
        assert_eq!(*seen.lock().unwrap(), [(some("old"), None)], "{mode:?}");
        assert_eq!((get(&c, "a"), get(&c, "b")), (some("old"), None));
        let k = dev.ktm().counters();
        assert_eq!(
            (
                k.sent(N::SinglePhaseCommit),
                k.answered(Answer::SinglePhaseReject)
            ),
            (1, 1)
        );
        assert_eq!(k.answered(Answer::RollbackEnlistment), 1, "the no vote");
        t.close_handle(tx);
        dev.log().mem().fail_forces(None);
        let (dev, c) = restart(&dev);
        assert_eq!(
            (get(&c, "a"), get(&c, "b")),
            (some("old"), None),
            "{mode:?}"
        );
        assert_clean(&dev);
    }
}

#[test]
fn a_commit_whose_record_cannot_be_forced_is_withheld_with_status_pending_and_kept() {
    let dev = durable(DeliveryMode::Inline);
    let (t, c) = app(&dev);
    let tx = t.create_transaction(0, "").unwrap();
    c.put_in(tx, b"a", b"1").unwrap();
    t.enlist_yes_rm(tx).unwrap();
    // The log device fails once ktmrm has voted yes and KTM has decided.
    let log = dev.clone();
    dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
        if phase == Phase::Prepare {
            log.log().mem().fail_forces(Some(IO_DEVICE_ERROR));
        }
    }));
    let committer = {
        let t = t.clone();
        std::thread::spawn(move || t.commit_transaction(tx))
    };
    let until = Instant::now() + Duration::from_secs(4);
    while dev.ktm().counters().pending_returns == 0 {
        assert!(
            Instant::now() < until,
            "COMMIT's callback never returned pending"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Applied and visible: the forced Prepare record and KTM's commit record make it durable.
    assert_eq!(get(&c, "a"), some("1"));
    dev.log().mem().fail_forces(None);
    let (dev2, c) = restart(&dev);
    // The commit call returns once the machine is gone (or once the model stops waiting).
    let st = committer.join().unwrap();
    assert!(
        matches!(st, NtStatus::SUCCESS) || st.is_error(),
        "CommitTransaction returned {st:?}"
    );
    assert_eq!(
        get(&c, "a"),
        some("1"),
        "KTM redelivered COMMIT after the restart"
    );
    assert_clean(&dev2);
}

/// Enlists in `tx` an RM that, inside its PREPARE, reads `key` in `tx` through ktmrm (as an RM
/// validating against ktmrm's data would), then votes yes. Returns what it read.
fn enlist_reader_rm(
    dev: &SimDevice,
    t: &Arc<SimTransport>,
    tx: u64,
    key: &'static str,
) -> Arc<Mutex<Vec<Result<String, NtStatus>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s, c) = (seen.clone(), Client::unchecked(t.clone()));
    let weak = dev.ktm().downgrade();
    let rm = dev
        .ktm()
        .create_resource_manager(Arc::new(move |d: Delivery| {
            let Some(k) = weak.upgrade() else {
                return NtStatus::RM_DISCONNECTED;
            };
            let answer = match d.notification {
                N::PrePrepare => Answer::PrePrepareComplete,
                N::Prepare => {
                    s.lock().unwrap().push(get_in(&c, tx, key));
                    Answer::PrepareComplete
                }
                N::Commit => Answer::CommitComplete,
                N::Rollback => Answer::RollbackComplete,
                _ => return NtStatus::SUCCESS,
            };
            let st = k.answer(d.enlistment, answer);
            if matches!(answer, Answer::CommitComplete | Answer::RollbackComplete) {
                k.close_enlistment(d.enlistment);
            }
            st
        }));
    let r = dev
        .ktm()
        .reference_transaction(t.process().id(), tx, TRANSACTION_ENLIST)
        .unwrap();
    dev.ktm().enlist(rm, &r, EnlistmentKey(77), 0xF).unwrap();
    seen
}

#[test]
fn a_read_in_a_transaction_ktm_is_committing_is_served_without_ktmrm_enlisted() {
    for mode in [DeliveryMode::Inline, DeliveryMode::Threaded] {
        let dev = SimDevice::with_config(config(mode));
        let (t, c) = app(&dev);
        c.put(b"k", b"v").unwrap();
        // ktmrm is not enlisted in tx: another RM is.
        let tx = t.create_transaction(0, "").unwrap();
        t.enlist_yes_rm(tx).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, c2) = (seen.clone(), Client::unchecked(t.clone()));
        dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
            if phase == Phase::PrePrepare {
                let list = c2.list_in(tx, b"").map_err(|e| e.status());
                let write = c2.put_in(tx, b"w", b"1").map_err(|e| e.status());
                s.lock().unwrap().push((get_in(&c2, tx, "k"), list, write));
            }
        }));
        assert_eq!(t.commit_transaction(tx), NtStatus::SUCCESS);
        assert_eq!(
            *seen.lock().unwrap(),
            [(
                Ok("v".to_string()),
                Ok(vec![b"k".to_vec()]),
                Err(Some(NtStatus::TRANSACTION_NOT_ACTIVE))
            )],
            "{mode:?}"
        );
        // Ended: like any ended transaction.
        assert_eq!(get_in(&c, tx, "k"), Err(NtStatus::TRANSACTION_NOT_ACTIVE));
        t.close_handle(tx);
        assert_eq!(dev.stats().live_transactions, 0);
        assert_clean(&dev);
    }
}

#[test]
fn a_read_after_ktmrm_answered_read_only_is_served_until_the_outcome_is_decided() {
    let dev = SimDevice::with_config(config(DeliveryMode::Inline));
    let (t, c) = app(&dev);
    c.put(b"k", b"v").unwrap();
    let tx = t.create_transaction(0, "").unwrap();
    // ktmrm enlists first (a read), so its PREPARE (answered read-only) comes first.
    assert_eq!(get_in(&c, tx, "k"), Ok("v".into()));
    let seen = enlist_reader_rm(&dev, &t, tx, "k");
    // After the decision (COMMIT under way), a read in tx where ktmrm holds nothing is refused
    // like one in an ended transaction: KTM tells only whether the outcome is decided.
    let decided = Arc::new(Mutex::new(Vec::new()));
    let (d, c2) = (decided.clone(), Client::unchecked(t.clone()));
    dev.ktm().set_phase_probe(Arc::new(move |_, phase| {
        if phase == Phase::Prepare {
            d.lock().unwrap().push(get_in(&c2, tx, "k"));
        }
    }));
    assert_eq!(t.commit_transaction(tx), NtStatus::SUCCESS);
    assert_eq!(dev.stats().read_only, 1);
    assert_eq!(*seen.lock().unwrap(), [Ok("v".to_string())]);
    assert_eq!(
        *decided.lock().unwrap(),
        [Err(NtStatus::TRANSACTION_NOT_ACTIVE)]
    );
    t.close_handle(tx);
    assert_clean(&dev);
}
