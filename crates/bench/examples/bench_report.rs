//! Prints the benchmark report as JSON (`cargo run --release -p ktmrm-bench --example bench_report`);
//! `ktmrm-test --sim bench --json` prints the same report.
#[global_allocator]
static A: ktmrm_bench::CountingAlloc = ktmrm_bench::CountingAlloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        ktmrm_bench::BenchConfig::quick()
    } else {
        ktmrm_bench::BenchConfig::default()
    };
    let r = ktmrm_bench::run(&cfg);
    for m in r.measurements.values() {
        println!(
            "{:32} mean {:>9.0} ns  p50 {:>9.0}  p99 {:>9.0}",
            m.name, m.mean_ns, m.p50_ns, m.p99_ns
        );
    }
    println!("{:?}", r.ratios);
    println!("{:?}", r.memory);
    for t in &r.targets {
        println!(
            "{} {:.2} (limit {}) {}",
            t.name,
            t.value,
            t.limit,
            if t.met { "met" } else { "MISSED" }
        );
    }
}
