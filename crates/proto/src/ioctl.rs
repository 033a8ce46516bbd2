//! Control codes, built like the WDK's `CTL_CODE` macro.
//!
//! All calls use `FILE_DEVICE_UNKNOWN` with functions from 0x800 up (the range Microsoft leaves to
//! vendors) and `METHOD_BUFFERED`. The access bits are checked by the I/O manager against the
//! handle's granted access before the driver sees the request: calls that change the store need
//! `FILE_WRITE_DATA`, calls that only read need `FILE_READ_DATA`, and `GET_VERSION` needs none so
//! any handle can probe the protocol.

/// `FILE_DEVICE_UNKNOWN` (devioctl.h).
pub const FILE_DEVICE_UNKNOWN: u32 = 0x22;
/// `METHOD_BUFFERED`: one system buffer holds the input, then the output.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_ANY_ACCESS`.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_DATA` (= `FILE_READ_ACCESS` in a control code).
pub const FILE_READ_DATA: u32 = 1;
/// `FILE_WRITE_DATA` (= `FILE_WRITE_ACCESS` in a control code).
pub const FILE_WRITE_DATA: u32 = 2;

/// `CTL_CODE(DeviceType, Function, Method, Access)` from devioctl.h.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The calls of protocol version 1, one per control code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Call {
    /// Protocol version and limits. Input is ignored, so any client version can ask.
    GetVersion = ctl_code(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS),
    /// The driver creates a KTM transaction and returns a handle valid in the caller's process.
    Begin = ctl_code(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_WRITE_DATA),
    /// Write a key (in a transaction, or committed at once).
    Put = ctl_code(FILE_DEVICE_UNKNOWN, 0x802, METHOD_BUFFERED, FILE_WRITE_DATA),
    /// Read a key in the caller's view.
    Get = ctl_code(FILE_DEVICE_UNKNOWN, 0x803, METHOD_BUFFERED, FILE_READ_DATA),
    /// Delete a key (in a transaction, or committed at once).
    Delete = ctl_code(FILE_DEVICE_UNKNOWN, 0x804, METHOD_BUFFERED, FILE_WRITE_DATA),
    /// One page of the keys with a prefix, after a cursor, in bytewise order.
    List = ctl_code(FILE_DEVICE_UNKNOWN, 0x805, METHOD_BUFFERED, FILE_READ_DATA),
    /// Counters.
    Stats = ctl_code(FILE_DEVICE_UNKNOWN, 0x806, METHOD_BUFFERED, FILE_READ_DATA),
}

impl Call {
    /// Every call, in function-number order.
    pub const ALL: [Call; 7] = [
        Call::GetVersion,
        Call::Begin,
        Call::Put,
        Call::Get,
        Call::Delete,
        Call::List,
        Call::Stats,
    ];

    /// The call a control code names, or `None` (the driver answers `STATUS_INVALID_DEVICE_REQUEST`).
    #[must_use]
    pub const fn from_code(code: u32) -> Option<Call> {
        const GET_VERSION: u32 = Call::GetVersion as u32;
        const BEGIN: u32 = Call::Begin as u32;
        const PUT: u32 = Call::Put as u32;
        const GET: u32 = Call::Get as u32;
        const DELETE: u32 = Call::Delete as u32;
        const LIST: u32 = Call::List as u32;
        const STATS: u32 = Call::Stats as u32;
        match code {
            GET_VERSION => Some(Call::GetVersion),
            BEGIN => Some(Call::Begin),
            PUT => Some(Call::Put),
            GET => Some(Call::Get),
            DELETE => Some(Call::Delete),
            LIST => Some(Call::List),
            STATS => Some(Call::Stats),
            _ => None,
        }
    }

    /// The control code.
    #[must_use]
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The access bits (`FILE_READ_DATA` / `FILE_WRITE_DATA`) the handle must grant.
    #[must_use]
    pub const fn required_access(self) -> u32 {
        (self as u32 >> 14) & 3
    }

    /// A short lowercase name for messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Call::GetVersion => "get_version",
            Call::Begin => "begin",
            Call::Put => "put",
            Call::Get => "get",
            Call::Delete => "delete",
            Call::List => "list",
            Call::Stats => "stats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_ctl_code_by_hand() {
        // CTL_CODE(0x22, 0x800, 0, 0) = 0x222000, as devioctl.h computes it.
        assert_eq!(Call::GetVersion.code(), 0x0022_2000);
        // Write access (2 << 14 = 0x8000): 0x22 << 16 | 0x8000 | 0x801 << 2.
        assert_eq!(Call::Begin.code(), 0x0022_A004);
        assert_eq!(Call::Get.code(), 0x0022_600C);
        for c in Call::ALL {
            assert_eq!(Call::from_code(c.code()), Some(c));
            assert_eq!(c.code() & 3, METHOD_BUFFERED);
            assert_eq!(c.code() >> 16, FILE_DEVICE_UNKNOWN);
        }
        assert_eq!(Call::from_code(0x0022_2010), None);
    }

    #[test]
    fn access_fits_each_call() {
        assert_eq!(Call::GetVersion.required_access(), FILE_ANY_ACCESS);
        for c in [Call::Begin, Call::Put, Call::Delete] {
            assert_eq!(c.required_access(), FILE_WRITE_DATA, "{c:?}");
        }
        for c in [Call::Get, Call::List, Call::Stats] {
            assert_eq!(c.required_access(), FILE_READ_DATA, "{c:?}");
        }
    }
}
