//! The real device: `\\.\KtmRm` on Windows.
//!
//! Statuses are read raw, because the harness compares them byte for byte and Win32 errors are
//! lossy (`STATUS_OBJECT_TYPE_MISMATCH` and `STATUS_INVALID_HANDLE` both become error 6):
//! - requests go through kernel32's `DeviceIoControl`, as an application's do, with an
//!   `OVERLAPPED` on the synchronous handle; [`super::completion`] says how its `Internal` /
//!   `InternalHigh`, the return value and the thread's last NTSTATUS give the exact status and
//!   the bytes written;
//! - transactions are created with ktmw32 `CreateTransaction` (the API applications use), and
//!   committed / rolled back with ntdll `NtCommitTransaction` / `NtRollbackTransaction` with
//!   `Wait = TRUE` — the calls ktmw32's `CommitTransaction` / `RollbackTransaction` make — so
//!   KTM's own status (e.g. `STATUS_TRANSACTION_ABORTED` after a veto) is visible;
//! - only `CreateTransaction`, `CreateFileW` and `CreateEventW` failures, and a
//!   `DeviceIoControl` failure that left no NTSTATUS of its own, are reported through
//!   `GetLastError`, mapped back with [`crate::status::from_win32`].

use super::completion::{self, Completion};
use super::{Transport, TransportKind};
use crate::error::{Error, Result};
use ktmrm_proto::{FILE_READ_DATA, FILE_WRITE_DATA, NtStatus};
use std::time::Duration;
use windows_sys::Wdk::Foundation::NtClose;
use windows_sys::Wdk::System::SystemServices::{NtCommitTransaction, NtRollbackTransaction};
use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, NTSTATUS, RtlNtStatusToDosError,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, CreateTransaction, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE,
    OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::{DeviceIoControl, OVERLAPPED};
use windows_sys::Win32::System::Threading::CreateEventW;

// The NTSTATUS the calling thread's last failed Win32 call converted to its last error
// (ntdll export, not in windows-sys; see `completion`).
windows_link::link!("ntdll.dll" "system" fn RtlGetLastNtStatus() -> NTSTATUS);

/// The device path.
pub const DEVICE_PATH: &str = r"\\.\KtmRm";

/// A NUL-terminated UTF-16 copy of `s`.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A handle as the `u64` a request carries (sign-extended, as the kernel reads a HANDLE).
pub(crate) fn handle_value(h: HANDLE) -> u64 {
    h as isize as i64 as u64
}

/// The HANDLE a request's `u64` names.
pub(crate) fn handle_from(v: u64) -> HANDLE {
    v as i64 as isize as HANDLE
}

/// An open handle to `\\.\KtmRm`.
pub struct DeviceTransport {
    /// The file handle, as an integer so the transport is `Send + Sync`.
    file: isize,
}

// The handle is a kernel object reference usable from any thread; synchronous I/O on it is
// serialised by the I/O manager, so sharing it between threads is sound.

impl DeviceTransport {
    /// Opens `\\.\KtmRm` with `access` (`FILE_READ_DATA` / `FILE_WRITE_DATA` bits, mapped to
    /// `GENERIC_READ` / `GENERIC_WRITE`; 0 opens for no data access, enough for GET_VERSION).
    pub fn open(access: u32) -> Result<DeviceTransport> {
        let mut desired = 0;
        if access & FILE_READ_DATA != 0 {
            desired |= GENERIC_READ;
        }
        if access & FILE_WRITE_DATA != 0 {
            desired |= GENERIC_WRITE;
        }
        let path = wide(DEVICE_PATH);
        // SAFETY: `path` is NUL-terminated and outlives the call; null security attributes and
        // template are allowed.
        let h = unsafe {
            CreateFileW(
                path.as_ptr(),
                desired,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_ATTRIBUTE_NORMAL,
                std::ptr::null_mut(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            // SAFETY: reads the calling thread's last-error value.
            let code = unsafe { GetLastError() };
            return Err(
                if code == ERROR_FILE_NOT_FOUND || code == ERROR_PATH_NOT_FOUND {
                    Error::NotInstalled
                } else {
                    Error::Os {
                        op: format!("open {DEVICE_PATH}"),
                        code,
                    }
                },
            );
        }
        Ok(DeviceTransport { file: h as isize })
    }

    fn last_error(op: &str) -> Error {
        // SAFETY: reads the calling thread's last-error value.
        let code = unsafe { GetLastError() };
        match crate::status::from_win32(code) {
            Some(status) => Error::Status {
                op: format!("{op} (Win32 error {code})"),
                status,
            },
            None => Error::Os {
                op: op.to_owned(),
                code,
            },
        }
    }
}

impl Drop for DeviceTransport {
    fn drop(&mut self) {
        // SAFETY: `file` is the handle CreateFileW returned, closed exactly once here.
        unsafe { NtClose(self.file as HANDLE) };
    }
}

impl Transport for DeviceTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Device
    }

    fn ioctl(&self, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize) {
        let (Ok(in_len), Ok(out_len)) = (u32::try_from(input.len()), u32::try_from(output.len()))
        else {
            return (NtStatus::INVALID_PARAMETER, 0);
        };
        let mut overlapped = OVERLAPPED {
            Internal: NtStatus::PENDING.0 as u32 as usize,
            ..OVERLAPPED::default()
        };
        let mut bytes_returned = 0u32;
        // SAFETY: the buffers are valid for the lengths passed and outlive the call; the handle
        // was opened without FILE_FLAG_OVERLAPPED, so the call completes before returning and
        // `overlapped` (no event) and `bytes_returned` are not used after it.
        let succeeded = unsafe {
            DeviceIoControl(
                self.file as HANDLE,
                code,
                input.as_ptr().cast(),
                in_len,
                output.as_mut_ptr().cast(),
                out_len,
                &mut bytes_returned,
                &mut overlapped,
            )
        } != 0;
        let (last_status, last_error) = if succeeded {
            (NtStatus::SUCCESS, 0)
        } else {
            // SAFETY: both read the calling thread's own block, right after the failed call.
            unsafe { (NtStatus(RtlGetLastNtStatus()), GetLastError()) }
        };
        let done = Completion {
            succeeded,
            internal: overlapped.Internal,
            internal_high: overlapped.InternalHigh,
            bytes_returned,
            last_status,
            last_error,
        };
        // SAFETY: a pure table look-up.
        completion::outcome(&done, output.len(), |s| unsafe {
            RtlNtStatusToDosError(s.0)
        })
    }

    fn create_transaction(&self, timeout_ms: u32, description: &str) -> Result<u64> {
        let desc = wide(description);
        // SAFETY: null attributes and UOW are allowed; `desc` is NUL-terminated and outlives
        // the call. Failure returns INVALID_HANDLE_VALUE (docs/ktm.md §6).
        let h = unsafe {
            CreateTransaction(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                0,
                0,
                timeout_ms,
                desc.as_ptr(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(Self::last_error("CreateTransaction"));
        }
        Ok(handle_value(h))
    }

    fn commit_transaction(&self, tx: u64) -> NtStatus {
        // SAFETY: any handle value is acceptable to the system call; bad ones fail cleanly.
        NtStatus(unsafe { NtCommitTransaction(handle_from(tx), true) })
    }

    fn rollback_transaction(&self, tx: u64) -> NtStatus {
        // SAFETY: as above.
        NtStatus(unsafe { NtRollbackTransaction(handle_from(tx), true) })
    }

    fn close_handle(&self, handle: u64) -> NtStatus {
        // SAFETY: closing a handle value this process owns; a bad value fails with
        // STATUS_INVALID_HANDLE.
        NtStatus(unsafe { NtClose(handle_from(handle)) })
    }

    fn create_event(&self) -> Result<u64> {
        // SAFETY: unnamed auto-reset event with default security.
        let h = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
        if h.is_null() {
            return Err(Self::last_error("CreateEventW"));
        }
        Ok(handle_value(h))
    }

    fn reopen(&self, access: u32) -> Result<Box<dyn Transport>> {
        Ok(Box::new(DeviceTransport::open(access)?))
    }

    fn elapse(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
