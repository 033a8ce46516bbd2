//! The resource manager's write-ahead log: record and snapshot formats,
//! the [`LogPort`] the host implements, a [`LogWriter`] that numbers and appends records, and
//! [`replay`], which rebuilds the committed store and the in-doubt transactions after a restart.
//!
//! Why a log: a durable RM must make a transaction's writes durable before it votes yes at
//! PREPARE, and its outcome durable before COMMIT completes, then after a crash tell committed
//! (apply) from prepared-without-outcome (in doubt: hold locked until KTM's recovery says) from
//! anything else (discard; presumed abort). docs/ktm.md §1, §3.
//!
//! Sans-IO: the host (driver: a file or CLFS stream; ktm-sim: [`MemLog`]) stores bytes; this
//! module decides what they mean. `no_std` + `alloc`, every allocation fallible, no panics.
//!
//! LSNs are consecutive: the port numbers records 1, 2, 3, … and each record also carries its
//! own LSN, so a lost, duplicated or reordered record is detected on replay.

mod crc;
#[cfg(test)]
mod damage_tests;
mod filelog;
#[cfg(test)]
pub(crate) mod filelog_tests;
mod memlog;
mod reader;
mod record;
mod replay;
mod resync;
mod snapshot;
mod sort;
#[cfg(test)]
mod tests;

pub use crc::{Crc32c, crc32c};
pub use filelog::{FileIo, FileLog, FileLogState};
pub use memlog::{MemLog, MemRecord};
pub use record::{
    Damage, DecodeError, Frame, HEADER_LEN, Prepared, RECORD_MAGIC, RECORD_VERSION, Record,
    RecordRef, Write, WriteSource, WriteVisitor, check_frame, decode, decode_frame, encode_into,
    encode_vec, encoded_len, frame_len,
};
pub use replay::{DroppedTail, Outcome, Recovered, ReplayError, Replayer, recover, replay};
pub use snapshot::{
    EntryVisitor, InDoubtVisitor, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, Snapshot, SnapshotSource,
    decode_snapshot, encode_snapshot_vec, snapshot_len,
};

use alloc::vec::Vec;
use core::ops::ControlFlow;
use ktmrm_proto::NtStatus;

/// `STATUS_LOG_CORRUPTION_DETECTED` (ntstatus.h 0xC0190030): what a log that cannot be trusted
/// replays to (corruption before the tail, reordering, an outcome without its Prepare).
pub const STATUS_LOG_CORRUPTION_DETECTED: NtStatus = NtStatus(0xC019_0030_u32 as i32);

/// The length of an outcome record (Commit or Abort: header and a transaction id), what PREPARE
/// reserves.
pub const OUTCOME_RECORD_LEN: usize = HEADER_LEN + 16;

/// The UOW non-transacted writes are logged under (a Prepare and a Commit record each): the null
/// GUID, which KTM never gives a transaction. Replay treats an undecided one as never written.
pub const AUTOCOMMIT_UOW: crate::port::TxId = crate::port::TxId([0; 16]);

/// A log sequence number: the position of a record in the log, from 1, one more per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The first record of a new log.
    pub const FIRST: Lsn = Lsn(1);

    /// The LSN after this one (saturating; 2^64 records are not reachable).
    #[must_use]
    pub const fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }
}

impl core::fmt::Display for Lsn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Stable storage for the log, implemented by the host. Records are opaque bytes here; the host
/// only keeps them in order. Methods take `&self` like [`crate::KtmPort`]: the host serialises
/// internally; appends must still come from one [`LogWriter`] at a time (LSNs are predicted).
pub trait LogPort {
    /// Appends one encoded record at the end of the log and returns its LSN: one more than the
    /// last record's ([`Lsn::FIRST`] in an empty log, the LSN passed to
    /// [`LogPort::discard_from`] after a discard). Not durable until [`LogPort::force`]. On
    /// error nothing may be appended, or what was written must read back as a torn record.
    fn append(&self, record: &[u8]) -> Result<Lsn, NtStatus>;

    /// Makes every record up to and including `upto` durable before returning.
    fn force(&self, upto: Lsn) -> Result<(), NtStatus>;

    /// Calls `sink(lsn, bytes)` for every record in order, starting at `from` (a checkpoint's
    /// LSN) or at the oldest record kept, until the end or until `sink` breaks. A record the host
    /// could only read in part (a torn write) is passed with the bytes it has.
    fn read(
        &self,
        from: Option<Lsn>,
        sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), NtStatus>;

    /// Frees every record before `lsn`; called after a checkpoint at `lsn` was forced.
    fn truncate_before(&self, lsn: Lsn) -> Result<(), NtStatus>;

    /// Removes the record at `lsn` and all after it: the torn tail replay dropped, so the next
    /// append lands where it began instead of behind garbage.
    fn discard_from(&self, lsn: Lsn) -> Result<(), NtStatus>;

    /// Sets aside the memory `records` later appends of at most `bytes` bytes each need, for
    /// [`LogPort::append_reserved`]: the engine reserves a transaction's outcome record at
    /// PREPARE, so that COMMIT never fails for lack of memory (as CLFS reserves log space).
    /// Default: this log's appends never run out of memory.
    fn reserve(&self, records: usize, bytes: usize) -> Result<(), NtStatus> {
        let _ = (records, bytes);
        Ok(())
    }

    /// Gives back a reservation that will not be used.
    fn unreserve(&self, records: usize, bytes: usize) {
        let _ = (records, bytes);
    }

    /// [`LogPort::append`] of a record [`LogPort::reserve`] set memory aside for (consuming one
    /// record of the reservation): fails only for I/O-level reasons, never for memory.
    fn append_reserved(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
        self.append(record)
    }
}

/// A shared reference to a log is a log, and so is a reference-counted one (hosts keep one log
/// for successive engines).
macro_rules! forward_log_port {
    ($($ty:ty),*) => {$(
        impl<T: LogPort + ?Sized> LogPort for $ty {
            fn append(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
                (**self).append(record)
            }
            fn force(&self, upto: Lsn) -> Result<(), NtStatus> {
                (**self).force(upto)
            }
            fn read(
                &self,
                from: Option<Lsn>,
                sink: &mut dyn FnMut(Lsn, &[u8]) -> ControlFlow<()>,
            ) -> Result<(), NtStatus> {
                (**self).read(from, sink)
            }
            fn truncate_before(&self, lsn: Lsn) -> Result<(), NtStatus> {
                (**self).truncate_before(lsn)
            }
            fn discard_from(&self, lsn: Lsn) -> Result<(), NtStatus> {
                (**self).discard_from(lsn)
            }
            fn reserve(&self, records: usize, bytes: usize) -> Result<(), NtStatus> {
                (**self).reserve(records, bytes)
            }
            fn unreserve(&self, records: usize, bytes: usize) {
                (**self).unreserve(records, bytes);
            }
            fn append_reserved(&self, record: &[u8]) -> Result<Lsn, NtStatus> {
                (**self).append_reserved(record)
            }
        }
    )*};
}

forward_log_port!(&T, alloc::sync::Arc<T>);

/// Numbers, encodes and appends records. One per log; the engine keeps it under its own lock
/// (appends are serialised, so LSNs are predicted). The encode buffer is reused, so steady-state
/// logging allocates only when a record is larger than any before it.
pub struct LogWriter {
    next: Lsn,
    buf: Vec<u8>,
}

impl LogWriter {
    /// A writer whose next record gets `next` ([`Recovered::next_lsn`] after recovery).
    #[must_use]
    pub const fn new(next: Lsn) -> Self {
        LogWriter {
            next,
            buf: Vec::new(),
        }
    }

    /// The LSN the next record gets.
    #[must_use]
    pub const fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// The encoded length of the last record this writer encoded.
    #[must_use]
    pub fn last_len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Encodes and appends `rec` (not forced). Errors: encoding (`STATUS_INVALID_PARAMETER`,
    /// `STATUS_INSUFFICIENT_RESOURCES`), the port's, or `STATUS_LOG_CORRUPTION_DETECTED` if the
    /// port numbered the record differently (the log then needs recovery before more appends).
    pub fn append<P: LogPort + ?Sized>(
        &mut self,
        port: &P,
        rec: &RecordRef<'_>,
    ) -> Result<Lsn, NtStatus> {
        self.append_via(port, rec, false)
    }

    fn append_via<P: LogPort + ?Sized>(
        &mut self,
        port: &P,
        rec: &RecordRef<'_>,
        reserved: bool,
    ) -> Result<Lsn, NtStatus> {
        encode_vec(rec, self.next, &mut self.buf)?;
        let lsn = if reserved {
            port.append_reserved(&self.buf)?
        } else {
            port.append(&self.buf)?
        };
        if lsn != self.next {
            return Err(STATUS_LOG_CORRUPTION_DETECTED);
        }
        self.next = lsn.next();
        Ok(lsn)
    }

    /// [`LogWriter::append`] through [`LogPort::append_reserved`]: for an outcome record whose
    /// memory was reserved at PREPARE. The encode buffer already holds the larger Prepare
    /// record, so encoding does not allocate either.
    pub fn append_reserved<P: LogPort + ?Sized>(
        &mut self,
        port: &P,
        rec: &RecordRef<'_>,
    ) -> Result<Lsn, NtStatus> {
        self.append_via(port, rec, true)
    }

    /// [`LogWriter::append`], then [`LogPort::force`] up to it: for Prepare (before the yes
    /// vote), Commit (before CommitComplete) and Checkpoint (before truncating).
    pub fn append_forced<P: LogPort + ?Sized>(
        &mut self,
        port: &P,
        rec: &RecordRef<'_>,
    ) -> Result<Lsn, NtStatus> {
        let lsn = self.append(port, rec)?;
        port.force(lsn)?;
        Ok(lsn)
    }
}
