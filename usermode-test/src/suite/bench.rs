//! Per-operation latency through a transport. Each operation is a named closure timed one call
//! at a time, so a later issue can add operations, or compare a [`BenchReport`] against stored
//! baselines, without touching the measuring code.

use crate::client::{Client, Isolation, TxSource};
use crate::error::{Error, Result};
use crate::transport::{Transport, TransportKind};
use ktmrm_proto::NtStatus;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency summary of one operation, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct OpResult {
    /// Operation name (`put`, `get`, `tx-put`, …).
    pub name: String,
    /// What one iteration does.
    pub what: String,
    /// Timed iterations.
    pub iterations: usize,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Iterations per second (1 / mean).
    pub ops_per_second: f64,
}

/// Ratios between operations of the same run (means).
#[derive(Clone, Debug, Serialize)]
pub struct TransportRatios {
    /// A ktmw32 transaction with one ktmrm PUT / the same transaction with no RM.
    pub ktmrm_tx_vs_bare_ktm: Option<f64>,
    /// A ktmw32 transaction with one ktmrm PUT / one with a TxR value write (Windows only).
    pub ktmrm_tx_vs_txr: Option<f64>,
}

/// Every operation's result.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Which transport was measured.
    pub transport: TransportKind,
    /// One entry per operation.
    pub ops: Vec<OpResult>,
    /// Ratios between them.
    pub transport_ratios: TransportRatios,
}

impl BenchReport {
    /// A table for people.
    #[must_use]
    pub fn human(&self) -> String {
        let mut s = format!(
            "bench on the {} transport (latency per iteration, µs)\n",
            self.transport.name()
        );
        s.push_str(&format!(
            "{:<16} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
            "op", "n", "p50", "p90", "p99", "max", "ops/s"
        ));
        for o in &self.ops {
            s.push_str(&format!(
                "{:<16} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0}\n",
                o.name, o.iterations, o.p50_us, o.p90_us, o.p99_us, o.max_us, o.ops_per_second
            ));
        }
        let show = |r: Option<f64>| r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}"));
        s.push_str(&format!(
            "ratios: ktmrm 1-put tx / bare KTM tx {}, ktmrm 1-put tx / TxR 1-value tx {}\n",
            show(self.transport_ratios.ktmrm_tx_vs_bare_ktm),
            show(self.transport_ratios.ktmrm_tx_vs_txr)
        ));
        s
    }
}

pub use ktmrm_bench::quantile;

/// The engine suite's report as a table: measurements, ratios, memory, targets.
#[must_use]
pub fn engine_table(r: &ktmrm_bench::Report) -> String {
    let mut s = String::from("engine suite (baselines measured in this run; ns per operation)\n");
    s.push_str(&format!(
        "{:<44} {:>10} {:>10} {:>10}\n",
        "measurement", "mean", "p50", "p99"
    ));
    for m in r.measurements.values() {
        s.push_str(&format!(
            "{:<44} {:>10.0} {:>10.0} {:>10.0}\n",
            m.name, m.mean_ns, m.p50_ns, m.p99_ns
        ));
    }
    let q = &r.ratios;
    s.push_str(&format!(
        "ratios: engine/btreemap {:.2}, sim/btreemap {:.2}, scale largest/smallest {:.2}, commit per key largest/10 {:.2}\n",
        q.engine_vs_btreemap, q.sim_vs_btreemap, q.scale_1e6_vs_1e3, q.commit_per_key_1000_vs_10
    ));
    s.push_str(&format!(
        "shared 18-byte key prefix / random keys, same store size: {:.2} (no target: a known limit)\n",
        q.shared_prefix_vs_random
    ));
    s.push_str(&format!(
        "read-modify-write tx, serializable / read committed: {:.2}\n",
        q.serializable_vs_read_committed
    ));
    match r.read_set.bytes_per_point_read {
        Some(b) => s.push_str(&format!(
            "read set: {b} bytes per point read ({} reads within the 64 KiB quota)\n",
            r.read_set.reads_within_quota.unwrap_or(0)
        )),
        None => s.push_str("read set: no STATUS_QUOTA_EXCEEDED within the bound (no quota?)\n"),
    }
    let m = &r.scale_model;
    s.push_str(&format!(
        "scale model: one miss {:.0} ns (random loads over {} MiB); the largest store adds {:.0} ns = {:.2} misses per tx; one-miss floor of the scale ratio here {:.2}\n",
        m.miss_ns,
        m.buffer_bytes >> 20,
        m.largest_ns - m.smallest_ns,
        m.added_misses_per_tx,
        m.one_miss_floor_ratio
    ));
    match r.memory.overhead_bytes_per_key {
        Some(o) => s.push_str(&format!(
            "memory: {o:.1} bytes of overhead per stored key ({} keys)\n",
            r.memory.keys
        )),
        None => s.push_str("memory: not measured (no counting allocator)\n"),
    }
    for t in &r.targets {
        let verdict = if t.met { "met" } else { "MISSED" };
        s.push_str(&format!(
            "target {verdict:<6} {} : {:.2} (limit {})\n",
            t.name, t.value, t.limit
        ));
    }
    s
}

/// The durable suite's report as tables: forces per commit, each run's latency and
/// throughput, the floor, SQLite, the ratios and the targets.
#[must_use]
pub fn durable_table(r: &ktmrm_bench::durable::DurableReport) -> String {
    let d = &r.durable;
    let mut s = format!(
        "durable suite: log in a real file under {} ({} round(s); forces = fdatasync calls)\n",
        d.dir, d.rounds
    );
    s.push_str(&format!(
        "{:<16} {:>4} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
        "system", "n", "forces", "asked", "p50 µs", "p99 µs", "µs/commit", "commits/s"
    ));
    let row = |s: &mut String, name: &str, f: &ktmrm_bench::durable::RunFigures| {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        s.push_str(&format!(
            "{:<16} {:>4} {:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.0}\n",
            name,
            f.committers,
            opt(f.forces_per_commit),
            opt(f.engine_forces_per_commit),
            f.p50_us,
            f.p99_us,
            f.us_per_commit,
            f.commits_per_second
        ));
    };
    for (kind, runs) in &d.ktmrm {
        for f in runs {
            row(&mut s, kind, f);
        }
    }
    for f in &d.sqlite {
        row(&mut s, "sqlite", f);
    }
    s.push_str(&format!(
        "fsync floor ({} B append + fdatasync): p50 {:.1} µs, p99 {:.1} µs\n",
        d.record_bytes, d.fsync_floor_us, d.fsync_floor_p99_us
    ));
    for t in &r.targets {
        let verdict = if t.met { "met" } else { "MISSED" };
        s.push_str(&format!(
            "target {verdict:<6} {} : {:.3} (limit {})\n",
            t.name, t.value, t.limit
        ));
    }
    s
}

/// Summarises raw samples.
#[must_use]
pub fn summarize(name: &str, what: &str, mut samples: Vec<Duration>) -> OpResult {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let total: Duration = samples.iter().sum();
    let mean = if samples.is_empty() {
        0.0
    } else {
        us(total) / samples.len() as f64
    };
    OpResult {
        name: name.into(),
        what: what.into(),
        iterations: samples.len(),
        p50_us: us(quantile(&samples, 0.50)),
        p90_us: us(quantile(&samples, 0.90)),
        p99_us: us(quantile(&samples, 0.99)),
        max_us: us(samples.last().copied().unwrap_or_default()),
        mean_us: mean,
        ops_per_second: if mean > 0.0 { 1e6 / mean } else { 0.0 },
    }
}

/// Times `op(i)` for `iterations` calls after `iterations / 10` untimed warm-up calls.
pub fn measure(
    iterations: usize,
    mut op: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<Duration>> {
    for i in 0..iterations / 10 {
        op(i)?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let t = Instant::now();
        op(i)?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// An operation to measure.
pub struct BenchOp<'a> {
    /// Name in the report.
    pub name: &'static str,
    /// What one iteration does.
    pub what: &'static str,
    /// One iteration.
    pub run: Box<dyn FnMut(usize) -> Result<()> + 'a>,
}

/// The standard operations over `client`, on keys under `prefix`.
pub fn standard_ops<'a>(client: &'a Client, prefix: &'a [u8]) -> Vec<BenchOp<'a>> {
    let key = move |i: usize| [prefix, format!("k{:04}", i % 1000).as_bytes()].concat();
    let value = vec![0x5Au8; 100];
    let v2 = value.clone();
    let v3 = value.clone();
    vec![
        BenchOp {
            name: "version",
            what: "GET_VERSION",
            run: Box::new(move |_| client.version().map(drop)),
        },
        BenchOp {
            name: "put",
            what: "non-transacted PUT, 100-byte value",
            run: Box::new(move |i| client.put(&key(i), &value)),
        },
        BenchOp {
            name: "get",
            what: "GET of a committed 100-byte value",
            run: Box::new(move |i| client.get(&key(i)).map(drop)),
        },
        BenchOp {
            name: "tx-put",
            what: "BEGIN + PUT + commit (one-put transaction)",
            run: Box::new(move |i| {
                let mut t = client.begin()?;
                t.put(&key(i), &v2)?;
                t.commit()
            }),
        },
        BenchOp {
            name: "tx-put-ktmw32",
            what: "CreateTransaction + PUT + commit",
            run: Box::new(move |i| {
                let mut t =
                    client.begin_with(TxSource::Ktmw32, Isolation::ReadCommitted, 0, "bench")?;
                t.put(&key(i), &v3)?;
                t.commit()
            }),
        },
        BenchOp {
            name: "ktm-bare",
            what: "CreateTransaction + CommitTransaction with no RM enlisted (KTM's own cost)",
            run: Box::new(move |_| {
                let t = client.transport();
                let tx = t.create_transaction(0, "bench")?;
                let st = t.commit_transaction(tx);
                t.close_handle(tx);
                ok_or(st, "commit (no RM)")
            }),
        },
        #[cfg(windows)]
        BenchOp {
            name: "txr-put",
            what: "CreateTransaction + RegCreateKeyTransacted + RegSetValueEx + CommitTransaction",
            run: Box::new(move |i| {
                let t = client.transport();
                let tx = t.create_transaction(0, "bench")?;
                let written = super::txr::reg_write(tx, "bench", i as u32);
                let st = t.commit_transaction(tx);
                t.close_handle(tx);
                written.map_err(|s| Error::Unsupported {
                    op: "TxR value write".into(),
                    reason: format!("{s:?}"),
                })?;
                ok_or(st, "commit (TxR)")
            }),
        },
        BenchOp {
            name: "list-100",
            what: "LIST of 100 keys (one page)",
            run: Box::new(move |_| client.list_in(0, &[prefix, b"k00"].concat()).map(drop)),
        },
    ]
}

fn ok_or(st: NtStatus, op: &str) -> Result<()> {
    if st.is_success() {
        Ok(())
    } else {
        Err(Error::Status {
            op: op.into(),
            status: st,
        })
    }
}

/// Runs the standard operations.
pub fn run(transport: Arc<dyn Transport>, iterations: usize) -> Result<BenchReport> {
    let client = Client::new(transport.clone())?;
    let prefix = match transport.kind() {
        TransportKind::Sim => b"bench/".to_vec(),
        TransportKind::Device => format!("ktmrm-test/bench-{}/", std::process::id()).into_bytes(),
    };
    // Every key the ops read exists before timing starts.
    for i in 0..1000 {
        client.put(
            &[&prefix[..], format!("k{i:04}").as_bytes()].concat(),
            &[0x5A; 100],
        )?;
    }
    let mut ops = Vec::new();
    for mut op in standard_ops(&client, &prefix) {
        let samples = measure(iterations, &mut op.run)?;
        ops.push(summarize(op.name, op.what, samples));
    }
    if transport.kind() == TransportKind::Device {
        client.delete_prefix(&prefix)?;
    }
    let mean = |name: &str| ops.iter().find(|o| o.name == name).map(|o| o.mean_us);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let ratios = TransportRatios {
        ktmrm_tx_vs_bare_ktm: ratio(mean("tx-put-ktmw32"), mean("ktm-bare")),
        ktmrm_tx_vs_txr: ratio(mean("tx-put-ktmw32"), mean("txr-put")),
    };
    Ok(BenchReport {
        transport: transport.kind(),
        ops,
        transport_ratios: ratios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let r = summarize("x", "y", s);
        assert_eq!((r.p50_us, r.p99_us, r.max_us), (50.0, 99.0, 100.0));
        assert_eq!(r.iterations, 100);
        assert!((r.mean_us - 50.5).abs() < 1e-9);
    }
}
