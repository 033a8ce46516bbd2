//! How a command ends: a [`Verdict`] once it ran, or a [`CliError`] that stopped it; each maps
//! to the exit status the binary's doc promises (0 passed, 1 failed, 2 unusable input).

use std::process::ExitCode;

use ktmrm_client::{Error, status};
use serde_json::json;

use crate::out;

/// The end of a command that ran.
pub enum Verdict {
    /// Everything passed: exit status 0.
    Passed,
    /// A check failed, already reported: exit status 1.
    Failed,
}

impl Verdict {
    /// Passed when `ok`.
    pub fn of(ok: bool) -> Self {
        if ok { Verdict::Passed } else { Verdict::Failed }
    }

    /// The exit status.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Verdict::Passed => ExitCode::SUCCESS,
            Verdict::Failed => ExitCode::from(1),
        }
    }
}

/// Why a command stopped before its verdict.
pub enum CliError {
    /// The input (arguments, a script, a trace, a file) cannot be used: exit status 2.
    Usage(String),
    /// A request failed (the device, KTM or the operating system refused it): exit status 1.
    Request(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Request(e)
    }
}

impl CliError {
    /// Reports the error on standard error (as JSON on standard output with `--json`) and
    /// returns its exit status.
    pub fn report(&self, json: bool) -> ExitCode {
        match self {
            CliError::Usage(msg) => {
                if json {
                    out::line(json!({ "error": { "message": msg, "kind": "usage" } }));
                } else {
                    out::error_line(format!("ktmrm-test: {msg}"));
                }
                ExitCode::from(2)
            }
            CliError::Request(e) => {
                if json {
                    let st = e.status().map(status::name);
                    out::line(json!({ "error": { "message": e.to_string(), "status": st } }));
                } else if matches!(e, Error::NotInstalled) {
                    // This one is meant to be read as is, first line first.
                    out::error_line(e);
                } else {
                    out::error_line(format!("ktmrm-test: {e}"));
                }
                ExitCode::from(1)
            }
        }
    }
}

/// What a subcommand returns.
pub type Outcome = Result<Verdict, CliError>;

/// A usage error with `msg`.
pub fn usage<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Usage(msg.into()))
}
