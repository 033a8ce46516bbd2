//! NTSTATUS values ktmrm returns, with their names for messages.
//!
//! Values are Windows' own (ntstatus.h / MS-ERREF); the driver returns them unchanged and user mode
//! sees them through `DeviceIoControl` (mapped to Win32 errors) or, in the simulator, as is.

/// An NTSTATUS value. Severity is in the top two bits: `0b11` error, `0b10` warning, `0b00` success.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct NtStatus(pub i32);

macro_rules! statuses {
    ($($name:ident = $val:expr, $msg:expr;)*) => {
        impl NtStatus {
            $(
                #[doc = $msg]
                pub const $name: NtStatus = NtStatus($val as u32 as i32);
            )*

            /// Every status this crate names, for tables and tests.
            pub const ALL: &'static [NtStatus] = &[$(NtStatus::$name),*];

            /// The `STATUS_*` name, or `None` for a value this crate does not name.
            #[must_use]
            pub const fn name(self) -> Option<&'static str> {
                match self.0 as u32 {
                    $(v if v == $val => Some(concat!("STATUS_", stringify!($name))),)*
                    _ => None,
                }
            }

            /// A one-line description for people, or `None` for a value this crate does not name.
            #[must_use]
            pub const fn message(self) -> Option<&'static str> {
                match self.0 as u32 {
                    $(v if v == $val => Some($msg),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    SUCCESS = 0x0000_0000u32, "The operation completed successfully.";
    TIMEOUT = 0x0000_0102u32, "The wait timed out.";
    PENDING = 0x0000_0103u32, "The operation will complete later.";
    RESOURCEMANAGER_READ_ONLY = 0x0000_0202u32, "The resource manager made no changes in the transaction (success).";
    BUFFER_OVERFLOW = 0x8000_0005u32, "The output buffer is too small for the whole answer; its header says how much is needed.";
    UNSUCCESSFUL = 0xC000_0001u32, "The operation failed.";
    INVALID_HANDLE = 0xC000_0008u32, "The handle is not valid.";
    INVALID_PARAMETER = 0xC000_000Du32, "A field of the request has a value that is not allowed.";
    INVALID_DEVICE_REQUEST = 0xC000_0010u32, "The control code is not one ktmrm knows.";
    ACCESS_DENIED = 0xC000_0022u32, "The handle does not grant the access this call needs.";
    BUFFER_TOO_SMALL = 0xC000_0023u32, "The output buffer is smaller than the smallest answer this call gives.";
    OBJECT_TYPE_MISMATCH = 0xC000_0024u32, "The handle is not a transaction handle.";
    INVALID_PARAMETER_MIX = 0xC000_0030u32, "The request states an isolation level other than the one the transaction has.";
    OBJECT_NAME_NOT_FOUND = 0xC000_0034u32, "The key does not exist in the caller's view.";
    QUOTA_EXCEEDED = 0xC000_0044u32, "A ktmrm quota (keys, bytes, write-set size or live transactions) would be exceeded.";
    REVISION_MISMATCH = 0xC000_0059u32, "The request's protocol version is not the driver's.";
    INSUFFICIENT_RESOURCES = 0xC000_009Au32, "The driver could not allocate memory for the request.";
    INVALID_BUFFER_SIZE = 0xC000_0206u32, "The input buffer's length does not match the lengths it declares.";
    TRANSACTION_ABORTED = 0xC000_020Fu32, "The transaction was aborted.";
    DEVICE_NOT_READY = 0xC000_00A3u32, "The device is shutting down or not started.";
    TRANSACTIONAL_CONFLICT = 0xC019_0001u32, "The key is written by another live transaction.";
    INVALID_TRANSACTION = 0xC019_0002u32, "The transaction handle is not valid.";
    TRANSACTION_NOT_ACTIVE = 0xC019_0003u32, "The transaction has committed, rolled back or is committing.";
    RM_NOT_ACTIVE = 0xC019_0005u32, "The resource manager is not started or has shut down.";
    TRANSACTION_REQUEST_NOT_VALID = 0xC019_0013u32, "The request is not valid in the transaction's current state.";
    TRANSACTION_NOT_REQUESTED = 0xC019_0014u32, "An answer was given to a notification that was not sent.";
    TRANSACTION_ALREADY_ABORTED = 0xC019_0015u32, "The transaction was already rolled back.";
    TRANSACTION_ALREADY_COMMITTED = 0xC019_0016u32, "The transaction was already committed.";
    RM_DISCONNECTED = 0xC019_0032u32, "The resource manager went away.";
    TM_VOLATILE = 0xC019_003Bu32, "The transaction manager is volatile.";
    TRANSACTION_REQUIRED_PROMOTION = 0xC019_0043u32, "The transaction needs promotion to a distributed transaction, which it forbids.";
    TRANSACTION_OBJECT_EXPIRED = 0xC019_0055u32, "The transaction object behind the handle is already closed.";
    TRANSACTION_NOT_ENLISTED = 0xC019_0061u32, "The resource manager is not enlisted in the transaction.";
}

impl NtStatus {
    /// True for success and informational values (`NT_SUCCESS`).
    #[must_use]
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// True for error values (severity `0b11`).
    #[must_use]
    pub const fn is_error(self) -> bool {
        (self.0 as u32) >> 30 == 0b11
    }
}

impl core::fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "NTSTATUS(0x{:08X})", self.0 as u32),
        }
    }
}

impl core::fmt::Display for NtStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} (0x{:08X})", self.0 as u32),
            None => write!(f, "NTSTATUS 0x{:08X}", self.0 as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, a) in NtStatus::ALL.iter().enumerate() {
            for b in NtStatus::ALL.iter().skip(i + 1) {
                assert_ne!(a.0, b.0, "{a:?} and {b:?} share a value");
            }
            let name = a.name().unwrap();
            assert!(name.starts_with("STATUS_"));
            assert!(a.message().is_some());
        }
        assert_eq!(NtStatus(0x1234_5678).name(), None);
    }

    #[test]
    fn values_match_ntstatus_h() {
        assert_eq!(NtStatus::TRANSACTIONAL_CONFLICT.0 as u32, 0xC019_0001);
        assert_eq!(NtStatus::OBJECT_NAME_NOT_FOUND.0 as u32, 0xC000_0034);
        assert_eq!(NtStatus::INVALID_PARAMETER.0 as u32, 0xC000_000D);
        assert!(NtStatus::BUFFER_OVERFLOW.0 < 0 && !NtStatus::BUFFER_OVERFLOW.is_error());
        assert!(NtStatus::RESOURCEMANAGER_READ_ONLY.is_success());
        assert!(NtStatus::TRANSACTION_NOT_ACTIVE.is_error());
        assert_eq!(
            format!("{}", NtStatus::TRANSACTION_NOT_ACTIVE),
            "STATUS_TRANSACTION_NOT_ACTIVE (0xC0190003)"
        );
    }
}
