//! Helpers shared by the tests that run the `ktmrm-test` binary.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The `ktmrm-test` binary of this build.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ktmrm-test"))
}

/// The string `field` of each element of the JSON array `array`.
pub fn each_str<'a>(array: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap())
        .collect()
}

/// Asserts that `out`'s stderr is UTF-8 and contains `needle`.
pub fn assert_stderr_has(out: &Output, needle: &str) {
    let err = std::str::from_utf8(&out.stderr).unwrap();
    assert!(err.contains(needle), "{err}");
}

/// Asserts that `out` exited with status `code` and said `needle` on stderr.
pub fn assert_fails_with(out: &Output, code: i32, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_stderr_has(out, needle);
}

/// README.md at the workspace root.
pub fn readme() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(path).unwrap()
}

/// Asserts that README.md contains `phrase` (line breaks and runs of blanks count as one
/// space): a figure it states is what the code does.
pub fn assert_readme_says(phrase: &str) {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words(&readme()).contains(&words(phrase)),
        "README.md must say {phrase:?} (what this test found)"
    );
}
