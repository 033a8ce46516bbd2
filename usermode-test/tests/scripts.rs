//! Golden scripts: every `tests/scripts/*.ktm` runs through the `ktmrm-test` binary on the
//! simulator and must print exactly its `.out` file. Set `KTMRM_BLESS=1` to rewrite the `.out`
//! files from the current output (then review the diff).

mod common;

use common::{assert_fails_with, bin, each_str};
use std::path::{Path, PathBuf};
use std::process::Output;

fn run_script(path: &Path) -> Output {
    bin().args(["--sim", "script"]).arg(path).output().unwrap()
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ktm"))
        .collect();
    v.sort();
    v
}

#[test]
fn golden_scripts_print_their_out_files() {
    let scripts = scripts();
    assert!(scripts.len() >= 6, "{scripts:?}");
    let bless = std::env::var_os("KTMRM_BLESS").is_some();
    let mut failures = Vec::new();
    for s in scripts {
        let out = run_script(&s);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{}: exit {:?}, stderr {}",
            s.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let golden = s.with_extension("out");
        if bless {
            std::fs::write(&golden, &stdout).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if stdout != want {
            failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{stdout}",
                s.display()
            ));
        }
        // One output line per command.
        let commands = ktmrm_client::script::parse(&std::fs::read_to_string(&s).unwrap())
            .unwrap()
            .len();
        assert_eq!(stdout.lines().count(), commands, "{}", s.display());
        // And the script as a test: --expect its .out file.
        let out = bin()
            .args(["--sim", "script"])
            .arg(&s)
            .arg("--expect")
            .arg(&golden)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            s.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn each_run_starts_from_an_empty_store() {
    let s = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/basic.ktm");
    assert_eq!(run_script(&s).stdout, run_script(&s).stdout);
}

fn script_stdin(src: &str, json: bool) -> Output {
    script_bytes(src.as_bytes(), json, &[])
}

fn script_bytes(src: &[u8], json: bool, extra: &[&str]) -> Output {
    use std::io::Write;
    let mut cmd = bin();
    cmd.arg("--sim");
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .args(["script", "-"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(src).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn unparsable_scripts_stop_with_the_line_number_before_running() {
    let out = script_stdin("begin T\nput T k v\n\n# note\nfrobnicate T\n", false);
    assert_fails_with(&out, 2, "line 5: unknown command `frobnicate`");
    assert!(
        out.stdout.is_empty(),
        "nothing runs: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_fails_with(
        &script_stdin("put T1 k v\n", false),
        2,
        "line 1: transaction \"T1\" is used before `begin T1`",
    );
}

#[test]
fn json_output_has_one_result_per_command() {
    let out = script_stdin("put - a 1\nget - a\nget - b\n", true);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        each_str(&v["results"], "output"),
        ["ok", "ok 1", "err STATUS_OBJECT_NAME_NOT_FOUND"]
    );
    assert_eq!(v["transport"], "sim");
    assert_eq!(v["results"][2]["line"], 3);
}

#[test]
fn scripts_saved_by_windows_tools_run() {
    let text = "put - k v\nget - k # read it back\n";
    let plain = script_stdin(text, false);
    assert_eq!(
        String::from_utf8(plain.stdout.clone()).unwrap(),
        "ok\nok v\n"
    );
    let mut bom8 = vec![0xEF, 0xBB, 0xBF];
    bom8.extend_from_slice(text.replace('\n', "\r\n").as_bytes());
    // What PowerShell 5.1's `>` writes: UTF-16LE with a byte-order mark, CRLF line ends.
    let mut le = vec![0xFF, 0xFE];
    le.extend(
        text.replace('\n', "\r\n")
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    for bytes in [bom8, le] {
        let out = script_bytes(&bytes, false, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plain.stdout);
    }
    // UTF-16 without its mark, and Latin-1, are refused with what to do.
    let bare: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_fails_with(
        &script_bytes(&bare, false, &[]),
        2,
        "a NUL byte at offset 1: UTF-16 without a byte-order mark?",
    );
    assert_fails_with(
        &script_bytes(b"put - k caf\xe9\n", false, &[]),
        2,
        "not UTF-8 text (byte 0xE9 at offset 11); save the script as UTF-8, or as UTF-16 with a byte-order mark",
    );
}

#[test]
fn a_hash_inside_a_value_is_kept() {
    let out = script_stdin("put - h a#b\nget - h\nput - h2 c #d\nget - h2\n", false);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok\nok a#b\nok\nok c\n"
    );
}

#[test]
fn expect_compares_with_an_expected_file_and_shows_a_diff() {
    let dir = std::env::temp_dir().join(format!("ktmrm-expect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.out");
    let bad = dir.join("bad.out");
    std::fs::write(&good, "ok\nok 1\nerr STATUS_OBJECT_NAME_NOT_FOUND\n").unwrap();
    std::fs::write(&bad, "ok\nok 2\nerr STATUS_OBJECT_NAME_NOT_FOUND\n").unwrap();
    let src = b"put - a 1\nget - a\nget - b\n";
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let out = script_bytes(src, false, &["--expect", good]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("-: the output matches {good} (3 lines)\n")
    );
    let out = script_bytes(src, false, &["--expect", bad]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "--- {bad} (expected)\n+++ - (got)\n@@ -1,3 +1,3 @@\n ok\n-ok 2\n+ok 1\n err STATUS_OBJECT_NAME_NOT_FOUND\n"
        )
    );
    let out = script_bytes(src, true, &["--expect", bad]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expect"]["matches"], false);
    assert!(v["expect"]["diff"].as_str().unwrap().contains("+ok 1"));
    // Without --expect, err lines are results: the script ran, status 0.
    assert!(
        script_stdin(std::str::from_utf8(src).unwrap(), false)
            .status
            .success()
    );
    // A missing expected file is unusable input.
    assert_fails_with(
        &script_bytes(src, false, &["--expect", "/nonexistent/x.out"]),
        2,
        "cannot read /nonexistent/x.out",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
