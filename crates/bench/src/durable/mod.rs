//! The durable benchmark (`ktmrm-test --sim bench --durable`): ktmrm's durable engine with its
//! log in a real file, against the disk's own floor and against SQLite, in one run on one file
//! system.
//!
//! - Forces per commit: fdatasync calls on the log file per commit, for each [`Kind`] at 1, 2, 4
//!   and 8 concurrent committers. One committer sits on the protocol's floor (2, 1, 1); more
//!   share forces (group commit), so the figure falls.
//! - Latency p50/p99 and commits per second of every run.
//! - The fsync floor: one append of a commit's log bytes plus fdatasync, to a file in the same
//!   directory, each timed.
//! - The peer: SQLite in WAL mode with `synchronous=FULL`, one upsert per transaction, at 1 and
//!   8 connections.
//!
//! The whole set runs `rounds` times, each round every configuration once, so a drift of the
//! disk during the run touches all alike; each ratio is the median of its per-round ratios.

mod committers;
mod ktmrm;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use ktmrm::{Kind, committer, device};

use crate::measure::quantile;
use crate::suite::Target;
use ktm_sim::DiskFile;
use ktmrm_core::wal::FileIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct DurableConfig {
    /// Where the log files, the SQLite databases and the floor's file go (one file system).
    pub dir: PathBuf,
    /// Concurrent committers to measure; the targets read 1 and 8.
    pub committers: Vec<usize>,
    /// Timed commits per run (split between the committers).
    pub commits: u64,
    /// Untimed commits per committer before each run.
    pub warmup: u64,
    /// Rounds of the whole set.
    pub rounds: usize,
}

impl DurableConfig {
    /// The full run in `dir`: about half a minute on a disk whose fdatasync takes ~0.2 ms.
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        DurableConfig {
            dir,
            committers: vec![1, 2, 4, 8],
            commits: 400,
            warmup: 5,
            rounds: 3,
        }
    }

    /// A small run for tests: the same shape, a few commits per run.
    #[must_use]
    pub fn quick(dir: PathBuf) -> Self {
        DurableConfig {
            commits: 48,
            warmup: 2,
            rounds: 1,
            ..DurableConfig::new(dir)
        }
    }
}

/// One configuration's figures (pooled over the rounds).
#[derive(Clone, Debug, Serialize)]
pub struct RunFigures {
    /// Concurrent committers.
    pub committers: usize,
    /// Timed commits, all rounds.
    pub commits: u64,
    /// Disk flushes (fdatasync) per commit; `None` for SQLite (not counted).
    pub forces_per_commit: Option<f64>,
    /// Forces the engine asked for per commit (a waiter whose record is already durable costs
    /// no flush); `None` for SQLite.
    pub engine_forces_per_commit: Option<f64>,
    /// Median commit latency, µs.
    pub p50_us: f64,
    /// 99th percentile commit latency, µs.
    pub p99_us: f64,
    /// Commits per second (all committers; median over rounds).
    pub commits_per_second: f64,
    /// Wall time per commit, µs (1 / commits per second).
    pub us_per_commit: f64,
}

/// The figures of the durable benchmark (the `durable` section of the JSON).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DurableFigures {
    /// Where the files were.
    pub dir: String,
    /// Rounds run.
    pub rounds: usize,
    /// Disk flushes per commit: kind → committers → flushes.
    pub forces_per_commit: BTreeMap<&'static str, BTreeMap<usize, f64>>,
    /// Every ktmrm run: kind → its runs by committers.
    pub ktmrm: BTreeMap<&'static str, Vec<RunFigures>>,
    /// SQLite's runs; empty when built without the `sqlite` feature.
    pub sqlite: Vec<RunFigures>,
    /// Median latency of one append of a single-phase commit's log bytes plus fdatasync, µs
    /// (measured taking turns with ktmrm's and SQLite's single commits).
    pub fsync_floor_us: f64,
    /// 99th percentile of the same, µs.
    pub fsync_floor_p99_us: f64,
    /// Log bytes per single-phase commit (what the floor appends).
    pub record_bytes: u64,
}

/// The durable ratios (medians of per-round ratios); `None` when not measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DurableRatios {
    /// Time per commit, ktmrm single-phase / SQLite, 1 committer each, taking turns commit by
    /// commit (total time / total time).
    pub durable_commit_vs_sqlite_1: Option<f64>,
    /// Wall time per commit at 8 committers (8 connections), from the two runs' throughputs.
    pub durable_commit_vs_sqlite_8: Option<f64>,
    /// Latency of a ktmrm single-phase commit / that of the fsync floor's append just after it:
    /// the median of these per-pair ratios.
    pub durable_commit_vs_fsync_floor: Option<f64>,
}

/// Everything the durable benchmark measured, per round too.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DurableReport {
    /// The figures.
    pub durable: DurableFigures,
    /// The ratios.
    pub ratios: DurableRatios,
    /// Each ratio in each round, in round order.
    pub round_ratios: BTreeMap<&'static str, Vec<f64>>,
    /// The targets and whether each was met.
    pub targets: Vec<Target>,
}

/// The physical floor of a commit: appends of one record's bytes to a file, each followed by
/// fdatasync, through the same [`DiskFile`] calls `FileLog` makes.
pub struct FloorFile {
    file: DiskFile,
    record: Vec<u8>,
    at: u64,
}

impl FloorFile {
    /// A new (emptied) file at `path` that [`FloorFile::append`] adds `len` bytes to.
    #[must_use]
    pub fn new(path: &std::path::Path, len: usize) -> Self {
        let _ = std::fs::remove_file(path);
        FloorFile {
            file: DiskFile::open(path).expect("create the floor's file"),
            record: vec![0x5A; len.max(1)],
            at: 0,
        }
    }

    /// One append plus fdatasync.
    pub fn append(&mut self) {
        self.file.write_at(self.at, &self.record).expect("write");
        self.file.flush().expect("fdatasync");
        self.at += self.record.len() as u64;
    }
}

impl Drop for FloorFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.file.path());
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Timings of one configuration over the rounds.
#[derive(Default)]
struct Pool {
    samples: Vec<Duration>,
    commits: u64,
    flushes: u64,
    engine_forces: u64,
    rates: Vec<f64>,
}

impl Pool {
    fn add(&mut self, t: &committers::Timed, flushes: u64, engine_forces: u64) -> f64 {
        self.samples.extend_from_slice(&t.samples);
        self.commits += t.commits;
        self.flushes += flushes;
        self.engine_forces += engine_forces;
        let rate = t.commits as f64 / t.wall.as_secs_f64();
        self.rates.push(rate);
        rate
    }

    fn figures(mut self, committers: usize, counted: bool) -> RunFigures {
        self.samples.sort();
        let rate = median(&self.rates).unwrap_or(0.0);
        let per = |n: u64| counted.then(|| n as f64 / self.commits.max(1) as f64);
        RunFigures {
            committers,
            commits: self.commits,
            forces_per_commit: per(self.flushes),
            engine_forces_per_commit: per(self.engine_forces),
            p50_us: us(quantile(&self.samples, 0.50)),
            p99_us: us(quantile(&self.samples, 0.99)),
            commits_per_second: rate,
            us_per_commit: if rate > 0.0 { 1e6 / rate } else { 0.0 },
        }
    }
}

/// Latencies of one committer each taking turns, commit by commit.
struct Paired {
    /// ktmrm single-phase commits.
    ours: Vec<Duration>,
    /// Appends plus fdatasync of a commit's log bytes.
    floor: Vec<Duration>,
    /// SQLite upsert transactions (when built with it).
    sqlite: Option<Vec<Duration>>,
}

/// One committer of each, taking turns commit by commit: a ktmrm single-phase commit, a floor
/// append, a SQLite commit. All three see the disk in the same state: on a shared VM its
/// latency jumps between modes (0.2 ms and 4 ms fdatasyncs here) within seconds, which would
/// land on one side of a ratio measured in separate runs.
fn paired(cfg: &DurableConfig, record_bytes: usize) -> Paired {
    let dev = device(&cfg.dir.join("ktmrm-paired.wal"), Kind::SinglePhase);
    let mut ours = committer(&dev, Kind::SinglePhase, 0);
    let mut floor = FloorFile::new(&cfg.dir.join("fsync-floor.bin"), record_bytes);
    let mut theirs = peer_committer(cfg);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let mut p = Paired {
        ours: Vec::new(),
        floor: Vec::new(),
        sqlite: theirs.as_ref().map(|_| Vec::new()),
    };
    for i in 0..cfg.warmup + cfg.commits {
        let o = time(&mut || ours(i));
        let f = time(&mut || floor.append());
        let s = theirs.as_mut().map(|c| time(&mut || c(i)));
        if i >= cfg.warmup {
            p.ours.push(o);
            p.floor.push(f);
            if let (Some(v), Some(s)) = (p.sqlite.as_mut(), s) {
                v.push(s);
            }
        }
    }
    drop((ours, dev));
    let _ = std::fs::remove_file(cfg.dir.join("ktmrm-paired.wal"));
    #[cfg(feature = "sqlite")]
    sqlite::remove(&cfg.dir.join("sqlite-paired.db"));
    p
}

/// A SQLite committer on a new database in `cfg.dir`, when built with SQLite.
fn peer_committer(cfg: &DurableConfig) -> Option<Box<dyn FnMut(u64)>> {
    #[cfg(feature = "sqlite")]
    {
        let path = cfg.dir.join("sqlite-paired.db");
        sqlite::database(&path);
        Some(Box::new(sqlite::committer(&path, 0)))
    }
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = cfg;
        None
    }
}

/// Runs the durable benchmark.
#[must_use]
pub fn run(cfg: &DurableConfig) -> DurableReport {
    std::fs::create_dir_all(&cfg.dir).expect("create the benchmark directory");
    let per_thread = |n: usize| (cfg.commits / n.max(1) as u64).max(1);
    let mut pools: BTreeMap<(Kind, usize), Pool> = BTreeMap::new();
    let mut peer: BTreeMap<usize, Pool> = BTreeMap::new();
    let mut floor = Vec::new();
    let mut rounds: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut record_bytes = 0u64;
    for _ in 0..cfg.rounds.max(1) {
        let mut spc = BTreeMap::new();
        for kind in Kind::ALL {
            for &n in &cfg.committers {
                let r = ktmrm::run(&cfg.dir, kind, n, per_thread(n), cfg.warmup);
                let rate =
                    pools
                        .entry((kind, n))
                        .or_default()
                        .add(&r.timed, r.flushes, r.engine_forces);
                if kind == Kind::SinglePhase {
                    spc.insert(n, rate);
                    if n == 1 {
                        record_bytes = r.log_bytes_per_commit.round() as u64;
                    }
                }
            }
        }
        let p = paired(cfg, record_bytes as usize);
        let per_pair: Vec<f64> = p
            .ours
            .iter()
            .zip(&p.floor)
            .map(|(o, f)| o.as_secs_f64() / f.as_secs_f64())
            .collect();
        if let Some(r) = median(&per_pair) {
            rounds
                .entry("durable_commit_vs_fsync_floor")
                .or_default()
                .push(r);
        }
        if let Some(theirs) = &p.sqlite {
            let sum = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
            rounds
                .entry("durable_commit_vs_sqlite_1")
                .or_default()
                .push(sum(&p.ours) / sum(theirs));
        }
        floor.extend(p.floor);
        peer_round(cfg, &spc, &mut peer, &mut rounds);
    }
    floor.sort();
    let mut figures = DurableFigures {
        dir: cfg.dir.display().to_string(),
        rounds: cfg.rounds.max(1),
        fsync_floor_us: us(quantile(&floor, 0.50)),
        fsync_floor_p99_us: us(quantile(&floor, 0.99)),
        record_bytes,
        ..DurableFigures::default()
    };
    for ((kind, n), pool) in pools {
        let f = pool.figures(n, true);
        if let Some(x) = f.forces_per_commit {
            figures
                .forces_per_commit
                .entry(kind.name())
                .or_default()
                .insert(n, x);
        }
        figures.ktmrm.entry(kind.name()).or_default().push(f);
    }
    figures.sqlite = peer.into_iter().map(|(n, p)| p.figures(n, false)).collect();
    let ratio = |name: &str| rounds.get(name).and_then(|v| median(v));
    let ratios = DurableRatios {
        durable_commit_vs_sqlite_1: ratio("durable_commit_vs_sqlite_1"),
        durable_commit_vs_sqlite_8: ratio("durable_commit_vs_sqlite_8"),
        durable_commit_vs_fsync_floor: ratio("durable_commit_vs_fsync_floor"),
    };
    let targets = targets(&figures, &ratios);
    DurableReport {
        durable: figures,
        ratios,
        round_ratios: rounds,
        targets,
    }
}

/// One round of the SQLite peer at 1 and 8 connections, and its ratios to ktmrm's single-phase
/// commits of the same round (`ours`: commits per second by committers).
#[cfg(feature = "sqlite")]
fn peer_round(
    cfg: &DurableConfig,
    ours: &BTreeMap<usize, f64>,
    peer: &mut BTreeMap<usize, Pool>,
    rounds: &mut BTreeMap<&'static str, Vec<f64>>,
) {
    for n in [1, 8] {
        let per_thread = (cfg.commits / n as u64).max(1);
        let t = sqlite::run(&cfg.dir, n, per_thread, cfg.warmup);
        let rate = peer.entry(n).or_default().add(&t, 0, 0);
        // At 1 connection the ratio comes from the paired run; at 8, from the throughputs.
        if let (8, Some(ours)) = (n, ours.get(&n)) {
            // Time per commit is 1 / rate: ours / theirs = their rate / ours.
            rounds
                .entry("durable_commit_vs_sqlite_8")
                .or_default()
                .push(rate / ours);
        }
    }
}

/// Built without SQLite: no peer, and its targets count as missed.
#[cfg(not(feature = "sqlite"))]
fn peer_round(
    _: &DurableConfig,
    _: &BTreeMap<usize, f64>,
    _: &mut BTreeMap<usize, Pool>,
    _: &mut BTreeMap<&'static str, Vec<f64>>,
) {
}

/// The durable targets. A figure that was not measured (no SQLite in this build, or 1 or 8
/// committers not in the configuration) misses its target.
fn targets(f: &DurableFigures, r: &DurableRatios) -> Vec<Target> {
    let target = |name: String, value: Option<f64>, limit: f64| Target {
        name,
        value: value.unwrap_or(f64::NAN),
        limit,
        met: value.is_some_and(|v| v <= limit),
    };
    let fpc = |k: Kind, n: usize| {
        f.forces_per_commit
            .get(k.name())
            .and_then(|m| m.get(&n))
            .copied()
    };
    let mut t = Vec::new();
    for k in Kind::ALL {
        t.push(target(
            format!(
                "{} forces per commit, 1 committer <= the protocol's {}",
                k.name(),
                k.floor()
            ),
            fpc(k, 1),
            k.floor(),
        ));
    }
    for k in Kind::ALL {
        let fall = fpc(k, 8).zip(fpc(k, 1)).map(|(a, b)| a / b);
        t.push(target(
            format!(
                "{} forces per commit fall with concurrency: at 8 committers / at 1 < 1",
                k.name()
            ),
            fall,
            // Strictly below 1: any shared force at all.
            1.0 - 1e-9,
        ));
    }
    t.push(target(
        "two_phase forces per commit at 8 committers <= 0.5".into(),
        fpc(Kind::TwoPhase, 8),
        0.5,
    ));
    t.push(target(
        "single-phase time per commit / SQLite's, 1 committer <= 1.2".into(),
        r.durable_commit_vs_sqlite_1,
        1.2,
    ));
    t.push(target(
        "single-phase time per commit / SQLite's, 8 committers <= 1.0".into(),
        r.durable_commit_vs_sqlite_8,
        1.0,
    ));
    t.push(target(
        "single-phase commit latency / fsync floor, 1 committer <= 1.2".into(),
        r.durable_commit_vs_fsync_floor,
        1.2,
    ));
    t
}
