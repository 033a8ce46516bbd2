//! The durable device with its log in a real file ([`SimDevice::durable_on_file`]): the forces
//! each kind of commit costs on the disk, group commit under concurrent committers, and what a
//! restart reads back from the file.

use std::collections::BTreeMap;
use std::path::Path;

use ktm_sim::{DeliveryMode, DiskCounts, NtStatus, SimConfig, SimDevice, SimFile, SimProcess};
use ktmrm_proto::{FILE_READ_DATA, FILE_WRITE_DATA, MAX_REQUEST_LEN, Request, decode_get};

const RW: u32 = FILE_READ_DATA | FILE_WRITE_DATA;

fn call(f: &SimFile, req: Request<'_>, out: &mut [u8]) -> (NtStatus, usize) {
    let mut input = [0u8; MAX_REQUEST_LEN];
    let n = req.encode(&mut input).unwrap();
    f.ioctl(req.call().code(), &input[..n], out)
}

fn put(f: &SimFile, tx: u64, key: &[u8], value: &[u8]) -> NtStatus {
    call(f, Request::Put { tx, key, value }, &mut []).0
}

fn get(f: &SimFile, key: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 256];
    let (st, n) = call(f, Request::Get { tx: 0, key }, &mut out);
    if st == NtStatus::OBJECT_NAME_NOT_FOUND {
        return None;
    }
    assert_eq!(st, NtStatus::SUCCESS, "GET {key:?}");
    Some(decode_get(&out[..n]).unwrap().1.unwrap().to_vec())
}

/// How one commit is made.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// ktmrm and a second RM: PREPREPARE, PREPARE, COMMIT.
    TwoPhase,
    /// ktmrm alone: SINGLE_PHASE_COMMIT.
    SinglePhase,
    /// A PUT with no transaction.
    NonTransacted,
}

fn commit_one(p: &SimProcess, f: &SimFile, kind: Kind, key: &[u8]) {
    if let Kind::NonTransacted = kind {
        assert_eq!(put(f, 0, key, b"v"), NtStatus::SUCCESS);
        return;
    }
    let tx = p.create_transaction(0, "").unwrap();
    assert_eq!(put(f, tx, key, b"v"), NtStatus::SUCCESS);
    if let Kind::TwoPhase = kind {
        assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS);
    }
    assert_eq!(p.commit(tx), NtStatus::SUCCESS, "{kind:?}");
    p.close_handle(tx);
}

/// A durable device whose log is `dir/ktmrm.wal`, asking KTM for single-phase commit for
/// [`Kind::SinglePhase`] only (the host's opt-in: KTM then commits ktmrm alone even beside
/// another RM, so the two-phase kind runs without it).
fn device(dir: &Path, kind: Kind) -> SimDevice {
    let cfg = SimConfig {
        delivery: DeliveryMode::Inline,
        single_phase: matches!(kind, Kind::SinglePhase),
        ..SimConfig::default()
    };
    SimDevice::durable_on_file(cfg, dir.join("ktmrm.wal"))
        .unwrap()
        .0
}

fn flushes(d: &SimDevice) -> u64 {
    d.log().disk_counts().map_or(0, |c: DiskCounts| c.flushes)
}

#[test]
fn one_committer_pays_the_protocol_floor_in_disk_flushes() {
    for (kind, floor) in [
        (Kind::TwoPhase, 2),
        (Kind::SinglePhase, 1),
        (Kind::NonTransacted, 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dev = device(dir.path(), kind);
        let (p, before) = (dev.process(), flushes(&dev));
        let f = p.open(RW);
        for i in 0..20u32 {
            commit_one(&p, &f, kind, format!("k{i}").as_bytes());
        }
        let forced = flushes(&dev) - before;
        assert_eq!(
            forced,
            20 * floor,
            "{kind:?}: fdatasync calls for 20 commits"
        );
        assert_eq!(dev.durability().failed, None);
        assert!(dev.finish().is_empty());
    }
}

#[test]
fn committed_writes_are_read_back_from_the_file_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dev = device(dir.path(), Kind::SinglePhase);
    let p = dev.process();
    let f = p.open(RW);
    commit_one(&p, &f, Kind::TwoPhase, b"two");
    commit_one(&p, &f, Kind::SinglePhase, b"single");
    commit_one(&p, &f, Kind::NonTransacted, b"direct");
    // Written, never committed: gone after the crash.
    let open = p.create_transaction(0, "").unwrap();
    assert_eq!(put(&f, open, b"open", b"x"), NtStatus::SUCCESS);
    let (dev2, report) = dev.restart().unwrap();
    assert!(report.in_doubt == 0, "{report:?}");
    let f2 = dev2.process().open(RW);
    for k in [&b"two"[..], b"single", b"direct"] {
        assert_eq!(get(&f2, k).as_deref(), Some(&b"v"[..]), "{k:?}");
    }
    assert_eq!(get(&f2, b"open"), None);
    drop((f, p, f2, dev2));
    // A device started afresh on the same file (a new KTM too) reads the same store.
    let dev3 = device(dir.path(), Kind::TwoPhase);
    let f3 = dev3.process().open(RW);
    assert_eq!(get(&f3, b"single").as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&f3, b"open"), None);
}

/// Eight threads commit at once, each notification on its committer's thread: every commit is
/// acknowledged, all of them are in the file after a restart, and the disk was flushed no more
/// often than one commit alone would (group commit can only lower it; the deterministic proof
/// that a force covers its waiters is `FileLog`'s own test).
#[test]
fn concurrent_committers_lose_nothing_and_never_flush_more_than_their_commits() {
    for kind in [Kind::TwoPhase, Kind::SinglePhase, Kind::NonTransacted] {
        let dir = tempfile::tempdir().unwrap();
        let dev = device(dir.path(), kind);
        let before = flushes(&dev);
        let (threads, each) = (8u32, 10u32);
        std::thread::scope(|s| {
            for t in 0..threads {
                let dev = &dev;
                s.spawn(move || {
                    let p = dev.process();
                    let f = p.open(RW);
                    for i in 0..each {
                        commit_one(&p, &f, kind, format!("t{t}/{i}").as_bytes());
                    }
                });
            }
        });
        let per_commit = if let Kind::TwoPhase = kind { 2 } else { 1 };
        let forced = flushes(&dev) - before;
        assert!(
            forced <= u64::from(threads * each) * per_commit,
            "{kind:?}: {forced}"
        );
        let (dev2, _) = dev.restart().unwrap();
        let f2 = dev2.process().open(RW);
        let mut seen = BTreeMap::new();
        for t in 0..threads {
            for i in 0..each {
                let k = format!("t{t}/{i}");
                seen.insert(k.clone(), get(&f2, k.as_bytes()));
            }
        }
        assert!(
            seen.values().all(|v| v.as_deref() == Some(&b"v"[..])),
            "{kind:?}"
        );
        assert_eq!(dev2.stats().keys, u64::from(threads * each));
    }
}

#[test]
fn an_unusable_log_path_is_a_clear_status() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("ktmrm.wal");
    let err = SimDevice::durable_on_file(SimConfig::default(), &missing).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("opening the log file"), "{text}");
    assert!(text.contains("OBJECT_NAME_NOT_FOUND"), "{text}");
}
