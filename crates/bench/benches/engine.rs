//! Criterion benchmarks of the engine, each group with its baseline beside it:
//! - `insert_get`: a `BTreeMap` insert + get per key against a 1-put transaction through the
//!   dispatcher bytes (engine + codec, KTM's notifications delivered directly);
//! - `tx_by_store_size`: the 1-put transaction against stores of 1e3 and 1e6 keys;
//! - `commit_by_write_set`: transactions of 10, 100 and 1000 puts, in keys per second, so a
//!   linear cost shows as equal throughputs.
//!
//! `ktmrm-test --sim bench` measures the same and prints the ratios and the targets; these give
//! criterion's statistics and its comparison with a saved baseline (`cargo bench -p ktmrm-bench
//! -- --save-baseline before`, then `--baseline before`).

// criterion_group! defines an undocumented function.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ktmrm_bench::{Churn, DirectEngine, VALUE, filled, key};
use ktmrm_proto::Limits;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;

const BATCH: u64 = 10_000;

fn insert_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert_get");
    let map: RefCell<BTreeMap<Vec<u8>, Vec<u8>>> = RefCell::new(BTreeMap::new());
    let mut n = 0u64;
    g.bench_function("btreemap", |b| {
        b.iter_batched(
            || map.borrow_mut().clear(),
            |()| {
                n += 1;
                let k = key(n);
                let mut map = map.borrow_mut();
                map.insert(k.to_vec(), VALUE.to_vec());
                black_box(map.get(&k[..]));
            },
            BatchSize::NumIterations(BATCH),
        );
    });
    let st = RefCell::new(Churn::new(DirectEngine::new(Limits {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
        ..Limits::default()
    })));
    g.bench_function("ktmrm_1put_tx", |b| {
        b.iter_batched(
            || st.borrow_mut().clean(),
            |()| st.borrow_mut().tx(1),
            BatchSize::NumIterations(BATCH),
        );
    });
    g.finish();
}

fn tx_by_store_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("tx_by_store_size");
    for size in [1_000u64, 1_000_000] {
        let st = RefCell::new(Churn::new(filled(size)));
        g.bench_function(format!("{size}_keys"), |b| {
            b.iter_batched(
                || st.borrow_mut().clean(),
                |()| st.borrow_mut().tx(1),
                BatchSize::NumIterations((size / 2).min(BATCH)),
            );
        });
    }
    g.finish();
}

fn commit_by_write_set(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit_by_write_set");
    let st = RefCell::new(Churn::new(filled(10_000)));
    for ws in [10u64, 100, 1000] {
        g.throughput(Throughput::Elements(ws));
        g.bench_function(format!("{ws}_keys"), |b| {
            b.iter_batched(
                || st.borrow_mut().clean(),
                |()| st.borrow_mut().tx(ws),
                BatchSize::NumIterations((BATCH / ws).max(1)),
            );
        });
    }
    g.finish();
}

criterion_group!(benches, insert_get, tx_by_store_size, commit_by_write_set);
criterion_main!(benches);
