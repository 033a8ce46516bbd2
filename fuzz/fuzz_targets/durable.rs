//! Requests, KTM events, crashes and log-device failures against the durable engine behind the
//! durable KTM model: transactional and non-transacted writes, commits (two-phase, vetoed),
//! rollbacks (also racing a commit's phases), machine crashes between steps, crashes armed at
//! KTM's or the log's crash points that fire inside a later step, and a log device whose appends
//! or forces fail without a crash (until the next restart), with every interleaving KTM's
//! documentation allows (`SimConfig`'s default). After every step that no crash cut short, the
//! committed view is exactly what the app was told: a change is visible once acknowledged, and
//! a failure reported to the app leaves no trace. After every restart: each write the app was
//! told committed is there, a transaction whose commit was cut short by the crash is all there
//! or not at all, the engine's invariants hold; at the end, no protocol violation.
//!
//! A COMMIT whose record cannot be forced is withheld (STATUS_PENDING): KTM waits for it until
//! a restart; a short answer deadline ends that wait here, which the checker counts as
//! withheld, not as a violation.
#![no_main]

use arbitrary::Arbitrary;
use ktm_sim::{EnlistRace, LogCrash, Notification, SimConfig, SimDevice, SimFile, SimProcess};
use ktmrm_proto::{FILE_READ_DATA, FILE_WRITE_DATA, Limits, NtStatus, Request};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

#[derive(Arbitrary, Debug)]
enum Op {
    Put { tx: Option<u8>, key: u8, value: u8 },
    Delete { tx: Option<u8>, key: u8 },
    Create,
    Commit(u8),
    Rollback(u8),
    Veto(u8),
    YesRm(u8),
    Crash,
    ArmKtm(u8),
    ArmLog { force: u8, torn: u8, after: bool },
    /// The app's rollback races the next PREPREPARE (even) or PREPARE (odd) of a commit.
    RollbackDuring(u8),
    /// The log device starts failing (appends or forces) without a crash.
    FailLog { appends: bool },
}

/// `STATUS_IO_DEVICE_ERROR`.
const IO_DEVICE_ERROR: NtStatus = NtStatus(0xC000_0185_u32 as i32);

type Key = [u8; 2];
type Val = Option<Vec<u8>>;

/// One boot of the machine: the device, a process, its open of the device, its transactions
/// and the writes each has had accepted.
struct Boot {
    dev: SimDevice,
    p: SimProcess,
    file: SimFile,
    txs: Vec<(u64, Vec<(Key, Val)>)>,
    crashes: u64,
}

impl Boot {
    fn new(dev: SimDevice) -> Boot {
        let p = dev.process();
        let file = p.open(FILE_READ_DATA | FILE_WRITE_DATA);
        let crashes = dev.ktm().crash_count();
        Boot { dev, p, file, txs: Vec::new(), crashes }
    }

    fn io(&self, req: Request<'_>) -> NtStatus {
        let mut input = vec![0u8; req.encoded_len()];
        let n = req.encode(&mut input).unwrap_or(0);
        let mut out = vec![0u8; 70_000];
        self.file.ioctl(req.call().code(), &input[..n], &mut out).0
    }

    fn get(&self, key: &Key) -> Val {
        let req = Request::Get { tx: 0, key };
        let mut input = vec![0u8; req.encoded_len()];
        let n = req.encode(&mut input).unwrap_or(0);
        let mut out = vec![0u8; 70_000];
        let (st, info) = self.file.ioctl(req.call().code(), &input[..n], &mut out);
        match st {
            NtStatus::SUCCESS => ktmrm_proto::decode_get(&out[..info]).and_then(|(_, v)| v.map(<[u8]>::to_vec)),
            NtStatus::OBJECT_NAME_NOT_FOUND => None,
            st => panic!("get after recovery: {st:?}"),
        }
    }

    fn pick(&self, i: u8) -> Option<usize> {
        (!self.txs.is_empty()).then(|| usize::from(i) % self.txs.len())
    }
}

/// What the app knows: each key's value as last acknowledged, and which transactions' outcome
/// a crash left unknown (their writes, the values before them).
#[derive(Default)]
struct Model {
    store: BTreeMap<Key, Vec<u8>>,
    unknown: Vec<Vec<(Key, Val, Val)>>,
    /// Keys whose non-transacted write was cut short by a crash.
    loose: Vec<(Key, Val, Val)>,
}

impl Model {
    fn apply(&mut self, writes: &[(Key, Val)]) {
        for (k, v) in writes {
            match v {
                Some(v) => self.store.insert(*k, v.clone()),
                None => self.store.remove(k),
            };
        }
    }

    /// Each key a transaction wrote: (key, value before, value it wrote last).
    fn before(&self, writes: &[(Key, Val)]) -> Vec<(Key, Val, Val)> {
        let last: BTreeMap<Key, Val> = writes.iter().cloned().collect();
        last.into_iter()
            .map(|(k, v)| (k, self.store.get(&k).cloned(), v))
            .collect()
    }
}

fn key(k: u8) -> Key {
    [b'k', k % 8]
}

fuzz_target!(|ops: Vec<Op>| {
    let cfg = SimConfig {
        limits: Limits { max_keys: 64, max_bytes: 4096, max_write_set: 16, max_live_transactions: 8 },
        // Inline delivery answers before the model waits: only a withheld answer waits this long.
        answer_deadline: Some(std::time::Duration::from_millis(5)),
        ..SimConfig::default()
    };
    let Ok((dev, _)) = SimDevice::durable(cfg) else { return };
    let mut b = Boot::new(dev);
    let mut m = Model::default();
    for op in ops.into_iter().take(48) {
        step(&mut b, &mut m, op);
        if b.dev.ktm().crash_count() != b.crashes {
            restart(&mut b, &mut m);
        } else {
            // No crash: the committed view is exactly what the app was told.
            for k in 0..8u8 {
                let k = key(k);
                assert_eq!(b.get(&k), m.store.get(&k).cloned(), "{k:?} (no crash)");
            }
        }
    }
    for (h, _) in std::mem::take(&mut b.txs) {
        b.p.rollback(h);
        b.p.close_handle(h);
    }
    restart(&mut b, &mut m);
    let v = b.dev.finish();
    assert!(v.is_empty(), "protocol violations: {v:?}");
});

fn step(b: &mut Boot, m: &mut Model, op: Op) {
    match op {
        Op::Put { tx, key: k, value } => write(b, m, tx, key(k), Some(vec![value; usize::from(value % 5)])),
        Op::Delete { tx, key: k } => write(b, m, tx, key(k), None),
        Op::Create => {
            if let Ok(h) = b.p.create_transaction(0, "fuzz") {
                b.txs.push((h, Vec::new()));
            }
        }
        Op::Commit(i) => {
            let Some(i) = b.pick(i) else { return };
            let (h, writes) = b.txs.remove(i);
            let before = m.before(&writes);
            match b.p.commit(h) {
                NtStatus::SUCCESS => m.apply(&writes),
                // Cut short by a crash: the outcome is KTM's, known after recovery.
                _ if b.dev.ktm().crash_count() != b.crashes => m.unknown.push(before),
                _ => {}
            }
            b.p.close_handle(h);
        }
        Op::Rollback(i) => {
            let Some(i) = b.pick(i) else { return };
            let (h, _) = b.txs.remove(i);
            b.p.rollback(h);
            b.p.close_handle(h);
        }
        Op::Veto(i) => {
            if let Some(i) = b.pick(i) {
                b.p.enlist_veto_rm(b.txs[i].0);
            }
        }
        Op::YesRm(i) => {
            if let Some(i) = b.pick(i) {
                b.p.enlist_yes_rm(b.txs[i].0);
            }
        }
        Op::Crash => b.dev.crash(),
        Op::RollbackDuring(n) => {
            let n = if n % 2 == 0 { Notification::PrePrepare } else { Notification::Prepare };
            b.dev.ktm().rollback_during_next(n, EnlistRace::SameThread);
        }
        Op::ArmKtm(n) => {
            let k = b.dev.ktm();
            k.crash_at_step(k.crash_points().len() as u64 + u64::from(n % 8));
        }
        Op::ArmLog { force, torn, after } => {
            let force = b.dev.log().forces() + u64::from(force % 4);
            b.dev.log().arm(if after {
                LogCrash::AfterForce { force }
            } else {
                LogCrash::DuringForce { force, torn: usize::from(torn) }
            });
        }
        Op::FailLog { appends } => {
            let mem = b.dev.log().mem();
            if appends {
                mem.fail_appends(Some(IO_DEVICE_ERROR));
            } else {
                mem.fail_forces(Some(IO_DEVICE_ERROR));
            }
        }
    }
}

fn write(b: &mut Boot, m: &mut Model, tx: Option<u8>, k: Key, v: Val) {
    let h = tx.and_then(|i| b.pick(i)).map(|i| b.txs[i].0);
    let st = match &v {
        Some(v) => b.io(Request::Put { tx: h.unwrap_or(0), key: &k, value: v }),
        None => b.io(Request::Delete { tx: h.unwrap_or(0), key: &k }),
    };
    match (h, st) {
        (Some(h), NtStatus::SUCCESS) => {
            if let Some(t) = b.txs.iter_mut().find(|t| t.0 == h) {
                t.1.push((k, v));
            }
        }
        (None, NtStatus::SUCCESS) => m.apply(&[(k, v)]),
        // A non-transacted write cut short by a crash may or may not have reached the log; one
        // that failed otherwise (a failing log device included) changed nothing.
        (None, _) if b.dev.ktm().crash_count() != b.crashes => {
            let before = m.store.get(&k).cloned();
            m.loose.push((k, before, v));
        }
        _ => {}
    }
}

/// Crash (if nothing did), reboot, and check what recovery left against the model.
fn restart(b: &mut Boot, m: &mut Model) {
    // The log device works again after the reboot.
    b.dev.log().mem().fail_appends(None);
    b.dev.log().mem().fail_forces(None);
    // A crash armed to fire later may fire during recovery instead: reboot again.
    let mut booted = b.dev.restart();
    for _ in 0..3 {
        if booted.is_ok() {
            break;
        }
        booted = b.dev.restart();
    }
    let (dev, _) = booted.expect("restart");
    b.dev.ktm().disarm_crash();
    dev.log().disarm();
    *b = Boot::new(dev);
    // Transactions cut short: all or nothing, and the model adopts what recovery decided.
    for t in std::mem::take(&mut m.unknown) {
        let new = t.iter().all(|(k, _, v)| b.get(k) == *v);
        let old = t.iter().all(|(k, o, _)| b.get(k) == *o);
        assert!(new || old, "partial transaction after recovery: {t:?}");
        for (k, _, _) in &t {
            match b.get(k) {
                Some(v) => m.store.insert(*k, v),
                None => m.store.remove(k),
            };
        }
    }
    for (k, o, v) in std::mem::take(&mut m.loose) {
        let got = b.get(&k);
        assert!(got == o || got == v, "{k:?}: {got:?} is neither {o:?} nor {v:?}");
        match got {
            Some(v) => m.store.insert(k, v),
            None => m.store.remove(&k),
        };
    }
    for k in 0..8u8 {
        let k = key(k);
        assert_eq!(b.get(&k), m.store.get(&k).cloned(), "{k:?} after recovery");
    }
    assert_eq!(b.dev.check_engine(), Ok(()));
}
