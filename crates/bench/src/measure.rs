//! Timing: batch means (median of repetitions) and per-operation percentiles.

use serde::Serialize;
use std::time::{Duration, Instant};

/// One measured operation.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Operations per batch.
    pub ops: u64,
    /// Mean nanoseconds per operation: the median over repetitions of batch-timed means.
    pub mean_ns: f64,
    /// Median of individually timed operations (includes the timer's own cost, ~20-50 ns).
    pub p50_ns: f64,
    /// 99th percentile of individually timed operations.
    pub p99_ns: f64,
}

/// Runs `op(i)` for `i in 0..ops`: `reps` timed batches, then one pass timing each call.
pub struct Timer {
    /// Repetitions of the batch.
    pub reps: usize,
}

impl Timer {
    /// Measures `op`, calling `setup` before each batch (outside the timing).
    pub fn measure(
        &self,
        name: &str,
        ops: u64,
        mut setup: impl FnMut(),
        mut op: impl FnMut(u64),
    ) -> Measurement {
        let mut means = Vec::with_capacity(self.reps);
        for _ in 0..self.reps.max(1) {
            setup();
            let t = Instant::now();
            for i in 0..ops {
                op(i);
            }
            means.push(t.elapsed().as_nanos() as f64 / ops.max(1) as f64);
        }
        setup();
        let mut each = Vec::with_capacity(ops as usize);
        for i in 0..ops {
            let t = Instant::now();
            op(i);
            each.push(t.elapsed());
        }
        each.sort();
        means.sort_by(f64::total_cmp);
        let ns = |d: Duration| d.as_nanos() as f64;
        Measurement {
            name: name.to_string(),
            ops,
            mean_ns: means.get(means.len() / 2).copied().unwrap_or(0.0),
            p50_ns: ns(quantile(&each, 0.50)),
            p99_ns: ns(quantile(&each, 0.99)),
        }
    }
}

/// The `q`-quantile of sorted samples (nearest rank).
#[must_use]
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_nanos).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_nanos(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_nanos(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_nanos(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
