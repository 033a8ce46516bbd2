//! Owned keys and values, allocated fallibly.

use alloc::alloc::Layout;
use alloc::boxed::Box;
use ktmrm_proto::{MAX_KEY_LEN, NtStatus};

/// A key and its value in one allocation: `[key_len: u8][key][value]`. One allocation per stored
/// key keeps the per-key overhead small and lets a pending write move into the store at commit
/// without copying or allocating.
pub struct Entry(Box<[u8]>);

impl Entry {
    /// Copies `key` (1–255 bytes) and `value`; `STATUS_INSUFFICIENT_RESOURCES` if allocation fails,
    /// `STATUS_INVALID_PARAMETER` for a key of the wrong size.
    pub fn try_new(key: &[u8], value: &[u8]) -> Result<Entry, NtStatus> {
        let klen = u8::try_from(key.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if klen == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let total = key
            .len()
            .checked_add(value.len())
            .and_then(|n| n.checked_add(1))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let layout = Layout::array::<u8>(total).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        // SAFETY: `total >= 2` (a key byte and the length byte), so the layout is not zero-sized.
        let raw = unsafe { alloc::alloc::alloc(layout) };
        if raw.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let ptr = core::ptr::slice_from_raw_parts_mut(raw, total);
        // SAFETY: `raw` is valid for writes of `total` bytes (just allocated with that size).
        unsafe { core::ptr::write_bytes(raw, 0, total) };
        // SAFETY: `raw` is a fresh allocation of `total` initialised bytes with the layout a
        // `Box<[u8]>` of that length deallocates with (size `total`, align 1), owned by nothing
        // else.
        let mut b: Box<[u8]> = unsafe { Box::from_raw(ptr) };
        if let Some((len, rest)) = b.split_first_mut() {
            *len = klen;
            let (k, v) = rest.split_at_mut(key.len().min(rest.len()));
            k.copy_from_slice(key.get(..k.len()).unwrap_or(&[]));
            let n = v.len().min(value.len());
            if let (Some(d), Some(s)) = (v.get_mut(..n), value.get(..n)) {
                d.copy_from_slice(s);
            }
        }
        // Allocating the box directly (rather than Vec::into_boxed_slice, whose shrink path ends
        // in a panic on allocation failure) keeps entry creation free of panic paths.
        Ok(Entry(b))
    }

    fn split(&self) -> (&[u8], &[u8]) {
        match self.0.split_first() {
            Some((klen, rest)) => rest
                .split_at_checked(usize::from(*klen))
                .unwrap_or((rest, &[])),
            None => (&[], &[]),
        }
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        self.split().0
    }

    /// The value.
    #[must_use]
    pub fn value(&self) -> &[u8] {
        self.split().1
    }

    /// Key plus value bytes: what the byte quota counts.
    #[must_use]
    pub fn charge(&self) -> u64 {
        u64::try_from(self.0.len().saturating_sub(1)).unwrap_or(u64::MAX)
    }
}

impl crate::tree::Keyed for Entry {
    fn key(&self) -> &[u8] {
        Entry::key(self)
    }
}

/// A key copied onto the stack, so a request's key survives while the shared METHOD_BUFFERED
/// buffer is overwritten with the answer, and so tree removals can name a key they are about to
/// drop. Keys are at most 255 bytes.
#[derive(Clone, Copy)]
pub struct KeyBuf {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

impl KeyBuf {
    /// Copies `key`; `None` if it is longer than 255 bytes.
    #[must_use]
    pub fn new(key: &[u8]) -> Option<KeyBuf> {
        let len = u8::try_from(key.len()).ok()?;
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(KeyBuf { len, bytes })
    }

    /// The key.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_splits_key_and_value() {
        let e = Entry::try_new(b"key", b"value").unwrap();
        assert_eq!(e.key(), b"key");
        assert_eq!(e.value(), b"value");
        assert_eq!(e.charge(), 8);
        let e = Entry::try_new(&[7u8; 255], b"").unwrap();
        assert_eq!(e.key(), &[7u8; 255]);
        assert_eq!(e.value(), b"");
        assert_eq!(
            Entry::try_new(b"", b"v").err(),
            Some(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            Entry::try_new(&[0u8; 256], b"v").err(),
            Some(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(core::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn keybuf_round_trips() {
        assert_eq!(KeyBuf::new(b"abc").unwrap().as_slice(), b"abc");
        assert_eq!(KeyBuf::new(&[1u8; 255]).unwrap().as_slice(), &[1u8; 255]);
        assert!(KeyBuf::new(&[1u8; 256]).is_none());
        assert_eq!(KeyBuf::new(b"").unwrap().as_slice(), b"");
    }
}
