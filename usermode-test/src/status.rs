//! Status names for people and scripts, and the Win32-error → NTSTATUS table the device transport
//! falls back on when only `GetLastError` is available.
//!
//! The harness compares statuses byte for byte, so the device transport reads the driver's
//! NTSTATUS itself (`DeviceIoControl`'s status block and the thread's last NTSTATUS,
//! `NtCommitTransaction`). Win32 codes lose information — `RtlNtStatusToDosError` maps both
//! `STATUS_INVALID_HANDLE` and `STATUS_OBJECT_TYPE_MISMATCH` to `ERROR_INVALID_HANDLE` (6) — so
//! [`from_win32`] is only used for calls that report nothing better (ktmw32 `CreateTransaction`,
//! `CommitTransaction` in the TxR scenario, a `DeviceIoControl` failure that left no NTSTATUS),
//! and its answer is labelled as a mapping.

use ktmrm_proto::NtStatus;

/// NTSTATUS values the harness may meet that ktmrm itself never returns, so `ktmrm-proto` does
/// not name them.
const EXTRA: &[(u32, &str, &str)] = &[
    (
        0xC000_0002,
        "STATUS_NOT_IMPLEMENTED",
        "The requested operation is not implemented.",
    ),
    (
        0xC000_000E,
        "STATUS_NO_SUCH_DEVICE",
        "The device does not exist.",
    ),
    (
        0xC000_00BB,
        "STATUS_NOT_SUPPORTED",
        "The request is not supported (by this transport).",
    ),
    (
        0xC000_0210,
        "STATUS_TRANSACTION_TIMED_OUT",
        "The transaction timed out (legacy transport code).",
    ),
    (
        0xC019_0012,
        "STATUS_TRANSACTION_SUPERIOR_EXISTS",
        "A superior enlistment exists, so commit is refused.",
    ),
    (
        0xC019_0004,
        "STATUS_TRANSACTION_NOT_JOINED",
        "The resource manager has not joined the transaction.",
    ),
    (
        0xC019_004E,
        "STATUS_TRANSACTION_NOT_FOUND",
        "No transaction has that identifier.",
    ),
];

/// `STATUS_NOT_SUPPORTED`: what a transport answers for a primitive it cannot perform.
pub const NOT_SUPPORTED: NtStatus = NtStatus(0xC000_00BB_u32 as i32);

/// The `STATUS_*` name, or `0xXXXXXXXX` for a value nobody named. Scripts print this.
#[must_use]
pub fn name(status: NtStatus) -> String {
    if let Some(n) = status.name() {
        return n.to_owned();
    }
    match EXTRA.iter().find(|e| e.0 == status.0 as u32) {
        Some(e) => e.1.to_owned(),
        None => format!("0x{:08X}", status.0 as u32),
    }
}

/// A one-line meaning for people.
#[must_use]
pub fn message(status: NtStatus) -> &'static str {
    if let Some(m) = status.message() {
        return m;
    }
    match EXTRA.iter().find(|e| e.0 == status.0 as u32) {
        Some(e) => e.2,
        None => "An NTSTATUS value ktmrm-test has no description for.",
    }
}

/// `NAME (0xXXXXXXXX): meaning`.
#[must_use]
pub fn describe(status: NtStatus) -> String {
    format!(
        "{} (0x{:08X}): {}",
        name(status),
        status.0 as u32,
        message(status)
    )
}

/// Win32 error codes and the NTSTATUS the device most likely returned for them
/// (docs/ktm.md §5; winerror.h). Where several NTSTATUS values share a Win32 code, the one
/// ktmrm returns for that code is listed.
pub const WIN32_TO_NTSTATUS: &[(u32, NtStatus)] = &[
    (1, NtStatus::INVALID_DEVICE_REQUEST), // ERROR_INVALID_FUNCTION
    (2, NtStatus::OBJECT_NAME_NOT_FOUND),  // ERROR_FILE_NOT_FOUND
    (5, NtStatus::ACCESS_DENIED),          // ERROR_ACCESS_DENIED
    (6, NtStatus::INVALID_HANDLE),         // ERROR_INVALID_HANDLE (also OBJECT_TYPE_MISMATCH)
    (21, NtStatus::DEVICE_NOT_READY),      // ERROR_NOT_READY
    (31, NtStatus::UNSUCCESSFUL),          // ERROR_GEN_FAILURE
    (50, NOT_SUPPORTED),                   // ERROR_NOT_SUPPORTED
    (87, NtStatus::INVALID_PARAMETER),     // ERROR_INVALID_PARAMETER
    (122, NtStatus::BUFFER_TOO_SMALL),     // ERROR_INSUFFICIENT_BUFFER
    (234, NtStatus::BUFFER_OVERFLOW),      // ERROR_MORE_DATA
    (1306, NtStatus::REVISION_MISMATCH),   // ERROR_REVISION_MISMATCH
    (1450, NtStatus::INSUFFICIENT_RESOURCES), // ERROR_NO_SYSTEM_RESOURCES
    (1784, NtStatus::INVALID_BUFFER_SIZE), // ERROR_INVALID_USER_BUFFER
    (1816, NtStatus::QUOTA_EXCEEDED),      // ERROR_NOT_ENOUGH_QUOTA
    (6700, NtStatus::INVALID_TRANSACTION), // ERROR_INVALID_TRANSACTION
    (6701, NtStatus::TRANSACTION_NOT_ACTIVE), // ERROR_TRANSACTION_NOT_ACTIVE
    (6702, NtStatus::TRANSACTION_REQUEST_NOT_VALID), // ERROR_TRANSACTION_REQUEST_NOT_VALID
    (6703, NtStatus::TRANSACTION_NOT_REQUESTED), // ERROR_TRANSACTION_NOT_REQUESTED
    (6704, NtStatus::TRANSACTION_ALREADY_ABORTED), // ERROR_TRANSACTION_ALREADY_ABORTED
    (6705, NtStatus::TRANSACTION_ALREADY_COMMITTED), // ERROR_TRANSACTION_ALREADY_COMMITTED
    (6800, NtStatus::TRANSACTIONAL_CONFLICT), // ERROR_TRANSACTIONAL_CONFLICT
    (6801, NtStatus::RM_NOT_ACTIVE),       // ERROR_RM_NOT_ACTIVE
    (6819, NtStatus::RM_DISCONNECTED),     // ERROR_RM_DISCONNECTED
    (6837, NtStatus::TRANSACTION_REQUIRED_PROMOTION), // ERROR_TRANSACTION_REQUIRED_PROMOTION
];

/// The NTSTATUS a Win32 error most likely came from, if the table knows it.
#[must_use]
pub fn from_win32(code: u32) -> Option<NtStatus> {
    WIN32_TO_NTSTATUS.iter().find(|e| e.0 == code).map(|e| e.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_proto_and_extras() {
        assert_eq!(
            name(NtStatus::TRANSACTIONAL_CONFLICT),
            "STATUS_TRANSACTIONAL_CONFLICT"
        );
        assert_eq!(name(NOT_SUPPORTED), "STATUS_NOT_SUPPORTED");
        assert_eq!(name(NtStatus(0x1234_5678)), "0x12345678");
        assert!(
            describe(NtStatus::OBJECT_NAME_NOT_FOUND)
                .starts_with("STATUS_OBJECT_NAME_NOT_FOUND (0xC0000034): The key does not exist")
        );
        for e in EXTRA {
            assert_eq!(
                NtStatus(e.0 as i32).name(),
                None,
                "{} is named in proto now",
                e.1
            );
        }
    }

    #[test]
    fn win32_table_matches_ktm_md() {
        assert_eq!(from_win32(6800), Some(NtStatus::TRANSACTIONAL_CONFLICT));
        assert_eq!(from_win32(6701), Some(NtStatus::TRANSACTION_NOT_ACTIVE));
        assert_eq!(
            from_win32(6837),
            Some(NtStatus::TRANSACTION_REQUIRED_PROMOTION)
        );
        assert_eq!(from_win32(9999), None);
        for (i, a) in WIN32_TO_NTSTATUS.iter().enumerate() {
            assert!(
                WIN32_TO_NTSTATUS[i + 1..].iter().all(|b| b.0 != a.0),
                "duplicate {}",
                a.0
            );
        }
    }
}
