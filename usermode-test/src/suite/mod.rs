//! The harness suites and the small framework they share: checks that pass, fail with a reason,
//! or are skipped with a reason, collected into a [`Report`] printed for people or as JSON.

pub mod bad_input;
pub mod bench;
pub mod crash_matrix;
#[cfg(windows)]
pub mod dtc;
pub mod scenarios;
pub mod stress;
#[cfg(windows)]
pub mod txr;

use crate::error::Error;
use crate::transport::TransportKind;
use ktmrm_proto::Stats;
use serde::Serialize;
use std::fmt::Debug;
use std::time::Instant;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// An expectation did not hold.
    Fail,
    /// The transport cannot run this check (the reason says why).
    Skip,
}

/// Why a check stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An expectation did not hold.
    Fail(String),
    /// The check cannot run here.
    Skip(String),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        match e {
            Error::Unsupported { .. } => Stop::Skip(e.to_string()),
            e => Stop::Fail(e.to_string()),
        }
    }
}

/// What a check body returns: `Ok(note)` passes with an optional note for the report.
pub type Step<T = ()> = Result<T, Stop>;

/// Fails with `msg`.
pub fn fail<T>(msg: impl Into<String>) -> Step<T> {
    Err(Stop::Fail(msg.into()))
}

/// Fails unless `got == want`.
pub fn expect_eq<T: PartialEq + Debug>(what: &str, got: T, want: T) -> Step {
    if got == want {
        Ok(())
    } else {
        fail(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

/// Fails unless `cond`.
pub fn expect(what: &str, cond: bool) -> Step {
    if cond {
        Ok(())
    } else {
        fail(format!("{what}: did not hold"))
    }
}

/// Fails unless `after` counts as many live transactions as `before`: the check left none behind.
pub fn expect_none_left_live(before: &Stats, after: &Stats) -> Step {
    expect_eq(
        "live transactions",
        after.live_transactions,
        before.live_transactions,
    )
}

/// Fails unless `r` is an error with status `want`.
pub fn expect_status<T: Debug>(
    what: &str,
    r: Result<T, Error>,
    want: ktmrm_proto::NtStatus,
) -> Step {
    match r {
        Err(e) if e.status() == Some(want) => Ok(()),
        Err(e) => fail(format!(
            "{what}: expected {}, got {e}",
            crate::status::name(want)
        )),
        Ok(v) => fail(format!(
            "{what}: expected {}, but it succeeded with {v:?}",
            crate::status::name(want)
        )),
    }
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// Short name, e.g. `write-write-conflict`.
    pub name: String,
    /// What it proves (the rule of the README's "Semantics" it checks).
    pub rule: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it failed or was skipped, or a note on a pass.
    pub detail: String,
    /// Wall time.
    pub millis: u128,
}

/// A suite's results.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `scenarios`, `bad-input`, …
    pub suite: String,
    /// Which transport ran it.
    pub transport: TransportKind,
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
    /// Counts.
    pub passed: usize,
    /// Counts.
    pub failed: usize,
    /// Counts.
    pub skipped: usize,
}

impl Report {
    /// An empty report.
    #[must_use]
    pub fn new(suite: &str, transport: TransportKind) -> Report {
        Report {
            suite: suite.into(),
            transport,
            checks: Vec::new(),
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Runs `body` as a check named `name` and records the verdict. A panic inside `body` is not
    /// caught: the workspace builds with `panic = "abort"`, as the driver must.
    pub fn run(
        &mut self,
        name: &str,
        rule: &str,
        body: impl FnOnce() -> Step<String>,
    ) -> &CheckResult {
        let start = Instant::now();
        let r = body();
        let (verdict, detail) = match r {
            Ok(note) => (Verdict::Pass, note),
            Err(Stop::Fail(m)) => (Verdict::Fail, m),
            Err(Stop::Skip(m)) => (Verdict::Skip, m),
        };
        self.push(CheckResult {
            name: name.into(),
            rule: rule.into(),
            verdict,
            detail,
            millis: start.elapsed().as_millis(),
        });
        self.checks.last().expect("just pushed")
    }

    /// Records a result computed elsewhere.
    pub fn push(&mut self, c: CheckResult) {
        match c.verdict {
            Verdict::Pass => self.passed += 1,
            Verdict::Fail => self.failed += 1,
            Verdict::Skip => self.skipped += 1,
        }
        self.checks.push(c);
    }

    /// True when nothing failed.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// `N passed, N failed, N skipped` (the closing line CI reads).
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }

    /// The human-readable form: one line per check, details indented, then the summary.
    #[must_use]
    pub fn human(&self, verbose: bool) -> String {
        let mut s = format!(
            "{} on the {} transport\n",
            self.suite,
            self.transport.name()
        );
        for c in &self.checks {
            if !verbose && c.verdict == Verdict::Pass && self.checks.len() > 60 {
                continue;
            }
            let tag = match c.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            };
            s.push_str(&format!("{tag}  {:<34} {}\n", c.name, c.rule));
            if !c.detail.is_empty() && (c.verdict != Verdict::Pass || verbose) {
                for line in c.detail.lines() {
                    s.push_str(&format!("      {line}\n"));
                }
            }
        }
        s.push_str(&format!("{}: {}\n", self.suite, self.summary()));
        s
    }
}
