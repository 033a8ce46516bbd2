//! The durable configuration (README "Durability"): which mode the driver runs in, where its logs live, and
//! the fixed facts the kernel shell needs for it, kept here so they are tested on any OS.
//!
//! `HKLM\SYSTEM\CurrentControlSet\Services\KtmRm\Parameters` (the INF writes the defaults):
//! - `Durable` (REG_DWORD): 0 = volatile (default: a volatile TM and RM, nothing survives a
//!   restart), 1 = durable (a durable TM, a durable RM with a fixed GUID, and the engine's
//!   write-ahead log; recovery at start before the device takes requests);
//! - `LogDirectory` (REG_SZ, an NT path): where the engine's log lives
//!   (default `\SystemRoot\ktmrm`); the driver creates the directory if needed;
//! - `TmLogPath` (REG_SZ, an NT path): the durable TM's CLFS log (`ZwCreateTransactionManager`'s
//!   `LogFileName`; default `\SystemRoot\ktmrm\KtmRmTm`, **unverified** against a real KTM: the
//!   DDI pages say only "the path and file name of a CLFS log file stream").

use ktmrm_core::TxId;
use ktmrm_proto::NtStatus;

/// `REG_SZ`.
pub const REG_SZ: u32 = 1;

/// Value names under `Parameters`.
pub const DURABLE_VALUE: &[u16] = utf16!("Durable");
/// See the module docs.
pub const LOG_DIRECTORY_VALUE: &[u16] = utf16!("LogDirectory");
/// See the module docs.
pub const TM_LOG_VALUE: &[u16] = utf16!("TmLogPath");

/// Defaults (NT paths).
pub const DEFAULT_LOG_DIRECTORY: &[u16] = utf16!(r"\SystemRoot\ktmrm");
/// See the module docs.
pub const DEFAULT_TM_LOG: &[u16] = utf16!(r"\SystemRoot\ktmrm\KtmRmTm");
/// The engine's log file in the log directory.
pub const LOG_FILE: &[u16] = utf16!("ktmrm.wal");
/// The file a checkpoint writes before it is renamed over [`LOG_FILE`].
pub const LOG_FILE_NEW: &[u16] = utf16!("ktmrm.wal.new");

/// The durable RM's GUID: fixed, because after a restart KTM finds the RM's prepared
/// enlistments by it (docs/ktm.md §7 step 4). `{6b746d72-6d2d-4b74-9d52-4d2d44757261}`.
pub const RM_GUID: Guid = Guid {
    data1: 0x6b74_6d72,
    data2: 0x6d2d,
    data3: 0x4b74,
    data4: [0x9d, 0x52, 0x4d, 0x2d, 0x44, 0x75, 0x72, 0x61],
};

/// The control device's class GUID, passed to `WdmlibIoCreateDeviceSecure`: fixed, so that an
/// administrator can override the device's default SDDL with a `Security` value under
/// `HKLM\SYSTEM\CurrentControlSet\Control\Class\{266b695a-cb6d-4068-a26a-43296f951bc0}`.
/// The routine's page asks non-WDM drivers for a new GUID of their own (not a system class).
pub const DEVICE_CLASS_GUID: Guid = Guid {
    data1: 0x266b_695a,
    data2: 0xcb6d,
    data3: 0x4068,
    data4: [0xa2, 0x6a, 0x43, 0x29, 0x6f, 0x95, 0x1b, 0xc0],
};

/// `STATUS_OBJECT_NAME_COLLISION` (0xC0000035): what `ZwCreateTransactionManager` and
/// `ZwCreateResourceManager` answer when the object already exists. A durable TM's recovery
/// rebuilds the RMs it has logged enlistments for ("Recovery Processing",
/// learn.microsoft.com/windows/win32/ktm/recovery-processing), and a TM whose log is already open
/// exists too, so a restart within one boot finds them: the driver then opens them instead, as
/// the kernel's own registry RM does.
pub const OBJECT_NAME_COLLISION: NtStatus = NtStatus(0xC000_0035_u32 as i32);

/// Whether a failed create of the durable TM or RM should be retried as an open.
#[must_use]
pub fn open_instead(durable: bool, create_status: NtStatus) -> bool {
    durable && create_status == OBJECT_NAME_COLLISION
}

/// A GUID in its `GUID` struct fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guid {
    /// `Data1`.
    pub data1: u32,
    /// `Data2`.
    pub data2: u16,
    /// `Data3`.
    pub data3: u16,
    /// `Data4`.
    pub data4: [u8; 8],
}

/// Bytes of log written since the last checkpoint after which the driver writes one (also after
/// recovery and at unload), so a restart replays at most about this much.
pub const CHECKPOINT_EVERY_BYTES: u64 = 64 << 20;

/// The longest path accepted from the registry, in UTF-16 units (the file name is appended).
pub const MAX_PATH_UNITS: usize = 240;

/// An NT path of at most [`MAX_PATH_UNITS`] UTF-16 units, without a terminating NUL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NtPath {
    units: [u16; MAX_PATH_UNITS],
    len: usize,
}

impl core::fmt::Debug for NtPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s: alloc::string::String = char::decode_utf16(self.as_slice().iter().copied())
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        write!(f, "{s:?}")
    }
}

impl NtPath {
    const EMPTY: NtPath = NtPath {
        units: [0; MAX_PATH_UNITS],
        len: 0,
    };

    /// A path from UTF-16 units: `None` if empty, too long, or holding a NUL.
    #[must_use]
    pub fn new(units: &[u16]) -> Option<NtPath> {
        if units.is_empty() || units.len() > MAX_PATH_UNITS || units.contains(&0) {
            return None;
        }
        let mut p = NtPath {
            units: [0; MAX_PATH_UNITS],
            len: units.len(),
        };
        p.units.get_mut(..units.len())?.copy_from_slice(units);
        Some(p)
    }

    /// The units.
    #[must_use]
    pub fn as_slice(&self) -> &[u16] {
        self.units.get(..self.len).unwrap_or(&[])
    }

    /// `self\name` (one backslash between, whatever `self` ends with). `None` if too long.
    #[must_use]
    pub fn join(&self, name: &[u16]) -> Option<NtPath> {
        let base = self.as_slice();
        let base = base.strip_suffix(&[u16::from(b'\\')]).unwrap_or(base);
        let mut p = NtPath::new(base)?;
        let total = base.len().checked_add(1)?.checked_add(name.len())?;
        if total > MAX_PATH_UNITS || name.is_empty() || name.contains(&0) {
            return None;
        }
        *p.units.get_mut(base.len())? = u16::from(b'\\');
        p.units
            .get_mut(base.len().checked_add(1)?..total)?
            .copy_from_slice(name);
        p.len = total;
        Some(p)
    }
}

/// The mode and paths the driver starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Durable (`Durable` = 1) or volatile.
    pub durable: bool,
    /// `LogDirectory`.
    pub log_directory: NtPath,
    /// `TmLogPath`.
    pub tm_log: NtPath,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            durable: false,
            // The defaults are short constants: `new` cannot fail on them.
            log_directory: NtPath::new(DEFAULT_LOG_DIRECTORY).unwrap_or(NtPath::EMPTY),
            tm_log: NtPath::new(DEFAULT_TM_LOG).unwrap_or(NtPath::EMPTY),
        }
    }
}

impl Config {
    /// Applies `Durable`: 1 is durable, 0 volatile; any other value keeps the default
    /// (volatile), so a typo never turns on a mode nobody asked for.
    pub fn set_durable(&mut self, value: u32) {
        self.durable = value == 1;
    }
}

/// The string in a `KEY_VALUE_PARTIAL_INFORMATION` of `returned` bytes holding a REG_SZ: its
/// UTF-16 data without the terminating NUL(s). `None` when the value is not a REG_SZ, has an odd
/// length, is empty, too long, or has a NUL inside (the driver then keeps its default).
#[must_use]
pub fn partial_sz(buf: &[u8], returned: usize) -> Option<NtPath> {
    let buf = buf.get(..returned)?;
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    };
    let (ty, len) = (word(4)?, usize::try_from(word(8)?).ok()?);
    if ty != REG_SZ || len % 2 != 0 {
        return None;
    }
    let start = crate::registry::PARTIAL_INFO_DATA_OFFSET;
    let data = buf.get(start..start.checked_add(len)?)?;
    let mut units = [0u16; MAX_PATH_UNITS];
    let mut n = 0usize;
    for pair in data.chunks_exact(2) {
        let u = u16::from_le_bytes([*pair.first()?, *pair.get(1)?]);
        *units.get_mut(n)? = u;
        n = n.checked_add(1)?;
    }
    let mut s = units.get(..n)?;
    while let Some(rest) = s.strip_suffix(&[0]) {
        s = rest;
    }
    NtPath::new(s)
}

/// Bytes of a partial-information buffer that holds a REG_SZ of up to [`MAX_PATH_UNITS`] units
/// and its NUL.
pub const PARTIAL_SZ_LEN: usize =
    crate::registry::PARTIAL_INFO_DATA_OFFSET + 2 * (MAX_PATH_UNITS + 1);

/// The UOW in RECOVER's argument, `TRANSACTION_NOTIFICATION_RECOVERY_ARGUMENT { GUID
/// EnlistmentId; GUID UOW; }` (docs/ktm.md §3, S19); `None` when the argument is shorter.
#[must_use]
pub fn recovery_uow(argument: &[u8]) -> Option<TxId> {
    let b: [u8; 16] = argument.get(16..32)?.try_into().ok()?;
    Some(TxId(b))
}

/// A `FILE_RENAME_INFORMATION` (ntifs.h; x64 layout) that renames a file to `FileName`,
/// replacing an existing file: `{ union { BOOLEAN ReplaceIfExists; ULONG Flags; }; HANDLE
/// RootDirectory; ULONG FileNameLength; WCHAR FileName[]; }` at offsets 0, 8, 16, 20. Built as
/// bytes so the driver needs no binding of this variable-length structure; the first field is
/// written as the ULONG 1, which reads as ReplaceIfExists = TRUE and as
/// Flags = FILE_RENAME_REPLACE_IF_EXISTS.
pub struct RenameInformation {
    words: alloc::vec::Vec<u64>,
    len: usize,
}

impl RenameInformation {
    /// Offset of `FileName`.
    pub const NAME_OFFSET: usize = 20;
    /// `sizeof(FILE_RENAME_INFORMATION)` (with `FileName[1]` and padding).
    pub const MIN_LEN: usize = 24;

    /// The structure for `target` (UTF-16 units). `STATUS_INSUFFICIENT_RESOURCES` without memory.
    pub fn new(target: &[u16]) -> Result<Self, ktmrm_proto::NtStatus> {
        let oom = |_| ktmrm_proto::NtStatus::INSUFFICIENT_RESOURCES;
        let name_bytes = target
            .len()
            .checked_mul(2)
            .ok_or(ktmrm_proto::NtStatus::INVALID_PARAMETER)?;
        let name_len =
            u32::try_from(name_bytes).map_err(|_| ktmrm_proto::NtStatus::INVALID_PARAMETER)?;
        let len = Self::NAME_OFFSET
            .checked_add(name_bytes)
            .ok_or(ktmrm_proto::NtStatus::INVALID_PARAMETER)?
            .max(Self::MIN_LEN);
        let mut bytes = alloc::vec::Vec::new();
        bytes.try_reserve_exact(len).map_err(oom)?;
        bytes.resize(len, 0u8);
        let mut put = |at: usize, b: &[u8]| -> Option<()> {
            bytes
                .get_mut(at..at.checked_add(b.len())?)?
                .copy_from_slice(b);
            Some(())
        };
        let bad = ktmrm_proto::NtStatus::INVALID_PARAMETER;
        put(0, &1u32.to_le_bytes()).ok_or(bad)?;
        put(16, &name_len.to_le_bytes()).ok_or(bad)?;
        for (i, u) in target.iter().enumerate() {
            let at = i
                .checked_mul(2)
                .and_then(|o| o.checked_add(Self::NAME_OFFSET))
                .ok_or(bad)?;
            put(at, &u.to_le_bytes()).ok_or(bad)?;
        }
        let mut words = alloc::vec::Vec::new();
        words.try_reserve_exact(len.div_ceil(8)).map_err(oom)?;
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w.get_mut(..chunk.len()).ok_or(bad)?.copy_from_slice(chunk);
            words.push(u64::from_le_bytes(w));
        }
        Ok(RenameInformation { words, len })
    }

    /// Its bytes' address (8-aligned).
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.words.as_ptr().cast()
    }

    /// Its length in bytes (the `Length` to pass).
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The bytes (tests).
    #[must_use]
    pub fn bytes(&self) -> alloc::vec::Vec<u8> {
        self.words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(self.len)
            .collect()
    }
}

/// `FILE_*` create options, dispositions and access (ntifs.h/wdm.h).
pub mod file {
    /// `FILE_DIRECTORY_FILE`.
    pub const DIRECTORY_FILE: u32 = 0x1;
    /// `FILE_WRITE_THROUGH`: writes reach the disk before completing.
    pub const WRITE_THROUGH: u32 = 0x2;
    /// `FILE_SYNCHRONOUS_IO_NONALERT`: the I/O manager waits for each request.
    pub const SYNCHRONOUS_IO_NONALERT: u32 = 0x20;
    /// `FILE_NON_DIRECTORY_FILE`.
    pub const NON_DIRECTORY_FILE: u32 = 0x40;
    /// `FILE_OPEN_IF`: open, or create when missing.
    pub const OPEN_IF: u32 = 3;
    /// `FILE_OVERWRITE_IF`: truncate, or create when missing.
    pub const OVERWRITE_IF: u32 = 5;
    /// `FILE_ATTRIBUTE_NORMAL`.
    pub const ATTRIBUTE_NORMAL: u32 = 0x80;
    /// `FILE_SHARE_READ`: tools may read the log while the driver runs.
    pub const SHARE_READ: u32 = 0x1;
    /// `GENERIC_READ | GENERIC_WRITE | DELETE | SYNCHRONIZE`: read, append, rename over.
    pub const LOG_ACCESS: u32 = 0x8000_0000 | 0x4000_0000 | 0x0001_0000 | 0x0010_0000;
    /// `FILE_LIST_DIRECTORY | SYNCHRONIZE` for the directory.
    pub const DIRECTORY_ACCESS: u32 = 0x1 | 0x0010_0000;
    /// `FileStandardInformation`, `FileRenameInformation`, `FileEndOfFileInformation`.
    pub const STANDARD_INFORMATION: i32 = 5;
    /// See [`STANDARD_INFORMATION`].
    pub const RENAME_INFORMATION: i32 = 10;
    /// See [`STANDARD_INFORMATION`].
    pub const END_OF_FILE_INFORMATION: i32 = 20;
    /// `STATUS_END_OF_FILE`: a read at or past the end.
    pub const STATUS_END_OF_FILE: i32 = 0xC000_0011_u32 as i32;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_durable_collision_is_opened_and_nothing_else() {
        assert!(open_instead(true, OBJECT_NAME_COLLISION));
        // A volatile TM/RM has no name to collide with: never reopened.
        assert!(!open_instead(false, OBJECT_NAME_COLLISION));
        assert!(!open_instead(true, NtStatus::SUCCESS));
        assert!(!open_instead(true, NtStatus::ACCESS_DENIED));
        assert_eq!(OBJECT_NAME_COLLISION.0 as u32, 0xC000_0035);
    }

    use super::*;

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    fn sz_info(ty: u32, s: &[u16], nul: bool) -> Vec<u8> {
        let mut data: Vec<u8> = s.iter().flat_map(|u| u.to_le_bytes()).collect();
        if nul {
            data.extend_from_slice(&[0, 0]);
        }
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&data);
        v
    }

    #[test]
    fn defaults_are_volatile_with_system_root_paths() {
        let c = Config::default();
        assert!(!c.durable);
        assert_eq!(c.log_directory.as_slice(), w(r"\SystemRoot\ktmrm"));
        assert_eq!(c.tm_log.as_slice(), w(r"\SystemRoot\ktmrm\KtmRmTm"));
        let mut c = c;
        c.set_durable(1);
        assert!(c.durable);
        c.set_durable(2);
        assert!(!c.durable, "only 1 turns durability on");
    }

    #[test]
    fn reads_a_reg_sz_with_or_without_its_nul() {
        let p = w(r"\??\D:\logs");
        for nul in [true, false] {
            let b = sz_info(REG_SZ, &p, nul);
            assert_eq!(partial_sz(&b, b.len()).unwrap().as_slice(), p);
        }
        assert!(PARTIAL_SZ_LEN >= sz_info(REG_SZ, &[b'x' as u16; MAX_PATH_UNITS], true).len());
    }

    #[test]
    fn refuses_what_is_not_a_usable_path() {
        let p = w(r"\??\D:\logs");
        let b = sz_info(REG_DWORD_FOR_TEST, &p, true);
        assert_eq!(partial_sz(&b, b.len()), None, "not REG_SZ");
        let b = sz_info(REG_SZ, &[], true);
        assert_eq!(partial_sz(&b, b.len()), None, "empty");
        let b = sz_info(REG_SZ, &w("a\0b"), true);
        assert_eq!(partial_sz(&b, b.len()), None, "NUL inside");
        let long = vec![b'x' as u16; MAX_PATH_UNITS + 1];
        let b = sz_info(REG_SZ, &long, true);
        assert_eq!(partial_sz(&b, b.len()), None, "too long");
        let mut b = sz_info(REG_SZ, &p, true);
        b[8] = 3; // odd length
        assert_eq!(partial_sz(&b, b.len()), None);
        let b = sz_info(REG_SZ, &p, true);
        assert_eq!(partial_sz(&b, b.len() - 1), None, "short return");
        assert_eq!(
            partial_sz(&b, b.len() + 1),
            None,
            "returned past the buffer"
        );
    }

    const REG_DWORD_FOR_TEST: u32 = crate::ktm::REG_DWORD;

    #[test]
    fn joins_file_names() {
        let d = NtPath::new(&w(r"\SystemRoot\ktmrm")).unwrap();
        assert_eq!(
            d.join(LOG_FILE).unwrap().as_slice(),
            w(r"\SystemRoot\ktmrm\ktmrm.wal")
        );
        let d = NtPath::new(&w(r"\??\D:\")).unwrap();
        assert_eq!(
            d.join(LOG_FILE_NEW).unwrap().as_slice(),
            w(r"\??\D:\ktmrm.wal.new")
        );
        let d = NtPath::new(&vec![b'x' as u16; MAX_PATH_UNITS - 3]).unwrap();
        assert_eq!(d.join(LOG_FILE), None, "too long");
        assert_eq!(NtPath::new(&[]), None);
    }

    #[test]
    fn recover_argument_carries_the_uow_after_the_enlistment_id() {
        let mut arg = [0u8; 32];
        arg[..16].fill(0xE1);
        arg[16..].copy_from_slice(&[7; 16]);
        assert_eq!(recovery_uow(&arg), Some(TxId([7; 16])));
        assert_eq!(recovery_uow(&arg[..31]), None);
    }

    #[test]
    fn rename_information_layout() {
        let name = w(r"\??\D:\x.wal");
        let r = RenameInformation::new(&name).unwrap();
        let b = r.bytes();
        assert_eq!(r.len(), 20 + 2 * name.len());
        assert_eq!(&b[..4], &1u32.to_le_bytes(), "ReplaceIfExists / Flags");
        assert_eq!(&b[8..16], &[0; 8], "RootDirectory NULL");
        assert_eq!(&b[16..20], &(2 * name.len() as u32).to_le_bytes());
        let got: Vec<u16> = b[20..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(got, name);
        assert_eq!(r.as_ptr() as usize % 8, 0);
        assert_eq!(
            RenameInformation::new(&[]).unwrap().len(),
            24,
            "never below sizeof"
        );
    }

    #[test]
    fn the_rm_guid_is_fixed() {
        // A changed GUID would orphan every prepared enlistment of an installed durable driver.
        assert_eq!(RM_GUID.data1, 0x6b74_6d72);
        assert_eq!(RM_GUID.data4, *b"\x9dRM-Dura");
    }
}
