//! ktmrm's committers: the durable simulated device with its log in a real file (the driver's
//! `FileLog` over [`ktm_sim::DiskFile`]), one process and one open of the device per thread, each
//! commit a 1-put transaction through the KTM model or a non-transacted PUT.

use super::committers::{self, Timed};
use crate::suite::{VALUE, key};
use ktm_sim::{DeliveryMode, SimConfig, SimDevice};
use ktmrm_proto::{FILE_READ_DATA, FILE_WRITE_DATA, NtStatus, Request};
use serde::Serialize;
use std::path::Path;

/// How a commit is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A 1-put transaction with a second RM enlisted (the transacted registry's place), so KTM
    /// runs PREPREPARE, PREPARE, COMMIT: a forced Prepare record before the yes vote and a forced
    /// Commit record before CommitComplete. Protocol floor: 2 forces.
    TwoPhase,
    /// A 1-put transaction with ktmrm its only RM, on a device that asks KTM for single-phase
    /// commit (`SimConfig::single_phase`, the host's opt-in for a sole writer):
    /// SINGLE_PHASE_COMMIT, Prepare and Commit appended together and forced once. Floor: 1.
    SinglePhase,
    /// A PUT with no transaction: Prepare and Commit under the null UOW, forced once. Floor: 1.
    NonTransacted,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 3] = [Kind::TwoPhase, Kind::SinglePhase, Kind::NonTransacted];

    /// Forces per commit the protocol cannot do without, for one committer alone.
    #[must_use]
    pub const fn floor(self) -> f64 {
        match self {
            Kind::TwoPhase => 2.0,
            Kind::SinglePhase | Kind::NonTransacted => 1.0,
        }
    }

    /// The name used in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Kind::TwoPhase => "two_phase",
            Kind::SinglePhase => "single_phase",
            Kind::NonTransacted => "non_transacted",
        }
    }
}

/// What a ktmrm run leaves besides its timings.
pub(crate) struct KtmrmRun {
    pub timed: Timed,
    /// fdatasync calls on the log file during the timed commits.
    pub flushes: u64,
    /// Forces the engine asked the log for during them (a force of records already durable
    /// costs no flush).
    pub engine_forces: u64,
    /// Log bytes per commit.
    pub log_bytes_per_commit: f64,
}

/// A new durable device whose log is the file `path` (removed first), set up for `kind`.
#[must_use]
pub fn device(path: &Path, kind: Kind) -> SimDevice {
    let _ = std::fs::remove_file(path);
    let cfg = SimConfig {
        delivery: DeliveryMode::Inline,
        // Single-phase commit is the host's opt-in (the engine asks for it only when told it
        // is the sole writer); the two-phase kind runs beside a second RM without it.
        single_phase: kind == Kind::SinglePhase,
        ..SimConfig::default()
    };
    SimDevice::durable_on_file(cfg, path)
        .expect("the durable device starts")
        .0
}

/// One committer of `kind` on `dev` (its own process and open of the device): `commit(i)`
/// commits key `i` of committer `t`. Panics if a commit fails (a broken benchmark).
pub fn committer(dev: &SimDevice, kind: Kind, t: usize) -> impl FnMut(u64) + use<> {
    let p = dev.process();
    let f = p.open(FILE_READ_DATA | FILE_WRITE_DATA);
    let mut buf = [0u8; 128];
    move |i: u64| {
        let k = key((t as u64) << 40 | i);
        let tx = match kind {
            Kind::NonTransacted => 0,
            _ => p.create_transaction(0, "").expect("CreateTransaction"),
        };
        let req = Request::Put {
            tx,
            key: &k,
            value: VALUE,
        };
        let len = req.encode(&mut buf).expect("a PUT fits");
        let (st, _) = f.ioctl(req.call().code(), &buf[..len], &mut []);
        assert_eq!(st, NtStatus::SUCCESS, "PUT");
        if tx != 0 {
            if kind == Kind::TwoPhase {
                assert_eq!(p.enlist_yes_rm(tx), NtStatus::SUCCESS, "second RM");
            }
            assert_eq!(p.commit(tx), NtStatus::SUCCESS, "commit");
            p.close_handle(tx);
        }
    }
}

/// `threads` committers of `kind` against a new durable device whose log is `dir/<name>`.
pub(crate) fn run(
    dir: &Path,
    kind: Kind,
    threads: usize,
    per_thread: u64,
    warmup: u64,
) -> KtmrmRun {
    let path = dir.join(format!("ktmrm-{}-{threads}.wal", kind.name()));
    let dev = device(&path, kind);
    let counters = || {
        let flushes = dev.log().disk_counts().map_or(0, |c| c.flushes);
        [flushes, dev.durability().forces]
    };
    let make = |t: usize| committer(&dev, kind, t);
    let timed = committers::run(threads, per_thread, warmup, make, &counters);
    let all = (per_thread + warmup) * threads.max(1) as u64;
    assert_eq!(dev.stats().keys, all, "every commit is in the store");
    assert_eq!(dev.durability().failed, None, "the log did not fail");
    let violations = dev.finish();
    assert!(violations.is_empty(), "KTM protocol: {violations:?}");
    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
    let [flushes, engine_forces] = timed.counted;
    drop(dev);
    let _ = std::fs::remove_file(&path);
    KtmrmRun {
        timed,
        flushes,
        engine_forces,
        log_bytes_per_commit: len as f64 / all as f64,
    }
}
