//! The suite runs end to end at a small size and reports every measurement and ratio. (The
//! targets are checked by `ktmrm-test --sim bench`, in release builds, not here: a debug build on
//! a shared CI machine says nothing about speed.)

#[test]
fn quick_suite_reports_every_measurement() {
    let r = ktmrm_bench::run(&ktmrm_bench::BenchConfig::quick());
    for name in [
        "btreemap_insert_get",
        "engine_1put_tx",
        "sim_1put_tx",
        "commit_10_keys",
        "engine_1put_tx_at_1000_keys",
        "engine_rmw_tx_read_committed",
        "engine_rmw_tx_serializable",
    ] {
        let m = &r.measurements[name];
        assert!(
            m.mean_ns > 0.0 && m.p50_ns > 0.0 && m.p99_ns >= m.p50_ns,
            "{name}: {m:?}"
        );
    }
    assert!(r.ratios.engine_vs_btreemap.is_finite() && r.ratios.engine_vs_btreemap > 0.0);
    assert!(r.ratios.scale_1e6_vs_1e3 > 0.0 && r.ratios.commit_per_key_1000_vs_10 > 0.0);
    assert_eq!(
        r.memory.overhead_bytes_per_key, None,
        "no counting allocator in this binary"
    );
    assert!(r.ratios.serializable_vs_read_committed > 0.0);
    assert_eq!(r.targets.len(), 4);
}

/// The read set's cost per point read, measured against the quota: 64 KiB of 8-byte reads
/// (README "Semantics"), so exactly 8,192 distinct reads are answered and the next is refused.
#[test]
fn a_point_read_costs_eight_bytes_of_the_64_kib_read_set() {
    let rs = ktmrm_bench::isolation::read_set();
    assert_eq!(rs.reads_within_quota, Some(8192), "{rs:?}");
    assert_eq!(rs.bytes_per_point_read, Some(8));
}
