//! Benchmarks for ktmrm that run a baseline and ktmrm in the same process and report ratios, so
//! a result means the same on a fast or a slow machine. Used by `ktmrm-test bench`.
//!
//! Means (and so ratios) come from batches timed as a whole, the median of several repetitions;
//! p50/p99 come from a separate pass that times every operation.

mod alloc;
mod churn;
mod direct;
pub mod durable;
pub mod isolation;
mod measure;
mod miss;
mod suite;

pub use alloc::{CountingAlloc, allocated_bytes, counting_installed};
pub use churn::Churn;
pub use direct::DirectEngine;
pub use measure::{Measurement, Timer, quantile};
pub use miss::miss_ns;
pub use suite::{
    BenchConfig, Memory, Ratios, Report, SHARED_PREFIX, Target, VALUE, filled, filled_with_prefix,
    key, prefixed_key, run,
};
