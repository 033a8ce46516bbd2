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
    assert_eq!(r.targets.len(), 3);
}
