//! After a damaged record in a byte-stream log, where the next valid record begins.
//!
//! In a plain file the only thing that says where a record ends is its own `body_len`, so a
//! damaged length (a flipped high bit, a zeroed sector) would make everything after it look
//! like one record running past the end of the file: a torn tail, dropped at restart, with every
//! forced record after it. A torn tail is only ever the incomplete *last* write, so
//! [`next_valid`] searches the bytes after the damaged record for any whole, CRC-valid record;
//! finding one means the damage is not at the tail, and replay refuses to start
//! ([`super::ReplayError::CorruptBeforeTail`]) instead of truncating the log.

use super::crc::Crc32c;
use super::filelog::{FileIo, header_lsn, read_exact_at, set_len};
use super::record::{HEADER_LEN, RECORD_MAGIC, frame_len};
use super::{Lsn, STATUS_LOG_CORRUPTION_DETECTED};
use alloc::vec::Vec;
use ktmrm_proto::NtStatus;

/// Bytes read at a time while searching for a record's magic.
const CHUNK: usize = 4096;
/// Bytes of a candidate's body summed at a time (on the stack).
const SUM_CHUNK: usize = 256;

/// The offset of the first whole, CRC-valid record that starts in `from..len` and carries an LSN
/// after `after` (every record written after the damaged one does; an older LSN can only be
/// bytes inside a record's value). Reads the file in [`CHUNK`]s and sums a candidate's body in
/// place, so it allocates one chunk, whatever lengths the damaged bytes declare.
pub(super) fn next_valid<F: FileIo>(
    file: &F,
    from: u64,
    len: u64,
    after: Option<Lsn>,
) -> Result<Option<u64>, NtStatus> {
    let mut chunk = Vec::new();
    let mut base = from;
    while base < len {
        let want = usize::try_from(len.saturating_sub(base)).map_or(CHUNK, |r| r.min(CHUNK));
        if want < HEADER_LEN {
            return Ok(None);
        }
        set_len(&mut chunk, u64::try_from(want).unwrap_or(u64::MAX))?;
        read_exact_at(file, base, &mut chunk)?;
        // Every header that lies wholly in this chunk; the next chunk starts at the first
        // offset not examined, so a header across the boundary is seen whole there.
        let last = want.saturating_sub(HEADER_LEN);
        for i in 0..=last {
            let Some(head) = chunk.get(i..i.saturating_add(HEADER_LEN)) else {
                break;
            };
            let at = base.saturating_add(u64::try_from(i).unwrap_or(u64::MAX));
            if is_valid_at(file, at, len, head, after)? {
                return Ok(Some(at));
            }
        }
        base = base.saturating_add(u64::try_from(last.saturating_add(1)).unwrap_or(u64::MAX));
    }
    Ok(None)
}

/// Whether the record whose header `head` was read at `at` is whole (ends by `len`), carries an
/// LSN after `after`, and its CRC matches.
fn is_valid_at<F: FileIo>(
    file: &F,
    at: u64,
    len: u64,
    head: &[u8],
    after: Option<Lsn>,
) -> Result<bool, NtStatus> {
    if head.get(..4) != Some(&RECORD_MAGIC[..]) {
        return Ok(false);
    }
    let (Some(total), Some(lsn)) = (frame_len(head), header_lsn(head)) else {
        return Ok(false);
    };
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    if total > len.saturating_sub(at) || after.is_some_and(|a| lsn <= a) {
        return Ok(false);
    }
    let stored = head
        .get(20..HEADER_LEN)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes);
    let mut crc = Crc32c::new().update(head.get(..20).unwrap_or(&[]));
    let mut pos = at.saturating_add(u64::try_from(HEADER_LEN).unwrap_or(u64::MAX));
    let end = at.saturating_add(total);
    let mut buf = [0u8; SUM_CHUNK];
    while pos < end {
        let n = usize::try_from(end.saturating_sub(pos)).map_or(SUM_CHUNK, |r| r.min(SUM_CHUNK));
        let part = buf.get_mut(..n).ok_or(STATUS_LOG_CORRUPTION_DETECTED)?;
        read_exact_at(file, pos, part)?;
        crc = crc.update(part);
        pos = pos.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok(stored == Some(crc.finish()))
}
