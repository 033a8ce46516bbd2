//! The durable engine's own state: the log writer, its counters and first failure, and
//! whether KTM's recovery is still under way. A volatile state has no writer.

use crate::wal::LogWriter;
use ktmrm_proto::NtStatus;

/// Counters of the durable engine, for hosts and tests (not part of the IOCTL ABI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurabilityStats {
    /// Records appended.
    pub records: u64,
    /// Bytes appended since the last checkpoint (what a host's checkpoint policy looks at).
    pub bytes_since_checkpoint: u64,
    /// Forces the engine asked for.
    pub forces: u64,
    /// Checkpoints written and forced.
    pub checkpoints: u64,
    /// Transactions presumed aborted at LAST_RECOVER (in the log as prepared, no RECOVER came).
    pub presumed_aborts: u64,
    /// Transactions KTM sent RECOVER for.
    pub recovered: u64,
    /// Set once an append or force failed: the log is no longer appended to.
    pub failed: Option<NtStatus>,
}

/// The log side of a state.
pub(crate) struct Durability {
    /// Numbers and encodes the log's records (appends happen under the state lock, so log
    /// order is the order of changes; forces happen outside it). `None`: volatile.
    writer: Option<LogWriter>,
    /// Counters, and (`failed`) the first append or force failure. From then on PREPARE votes
    /// no and non-transacted writes fail with it: what is durable is no longer known.
    stats: DurabilityStats,
    /// Rebuilt from the log, LAST_RECOVER not seen yet; requests wait (docs/ktm.md §7 "finish
    /// recovery before accepting work").
    recovering: bool,
}

impl Durability {
    pub(crate) const fn volatile() -> Self {
        Durability {
            writer: None,
            stats: DurabilityStats {
                records: 0,
                bytes_since_checkpoint: 0,
                forces: 0,
                checkpoints: 0,
                presumed_aborts: 0,
                recovered: 0,
                failed: None,
            },
            recovering: false,
        }
    }

    /// Becomes durable, its next record numbered by `writer`, waiting for KTM's recovery.
    pub(crate) fn start(&mut self, writer: LogWriter) {
        self.writer = Some(writer);
        self.recovering = true;
    }

    pub(crate) const fn is_durable(&self) -> bool {
        self.writer.is_some()
    }

    pub(crate) const fn stats(&self) -> DurabilityStats {
        self.stats
    }

    /// The first append or force failure, if any.
    pub(crate) const fn failed(&self) -> Option<NtStatus> {
        self.stats.failed
    }

    /// Records a failure (only the first one is kept).
    pub(crate) fn fail(&mut self, st: NtStatus) {
        if self.stats.failed.is_none() {
            self.stats.failed = Some(st);
        }
    }

    /// Counts a force made outside the lock and records its failure, if any.
    pub(crate) fn forced(&mut self, r: Result<(), NtStatus>) {
        self.stats.forces = self.stats.forces.saturating_add(1);
        if let Err(st) = r {
            self.fail(st);
        }
    }

    /// True until LAST_RECOVER.
    pub(crate) const fn recovering(&self) -> bool {
        self.recovering
    }

    /// LAST_RECOVER came.
    pub(crate) fn recovered(&mut self) {
        self.recovering = false;
    }

    /// The writer, taken out while a record is encoded (so the record may borrow the rest of
    /// the state); [`Durability::put_writer`] gives it back.
    pub(crate) fn take_writer(&mut self) -> Option<LogWriter> {
        self.writer.take()
    }

    pub(crate) fn put_writer(&mut self, writer: LogWriter) {
        self.writer = Some(writer);
    }

    /// Counts a record of `len` bytes appended.
    pub(crate) fn appended(&mut self, len: u64) {
        self.stats.records = self.stats.records.saturating_add(1);
        self.stats.bytes_since_checkpoint = self.stats.bytes_since_checkpoint.saturating_add(len);
    }

    /// A checkpoint was appended: the bytes since it start again from zero.
    pub(crate) fn checkpoint_appended(&mut self) {
        self.stats.bytes_since_checkpoint = 0;
    }

    /// A checkpoint was forced.
    pub(crate) fn checkpoint_forced(&mut self) {
        self.stats.checkpoints = self.stats.checkpoints.saturating_add(1);
    }

    pub(crate) fn count_presumed_abort(&mut self) {
        self.stats.presumed_aborts = self.stats.presumed_aborts.saturating_add(1);
    }

    pub(crate) fn count_recovered(&mut self) {
        self.stats.recovered = self.stats.recovered.saturating_add(1);
    }
}
