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
        let commands = std::fs::read_to_string(&s)
            .unwrap()
            .lines()
            .filter(|l| !l.split('#').next().unwrap().trim().is_empty())
            .count();
        assert_eq!(stdout.lines().count(), commands, "{}", s.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn each_run_starts_from_an_empty_store() {
    let s = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/basic.ktm");
    assert_eq!(run_script(&s).stdout, run_script(&s).stdout);
}

fn script_stdin(src: &str, json: bool) -> Output {
    use std::io::Write;
    let mut cmd = bin();
    cmd.arg("--sim");
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .args(["script", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(src.as_bytes())
        .unwrap();
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
