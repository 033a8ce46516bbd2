//! The module graphs of `crates/core` and `crates/ktm-sim` stay layered: a top-level module that
//! names another (`crate::x`, or `super::x` where that reaches the crate root) depends on it, and
//! the only cycles among top-level modules are the ones listed in [`ALLOWED_CYCLES`]. A cycle
//! makes every module in it part of every other one: none can be read, tested or changed alone.
//!
//! Test-only code is left out (`tests.rs`, `*_tests.rs`, `tests/`, `testing.rs`, and the item
//! after a `#[cfg(test)]`), and so are comments, so a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The cycles (strongly connected components of more than one top-level module) that exist
/// today, per crate. The list only shrinks: the test fails when a new cycle appears and also
/// when a listed one is gone, so removing a cycle means removing its entry here. When no
/// entry is left, the test asserts that both graphs are acyclic.
const ALLOWED_CYCLES: &[(&str, &[&str])] = &[];

const CRATES: &[(&str, &str)] = &[
    ("core", "crates/core/src"),
    ("ktm-sim", "crates/ktm-sim/src"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("usermode-test sits in the workspace root")
        .to_path_buf()
}

fn is_test_only(name: &str) -> bool {
    name == "tests" || name == "tests.rs" || name == "testing.rs" || name.ends_with("_tests.rs")
}

/// `.rs` files under `dir` that are not test-only, with their module path below the crate root
/// (`durable/recover.rs` → `["durable", "recover"]`; `durable/mod.rs` → `["durable"]`).
fn sources(dir: &Path, path: &[String], out: &mut Vec<(PathBuf, Vec<String>)>) {
    for entry in fs::read_dir(dir).expect("readable directory") {
        let file = entry.expect("directory entry").path();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if is_test_only(&name) {
            continue;
        }
        if file.is_dir() {
            let mut sub = path.to_vec();
            sub.push(name);
            sources(&file, &sub, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut module = path.to_vec();
            if !matches!(stem, "mod" | "lib") {
                module.push(stem.to_string());
            }
            out.push((file, module));
        }
    }
}

/// `src` with comments, string and char literals blanked out (newlines kept, so offsets still
/// give line numbers).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(b, i) {
            i = end;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a), which stays.
            if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i = (i + 1).min(b.len());
            } else {
                let len = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                if b.get(i + 1 + len) == Some(&b'\'') {
                    i += len + 2;
                } else {
                    i += 1;
                    continue;
                }
            }
        } else {
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII written over whole literals)")
}

/// The end of the raw string literal (`r"..."`, `br#"..."#`) starting at `i`, if one does.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    let prefix = if b[i..].starts_with(b"br") { 2 } else { 1 };
    if !(b[i] == b'r' || prefix == 2) || (i > 0 && is_ident(b[i - 1])) {
        return None;
    }
    let hashes = b[i + prefix..].iter().take_while(|&&c| c == b'#').count();
    let open = i + prefix + hashes;
    if b.get(open) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = &b[open + 1..];
    let len = body
        .windows(close.len())
        .position(|w| w == close.as_slice());
    Some(len.map_or(b.len(), |n| open + 1 + n + close.len()))
}

/// `code` with the item after each `#[cfg(test)]` blanked out: up to its first `;` outside any
/// bracket, or to the end of its first `{ .. }` block.
fn without_test_items(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|k| k + from) {
        let b = code.as_bytes();
        let mut depth = 0i32;
        let mut i = at + "#[cfg(test)]".len();
        while i < b.len() {
            match b[i] {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' => depth -= 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b';' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let end = (i + 1).min(b.len());
        for c in &mut out[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).expect("only ASCII written")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The identifier at `i` after whitespace, and the offset after it.
fn ident_at(b: &[u8], mut i: usize) -> Option<(String, usize)> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    (i > start).then(|| (String::from_utf8_lossy(&b[start..i]).into_owned(), i))
}

/// After a `::` at `i`: the first segment named, or each group member's first segment
/// (`crate::{a::X, b}` → `a`, `b`).
fn first_segments(b: &[u8], mut i: usize) -> Vec<String> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if b.get(i) != Some(&b'{') {
        return ident_at(b, i).map(|(id, _)| vec![id]).unwrap_or_default();
    }
    let mut names = Vec::new();
    let mut depth = 0;
    let mut member_start = true;
    for (k, &c) in b.iter().enumerate().skip(i) {
        match c {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    member_start = true;
                    continue;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                member_start = true;
                continue;
            }
            _ => {}
        }
        if member_start && depth == 1 && !c.is_ascii_whitespace() {
            member_start = false;
            if let Some((id, _)) = ident_at(b, k) {
                names.push(id);
            }
        }
    }
    names
}

/// Does a path start at `i` with `word` (a whole identifier, not after `::` or `$`) followed by
/// `::`? Returns the offset after the `::`.
fn path_start(b: &[u8], i: usize, word: &str) -> Option<usize> {
    let before = b[..i].trim_ascii_end();
    if !b[i..].starts_with(word.as_bytes())
        || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b'$'))
        || before.ends_with(b"::")
    {
        return None;
    }
    colons_after(b, i + word.len())
}

/// The offset after a `::` that follows `i` (after whitespace).
fn colons_after(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    b[i..].starts_with(b"::").then_some(i + 2)
}

/// Inline `mod name {` blocks open at each offset (so `super::` inside one stays in the file's
/// module).
fn inline_mod_depths(b: &[u8]) -> Vec<usize> {
    let mut depths = vec![0; b.len()];
    let mut braces = 0usize;
    let mut open: Vec<usize> = Vec::new();
    let mut pending_mod = false;
    let mut i = 0;
    while i < b.len() {
        depths[i] = open.len();
        if let Some((id, end)) = ident_at(b, i).filter(|_| i == 0 || !is_ident(b[i - 1])) {
            if id == "mod" {
                pending_mod = true;
            }
            for d in &mut depths[i..end] {
                *d = open.len();
            }
            i = end;
            continue;
        }
        match b[i] {
            b'{' => {
                braces += 1;
                if pending_mod {
                    open.push(braces);
                }
                pending_mod = false;
            }
            b'}' => {
                if open.last() == Some(&braces) {
                    open.pop();
                }
                braces = braces.saturating_sub(1);
            }
            b';' => pending_mod = false,
            _ => {}
        }
        i += 1;
    }
    depths
}

/// The top-level modules `code` names, with their offsets, in a file whose module is `depth`
/// levels below the crate root: `crate::x`, and `super::x` (`super::super::x`, ..) that climbs to
/// the root from the file's module or an inline `mod` in it.
fn named_modules(code: &str, depth: usize) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let inline = inline_mod_depths(b);
    let mut named = Vec::new();
    for (i, nested) in inline.iter().enumerate() {
        let targets = if let Some(after) = path_start(b, i, "crate") {
            first_segments(b, after)
        } else if let Some(mut after) = path_start(b, i, "super") {
            let mut ups = 1;
            while let Some(next) = ident_at(b, after)
                .filter(|(id, _)| id == "super")
                .and_then(|(_, end)| colons_after(b, end))
            {
                ups += 1;
                after = next;
            }
            if depth + nested == ups {
                first_segments(b, after)
            } else {
                Vec::new()
            }
        } else {
            continue;
        };
        named.extend(targets.into_iter().map(|t| (i, t)));
    }
    named
}

/// Edge `from → to` with the first place it was seen.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn graph(crate_dir: &Path) -> Graph {
    let mut files = Vec::new();
    sources(crate_dir, &[], &mut files);
    files.sort();
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(_, m)| m.first().cloned())
        .collect();
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (file, module) in &files {
        let Some(from) = module.first() else {
            continue; // the crate root declares the modules; it is not one of them
        };
        let src = fs::read_to_string(file).expect("readable source");
        let code = without_test_items(&code_only(&src));
        let rel = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        for (at, to) in named_modules(&code, module.len()) {
            if &to != from && modules.contains(&to) {
                let line = code[..at].lines().count().max(1);
                g.get_mut(from)
                    .expect("every module is a node")
                    .entry(to)
                    .or_insert_with(|| format!("{rel}:{line}"));
            }
        }
    }
    g
}

/// The modules reachable from `from` by one or more edges.
fn reachable(g: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for to in g[&m].keys() {
            if seen.insert(to.clone()) {
                todo.push(to.clone());
            }
        }
    }
    seen
}

/// The strongly connected components of more than one module, each sorted.
fn cycles(g: &Graph) -> BTreeSet<Vec<String>> {
    let reach: BTreeMap<&String, BTreeSet<String>> =
        g.keys().map(|m| (m, reachable(g, m))).collect();
    g.keys()
        .map(|m| {
            let mut scc: Vec<String> = reach[m]
                .iter()
                .filter(|other| reach[other].contains(m))
                .cloned()
                .collect();
            scc.push(m.clone());
            scc.sort();
            scc.dedup();
            scc
        })
        .filter(|scc| scc.len() > 1)
        .collect()
}

/// The edges inside `scc`, each with where it is first seen.
fn describe(g: &Graph, scc: &[String]) -> String {
    let mut s = String::new();
    for from in scc {
        for (to, at) in &g[from] {
            if scc.contains(to) {
                s.push_str(&format!("\n    {from} → {to}  ({at})"));
            }
        }
    }
    s
}

#[test]
fn module_cycles_are_only_the_listed_ones() {
    let mut problems = Vec::new();
    for (name, dir) in CRATES {
        let g = graph(&root().join(dir));
        assert!(g.len() > 5, "{name}: found only {:?}", g.keys());
        let found = cycles(&g);
        let allowed: BTreeSet<Vec<String>> = ALLOWED_CYCLES
            .iter()
            .filter(|(c, _)| c == name)
            .map(|(_, m)| {
                let mut m: Vec<String> = m.iter().map(|s| s.to_string()).collect();
                m.sort();
                m
            })
            .collect();
        for scc in found.difference(&allowed) {
            problems.push(format!(
                "{name}: a module cycle not in ALLOWED_CYCLES: {scc:?}{}",
                describe(&g, scc)
            ));
        }
        for scc in allowed.difference(&found) {
            problems.push(format!(
                "{name}: the allowed cycle {scc:?} is gone; remove its ALLOWED_CYCLES entry"
            ));
        }
        if ALLOWED_CYCLES.is_empty() {
            assert!(
                found.is_empty(),
                "{name}: the module graph has cycles: {found:?}"
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_sees_paths_and_skips_comments_literals_and_test_items() {
    let code = without_test_items(&code_only(
        "use crate::{a::X, b::{Y, Z}};\n// crate::c\nlet s = \"crate::d\";\n\
         let r = r#\"crate::e\"#;\nlet c = '\"'; use crate::f;\n\
         #[cfg(test)]\nmod tests { use crate::g; }\n#[cfg(test)]\nuse crate::h;\nfn k<'a>() { crate::i::j() }",
    ));
    let names = |code: &str, depth| -> Vec<String> {
        named_modules(code, depth)
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    };
    assert_eq!(names(&code, 1), ["a", "b", "f", "i"]);

    // `super::` names a top-level module only where it climbs to the crate root.
    let code =
        "use super::a;\nmod inner { use super::b; use super::super::c; }\nuse super::super::d;";
    assert_eq!(names(code, 1), ["a", "c"]);
    assert_eq!(names(code, 2), ["d"]);

    let mut g = Graph::new();
    for (from, to) in [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("c", "d"),
        ("d", "e"),
        ("e", "d"),
    ] {
        g.entry(from.into())
            .or_default()
            .insert(to.into(), String::new());
        g.entry(to.into()).or_default();
    }
    let want: BTreeSet<Vec<String>> = [vec!["a", "b", "c"], vec!["d", "e"]]
        .iter()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(cycles(&g), want);
}
