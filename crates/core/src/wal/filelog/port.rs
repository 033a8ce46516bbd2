//! [`FileLog`]: the [`LogPort`] over a [`FileIo`] and the index behind its short lock.

use super::scan::{header_lsn, read_exact_at, scan, set_len};
use super::{Fetch, FileIo, FileLogState, Step};
use crate::lock::StateLock;
use crate::wal::record::frame_len;
use crate::wal::{LogPort, Lsn};
use alloc::vec::Vec;
use core::ops::ControlFlow;
use ktmrm_proto::NtStatus;

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
    /// "torn" entry, handed to `read` with the bytes present, so [`crate::wal::recover`] drops it and
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
