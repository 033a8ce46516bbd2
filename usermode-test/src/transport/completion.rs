//! What one `DeviceIoControl` call on `\\.\KtmRm` left behind, read back as the request's exact
//! NTSTATUS and the bytes the driver wrote. Portable, so these rules are tested on any OS; the
//! Windows transport (`device.rs`) only fills in a [`Completion`].
//!
//! The handle is opened without `FILE_FLAG_OVERLAPPED`, so the call is synchronous, and it gets
//! an `OVERLAPPED` whose `Internal` is `STATUS_PENDING` beforehand. What Microsoft documents, and
//! what follows from it:
//! - `OVERLAPPED` (minwinbase.h): `Internal` is "the status code for the I/O request": the system
//!   sets it to `STATUS_PENDING` when the request is issued and to the request's status when it
//!   completes; `InternalHigh` is "the number of bytes transferred", set "if the request is
//!   completed without errors". A completed request never has `STATUS_PENDING` as its status
//!   ("it's a programming error to complete an IRP with STATUS_PENDING", *Completing the IRP*),
//!   so `Internal != STATUS_PENDING` means the I/O manager wrote the status block.
//! - `IO_STATUS_BLOCK` (wdm.h), Remarks: a routine that writes a caller's status block returns a
//!   status that may not match it; unless it returns `STATUS_PENDING`, "the caller should rely on
//!   this status code instead of the status code in the I/O status block". NT's I/O manager
//!   indeed leaves the caller's block unwritten for a request that fails synchronously with an
//!   error (no pending return; ReactOS's `IopCompleteRequest` keeps the same rule): every ktmrm
//!   error, and the I/O manager's own refusals (`STATUS_ACCESS_DENIED` for a handle without the
//!   access the control code needs), leave `Internal` at `STATUS_PENDING`. `Internal` alone
//!   cannot report an error. (Measured under Wine 8.0, which reimplements kernel32 and the
//!   I/O path: `DeviceIoControl` on `NUL` and on a file with a ktmrm control code failed with
//!   `Internal` still `0x103`, and `RtlGetLastNtStatus` gave `0xC0000123` and `0xC00000BB`
//!   behind Win32 errors 5 and 50.)
//! - `DeviceIoControl` (ioapiset.h) says `lpOverlapped` "is ignored" for a handle opened without
//!   `FILE_FLAG_OVERLAPPED`, so a status block left unwritten after a success is allowed too:
//!   then the byte count is `*lpBytesReturned`.
//! - On failure `DeviceIoControl` turns the routine's NTSTATUS into the thread's last error with
//!   `RtlNtStatusToDosError`, which also keeps the NTSTATUS in the thread's block, where ntdll's
//!   `RtlGetLastNtStatus` reads it (not on learn.microsoft.com; Chromium's `base::win::
//!   GetLastNtStatus` is built on it for the same purpose). That is the exact status: Win32
//!   errors are lossy (`STATUS_OBJECT_TYPE_MISMATCH` and `STATUS_INVALID_HANDLE` both become
//!   error 6). It is used only when it maps to the Win32 error this call set, so a status left
//!   from an earlier call is never reported; otherwise the Win32 error is mapped back.

use ktmrm_proto::NtStatus;

/// Everything one synchronous `DeviceIoControl` call left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// What `DeviceIoControl` returned (`TRUE`: the request's status is a success).
    pub succeeded: bool,
    /// `OVERLAPPED.Internal` after the call (`STATUS_PENDING` before it).
    pub internal: usize,
    /// `OVERLAPPED.InternalHigh` after the call.
    pub internal_high: usize,
    /// `*lpBytesReturned` after the call.
    pub bytes_returned: u32,
    /// `RtlGetLastNtStatus()` right after a failed call.
    pub last_status: NtStatus,
    /// `GetLastError()` right after a failed call.
    pub last_error: u32,
}

impl Completion {
    /// `Internal` as an NTSTATUS: the low 32 bits (the status block's `Status` shares its
    /// pointer-sized slot with a `Pointer`).
    fn internal_status(&self) -> NtStatus {
        NtStatus(self.internal as u32 as i32)
    }

    /// Whether the I/O manager wrote the status block.
    fn block_written(&self) -> bool {
        self.internal_status() != NtStatus::PENDING
    }
}

/// The request's NTSTATUS and the bytes written to an output buffer of `output_len` bytes
/// (0 for an error status, as the I/O manager copies nothing back then). `to_win32` is
/// `RtlNtStatusToDosError`.
pub fn outcome(
    c: &Completion,
    output_len: usize,
    to_win32: impl Fn(NtStatus) -> u32,
) -> (NtStatus, usize) {
    let status = if c.succeeded {
        // TRUE means NT_SUCCESS and not pending; an informational status is kept.
        if c.block_written() && c.internal_status().is_success() {
            c.internal_status()
        } else {
            NtStatus::SUCCESS
        }
    } else if !c.last_status.is_success() && to_win32(c.last_status) == c.last_error {
        c.last_status
    } else if c.block_written()
        && !c.internal_status().is_success()
        && to_win32(c.internal_status()) == c.last_error
    {
        c.internal_status()
    } else {
        from_win32_error(c.last_error)
    };
    let written = if status.is_error() {
        0
    } else if c.block_written() {
        c.internal_high
    } else {
        c.bytes_returned as usize
    };
    (status, written.min(output_len))
}

/// The NTSTATUS for a Win32 error when no NTSTATUS came with it: the one ktmrm returns for that
/// error if the table knows it, else `NTSTATUS_FROM_WIN32(error)` (ntstatus.h: facility
/// `FACILITY_NTWIN32`, severity error), so the number is never lost.
fn from_win32_error(error: u32) -> NtStatus {
    match crate::status::from_win32(error) {
        Some(status) => status,
        None if error == 0 => NtStatus::UNSUCCESSFUL,
        None => NtStatus((0xC007_0000 | (error & 0xFFFF)) as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RtlNtStatusToDosError` for the statuses used here (winerror.h / MS-ERREF).
    fn to_win32(s: NtStatus) -> u32 {
        match s {
            NtStatus::SUCCESS => 0,
            NtStatus::BUFFER_OVERFLOW => 234,
            NtStatus::INVALID_HANDLE | NtStatus::OBJECT_TYPE_MISMATCH => 6,
            NtStatus::ACCESS_DENIED => 5,
            NtStatus::INVALID_PARAMETER => 87,
            NtStatus::TRANSACTIONAL_CONFLICT => 6800,
            NtStatus::TRANSACTION_NOT_ACTIVE => 6701,
            _ => 317, // ERROR_MR_MID_NOT_FOUND: no mapping
        }
    }

    const PENDING: usize = NtStatus::PENDING.0 as usize;

    /// A call that the I/O manager completed through the status block.
    fn completed(succeeded: bool, status: NtStatus, bytes: usize) -> Completion {
        Completion {
            succeeded,
            internal: status.0 as u32 as usize,
            internal_high: bytes,
            bytes_returned: bytes as u32,
            last_status: if succeeded { NtStatus::SUCCESS } else { status },
            last_error: if succeeded { 0 } else { to_win32(status) },
        }
    }

    /// A call that failed synchronously: the status block is left as it was before the call.
    fn failed(status: NtStatus) -> Completion {
        Completion {
            succeeded: false,
            internal: PENDING,
            internal_high: 0,
            bytes_returned: 0,
            last_status: status,
            last_error: to_win32(status),
        }
    }

    #[test]
    fn success_reports_the_status_block() {
        let c = completed(true, NtStatus::SUCCESS, 48);
        assert_eq!(outcome(&c, 64, to_win32), (NtStatus::SUCCESS, 48));
        // An informational status is a success and is kept.
        let c = completed(true, NtStatus::RESOURCEMANAGER_READ_ONLY, 0);
        assert_eq!(
            outcome(&c, 64, to_win32),
            (NtStatus::RESOURCEMANAGER_READ_ONLY, 0)
        );
        // Never more bytes than the buffer holds.
        let c = completed(true, NtStatus::SUCCESS, 100);
        assert_eq!(outcome(&c, 16, to_win32), (NtStatus::SUCCESS, 16));
    }

    #[test]
    fn success_without_a_written_block_uses_bytes_returned() {
        let c = Completion {
            internal: PENDING,
            internal_high: 0,
            bytes_returned: 12,
            ..completed(true, NtStatus::SUCCESS, 0)
        };
        assert_eq!(outcome(&c, 64, to_win32), (NtStatus::SUCCESS, 12));
    }

    #[test]
    fn synchronous_errors_come_from_the_last_ntstatus() {
        for s in [
            NtStatus::TRANSACTIONAL_CONFLICT,
            NtStatus::ACCESS_DENIED,
            NtStatus::INVALID_PARAMETER,
            NtStatus::TRANSACTION_NOT_ACTIVE,
        ] {
            assert_eq!(outcome(&failed(s), 64, to_win32), (s, 0), "{s:?}");
        }
    }

    #[test]
    fn statuses_sharing_a_win32_error_stay_apart() {
        let mismatch = failed(NtStatus::OBJECT_TYPE_MISMATCH);
        let invalid = failed(NtStatus::INVALID_HANDLE);
        assert_eq!(mismatch.last_error, invalid.last_error);
        assert_eq!(
            outcome(&mismatch, 0, to_win32).0,
            NtStatus::OBJECT_TYPE_MISMATCH
        );
        assert_eq!(outcome(&invalid, 0, to_win32).0, NtStatus::INVALID_HANDLE);
    }

    #[test]
    fn a_status_unknown_to_win32_is_still_exact() {
        // RtlNtStatusToDosError maps unknown statuses to ERROR_MR_MID_NOT_FOUND; the thread's
        // NTSTATUS still says which one it was.
        let s = NtStatus(0xC019_0055_u32 as i32);
        assert_eq!(outcome(&failed(s), 8, to_win32), (s, 0));
    }

    #[test]
    fn a_warning_keeps_its_bytes() {
        // STATUS_BUFFER_OVERFLOW: DeviceIoControl fails with ERROR_MORE_DATA, and the block
        // holds the status and the bytes copied (a GET's header with the needed length).
        let c = completed(false, NtStatus::BUFFER_OVERFLOW, 16);
        assert_eq!(outcome(&c, 16, to_win32), (NtStatus::BUFFER_OVERFLOW, 16));
        // Even when the last NTSTATUS is stale, the written block agrees with the Win32 error.
        let c = Completion {
            last_status: NtStatus::TRANSACTIONAL_CONFLICT,
            ..c
        };
        assert_eq!(outcome(&c, 16, to_win32), (NtStatus::BUFFER_OVERFLOW, 16));
    }

    #[test]
    fn a_stale_last_ntstatus_is_not_reported() {
        // The thread's NTSTATUS is from an earlier failure; this one only set a Win32 error.
        let c = Completion {
            last_status: NtStatus::TRANSACTIONAL_CONFLICT,
            last_error: 87,
            ..failed(NtStatus::INVALID_PARAMETER)
        };
        assert_eq!(outcome(&c, 8, to_win32), (NtStatus::INVALID_PARAMETER, 0));
        // A Win32 error without a table entry keeps its number: NTSTATUS_FROM_WIN32.
        let c = Completion {
            last_error: 1117, // ERROR_IO_DEVICE
            ..c
        };
        assert_eq!(outcome(&c, 8, to_win32).0, NtStatus(0xC007_045D_u32 as i32));
        let c = Completion { last_error: 0, ..c };
        assert_eq!(outcome(&c, 8, to_win32).0, NtStatus::UNSUCCESSFUL);
    }

    #[test]
    fn an_error_never_reports_bytes() {
        let c = Completion {
            internal_high: 40,
            bytes_returned: 40,
            ..failed(NtStatus::INVALID_PARAMETER)
        };
        assert_eq!(outcome(&c, 64, to_win32), (NtStatus::INVALID_PARAMETER, 0));
        // Also when the status block was written with the error (a request that pended).
        let c = completed(false, NtStatus::TRANSACTIONAL_CONFLICT, 40);
        assert_eq!(
            outcome(&c, 64, to_win32),
            (NtStatus::TRANSACTIONAL_CONFLICT, 0)
        );
    }

    #[test]
    fn only_the_low_32_bits_of_internal_are_the_status() {
        let c = Completion {
            internal: (0xDEAD_BEEF_usize << 32) | 0x0000_0202,
            ..completed(true, NtStatus::SUCCESS, 4)
        };
        assert_eq!(
            outcome(&c, 8, to_win32),
            (NtStatus::RESOURCEMANAGER_READ_ONLY, 4)
        );
    }
}
