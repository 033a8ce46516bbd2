//! Reading the driver's one setting, `HKLM\SYSTEM\CurrentControlSet\Services\KtmRm\Parameters`
//! `TraceLevel` (REG_DWORD), from the buffer `ZwQueryValueKey(KeyValuePartialInformation)` fills.

use crate::ktm::REG_DWORD;

/// Offset of `Data` in `KEY_VALUE_PARTIAL_INFORMATION { ULONG TitleIndex; ULONG Type; ULONG
/// DataLength; UCHAR Data[1]; }`.
pub const PARTIAL_INFO_DATA_OFFSET: usize = 12;
/// A buffer that holds the partial information of one REG_DWORD (12 + 4 bytes; the structure's
/// `sizeof` is also 16 with its padding, which `ZwQueryValueKey` may require).
pub const PARTIAL_DWORD_LEN: usize = 16;

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let bytes: [u8; 4] = buf.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// The DWORD in a `KEY_VALUE_PARTIAL_INFORMATION` of `returned` bytes, or `None` when the value
/// is not a REG_DWORD of exactly 4 bytes (the driver then keeps its default).
#[must_use]
pub fn partial_dword(buf: &[u8], returned: usize) -> Option<u32> {
    let buf = buf.get(..returned)?;
    let ty = u32_at(buf, 4)?;
    let len = u32_at(buf, 8)?;
    if ty != REG_DWORD || len != 4 {
        return None;
    }
    u32_at(buf, PARTIAL_INFO_DATA_OFFSET)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_a_dword() {
        let b = info(REG_DWORD, &4u32.to_le_bytes());
        assert_eq!(b.len(), PARTIAL_DWORD_LEN);
        assert_eq!(partial_dword(&b, b.len()), Some(4));
    }

    #[test]
    fn refuses_anything_else() {
        let b = info(1 /* REG_SZ */, &[b'4', 0, 0, 0]);
        assert_eq!(partial_dword(&b, b.len()), None);
        let b = info(REG_DWORD, &[1, 0]);
        assert_eq!(partial_dword(&b, b.len()), None);
        let b = info(REG_DWORD, &4u32.to_le_bytes());
        assert_eq!(partial_dword(&b, 15), None, "short return");
        assert_eq!(partial_dword(&b, 17), None, "returned beyond the buffer");
        assert_eq!(partial_dword(&[], 0), None);
    }
}
