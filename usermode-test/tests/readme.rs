//! The README's deterministic figures are what the code does: each is recomputed here (or in the
//! test that computes it: the allocation-failure counts) and must appear in README.md as stated,
//! so a change that moves one fails until the README says the new figure. Figures that depend on
//! the machine (throughput, latency) carry their machine and command instead.

mod common;

use common::{assert_readme_says, bin, readme};
use ktmrm_client::client::grouped;

fn stdout(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&stdout(args)).unwrap()
}

#[test]
fn suite_sizes() {
    let scenarios = json(&["--sim", "--json", "scenarios", "--list"]);
    let n = scenarios.as_array().unwrap().len();
    assert_readme_says(&format!("# conformance suite ({n} scenarios)"));
    assert_readme_says(&format!("across all {n} conformance scenarios"));

    // bad-input's checks each note how many requests they sent.
    let report = json(&["--sim", "--json", "bad-input"]);
    let requests: usize = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["detail"].as_str().unwrap().lines())
        .filter_map(|l| {
            l.trim()
                .strip_suffix(" requests, each answered as expected")
        })
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    assert!(requests > 100, "{requests}");
    assert_readme_says(&format!(
        "# {} malformed requests, exact statuses",
        grouped(requests)
    ));
    assert_readme_says(&format!(
        "| `ktmrm-test bad-input` | {} malformed requests",
        grouped(requests)
    ));
}

#[test]
fn crash_matrix_figures() {
    // The Inline half's figures are checked in tests/crash_matrix.rs, the full matrix's here.
    let names = json(&["--json", "crash-matrix", "--list"]);
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    let n = words[names.as_array().unwrap().len()];
    assert_readme_says(&format!(
        "`ktmrm-test crash-matrix` (always on the simulator) runs {n} scenarios"
    ));
    assert_readme_says(&format!("every crash point of {n} scenarios"));

    // The full matrix (both delivery modes): its counts do not depend on thread timing.
    let full = stdout(&["crash-matrix"]);
    let counts = full
        .lines()
        .find_map(|l| l.strip_prefix("crash matrix: "))
        .expect("the count line");
    let counts = counts
        .strip_suffix(" crashes, 0 violations")
        .unwrap_or_else(|| panic!("violations: {full}"));
    let [failures, points, crashes] =
        [" log-device failures", " crash points tried", ""].map(|what| {
            counts
                .split(", ")
                .find_map(|f| f.strip_suffix(what).filter(|n| n.parse::<usize>().is_ok()))
                .unwrap_or_else(|| panic!("{counts}"))
        });
    assert_readme_says(&format!(
        "makes {failures} log-device failures, {points} crash points and {crashes} crashes, 0 violations"
    ));

    // The --quick run's output, shown in full.
    let quick = stdout(&["crash-matrix", "--quick"]);
    let readme = readme();
    let shown = readme
        .split_once("$ ktmrm-test crash-matrix --quick\n")
        .expect("README shows a crash-matrix --quick run")
        .1
        .split_once("```")
        .unwrap()
        .0;
    assert_eq!(shown, quick, "README's crash-matrix --quick output");
}

#[test]
fn limits_and_quotas() {
    let v = json(&["--sim", "--json", "version"]);
    let n = |field: &str| grouped(v[field].as_u64().unwrap() as usize);
    assert_readme_says(&format!(
        "Key empty or > {} bytes, value > {} bytes → `STATUS_INVALID_PARAMETER`",
        n("max_key_len"),
        n("max_value_len")
    ));
    let bytes = v["max_bytes"].as_u64().unwrap();
    assert_eq!(bytes, 1 << 30, "the README says 1 GiB");
    assert_readme_says(&format!(
        "Quotas (defaults; GET_VERSION reports them): {} live transactions, {} keys written per \
         transaction, {} keys and 1 GiB of key + value bytes in the store.",
        n("max_live_transactions"),
        n("max_write_set"),
        n("max_keys")
    ));
}

#[test]
fn the_script_example_is_the_checked_in_script_and_its_output() {
    // The README shows isolation.ktm beside what `script` prints for it; the golden-script test
    // checks that the .out file is that output.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let script = std::fs::read_to_string(dir.join("isolation.ktm")).unwrap();
    let output = std::fs::read_to_string(dir.join("isolation.out")).unwrap();
    let readme = readme();
    let block = readme
        .split_once("$ cat isolation.ktm")
        .expect("README shows isolation.ktm")
        .1
        .split_once("```")
        .unwrap()
        .0;
    let rows: Vec<&str> = block.lines().skip(1).collect();
    const COLUMN: usize = 41;
    let left: Vec<&str> = rows
        .iter()
        .map(|r| r.get(..COLUMN).unwrap_or(r).trim_end())
        .collect();
    let right: Vec<&str> = rows.iter().filter_map(|r| r.get(COLUMN..)).collect();
    assert_eq!(left, script.lines().collect::<Vec<_>>());
    assert_eq!(right, output.lines().collect::<Vec<_>>());
}
