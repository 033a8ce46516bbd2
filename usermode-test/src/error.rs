//! The client's error type. Every error says what was attempted and, for a driver answer, the
//! NTSTATUS name, value and meaning — never a raw code alone.

use crate::status;
use ktmrm_proto::{NtStatus, PROTOCOL_VERSION};
use std::fmt;

/// Where to read how to install the driver (README "Windows").
pub const INSTALL_HINT: &str = "Install it from an elevated prompt in the folder holding ktmrm.inf \
(see README, section \"Windows\"):\n    pnputil /add-driver ktmrm.inf /install\n    sc.exe start KtmRm\n\
Or run the same checks against the simulated device with --sim.";

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The driver (or KTM) answered `op` with an error status.
    Status {
        /// What was attempted, e.g. `put "a"` or `commit`.
        op: String,
        /// The status returned.
        status: NtStatus,
    },
    /// The driver refused `op` with `status` because a field is outside the protocol's range:
    /// `why` names the field, its size and the limit.
    OutOfRange {
        /// What was attempted.
        op: String,
        /// The status returned (STATUS_INVALID_PARAMETER).
        status: NtStatus,
        /// The field, its size and the limit.
        why: String,
    },
    /// The driver speaks another protocol version; no other call is safe.
    ProtocolMismatch {
        /// The driver's version.
        driver: u16,
    },
    /// An answer that does not decode (a driver bug, or a transport fault).
    BadAnswer {
        /// What was attempted.
        op: String,
        /// What was wrong with it.
        detail: String,
    },
    /// `\\.\KtmRm` does not exist.
    NotInstalled,
    /// The transport cannot do this (e.g. `veto` on the real device).
    Unsupported {
        /// What was attempted.
        op: String,
        /// Why it cannot be done here.
        reason: String,
    },
    /// An operating-system call failed outside the driver.
    Os {
        /// What was attempted.
        op: String,
        /// The Win32 error code.
        code: u32,
    },
}

impl Error {
    /// The NTSTATUS, when the error is a driver or KTM answer.
    #[must_use]
    pub fn status(&self) -> Option<NtStatus> {
        match self {
            Error::Status { status, .. } | Error::OutOfRange { status, .. } => Some(*status),
            Error::Unsupported { .. } => Some(status::NOT_SUPPORTED),
            _ => None,
        }
    }

    /// Builds a status error.
    pub fn status_of(op: impl Into<String>, status: NtStatus) -> Self {
        Error::Status {
            op: op.into(),
            status,
        }
    }

    /// The `STATUS_*` name scripts print for this error (`err NAME`).
    #[must_use]
    pub fn script_name(&self) -> String {
        match self {
            Error::Status { status, .. } | Error::OutOfRange { status, .. } => {
                status::name(*status)
            }
            Error::Unsupported { .. } => status::name(status::NOT_SUPPORTED),
            Error::ProtocolMismatch { .. } => status::name(NtStatus::REVISION_MISMATCH),
            Error::BadAnswer { .. } => "BAD_ANSWER".to_owned(),
            Error::NotInstalled => "NOT_INSTALLED".to_owned(),
            Error::Os { code, .. } => match status::from_win32(*code) {
                Some(s) => status::name(s),
                None => format!("WIN32_{code}"),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Status { op, status } => write!(f, "{op}: {}", status::describe(*status)),
            Error::OutOfRange { op, status, why } => write!(
                f,
                "{op}: {why} ({}, 0x{:08X})",
                status::name(*status),
                status.0 as u32
            ),
            Error::ProtocolMismatch { driver } => write!(
                f,
                "the ktmrm driver speaks protocol version {driver}, but this client speaks version \
                 {PROTOCOL_VERSION}; install a driver and ktmrm-test from the same release"
            ),
            Error::BadAnswer { op, detail } => {
                write!(f, "{op}: malformed answer from the driver: {detail}")
            }
            Error::NotInstalled => write!(
                f,
                "ktmrm driver is not installed or not started (\\\\.\\KtmRm not found)\n{INSTALL_HINT}"
            ),
            Error::Unsupported { op, reason } => write!(f, "{op}: not supported here: {reason}"),
            Error::Os { op, code } => match status::from_win32(*code) {
                Some(s) => write!(f, "{op}: Win32 error {code} (≈ {})", status::describe(s)),
                None => write!(f, "{op}: Win32 error {code}"),
            },
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for client results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_status_and_its_meaning() {
        let e = Error::status_of("put \"a\"", NtStatus::TRANSACTIONAL_CONFLICT);
        assert_eq!(
            e.to_string(),
            "put \"a\": STATUS_TRANSACTIONAL_CONFLICT (0xC0190001): The key is written by another live transaction."
        );
        assert_eq!(e.script_name(), "STATUS_TRANSACTIONAL_CONFLICT");
        assert!(
            Error::NotInstalled.to_string().starts_with(
                "ktmrm driver is not installed or not started (\\\\.\\KtmRm not found)"
            )
        );
        assert!(
            Error::ProtocolMismatch { driver: 7 }
                .to_string()
                .contains("version 7")
        );
    }
}
