//! N threads committing at once, timed: the harness both ktmrm and the SQLite peer run in, so
//! the two are measured the same way.

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// One timed run of concurrent committers.
pub(crate) struct Timed {
    /// Commits timed (all threads).
    pub commits: u64,
    /// From the moment every thread was released to the moment the last one finished.
    pub wall: Duration,
    /// Every commit's latency, sorted.
    pub samples: Vec<Duration>,
    /// `counters()` after the run minus before it.
    pub counted: [u64; 2],
}

/// Runs `threads` threads. Each builds its committer with `make(thread)`, makes `warmup`
/// untimed commits, waits for the others, then makes `per_thread` timed ones; `commit(i)` gets
/// numbers unique to its thread. `counters` is read once every thread is warm and once all are
/// done (the host's disk flushes, for instance). Panics if a committer panics: a failed commit
/// is a broken benchmark, not a figure.
pub(crate) fn run<W, F>(
    threads: usize,
    per_thread: u64,
    warmup: u64,
    make: F,
    counters: &(dyn Fn() -> [u64; 2] + Sync),
) -> Timed
where
    F: Fn(usize) -> W + Sync,
    W: FnMut(u64),
{
    let threads = threads.max(1);
    let gate = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (make, gate) = (&make, &gate);
                s.spawn(move || {
                    let mut commit = make(t);
                    for i in 0..warmup {
                        commit(i);
                    }
                    gate.wait(); // warm
                    gate.wait(); // counters read: go
                    let mut v = Vec::with_capacity(per_thread as usize);
                    for i in 0..per_thread {
                        let t0 = Instant::now();
                        commit(warmup + i);
                        v.push(t0.elapsed());
                    }
                    gate.wait(); // done
                    v
                })
            })
            .collect();
        gate.wait();
        let before = counters();
        let t0 = Instant::now();
        gate.wait();
        gate.wait();
        let wall = t0.elapsed();
        let after = counters();
        let mut samples: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("a committer thread panicked"))
            .collect();
        samples.sort();
        Timed {
            commits: samples.len() as u64,
            wall,
            samples,
            counted: [after[0] - before[0], after[1] - before[1]],
        }
    })
}
