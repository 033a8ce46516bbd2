//! The `ktmrm-test` binary: exit statuses, messages, and JSON shapes, on the simulator.

mod common;

use common::{assert_fails_with, assert_stderr_has, bin, each_str};
use std::path::Path;
use std::process::Output;

fn run(args: &[&str]) -> Output {
    bin().arg("--sim").args(args).output().unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = run(&a);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn version_and_stats() {
    let v = json(&["version"]);
    assert_eq!(v["protocol_version"], 1);
    assert_eq!(v["max_key_len"], 255);
    assert_eq!(v["max_value_len"], 65536);
    let s = json(&["stats"]);
    assert_eq!(s["live_transactions"], 0);
    assert_eq!(s["transport"], "sim");
    let out = run(&["version"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("ktmrm protocol 1 on the sim device")
    );
}

#[test]
fn single_operations_and_their_errors() {
    let out = run(&["put", "k", "v", "--tx", "demo"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ok\n");
    // Each --sim run starts empty, so the key is gone in the next run.
    assert_fails_with(
        &run(&["get", "k"]),
        1,
        "STATUS_OBJECT_NAME_NOT_FOUND (0xC0000034): The key does not exist",
    );
    // A raw handle value goes to the driver as is.
    assert_fails_with(
        &run(&["put", "k", "v", "--tx", "0x1234"]),
        1,
        "STATUS_INVALID_HANDLE",
    );
    let v = json(&["get", "k"]);
    assert_eq!(v["error"]["status"], "STATUS_OBJECT_NAME_NOT_FOUND");
    let v = json(&["list"]);
    assert_eq!(v["keys"], serde_json::json!([]));
    assert_stderr_has(&run(&["put", "", "v"]), "STATUS_INVALID_PARAMETER");
}

#[test]
fn scenario_listing_and_unknown_names() {
    let v = json(&["scenarios", "--list"]);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "write-write-conflict")
    );
    assert_fails_with(
        &run(&["scenarios", "nope"]),
        2,
        "no scenario named \"nope\"",
    );
}

#[test]
fn suites_exit_zero_and_end_with_a_count_line() {
    for args in [
        &["scenarios", "write-write-conflict", "rollback-veto"][..],
        &["bad-input"],
        &["stress", "--threads", "2", "--seconds", "0.3"],
    ] {
        let out = run(args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{args:?}: {stdout}");
        let last = stdout.lines().last().unwrap();
        assert!(
            last.ends_with(" failed, 0 skipped") && last.contains(" passed, 0 failed"),
            "{last}"
        );
    }
    let v = json(&["stress", "--threads", "2", "--seconds", "0.3"]);
    assert_eq!(v["failed"], 0);
    assert!(v["summary"]["commits"].as_u64().unwrap() > 0);
    // bench counts its targets as checks (met or not: a debug build does not judge them).
    let out = run(&["bench", "--quick", "--iterations", "20"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let counts: Vec<usize> = last
        .strip_prefix("bench: ")
        .and_then(|l| l.strip_suffix(" skipped"))
        .unwrap_or_else(|| panic!("{last}"))
        .split(", ")
        .map(|f| f.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts[0] + counts[1], 5, "{last}");
    assert_eq!(counts[2], 0, "{last}");
    assert_eq!(out.status.code(), Some(if counts[1] == 0 { 0 } else { 1 }));
    let v = json(&["bench", "--quick", "--iterations", "20"]);
    assert_eq!(
        v["passed"].as_u64().unwrap() + v["failed"].as_u64().unwrap(),
        5
    );
    // The engine suite's fields, as the README names them (values are not judged in a debug
    // build).
    for ratio in [
        "engine_vs_btreemap",
        "scale_1e6_vs_1e3",
        "commit_per_key_1000_vs_10",
        "shared_prefix_vs_random",
        "serializable_vs_read_committed",
    ] {
        assert!(
            v["ratios"][ratio].as_f64().unwrap() > 0.0,
            "{ratio}: {}",
            v["ratios"]
        );
    }
    let overhead = v["memory"]["overhead_bytes_per_key"].as_f64().unwrap();
    assert!(
        overhead > 16.0 && overhead < 200.0,
        "counting allocator: {overhead}"
    );
    assert_eq!(v["targets"].as_array().unwrap().len(), 5);
    assert_eq!(v["read_set"]["bytes_per_point_read"].as_u64(), Some(8));
    let ops = each_str(&v["ops"], "name");
    for op in ["put", "get", "tx-put"] {
        assert!(ops.contains(&op), "{ops:?}");
    }
    assert!(v["ops"][0]["p99_us"].as_f64().unwrap() >= v["ops"][0]["p50_us"].as_f64().unwrap());
}

/// Runs `args` with a standard output whose reading end is already closed.
fn run_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    bin()
        .arg("--sim")
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly_with_status_141() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/basic.ktm");
    let script = script.to_str().unwrap();
    // A one-step trace: GET_VERSION (0x00222000) with a 48-byte output buffer.
    let trace = std::env::temp_dir().join(format!("ktmrm-trace-{}.jsonl", std::process::id()));
    std::fs::write(
        &trace,
        "{\"ioctl\": 2236416, \"input\": \"\", \"out_len\": 48}\n",
    )
    .unwrap();
    let trace = trace.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["--help"],
        &["version"],
        &["--json", "stats"],
        &["put", "k", "v"],
        &["--json", "get", "absent"],
        &["list"],
        &["script", script],
        &["script", script, "--expect", script],
        &["scenarios", "--list"],
        &["scenarios", "write-write-conflict"],
        &["bad-input"],
        &["stress", "--threads", "1", "--seconds", "0.1"],
        &["crash-matrix", "--list"],
        &["crash-matrix", "--quick", "single-phase"],
        &["--json", "stress", "--threads", "0"],
        &["replay", trace],
        &["bench", "--quick", "--iterations", "5"],
    ];
    for args in cases {
        let out = run_closed_stdout(args);
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_file(trace).unwrap();
}

#[test]
fn with_json_argument_errors_are_json_too() {
    for (args, needle) in [
        (&["bogus"][..], "unrecognized subcommand 'bogus'"),
        (&["stress", "--threads", "many"], "invalid value 'many'"),
        (&["put", "k"], "required arguments were not provided"),
    ] {
        let mut a = vec!["--sim", "--json"];
        a.extend_from_slice(args);
        let out = bin().args(&a).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(v["error"]["kind"], "usage", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{args:?}: {msg}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
    // Help is JSON as well, and succeeds.
    let v = json(&["--help"]);
    assert!(v["help"].as_str().unwrap().contains("Usage: ktmrm-test"));
    let v = json(&["crash-matrix", "--list"]);
    assert!(each_str_array(&v).contains(&"single-phase"), "{v}");
}

fn each_str_array(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn unusable_stress_and_bench_arguments_name_the_argument_and_its_range() {
    for (args, needle) in [
        (
            &["stress", "--threads", "0"][..],
            "--threads 0 is out of range: use 1–256",
        ),
        (
            &["stress", "--threads", "257"],
            "--threads 257 is out of range: use 1–256",
        ),
        (
            &["stress", "--accounts", "0"],
            "--accounts 0 is out of range: use 2–100,000",
        ),
        (
            &["stress", "--accounts", "1"],
            "--accounts 1 is out of range: use 2–100,000",
        ),
        (
            &["stress", "--seconds", "0"],
            "--seconds 0 is out of range: use 0.1–86,400",
        ),
        (
            &["stress", "--seconds=-1"],
            "--seconds -1 is not a duration: use 0.1–86,400",
        ),
        (
            &["stress", "--seconds", "NaN"],
            "--seconds NaN is not a duration",
        ),
        (
            &["stress", "--seconds", "1e12"],
            "--seconds 1000000000000 is out of range: use 0.1–86,400",
        ),
        (
            &["bench", "--iterations", "0"],
            "--iterations 0 is out of range: use 1–1,000,000",
        ),
    ] {
        let out = run(args);
        assert_fails_with(&out, 2, needle);
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
}

#[test]
fn refused_fields_are_named_with_their_limit() {
    let big = "a".repeat(65_537);
    let long_key = "k".repeat(256);
    let long_desc = "d".repeat(65);
    for (args, needle) in [
        (
            vec!["put", "k", big.as_str()],
            "put \"k\": the value is 65,537 bytes; values are 0–65,536 bytes (STATUS_INVALID_PARAMETER, 0xC000000D)",
        ),
        (
            vec!["put", long_key.as_str(), "v"],
            "the key is 256 bytes; keys are 1–255 bytes",
        ),
        (vec!["get", ""], "the key is 0 bytes; keys are 1–255 bytes"),
        (
            vec!["list", long_key.as_str()],
            "the prefix is 256 bytes; prefixes are 0–255 bytes",
        ),
        (
            vec!["put", "k", "v", "--tx", long_desc.as_str()],
            "begin: the transaction description is 65 UTF-16 units; descriptions are at most 64",
        ),
    ] {
        assert_fails_with(&run(&args), 1, needle);
    }
    // At the limits, accepted.
    let max_value = "a".repeat(65_536);
    let max_key = "k".repeat(255);
    let max_desc = "d".repeat(64);
    for args in [
        vec!["put", "k", max_value.as_str()],
        vec!["put", max_key.as_str(), ""],
        vec!["put", "k", "v", "--tx", max_desc.as_str()],
    ] {
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // In JSON the status stays machine-readable.
    let v = json(&["put", "k", big.as_str()]);
    assert_eq!(v["error"]["status"], "STATUS_INVALID_PARAMETER");
}

#[cfg(unix)]
#[test]
fn raw_bytes_in_keys_and_values_are_taken_as_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let raw = |b: &[u8]| OsStr::from_bytes(b).to_os_string();
    let put = |key: &[u8], value: &[u8]| {
        bin()
            .args(["--sim", "put"])
            .args([raw(key), raw(value)])
            .output()
            .unwrap()
    };
    // Each 0xFF counts as one byte (a lossy UTF-8 conversion would make it three).
    let out = put(&[0xFF; 255], b"v\xfe\x80");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ok\n");
    assert_fails_with(
        &put(&[0xFF; 256], b"v"),
        1,
        "the key is 256 bytes; keys are 1–255 bytes",
    );
    // An escape after raw bytes is still decoded (a bad one named in the message).
    assert_fails_with(&put(b"\xff\\q", b"v"), 2, "key: bad escape");
    // Other arguments must be text; the message says where bytes are accepted.
    let out = bin()
        .args(["--sim", "put", "k", "v", "--tx"])
        .arg(raw(b"\xff"))
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        2,
        "keys, values and prefixes take any bytes (or \\xNN escapes); other arguments must be UTF-8 text",
    );
}

#[test]
fn durable_bench_reports_forces_ratios_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let v = json(&["bench", "--durable", "--quick", "--dir", d]);
    // The suites' counts: one check per target, none skipped.
    assert_eq!(v["skipped"], 0, "{v}");
    let fpc = &v["durable"]["forces_per_commit"];
    // One committer sits exactly on the protocol's floor: deterministic, so asserted here.
    assert_eq!(fpc["two_phase"]["1"], 2.0, "{fpc}");
    assert_eq!(fpc["single_phase"]["1"], 1.0, "{fpc}");
    assert_eq!(fpc["non_transacted"]["1"], 1.0, "{fpc}");
    for kind in ["two_phase", "single_phase", "non_transacted"] {
        for n in ["2", "4", "8"] {
            let x = fpc[kind][n].as_f64().unwrap();
            let floor = fpc[kind]["1"].as_f64().unwrap();
            assert!(x > 0.0 && x <= floor, "{kind} at {n}: {x}");
        }
    }
    assert!(v["durable"]["fsync_floor_us"].as_f64().unwrap() > 0.0);
    for ratio in [
        "durable_commit_vs_sqlite_1",
        "durable_commit_vs_sqlite_8",
        "durable_commit_vs_fsync_floor",
    ] {
        assert!(v["ratios"][ratio].as_f64().unwrap() > 0.0, "{ratio}");
    }
    assert_eq!(v["durable"]["sqlite"].as_array().unwrap().len(), 2);
    assert_eq!(v["targets"].as_array().unwrap().len(), 10);
    // Every file the suite made is gone again.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn durable_bench_refuses_an_unusable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = run(&["bench", "--durable", "--dir", file.to_str().unwrap()]);
    assert_fails_with(&out, 2, "cannot write files there");
    let out = run(&["bench", "--dir", dir.path().to_str().unwrap()]);
    assert_fails_with(&out, 2, "--durable");
}

#[test]
fn isolation_levels_on_the_command_line() {
    // A level for the transaction --tx begins, and for stress's transfers.
    for level in ["serializable", "read-committed"] {
        let v = json(&["put", "k", "v", "--tx", "T", "--isolation", level]);
        assert_eq!(v["ok"], true, "{level}: {v}");
        let v = json(&["list", "--tx", "T", "--isolation", level]);
        assert!(v["keys"].as_array().is_some(), "{level}: {v}");
    }
    let v = json(&[
        "stress",
        "--threads",
        "2",
        "--seconds",
        "0.3",
        "--isolation",
        "serializable",
    ]);
    assert_eq!(v["summary"]["isolation"], "serializable", "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["summary"]["stale_reads"], 0, "{v}");
    let out = run(&["stress", "--seconds", "0.2", "--isolation", "serializable"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(", serializable: ") && text.contains(" aborts retried"),
        "{text}"
    );
    // A bad level names the two it takes; a level without a transaction to give it is refused.
    for args in [
        &["put", "k", "v", "--tx", "T", "--isolation", "snapshot"][..],
        &["stress", "--isolation", "Serializable"],
    ] {
        let out = run(args);
        assert_fails_with(&out, 2, "invalid value");
        assert_stderr_has(&out, "[possible values: read-committed, serializable]");
    }
    let out = run(&["get", "k", "--isolation", "serializable"]);
    assert_fails_with(&out, 2, "--tx <TX>");
}
