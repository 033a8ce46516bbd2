//! Criterion benchmarks of the durable path, the log in a real file in a temporary directory
//! (set `TMPDIR` to measure another file system), each group with its baseline beside it:
//! - `durable_commit`: one committer. Baseline `fsync_floor`, one append of a commit's log bytes
//!   plus fdatasync; then ktmrm's 1-put commits (two-phase beside a second RM, single-phase,
//!   non-transacted) and SQLite's upsert transaction (WAL, `synchronous=FULL`);
//! - `durable_group_commit`: 8 committers at once, single-phase, against SQLite with 8
//!   connections, in commits per second.
//!
//! `ktmrm-test --sim bench --durable` measures the same, counts the forces and prints the ratios
//! and targets; these give criterion's statistics and its comparison with a saved baseline.

// criterion_group! defines an undocumented function.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ktmrm_bench::durable::{FloorFile, Kind, committer, device};
use std::time::{Duration, Instant};

/// Log bytes of a single-phase 1-put commit (`ktmrm-test --sim bench --durable` prints it).
const RECORD_BYTES: usize = 122;
const COMMITTERS: u64 = 8;

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    // Each commit waits for the disk: few, long samples.
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    g
}

fn durable_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut g = group(c, "durable_commit");
    let mut floor = FloorFile::new(&dir.path().join("floor.bin"), RECORD_BYTES);
    g.bench_function("fsync_floor", |b| b.iter(|| floor.append()));
    for kind in Kind::ALL {
        let dev = device(&dir.path().join(format!("{}.wal", kind.name())), kind);
        let mut commit = committer(&dev, kind, 0);
        let mut i = 0u64;
        g.bench_function(kind.name(), |b| {
            b.iter(|| {
                i += 1;
                commit(i);
            });
        });
    }
    #[cfg(feature = "sqlite")]
    {
        use ktmrm_bench::durable::sqlite;
        let path = dir.path().join("peer.db");
        sqlite::database(&path);
        let mut commit = sqlite::committer(&path, 0);
        let mut i = 0u64;
        g.bench_function("sqlite_upsert", |b| {
            b.iter(|| {
                i += 1;
                commit(i);
            });
        });
    }
    g.finish();
}

/// Runs `iters` commits split over [`COMMITTERS`] threads, each built by `make(thread)`, and
/// returns the wall time.
fn concurrently<W: FnMut(u64)>(
    iters: u64,
    base: &mut u64,
    make: impl Fn(usize) -> W + Sync,
) -> Duration {
    let per = iters.div_ceil(COMMITTERS);
    let start = *base;
    *base += per;
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..COMMITTERS as usize {
            let make = &make;
            s.spawn(move || {
                let mut commit = make(th);
                for i in start..start + per {
                    commit(i);
                }
            });
        }
    });
    t.elapsed()
}

fn durable_group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut g = group(c, "durable_group_commit");
    g.throughput(Throughput::Elements(1));
    let dev = device(&dir.path().join("group.wal"), Kind::SinglePhase);
    let mut base = 0u64;
    g.bench_function("single_phase_8_committers", |b| {
        b.iter_custom(|iters| {
            concurrently(iters, &mut base, |t| committer(&dev, Kind::SinglePhase, t))
        });
    });
    #[cfg(feature = "sqlite")]
    {
        use ktmrm_bench::durable::sqlite;
        let path = dir.path().join("group.db");
        sqlite::database(&path);
        let mut base = 0u64;
        g.bench_function("sqlite_8_connections", |b| {
            b.iter_custom(|iters| concurrently(iters, &mut base, |t| sqlite::committer(&path, t)));
        });
    }
    g.finish();
}

criterion_group!(benches, durable_commit, durable_group_commit);
criterion_main!(benches);
