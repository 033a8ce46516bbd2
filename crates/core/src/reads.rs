//! A serializable transaction's read set: what it read, kept so that a commit changing any of
//! it dooms the reader (README "Semantics", "Isolation levels").
//!
//! A point read (a GET, or a DELETE that found nothing) is kept as a 64-bit hash of its key:
//! 8 bytes, whatever the key's length; a collision can only doom a reader that did not need
//! it, never let a stale one through. A LIST page is kept as its range (prefix, the cursor it
//! started after, the last key it returned when there were more), not as the keys it returned,
//! so an insert into the range (a phantom) is seen too. Both count against
//! [`MAX_READ_SET_BYTES`].

use crate::fallible;
use alloc::vec::Vec;
use ktmrm_proto::NtStatus;

/// Most bytes one transaction's read set may take (64 KiB: 8,192 point reads). A read beyond
/// it is refused with `STATUS_QUOTA_EXCEEDED`.
pub const MAX_READ_SET_BYTES: usize = 64 * 1024;

/// What one point read costs.
pub const POINT_READ_BYTES: usize = 8;

/// What one LIST page costs besides its keys' bytes (prefix, cursor, last key).
pub const RANGE_READ_BYTES: usize = 16;

/// Bytes of `arena` a range's bound occupies: offset and length.
#[derive(Clone, Copy, Default)]
struct Span {
    at: u32,
    len: u16,
}

/// One LIST page: keys starting with `prefix`, after `after` (exclusive; none: from the
/// prefix's first key), through `through` (inclusive; none: to the prefix's last key).
#[derive(Clone, Copy)]
struct Range {
    prefix: Span,
    after: Option<Span>,
    through: Option<Span>,
}

/// The read set. Empty until the first read; allocates fallibly.
#[derive(Default)]
pub(crate) struct ReadSet {
    /// Hashes of the keys read, sorted, no repeats.
    points: Vec<u64>,
    ranges: Vec<Range>,
    /// The ranges' bound keys.
    arena: Vec<u8>,
    bytes: usize,
}

/// FNV-1a, 64 bits: the key's identity in the read set.
fn hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl ReadSet {
    /// Bytes the read set counts against [`MAX_READ_SET_BYTES`].
    pub(crate) const fn bytes(&self) -> usize {
        self.bytes
    }

    fn charge(&self, cost: usize) -> Result<usize, NtStatus> {
        self.bytes
            .checked_add(cost)
            .filter(|b| *b <= MAX_READ_SET_BYTES)
            .ok_or(NtStatus::QUOTA_EXCEEDED)
    }

    /// Records a read of `key` (its value or its absence). A key read before costs nothing.
    pub(crate) fn note_point(&mut self, key: &[u8]) -> Result<(), NtStatus> {
        let h = hash(key);
        let Err(at) = self.points.binary_search(&h) else {
            return Ok(());
        };
        let bytes = self.charge(POINT_READ_BYTES)?;
        self.points
            .try_reserve(1)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        fallible::push(&mut self.points, h).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        // The new hash is last; move it to its place.
        if let Some(tail) = self.points.get_mut(at..)
            && tail.len() > 1
        {
            tail.rotate_right(1);
        }
        self.bytes = bytes;
        Ok(())
    }

    /// Records a LIST page: keys starting with `prefix`, after `after` (empty: from the
    /// prefix's first key), through `through` (`None`: to the prefix's last key).
    pub(crate) fn note_range(
        &mut self,
        prefix: &[u8],
        after: &[u8],
        through: Option<&[u8]>,
    ) -> Result<(), NtStatus> {
        let key_bytes = prefix
            .len()
            .saturating_add(after.len())
            .saturating_add(through.map_or(0, <[u8]>::len));
        let bytes = self.charge(RANGE_READ_BYTES.saturating_add(key_bytes))?;
        let oom = |_| NtStatus::INSUFFICIENT_RESOURCES;
        self.ranges.try_reserve(1).map_err(oom)?;
        self.arena.try_reserve(key_bytes).map_err(oom)?;
        let mut span = |bytes: &[u8]| -> Result<Span, NtStatus> {
            let at = u32::try_from(self.arena.len()).map_err(|_| NtStatus::QUOTA_EXCEEDED)?;
            let len = u16::try_from(bytes.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
            for &b in bytes {
                fallible::push(&mut self.arena, b).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            }
            Ok(Span { at, len })
        };
        let range = Range {
            prefix: span(prefix)?,
            after: if after.is_empty() {
                None
            } else {
                Some(span(after)?)
            },
            through: through.map(&mut span).transpose()?,
        };
        fallible::push(&mut self.ranges, range).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        self.bytes = bytes;
        Ok(())
    }

    fn bound(&self, s: Span) -> &[u8] {
        let at = usize::try_from(s.at).unwrap_or(usize::MAX);
        self.arena
            .get(at..at.saturating_add(usize::from(s.len)))
            .unwrap_or(&[])
    }

    /// Whether a write of `key` would change anything this read set saw.
    pub(crate) fn touches(&self, key: &[u8]) -> bool {
        if self.points.binary_search(&hash(key)).is_ok() {
            return true;
        }
        self.ranges.iter().any(|r| {
            key.starts_with(self.bound(r.prefix))
                && r.after.is_none_or(|a| key > self.bound(a))
                && r.through.is_none_or(|t| key <= self.bound(t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_kept_once_and_found() {
        let mut r = ReadSet::default();
        for k in [&b"b"[..], b"a", b"c", b"a", b"b"] {
            r.note_point(k).unwrap();
        }
        assert_eq!(r.bytes(), 3 * POINT_READ_BYTES);
        assert!(r.points.windows(2).all(|w| w[0] < w[1]));
        assert!(r.touches(b"a") && r.touches(b"b") && r.touches(b"c"));
        assert!(!r.touches(b"d") && !r.touches(b"ab"));
    }

    #[test]
    fn a_range_covers_its_page_and_its_phantoms_only() {
        let mut r = ReadSet::default();
        // LIST "acct/" after "acct/b", which returned up to "acct/m" with more to come.
        r.note_range(b"acct/", b"acct/b", Some(b"acct/m")).unwrap();
        assert_eq!(r.bytes(), RANGE_READ_BYTES + 5 + 6 + 6);
        for inside in [&b"acct/c"[..], b"acct/ba", b"acct/m", b"acct/k2"] {
            assert!(r.touches(inside), "{inside:?}");
        }
        for outside in [
            &b"acct/b"[..],
            b"acct/a",
            b"acct/ma",
            b"acct/z",
            b"acco",
            b"b",
        ] {
            assert!(!r.touches(outside), "{outside:?}");
        }
        // The last page: to the prefix's end; the first page: from its start.
        let mut r = ReadSet::default();
        r.note_range(b"x/", b"", None).unwrap();
        assert!(r.touches(b"x/") && r.touches(b"x/\xff\xff") && !r.touches(b"y"));
    }

    #[test]
    fn the_quota_refuses_the_read_that_would_pass_it() {
        let mut r = ReadSet::default();
        let n = MAX_READ_SET_BYTES / POINT_READ_BYTES;
        for i in 0..n {
            r.note_point(&(i as u64).to_le_bytes()).unwrap();
        }
        assert_eq!(r.bytes(), MAX_READ_SET_BYTES);
        assert_eq!(r.note_point(b"one more"), Err(NtStatus::QUOTA_EXCEEDED));
        // Reading a key again costs nothing, so it is still allowed.
        assert_eq!(r.note_point(&0u64.to_le_bytes()), Ok(()));
        assert_eq!(r.note_range(b"p", b"", None), Err(NtStatus::QUOTA_EXCEEDED));
        assert!(!r.touches(b"one more"));
    }
}
