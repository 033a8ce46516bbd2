//! What the dispatch routines check before they touch an IRP's buffer, and what they may complete
//! it with. METHOD_BUFFERED only (docs/kernel-routines.md, "METHOD_BUFFERED"): the I/O manager allocates one system
//! buffer of max(InputBufferLength, OutputBufferLength) bytes, copies the input to its start, and
//! on completion copies `IoStatus.Information` bytes from its start to the caller's output buffer
//! (for success and warning statuses; for errors it copies nothing).

use ktmrm_proto::{Call, METHOD_BUFFERED, NtStatus};

/// `IRP_MJ_CREATE` (wdm.h).
pub const IRP_MJ_CREATE: u32 = 0x00;
/// `IRP_MJ_CLOSE`.
pub const IRP_MJ_CLOSE: u32 = 0x02;
/// `IRP_MJ_DEVICE_CONTROL`.
pub const IRP_MJ_DEVICE_CONTROL: u32 = 0x0e;
/// `IRP_MJ_CLEANUP`.
pub const IRP_MJ_CLEANUP: u32 = 0x12;
/// `IRP_MJ_MAXIMUM_FUNCTION`: `DRIVER_OBJECT::MajorFunction` has this many entries plus one.
pub const IRP_MJ_MAXIMUM_FUNCTION: u32 = 0x1b;
/// `FILE_DEVICE_SECURE_OPEN` (a device characteristic): the device's DACL also governs opens of
/// names below it (`\\.\KtmRm\x`).
pub const FILE_DEVICE_SECURE_OPEN: u32 = 0x100;

/// A DEVICE_CONTROL request that passed the checks: the slice the driver may build over the
/// system buffer, and the part of it the engine may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ioctl {
    /// The call the control code names.
    pub call: Call,
    /// Length of the system buffer: max(input, output). 0 means there is no buffer.
    pub buffer_len: usize,
    /// `InputBufferLength`.
    pub input_len: usize,
    /// `OutputBufferLength`.
    pub output_len: usize,
}

impl Ioctl {
    /// Checks a DEVICE_CONTROL request, in this order:
    /// - the code's transfer method is not METHOD_BUFFERED, or the code is not a ktmrm call
    ///   → `STATUS_INVALID_DEVICE_REQUEST` (the system buffer means nothing for other methods);
    /// - a null system buffer with a non-zero length → `STATUS_INVALID_PARAMETER` (the I/O
    ///   manager never does this for METHOD_BUFFERED; the driver does not trust it blindly).
    pub fn check(
        code: u32,
        input_len: u32,
        output_len: u32,
        system_buffer_is_null: bool,
    ) -> Result<Ioctl, NtStatus> {
        if code & 3 != METHOD_BUFFERED {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let call = Call::from_code(code).ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
        let input_len = usize::try_from(input_len).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let output_len = usize::try_from(output_len).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let buffer_len = input_len.max(output_len);
        if buffer_len != 0 && system_buffer_is_null {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok(Ioctl {
            call,
            buffer_len,
            input_len,
            output_len,
        })
    }

    /// The part of the buffer after the input: the driver zeroes it before the engine runs, so no
    /// byte of stale pool can ever be copied back to the caller, whatever the engine reports.
    #[must_use]
    pub fn stale_range(&self) -> core::ops::Range<usize> {
        self.input_len..self.buffer_len
    }

    /// The `IoStatus` to complete with, from the engine's `(status, information)`:
    /// - an error status carries no data (`Information` = 0, as the I/O manager copies none);
    /// - `Information` larger than the caller's output buffer would make the I/O manager copy past
    ///   it, so that engine bug is completed as `STATUS_UNSUCCESSFUL` with nothing copied;
    /// - anything else (success, or a warning such as `STATUS_BUFFER_OVERFLOW` with a partial
    ///   answer) is passed through.
    #[must_use]
    pub fn completion(&self, status: NtStatus, information: usize) -> (NtStatus, usize) {
        if status.is_error() {
            (status, 0)
        } else if information > self.output_len {
            (NtStatus::UNSUCCESSFUL, 0)
        } else {
            (status, information)
        }
    }
}

/// CREATE: the device has no namespace, so `\\.\KtmRm\anything` is refused with
/// `STATUS_OBJECT_NAME_NOT_FOUND` (`FILE_DEVICE_SECURE_OPEN` already applies the device's DACL to
/// such opens; this keeps one name for one device).
pub fn check_open(file_name_bytes: u16) -> Result<(), NtStatus> {
    if file_name_bytes == 0 {
        Ok(())
    } else {
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktmrm_proto::{FILE_DEVICE_UNKNOWN, ctl_code};

    #[test]
    fn only_buffered_ktmrm_codes_pass() {
        for c in Call::ALL {
            let ok = Ioctl::check(c.code(), 16, 48, false).unwrap();
            assert_eq!(ok.call, c);
            assert_eq!((ok.buffer_len, ok.input_len, ok.output_len), (48, 16, 48));
        }
        // Same function numbers with METHOD_IN_DIRECT / OUT_DIRECT / NEITHER.
        for method in 1..=3 {
            let code = Call::Put.code() | method;
            assert_eq!(
                Ioctl::check(code, 16, 0, false),
                Err(NtStatus::INVALID_DEVICE_REQUEST)
            );
        }
        let unknown = ctl_code(FILE_DEVICE_UNKNOWN, 0x8FF, METHOD_BUFFERED, 0);
        assert_eq!(
            Ioctl::check(unknown, 0, 0, true),
            Err(NtStatus::INVALID_DEVICE_REQUEST)
        );
    }

    #[test]
    fn buffer_rules() {
        let v = Call::GetVersion.code();
        // No buffer at all is fine when both lengths are 0 (the engine answers BUFFER_TOO_SMALL).
        assert_eq!(Ioctl::check(v, 0, 0, true).unwrap().buffer_len, 0);
        assert_eq!(
            Ioctl::check(v, 0, 48, true),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            Ioctl::check(v, 1, 0, true),
            Err(NtStatus::INVALID_PARAMETER)
        );
        let big = Ioctl::check(v, u32::MAX, 7, false).unwrap();
        assert_eq!(big.buffer_len, u32::MAX as usize);
        let io = Ioctl::check(v, 10, 48, false).unwrap();
        assert_eq!(io.stale_range(), 10..48);
        let io = Ioctl::check(v, 48, 10, false).unwrap();
        assert!(io.stale_range().is_empty());
    }

    #[test]
    fn completion_never_copies_past_the_output_or_on_error() {
        let io = Ioctl::check(Call::Get.code(), 30, 8, false).unwrap();
        assert_eq!(io.completion(NtStatus::SUCCESS, 8), (NtStatus::SUCCESS, 8));
        assert_eq!(
            io.completion(NtStatus::BUFFER_OVERFLOW, 8),
            (NtStatus::BUFFER_OVERFLOW, 8)
        );
        assert_eq!(
            io.completion(NtStatus::SUCCESS, 9),
            (NtStatus::UNSUCCESSFUL, 0)
        );
        assert_eq!(
            io.completion(NtStatus::TRANSACTIONAL_CONFLICT, 8),
            (NtStatus::TRANSACTIONAL_CONFLICT, 0)
        );
        assert_eq!(
            io.completion(NtStatus::TRANSACTION_REQUIRED_PROMOTION, 0),
            (NtStatus::TRANSACTION_REQUIRED_PROMOTION, 0),
            "KTM's promotion status reaches the caller as is"
        );
    }

    #[test]
    fn wdm_constants() {
        for mj in [
            IRP_MJ_CREATE,
            IRP_MJ_CLOSE,
            IRP_MJ_DEVICE_CONTROL,
            IRP_MJ_CLEANUP,
        ] {
            assert!(mj <= IRP_MJ_MAXIMUM_FUNCTION);
        }
        assert_eq!(FILE_DEVICE_SECURE_OPEN, 256);
    }

    #[test]
    fn opens_name_no_file() {
        assert_eq!(check_open(0), Ok(()));
        assert_eq!(check_open(2), Err(NtStatus::OBJECT_NAME_NOT_FOUND));
    }
}
