//! What serializability costs: a transaction that reads one key and writes it back, at read
//! committed and at serializable, timed in turns; and what one point read costs in a
//! serializable transaction's read set, measured against the read-set quota.

use crate::direct::DirectEngine;
use crate::measure::{Measurement, quantile};
use crate::suite::{VALUE, filled};
use ktmrm_proto::{Isolation, NtStatus, Request};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The read-set quota of one serializable transaction, as README "Semantics" documents it.
pub const READ_SET_QUOTA: u64 = 64 * 1024;

/// Keys in the store the read-modify-write transactions run over.
const STORE_KEYS: u64 = 10_000;

/// The read set's cost per point read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadSet {
    /// Distinct point reads one serializable transaction got answered before its next read
    /// was refused with STATUS_QUOTA_EXCEEDED (`None`: never refused within the bound, so the
    /// engine enforces no read-set quota).
    pub reads_within_quota: Option<u64>,
    /// [`READ_SET_QUOTA`] / `reads_within_quota`, rounded to whole bytes.
    pub bytes_per_point_read: Option<u64>,
    /// How the figure was obtained.
    pub method: &'static str,
}

/// Reads distinct absent keys in one serializable transaction until the quota refuses one.
#[must_use]
pub fn read_set() -> ReadSet {
    let mut e = DirectEngine::new(ktmrm_proto::Limits::default());
    let tx = e.begin();
    // Any cost of at least one byte per read exhausts the quota well within this bound.
    let bound = READ_SET_QUOTA + 1;
    let mut reads = None;
    for i in 0..bound {
        let req = Request::Get {
            tx,
            key: &crate::suite::key(i),
        };
        let st = e.call_stating(req, Isolation::Serializable, 256);
        if st == NtStatus::QUOTA_EXCEEDED {
            reads = Some(i);
            break;
        }
    }
    e.rollback_last();
    ReadSet {
        reads_within_quota: reads,
        bytes_per_point_read: reads.filter(|&n| n > 0).map(|n| READ_SET_QUOTA / n),
        method: "measured: the 64 KiB read-set quota divided by the distinct point reads one \
                 serializable transaction got answered before STATUS_QUOTA_EXCEEDED",
    }
}

/// One read-modify-write transaction of key `i` of a [`filled`] store at `level`; true when it
/// committed.
fn rmw(e: &mut DirectEngine, level: Isolation, i: u64) -> bool {
    let (k, len) = crate::suite::prefixed_key(b"", (i % STORE_KEYS) | 1 << 63);
    let key = &k[..len];
    let tx = e.begin();
    let read = e.call_stating(Request::Get { tx, key }, level, 256);
    let write = e.call_stating(
        Request::Put {
            tx,
            key,
            value: VALUE,
        },
        level,
        0,
    );
    read == NtStatus::SUCCESS && write == NtStatus::SUCCESS && e.commit_last()
}

/// The read-modify-write transaction at both levels on one store, `reps` rounds of `ops` each,
/// the levels taking turns in every round, first in every other (so a drift of the machine's speed, and the store's
/// place in memory, are the same for both: two stores of their own differed by up to 2x from
/// run to run). Returns both measurements and the median of the per-round ratios serializable
/// / read committed.
pub fn read_modify_write(ops: u64, reps: usize) -> (Measurement, Measurement, f64) {
    let levels = [
        ("engine_rmw_tx_read_committed", Isolation::ReadCommitted),
        ("engine_rmw_tx_serializable", Isolation::Serializable),
    ];
    let mut e = filled(STORE_KEYS);
    let mut means: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut each: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut ratios = Vec::with_capacity(reps);
    let mut next = 0u64;
    let mut failed = 0u64;
    for rep in 0..reps.max(1) {
        let mut round = [0.0; 2];
        // Which level goes first alternates, so neither always follows the other.
        for n in [rep % 2, 1 - rep % 2] {
            let level = &levels[n].1;
            let t = Instant::now();
            for _ in 0..ops {
                next += 1;
                failed += u64::from(!rmw(&mut e, *level, next));
            }
            round[n] = t.elapsed().as_nanos() as f64 / ops.max(1) as f64;
            means[n].push(round[n]);
        }
        ratios.push(round[1] / round[0]);
    }
    // Per-transaction percentiles: one more pass per level, each transaction timed.
    for (n, (_, level)) in levels.iter().enumerate() {
        for _ in 0..ops {
            next += 1;
            let t = Instant::now();
            failed += u64::from(!rmw(&mut e, *level, next));
            each[n].push(t.elapsed());
        }
        each[n].sort();
    }
    assert_eq!(failed, 0, "every read-modify-write transaction committed");
    let ns = |d: Duration| d.as_nanos() as f64;
    let [rc, ser] = [0, 1].map(|n| Measurement {
        name: levels[n].0.into(),
        ops,
        mean_ns: median(&mut means[n]),
        p50_ns: ns(quantile(&each[n], 0.50)),
        p99_ns: ns(quantile(&each[n], 0.99)),
    });
    (rc, ser, median(&mut ratios))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
