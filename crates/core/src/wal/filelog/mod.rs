//! A [`LogPort`](super::LogPort) over a plain byte-stream file: the driver keeps the log in a
//! file.
//!
//! The file holds the records back to back, exactly as appended; nothing else (no file header,
//! no padding), so a record's LSN is the one in its own header. The host supplies the file
//! ([`FileIo`]) and two locks; this module keeps an index of the records in memory.
//!
//! Appends happen under the engine's state lock, so they only copy the record into memory;
//! [`LogPort::force`](super::LogPort::force) then writes everything appended so far with one
//! `write_at` and one `flush` (group commit: forces that arrive during that write wait for it,
//! and the next write carries all their records). The durable file is therefore whole records,
//! plus after a crash at most one torn write, which [`FileLog::open`] reports as one last damaged
//! entry so [`super::recover`] drops it. Freeing old records rewrites the file through
//! [`FileIo::replace`], which the host makes atomic. `no_std` + `alloc`, every allocation
//! fallible, no panics.
//!
//! Here the file seam and the index; `port` the port over them, `scan` the reading of the file at
//! open.

mod port;
mod scan;

pub use port::FileLog;
pub(super) use scan::{header_lsn, read_exact_at, set_len};

use super::reader::{grow_zeroed, push, reserve};
use super::{Lsn, STATUS_LOG_CORRUPTION_DETECTED};
use alloc::vec::Vec;
use core::mem::take;
use ktmrm_proto::NtStatus;

/// The file the log lives in, implemented by the host (driver: ZwCreateFile/ZwReadFile/
/// ZwWriteFile/ZwFlushBuffersFile/ZwSetInformationFile; tests: memory). All at PASSIVE_LEVEL;
/// [`FileLog`] serialises every call through its I/O lock, so an implementation needs no lock of
/// its own.
#[allow(clippy::len_without_is_empty)] // a file's length is an I/O result, not a collection's
pub trait FileIo {
    /// Current length in bytes.
    fn len(&self) -> Result<u64, NtStatus>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at or past the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, NtStatus>;
    /// Writes all of `data` at `offset` (extending the file). Not durable until `flush`.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), NtStatus>;
    /// Makes every completed write durable (ZwFlushBuffersFile).
    fn flush(&self) -> Result<(), NtStatus>;
    /// Cuts the file to `len` bytes, durably.
    fn truncate(&self, len: u64) -> Result<(), NtStatus>;
    /// Atomically and durably replaces the whole content with `data` (host: write a temporary
    /// file, flush it, rename it over the log). After a crash the file holds either the old or
    /// the new content, never a mix.
    fn replace(&self, data: &[u8]) -> Result<(), NtStatus>;
}

/// A shared reference to a file is a file (a host may keep the file outside the log).
impl<T: FileIo + ?Sized> FileIo for &T {
    fn len(&self) -> Result<u64, NtStatus> {
        (**self).len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, NtStatus> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), NtStatus> {
        (**self).write_at(offset, data)
    }
    fn flush(&self) -> Result<(), NtStatus> {
        (**self).flush()
    }
    fn truncate(&self, len: u64) -> Result<(), NtStatus> {
        (**self).truncate(len)
    }
    fn replace(&self, data: &[u8]) -> Result<(), NtStatus> {
        (**self).replace(data)
    }
}

/// One record (or the torn entry) of the log, in file order.
#[derive(Clone, Copy)]
struct Slot {
    lsn: Lsn,
    at: u64,
    len: u64,
}

/// Bytes handed to one `write_at`.
struct Batch {
    bytes: Vec<u8>,
    at: u64,
    /// LSN of the last record in `bytes`.
    last: Lsn,
}

/// What `FileLog` keeps behind its short lock: the index of the records in the file and the
/// records appended but not yet written. Opaque; build with [`FileLogState::new`].
///
/// The file's bytes `0..written` are written and flushed. After them come, in memory, `flight`
/// (bytes a write took and could not make durable: a retry writes them again at `written`) and
/// `pending` (appended since); `end` is where the next append goes.
pub struct FileLogState {
    slots: Vec<Slot>,
    written: u64,
    flight: Vec<u8>,
    flight_last: Lsn,
    pending: Vec<u8>,
    end: u64,
    next: Lsn,
    /// Every record up to here is durable (`Lsn(0)`: none).
    durable: Lsn,
    /// Records and bytes `reserve` set aside: `slots` and `pending` always have that much room
    /// beyond their length, and `spare` (the next `pending` after a force takes this one) at
    /// least `reserved_bytes` of capacity, except while a write is out.
    reserved_records: usize,
    reserved_bytes: usize,
    spare: Vec<u8>,
    /// A force is writing (the leader of a group commit); others wait for it to end.
    leading: bool,
    /// Leaders' writes ended so far (what a waiting force watches change).
    writes_ended: u64,
}

/// What a force does next (see [`FileLog`]'s `force`).
enum Step {
    /// Its records are durable.
    Done,
    /// It writes everything appended so far, while later forces wait.
    Lead,
    /// Another force is writing: wait until its write (the `writes_ended`-th) ends.
    Follow(u64),
}

impl Default for FileLogState {
    fn default() -> Self {
        Self::new()
    }
}

/// What `read` does with the record at an index.
enum Fetch {
    End,
    Skip,
    /// Copied from memory into the read buffer.
    Copied(Lsn),
    File(Slot),
}

impl FileLogState {
    /// An empty state (allocates nothing); [`FileLog::open`] fills it from the file.
    #[must_use]
    pub const fn new() -> Self {
        FileLogState {
            slots: Vec::new(),
            written: 0,
            flight: Vec::new(),
            flight_last: Lsn(0),
            pending: Vec::new(),
            end: 0,
            next: Lsn::FIRST,
            durable: Lsn(0),
            reserved_records: 0,
            reserved_bytes: 0,
            spare: Vec::new(),
            leading: false,
            writes_ended: 0,
        }
    }

    /// Group commit: a force whose records are durable returns; else it writes everything
    /// appended so far unless another force is writing already, in which case it waits for
    /// that write and looks again.
    fn force_step(&mut self, upto: Lsn) -> Step {
        if self.target(upto) <= self.durable {
            Step::Done
        } else if self.leading {
            Step::Follow(self.writes_ended)
        } else {
            self.leading = true;
            Step::Lead
        }
    }

    fn end_lead(&mut self) {
        self.leading = false;
        self.writes_ended = self.writes_ended.wrapping_add(1);
    }

    /// Sets aside room for `records` appends of `bytes` bytes each (see
    /// [`LogPort::reserve`](super::LogPort::reserve)).
    fn reserve_room(&mut self, records: usize, bytes: usize) -> Result<(), NtStatus> {
        let total = bytes
            .checked_mul(records)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let rr = self.reserved_records.checked_add(records);
        let rb = self.reserved_bytes.checked_add(total);
        let (Some(rr), Some(rb)) = (rr, rb) else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        reserve(&mut self.slots, rr)?;
        reserve(&mut self.pending, rb)?;
        reserve(&mut self.spare, rb)?;
        self.reserved_records = rr;
        self.reserved_bytes = rb;
        Ok(())
    }

    /// Gives back what `reserve_room` set aside.
    fn release_room(&mut self, records: usize, bytes: usize) {
        self.reserved_records = self.reserved_records.saturating_sub(records);
        self.reserved_bytes = self
            .reserved_bytes
            .saturating_sub(bytes.saturating_mul(records));
    }

    fn last(&self) -> Lsn {
        self.slots.last().map_or(Lsn(0), |s| s.lsn)
    }

    /// What a force up to `upto` must make durable: `upto`, or the last record if before it.
    fn target(&self, upto: Lsn) -> Lsn {
        upto.min(self.last())
    }

    fn append(&mut self, record: &[u8], carried: Lsn) -> Result<Lsn, NtStatus> {
        let lsn = self.next;
        if carried != lsn {
            return Err(STATUS_LOG_CORRUPTION_DETECTED);
        }
        let len = u64::try_from(record.len()).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let end = self
            .end
            .checked_add(len)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        // Room for this record and, beyond it, for every reserved one: an unreserved append
        // fails rather than use memory set aside (a reserved one gave its share back first).
        reserve(&mut self.slots, self.reserved_records.saturating_add(1))?;
        let old = self.pending.len();
        let grown = reserve(
            &mut self.pending,
            record.len().saturating_add(self.reserved_bytes),
        )
        .and_then(|()| grow_zeroed(&mut self.pending, record.len()))
        .and_then(|()| {
            push(
                &mut self.slots,
                Slot {
                    lsn,
                    at: self.end,
                    len,
                },
            )
        });
        if let Err(st) = grown {
            self.pending.truncate(old);
            return Err(st);
        }
        copy(self.pending.get_mut(old..).unwrap_or(&mut []), record);
        self.end = end;
        self.next = lsn.next();
        Ok(lsn)
    }

    /// Moves the next bytes to write out of the state (the lock is released during the write):
    /// a failed write's bytes first, else everything pending. `None` once `target` is durable.
    fn take_batch(&mut self, target: Lsn) -> Option<Batch> {
        if target <= self.durable {
            return None;
        }
        if self.flight.is_empty() {
            // The spare, with room for the reserved records, becomes the next `pending`.
            let next = take(&mut self.spare);
            self.flight = core::mem::replace(&mut self.pending, next);
            self.flight_last = self.last();
        }
        Some(Batch {
            bytes: take(&mut self.flight),
            at: self.written,
            last: self.flight_last,
        })
    }

    /// Marks a batch durable, or puts it back to be written again at the same offset.
    fn end_batch(&mut self, b: Batch, ok: bool) {
        if ok {
            self.written = self.written.saturating_add(len64(&b.bytes));
            self.durable = self.durable.max(b.last);
            // The written buffer is the next spare, if it is the larger one.
            let mut used = b.bytes;
            used.clear();
            if used.capacity() > self.spare.capacity() {
                self.spare = used;
            }
        } else {
            self.flight = b.bytes;
        }
    }

    fn fetch(&self, i: usize, start: Lsn, buf: &mut Vec<u8>) -> Result<Fetch, NtStatus> {
        let Some(&slot) = self.slots.get(i) else {
            return Ok(Fetch::End);
        };
        if slot.lsn < start {
            return Ok(Fetch::Skip);
        }
        if slot.at < self.written {
            return Ok(Fetch::File(slot));
        }
        let bytes = self.in_memory(slot).ok_or(STATUS_LOG_CORRUPTION_DETECTED)?;
        set_len(buf, len64(bytes))?;
        copy(buf, bytes);
        Ok(Fetch::Copied(slot.lsn))
    }

    /// The bytes of a record not yet written: in `flight` or `pending`.
    fn in_memory(&self, s: Slot) -> Option<&[u8]> {
        let rel = usize::try_from(s.at.checked_sub(self.written)?).ok()?;
        let len = usize::try_from(s.len).ok()?;
        let (buf, rel) = match rel.checked_sub(self.flight.len()) {
            None => (&self.flight, rel),
            Some(r) => (&self.pending, r),
        };
        buf.get(rel..rel.checked_add(len)?)
    }

    /// The first record at or after `lsn`.
    fn find(&self, lsn: Lsn) -> Option<Slot> {
        self.slots.iter().find(|s| s.lsn >= lsn).copied()
    }

    /// Where to cut the file for `discard_from(lsn)`, if that record reached it (written, or
    /// perhaps in part by a failed write).
    fn cut_in_file(&self, lsn: Lsn) -> Option<u64> {
        let s = self.find(lsn)?;
        let reached = self.written.saturating_add(len64(&self.flight));
        (s.at < reached).then_some(s.at)
    }

    /// Forgets the record at `lsn` and all after it (the file was cut first, if needed).
    fn cut(&mut self, lsn: Lsn) {
        if let Some(s) = self.find(lsn) {
            self.slots.retain(|x| x.at < s.at);
            match s.at.checked_sub(self.written) {
                None => {
                    self.written = s.at;
                    self.flight.clear();
                    self.pending.clear();
                }
                Some(rel) => {
                    let rel = usize::try_from(rel).unwrap_or(usize::MAX);
                    match rel.checked_sub(self.flight.len()) {
                        None => {
                            self.flight.truncate(rel);
                            self.pending.clear();
                        }
                        Some(r) => self.pending.truncate(r),
                    }
                }
            }
            self.end = s.at;
            self.flight_last = self.last();
        }
        self.next = self.next.min(lsn);
        self.durable = self.durable.min(Lsn(lsn.0.saturating_sub(1)));
    }

    /// Offset of the first written byte `truncate_before(lsn)` keeps.
    fn keep_from(&self, lsn: Lsn) -> u64 {
        self.find(lsn)
            .map_or(self.written, |s| s.at)
            .min(self.written)
    }

    /// The file now starts at what was offset `start`.
    fn drop_before(&mut self, start: u64) {
        self.slots.retain(|s| s.at >= start);
        for s in &mut self.slots {
            s.at = s.at.saturating_sub(start);
        }
        self.written = self.written.saturating_sub(start);
        self.end = self.end.saturating_sub(start);
    }
}

/// Copies `src` into the start of `dst` (equal lengths here; never panics).
fn copy(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

fn len64(b: &[u8]) -> u64 {
    u64::try_from(b.len()).unwrap_or(u64::MAX)
}
