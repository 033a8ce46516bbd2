//! A [`LogPort`] over a plain byte-stream file: the driver keeps the log in a file.
//!
//! The file holds the records back to back, exactly as appended; nothing else (no file header,
//! no padding), so a record's LSN is the one in its own header. The host supplies the file
//! ([`FileIo`]) and two locks; this module keeps an index of the records in memory.
//!
//! Appends happen under the engine's state lock, so they only copy the record into memory;
//! [`LogPort::force`] then writes everything appended so far with one `write_at` and one `flush`
//! (group commit: forces that arrive during that write wait for it, and the next write carries
//! all their records). The durable file is therefore whole records, plus after a crash at most one
//! torn write, which [`FileLog::open`] reports as one last damaged entry so [`super::recover`]
//! drops it. Freeing old records rewrites the file through [`FileIo::replace`], which the host
//! makes atomic. `no_std` + `alloc`, every allocation fallible, no panics.

use super::reader::{grow_zeroed, push, reserve};
use super::record::{HEADER_LEN, RECORD_MAGIC, check_frame, frame_len};
use super::resync::next_valid;
use super::{LogPort, Lsn, STATUS_LOG_CORRUPTION_DETECTED};
use crate::lock::StateLock;
use alloc::vec::Vec;
use core::mem::take;
use core::ops::ControlFlow;
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

    /// Sets aside room for `records` appends of `bytes` bytes each (see [`LogPort::reserve`]).
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

/// A [`LogPort`] over a [`FileIo`]. `B` guards the index and the unwritten records and is held
/// only for memory work (appends happen under the engine's state lock, so `append` never does
/// I/O); `I` serialises the I/O and is held across `write_at` + `flush` (in the driver, a lock
/// that keeps the thread at PASSIVE_LEVEL). Lock order: `I`, then `B`.
pub struct FileLog<F: FileIo, B: StateLock<FileLogState>, I: StateLock<()>> {
    file: F,
    buf: B,
    io: I,
}

impl<F: FileIo, B: StateLock<FileLogState>, I: StateLock<()>> FileLog<F, B, I> {
    /// Opens the log in `file`: reads it from the start and indexes its records. A damaged record
    /// (bad magic, a CRC that fails, a length running past the end of the file) is indexed up to
    /// the next whole, CRC-valid record after it, so replay sees corruption before the tail and
    /// refuses to start; with none after it, it and the rest of the file are kept as one last
    /// "torn" entry, handed to `read` with the bytes present, so [`super::recover`] drops it and
    /// calls `discard_from`, which truncates the file there.
    /// Errors: the file's read errors; `STATUS_INSUFFICIENT_RESOURCES`.
    pub fn open(file: F, buf: B, io: I) -> Result<Self, NtStatus> {
        let state = scan(&file)?;
        buf.with(|s| *s = state);
        Ok(FileLog { file, buf, io })
    }

    /// The file (for the host, e.g. to close it).
    pub fn file(&self) -> &F {
        &self.file
    }

    /// Writes and flushes until `upto` (or the last record) is durable. Call holding `I`.
    fn write_out(&self, upto: Lsn) -> Result<(), NtStatus> {
        let target = self.buf.with(|s| s.target(upto));
        while let Some(b) = self.buf.with(|s| s.take_batch(target)) {
            let r = if b.bytes.is_empty() {
                Ok(())
            } else {
                self.file
                    .write_at(b.at, &b.bytes)
                    .and_then(|()| self.file.flush())
            };
            self.buf.with(|s| s.end_batch(b, r.is_ok()));
            r?;
        }
        Ok(())
    }
}

impl<F: FileIo, B: StateLock<FileLogState>, I: StateLock<()>> LogPort for FileLog<F, B, I> {
    /// Copies the record into memory (no I/O). `STATUS_INVALID_PARAMETER` if it is not one
    /// whole encoded record, `STATUS_LOG_CORRUPTION_DETECTED` if it carries another LSN than
    /// the one it would get: reopening would read the file differently.
    fn append(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        if frame_len(record) != Some(record.len()) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let carried = header_lsn(record).ok_or(NtStatus::INVALID_PARAMETER)?;
        self.buf.with(|s| s.append(record, carried))
    }

    fn reserve(&self, records: usize, bytes: usize) -> Result<(), NtStatus> {
        self.buf.with(|s| s.reserve_room(records, bytes))
    }

    fn unreserve(&self, records: usize, bytes: usize) {
        self.buf.with(|s| s.release_room(records, bytes));
    }

    /// Uses (and consumes, whatever the outcome) one reserved record's room.
    fn append_reserved(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        if frame_len(record) != Some(record.len()) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let carried = header_lsn(record).ok_or(NtStatus::INVALID_PARAMETER)?;
        self.buf.with(|s| {
            s.release_room(1, record.len());
            s.append(record, carried)
        })
    }

    /// Group commit. One force at a time writes and flushes everything appended so far (the
    /// leader); a force arriving meanwhile sleeps on `B` ([`StateLock::wait_while`]) until that
    /// write ends, then returns if it made its records durable, or leads the next write, which
    /// takes every record appended while it waited. A force whose records are durable never
    /// touches the disk, and never waits behind a write that does not carry its records. With a
    /// `B` that cannot sleep, a waiting force queues for `I` instead and writes what is still
    /// not durable once it has it.
    fn force(&self, upto: Lsn) -> Result<(), NtStatus> {
        loop {
            match self.buf.with(|s| s.force_step(upto)) {
                Step::Done => return Ok(()),
                Step::Lead => {
                    let r = self.io.with(|_| self.write_out(upto));
                    self.buf.with(FileLogState::end_lead);
                    self.buf.notify_all();
                    return r;
                }
                Step::Follow(seen) => {
                    if !self.buf.wait_while(|s| s.leading && s.writes_ended == seen) {
                        return self.io.with(|_| self.write_out(upto));
                    }
                }
            }
        }
    }

    /// Holds `I` while calling `sink`, so `sink` may append but not force, truncate or discard.
    fn read(
        &self,
        from: Option<Lsn>,
        sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), NtStatus> {
        let start = from.unwrap_or(Lsn(0));
        self.io.with(|_| {
            let mut buf = Vec::new();
            let mut i = 0usize;
            loop {
                let lsn = match self.buf.with(|s| s.fetch(i, start, &mut buf))? {
                    Fetch::End => return Ok(()),
                    Fetch::Skip => {
                        i = i.saturating_add(1);
                        continue;
                    }
                    Fetch::Copied(lsn) => lsn,
                    Fetch::File(slot) => {
                        set_len(&mut buf, slot.len)?;
                        read_exact_at(&self.file, slot.at, &mut buf)?;
                        slot.lsn
                    }
                };
                if sink(lsn, &buf).is_break() {
                    return Ok(());
                }
                i = i.saturating_add(1);
            }
        })
    }

    /// Writes out everything appended, then replaces the file with the records from `lsn` on.
    /// A crash leaves the old or the new file, both whole logs.
    fn truncate_before(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.io.with(|_| {
            self.write_out(Lsn(u64::MAX))?;
            let (start, stop) = self.buf.with(|s| (s.keep_from(lsn), s.written));
            if start == 0 {
                return Ok(());
            }
            let mut data = Vec::new();
            set_len(&mut data, stop.saturating_sub(start))?;
            read_exact_at(&self.file, start, &mut data)?;
            self.file.replace(&data)?;
            self.buf.with(|s| s.drop_before(start));
            Ok(())
        })
    }

    fn discard_from(&self, lsn: Lsn) -> Result<(), NtStatus> {
        self.io.with(|_| {
            if let Some(at) = self.buf.with(|s| s.cut_in_file(lsn)) {
                self.file.truncate(at)?;
            }
            self.buf.with(|s| s.cut(lsn));
            Ok(())
        })
    }
}

/// Reads the file from the start and indexes its records (see [`FileLog::open`]).
fn scan<F: FileIo>(file: &F) -> Result<FileLogState, NtStatus> {
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
pub(super) fn header_lsn(head: &[u8]) -> Option<Lsn> {
    if head.len() < HEADER_LEN || head.get(..4) != Some(&RECORD_MAGIC[..]) {
        return None;
    }
    let b: [u8; 8] = head.get(8..16)?.try_into().ok()?;
    Some(Lsn(u64::from_le_bytes(b)))
}

/// Fills `buf` from the file at `at`; `STATUS_LOG_CORRUPTION_DETECTED` if the file ends first
/// (it is shorter than the index says).
pub(super) fn read_exact_at<F: FileIo>(
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
pub(super) fn set_len(v: &mut Vec<u8>, len: u64) -> Result<(), NtStatus> {
    let len = usize::try_from(len).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    match len.checked_sub(v.len()) {
        Some(more) => grow_zeroed(v, more),
        None => {
            v.truncate(len);
            Ok(())
        }
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
