//! Every name the driver hands to the kernel, as UTF-16 built at compile time, and the
//! `UNICODE_STRING` length rules.

/// ASCII to UTF-16 at compile time. Used only to initialise constants, so a non-ASCII byte or a
/// wrong `N` is a compile error, never a runtime panic.
#[must_use]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "const evaluation only: an out-of-range index or overflow fails the build"
)]
pub const fn ascii_utf16<const N: usize>(s: &str) -> [u16; N] {
    let bytes = s.as_bytes();
    assert!(bytes.len() == N, "length mismatch");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii(), "names are ASCII");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// `utf16!("text")`: a `&'static [u16]` holding `text` (ASCII) without a terminating NUL.
macro_rules! utf16 {
    ($s:literal) => {{
        const S: &str = $s;
        const W: [u16; S.len()] = $crate::names::ascii_utf16::<{ S.len() }>(S);
        &W
    }};
}

/// The control device (`IoCreateDeviceSecure`).
pub const DEVICE_NAME: &[u16] = utf16!(r"\Device\KtmRm");
/// Its symbolic link; user mode opens `\\.\KtmRm`.
pub const SYMLINK_NAME: &[u16] = utf16!(r"\DosDevices\KtmRm");
/// The device's security descriptor (`SDDL_DEVOBJ_SYS_ALL_ADM_ALL`): protected DACL, generic all
/// for LocalSystem and the Administrators group, nobody else. The README's Windows section ("Who
/// may open the device") says how to widen it.
pub const DEVICE_SDDL: &[u16] = utf16!("D:P(A;;GA;;;SY)(A;;GA;;;BA)");

/// The exported data symbols the driver resolves with `MmGetSystemRoutineAddress` (docs/ktm.md §4,
/// "Rust link caveat"): each is a `POBJECT_TYPE *`.
pub const TX_OBJECT_TYPE_EXPORT: &[u16] = utf16!("TmTransactionObjectType");
/// See [`TX_OBJECT_TYPE_EXPORT`].
pub const RM_OBJECT_TYPE_EXPORT: &[u16] = utf16!("TmResourceManagerObjectType");

/// The subkey of the service key that holds the driver's settings.
pub const PARAMETERS_KEY: &[u16] = utf16!("Parameters");
/// `Parameters\TraceLevel` (REG_DWORD, 0–4; see [`crate::trace::Level`]).
pub const TRACE_LEVEL_VALUE: &[u16] = utf16!("TraceLevel");

/// The resource manager's description (`ZwCreateResourceManager`; the NUL is added by
/// `ktm::Description`).
pub const RM_DESCRIPTION: &[u16] = utf16!("ktmrm resource manager");

/// The `Length`/`MaximumLength` (bytes, no terminating NUL) of a `UNICODE_STRING` over `units`
/// UTF-16 code units, or `None` when it does not fit the 16-bit field (more than 32,767 units).
#[must_use]
pub const fn unicode_byte_len(units: usize) -> Option<u16> {
    match units.checked_mul(2) {
        Some(bytes) if bytes <= u16::MAX as usize => Some(bytes as u16),
        _ => None,
    }
}

/// The tag on every pool block the driver allocates (poolmon, `!poolfind`, Driver Verifier's
/// pool tracking show it as `KtRm`): a ULONG whose bytes, in memory order, are the four letters.
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"KtRm");

/// `ExAllocatePool2`'s name, looked up at run time: the routine exists from Windows 10 version
/// 2004, after the minimum ktmrm supports (scripts/kernel-check/min-windows.tsv).
pub const EX_ALLOCATE_POOL2_EXPORT: &[u16] = utf16!("ExAllocatePool2");

#[cfg(test)]
mod tests {
    use super::*;

    fn text(w: &[u16]) -> String {
        String::from_utf16(w).unwrap()
    }

    #[test]
    fn names_are_what_the_docs_and_harness_use() {
        assert_eq!(text(DEVICE_NAME), r"\Device\KtmRm");
        assert_eq!(text(SYMLINK_NAME), r"\DosDevices\KtmRm");
        assert_eq!(text(DEVICE_SDDL), "D:P(A;;GA;;;SY)(A;;GA;;;BA)");
        assert_eq!(text(TX_OBJECT_TYPE_EXPORT), "TmTransactionObjectType");
        assert_eq!(text(RM_OBJECT_TYPE_EXPORT), "TmResourceManagerObjectType");
        assert_eq!(text(PARAMETERS_KEY), "Parameters");
        assert_eq!(text(TRACE_LEVEL_VALUE), "TraceLevel");
        // No terminating NUL: UNICODE_STRING lengths exclude it.
        for n in [DEVICE_NAME, SYMLINK_NAME, DEVICE_SDDL, RM_DESCRIPTION] {
            assert!(!n.contains(&0));
        }
    }

    #[test]
    fn unicode_lengths() {
        assert_eq!(unicode_byte_len(0), Some(0));
        assert_eq!(unicode_byte_len(DEVICE_NAME.len()), Some(26));
        assert_eq!(unicode_byte_len(32_767), Some(65_534));
        assert_eq!(unicode_byte_len(32_768), None);
        assert_eq!(unicode_byte_len(usize::MAX), None);
    }

    #[test]
    fn pool_tag_reads_as_its_letters() {
        // Pool tools print the tag's bytes in memory order.
        assert_eq!(POOL_TAG.to_le_bytes(), *b"KtRm");
    }

    #[test]
    fn ascii_conversion() {
        const W: [u16; 3] = ascii_utf16::<3>("a\\Z");
        assert_eq!(W, [u16::from(b'a'), u16::from(b'\\'), u16::from(b'Z')]);
    }
}
