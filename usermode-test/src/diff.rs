//! A line diff for `script --expect`: unified format (`-` expected, `+` got, two lines of
//! context), from the longest common subsequence of the lines that differ. Scripts are small;
//! past [`MAX_CELLS`] the differing middle is shown whole instead of minimised.

/// The most LCS table cells (expected × got lines, after the common head and tail) computed.
pub const MAX_CELLS: usize = 4_000_000;

const CONTEXT: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The edit script turning `a` into `b`.
fn ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out = vec![Op::Same; head];
    if ma.len().saturating_mul(mb.len()) > MAX_CELLS {
        out.extend(std::iter::repeat_n(Op::Del, ma.len()));
        out.extend(std::iter::repeat_n(Op::Add, mb.len()));
    } else {
        // lcs[i][j]: the LCS length of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                out.push(Op::Same);
                i += 1;
                j += 1;
            } else if j < mb.len() && (i == ma.len() || lcs[i * w + j + 1] > lcs[(i + 1) * w + j]) {
                out.push(Op::Add);
                j += 1;
            } else {
                out.push(Op::Del);
                i += 1;
            }
        }
    }
    out.extend(std::iter::repeat_n(Op::Same, tail));
    out
}

/// The unified diff from `expected` to `got` under the two names, or `None` when they are equal
/// line for line.
#[must_use]
pub fn unified(expected: &str, got: &str, expected_name: &str, got_name: &str) -> Option<String> {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    if a == b {
        return None;
    }
    let ops = ops(&a, &b);
    // Positions (in `ops`) of changes, grouped into hunks with their context.
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let (lo, hi) = (k.saturating_sub(CONTEXT), (k + CONTEXT + 1).min(ops.len()));
        match hunks.last_mut() {
            Some(h) if lo <= h.1 => h.1 = hi,
            _ => hunks.push((lo, hi)),
        }
    }
    let mut s = format!("--- {expected_name} (expected)\n+++ {got_name} (got)\n");
    // Line numbers in a and b at each position of `ops`.
    let mut at = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0, 0);
    for op in &ops {
        at.push((i, j));
        match op {
            Op::Same => (i, j) = (i + 1, j + 1),
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    at.push((i, j));
    for (lo, hi) in hunks {
        let ((a0, b0), (a1, b1)) = (at[lo], at[hi]);
        s.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            a0 + 1,
            a1 - a0,
            b0 + 1,
            b1 - b0
        ));
        for k in lo..hi {
            let (ia, ib) = at[k];
            match ops[k] {
                Op::Same => s.push_str(&format!(" {}\n", a[ia])),
                Op::Del => s.push_str(&format!("-{}\n", a[ia])),
                Op::Add => s.push_str(&format!("+{}\n", b[ib])),
            }
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), None);
        // Line endings are not content: a Windows-saved expected file matches.
        assert_eq!(unified("a\r\nb\r\n", "a\nb\n", "x", "y"), None);
    }

    #[test]
    fn a_changed_line_shows_with_its_context() {
        let want = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let got = "1\n2\n3\n4\nfive\n6\n7\n8\n";
        let d = unified(want, got, "t.out", "t.ktm").unwrap();
        assert_eq!(
            d,
            "--- t.out (expected)\n+++ t.ktm (got)\n@@ -3,5 +3,5 @@\n 3\n 4\n-5\n+five\n 6\n 7\n"
        );
    }

    #[test]
    fn insertions_deletions_and_separate_hunks() {
        let want = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let got = "a\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
        let d = unified(want, got, "w", "g").unwrap();
        assert_eq!(
            d,
            "--- w (expected)\n+++ g (got)\n@@ -1,4 +1,3 @@\n a\n-b\n c\n d\n@@ -9,2 +8,3 @@\n i\n j\n+k\n"
        );
        // Missing output entirely.
        let d = unified("x\ny\n", "", "w", "g").unwrap();
        assert_eq!(
            d,
            "--- w (expected)\n+++ g (got)\n@@ -1,2 +1,0 @@\n-x\n-y\n"
        );
    }
}
