//! Opening a file log: reading the file from the start and indexing its records, damaged ones
//! included; and the file reads the log and the resync share.

use super::{FileIo, FileLogState, Slot};
use crate::wal::reader::{grow_zeroed, push};
use crate::wal::record::{HEADER_LEN, RECORD_MAGIC, check_frame, frame_len};
use crate::wal::resync::next_valid;
use crate::wal::{Lsn, STATUS_LOG_CORRUPTION_DETECTED};
use alloc::vec::Vec;
use core::mem::take;
use ktmrm_proto::NtStatus;

/// Reads the file from the start and indexes its records (see [`FileLog::open`]).
pub(super) fn scan<F: FileIo>(file: &F) -> Result<FileLogState, NtStatus> {
    let len = file.len()?;
    let mut s = FileLogState::new();
    let mut rec = Vec::new();
    let mut prev: Option<Lsn> = None;
    while s.end < len {
        let at = s.end;
        let rest = len.saturating_sub(at);
        let mut head = [0u8; HEADER_LEN];
        let k = usize::try_from(rest).map_or(HEADER_LEN, |r| r.min(HEADER_LEN));
        let head = head.get_mut(..k).unwrap_or(&mut []);
        read_exact_at(file, at, head)?;
        let whole = frame_len(head)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n <= rest);
        let valid = match whole {
            Some(n) => {
                set_len(&mut rec, n)?;
                read_exact_at(file, at, &mut rec)?;
                check_frame(&rec).ok().map(|f| (f.lsn, n))
            }
            None => None,
        };
        let (lsn, n) = match valid {
            Some(v) => v,
            // Damaged: it ends where the next valid record begins, if any (then replay reports
            // corruption), else at the end of the file (a torn tail). Never where its own
            // length says: that length is among the bytes that may be damaged.
            None => {
                let next = next_valid(file, at.saturating_add(1), len, prev)?;
                let n = next.map_or(rest, |p| p.saturating_sub(at));
                (damaged_lsn(prev, head), n)
            }
        };
        push(&mut s.slots, Slot { lsn, at, len: n })?;
        // `n > 0`: a frame is at least a header, and `rest > 0`.
        s.end = at.saturating_add(n);
        prev = Some(lsn);
    }
    s.written = s.end;
    s.durable = prev.unwrap_or(Lsn(0));
    s.next = prev.map_or(Lsn::FIRST, Lsn::next);
    Ok(s)
}

/// The LSN a damaged entry is reported at: one after the previous record's. The first entry keeps
/// the LSN its header carries if the header is there, so a damaged checkpoint at the head of a
/// truncated log makes replay refuse to start instead of being dropped as a torn tail.
fn damaged_lsn(prev: Option<Lsn>, head: &[u8]) -> Lsn {
    match prev {
        Some(p) => p.next(),
        None => header_lsn(head).unwrap_or(Lsn::FIRST),
    }
}

/// The LSN in a whole header with the record magic (bytes 8..16, little-endian).
pub(in crate::wal) fn header_lsn(head: &[u8]) -> Option<Lsn> {
    if head.len() < HEADER_LEN || head.get(..4) != Some(&RECORD_MAGIC[..]) {
        return None;
    }
    let b: [u8; 8] = head.get(8..16)?.try_into().ok()?;
    Some(Lsn(u64::from_le_bytes(b)))
}

/// Fills `buf` from the file at `at`; `STATUS_LOG_CORRUPTION_DETECTED` if the file ends first
/// (it is shorter than the index says).
pub(in crate::wal) fn read_exact_at<F: FileIo>(
    file: &F,
    mut at: u64,
    mut buf: &mut [u8],
) -> Result<(), NtStatus> {
    while !buf.is_empty() {
        let n = file.read_at(at, buf)?;
        let rest = take(&mut buf).split_at_mut_checked(n);
        let Some((_, rest)) = rest.filter(|_| n > 0) else {
            return Err(STATUS_LOG_CORRUPTION_DETECTED);
        };
        buf = rest;
        at = at.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// Sets `v`'s length to `len`, growing fallibly (the allocation is reused across records).
pub(in crate::wal) fn set_len(v: &mut Vec<u8>, len: u64) -> Result<(), NtStatus> {
    let len = usize::try_from(len).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    match len.checked_sub(v.len()) {
        Some(more) => grow_zeroed(v, more),
        None => {
            v.truncate(len);
            Ok(())
        }
    }
}
