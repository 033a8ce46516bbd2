//! The repository's reference notes (`docs/`) stay the target of every citation: each
//! `docs/ktm.md §N` names a section that exists, each source tag a cited passage uses is in the
//! notes' source list, nothing points outside the repository, and every kernel routine the driver
//! imports is listed with its contract in `docs/kernel-routines.md`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("usermode-test sits in the workspace root")
        .to_path_buf()
}

/// Source and text files of the repository (no build output, VCS data or fuzz corpus).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "corpus" | "artifacts" | "docs") {
                files(&path, out);
            }
        } else if [".rs", ".md", ".toml", ".ps1", ".inx", ".sh", "run"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
}

fn repo_texts() -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    files(&root(), &mut paths);
    paths
        .into_iter()
        .filter_map(|p| fs::read_to_string(&p).ok().map(|s| (p, s)))
        .collect()
}

/// `## N. Title` headings of docs/ktm.md.
fn ktm_sections(notes: &str) -> BTreeSet<String> {
    notes
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split_once(". ").map(|(n, _)| n.to_string()))
        .collect()
}

/// Tags defined in docs/ktm.md's Sources list (each bracketed, after the `## Sources` heading).
fn source_tags(notes: &str) -> BTreeSet<String> {
    let sources = notes
        .split_once("## Sources")
        .expect("docs/ktm.md has a Sources list")
        .1;
    let mut tags = BTreeSet::new();
    let mut rest = sources;
    while let Some(i) = rest.find("[S") {
        rest = &rest[i + 1..];
        let end = rest.find(']').unwrap_or(0);
        tags.insert(rest[..end].to_string());
    }
    tags
}

/// Every `S<digits>[letter]` token in `text` (a source tag as code cites it).
fn cited_tags(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut tags = Vec::new();
    for (i, _) in text.match_indices('S') {
        let before_ok = i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'_';
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !before_ok || digits == 0 {
            continue;
        }
        let mut end = i + 1 + digits;
        if b.get(end).is_some_and(|c| c.is_ascii_lowercase()) {
            end += 1;
        }
        if b.get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            continue; // part of a longer identifier
        }
        tags.push(text[i..end].to_string());
    }
    tags
}

#[test]
fn citations_point_into_docs_and_resolve() {
    let notes = fs::read_to_string(root().join("docs/ktm.md")).expect("docs/ktm.md");
    let sections = ktm_sections(&notes);
    let tags = source_tags(&notes);
    assert!(
        sections.contains("0") && sections.contains("8"),
        "{sections:?}"
    );
    assert!(tags.contains("S1") && tags.contains("S12b"), "{tags:?}");

    let mut problems = Vec::new();
    let mut citations = 0;
    for (path, text) in repo_texts() {
        let shown = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        // Spelled in two pieces so that this file does not match itself.
        for needle in [concat!("shared", "/docs"), concat!("windows-driver", ".md")] {
            if text.contains(needle) {
                problems.push(format!(
                    "{shown}: cites {needle}, which is not in the repository"
                ));
            }
        }
        for (n, line) in text.lines().enumerate() {
            // A bracketed tag in a doc comment is an unresolved intra-doc link.
            let doc_comment = line.contains("///") || line.contains("//!");
            if shown.ends_with(".rs")
                && doc_comment
                && cited_tags(line)
                    .iter()
                    .any(|t| line.contains(&format!("[{t}]")) || line.contains(&format!("[{t},")))
            {
                problems.push(format!("{shown}:{}: bracketed source tag", n + 1));
            }
            for (i, _) in line.match_indices('§') {
                let num: String = line[i + '§'.len_utf8()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if !num.is_empty() && line.contains("ktm.md") {
                    citations += 1;
                }
                if !num.is_empty() && !sections.contains(&num) {
                    problems.push(format!(
                        "{shown}:{}: no section §{num} in docs/ktm.md",
                        n + 1
                    ));
                }
            }
            if line.contains("ktm.md") || line.contains('§') {
                for tag in cited_tags(line) {
                    if !tags.contains(&tag) {
                        problems.push(format!("{shown}:{}: no source {tag} in docs/ktm.md", n + 1));
                    }
                }
            }
        }
    }
    assert!(
        citations > 50,
        "only {citations} citations of docs/ktm.md found"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_imported_kernel_routine_is_documented() {
    let listed = fs::read_to_string(root().join("docs/kernel-routines.md")).expect("notes");
    let kmode = root().join("driver/src/kmode");
    let mut routines = BTreeSet::<String>::new();
    for entry in fs::read_dir(&kmode).expect("driver/src/kmode") {
        let text = fs::read_to_string(entry.expect("entry").path()).expect("source");
        // `use wdk_sys::ntddk::{A, B, ..};` and the routines declared in sys.rs.
        let mut rest = text.as_str();
        while let Some(i) = rest.find("wdk_sys::ntddk::") {
            rest = &rest[i + "wdk_sys::ntddk::".len()..];
            let list = match rest.strip_prefix('{') {
                Some(r) => &r[..r.find('}').unwrap_or(0)],
                None => &rest[..rest.find(';').unwrap_or(0)],
            };
            routines.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
        for line in text.lines() {
            if let Some((name, _)) = line
                .trim()
                .strip_prefix("pub fn ")
                .and_then(|decl| decl.split_once('('))
                && name.starts_with(|c: char| c.is_ascii_uppercase())
            {
                routines.insert(name.to_string());
            }
        }
    }
    assert!(routines.contains("ZwCreateEnlistment"), "{routines:?}");
    let missing: Vec<_> = routines
        .iter()
        .filter(|r| {
            // `ObfDereferenceObject` and `IofCompleteRequest` are the functions behind the
            // documented macros ObDereferenceObject and IoCompleteRequest.
            !listed.contains(&format!("`{r}("))
                && !listed.contains(&format!(" {r}("))
                && !listed.contains(&format!("`{r}`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/kernel-routines.md: {missing:?}"
    );
}
