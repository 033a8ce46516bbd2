//! The durable engine's side of the write-ahead log (issue 6): what it appends, when, and how a
//! restart rebuilds the state from the log.
//!
//! The rules (docs/ktm.md §1, §3, §8, S22):
//! - PREPARE appends a Prepare record with the transaction's writes; the engine forces it before
//!   the yes vote. A failure to append or force is a no vote.
//! - COMMIT applies the writes and appends a Commit record; the engine forces it before
//!   CommitComplete, because KTM forgets the transaction once it has that answer.
//! - ROLLBACK of a logged transaction appends an Abort record, not forced (presumed abort).
//! - A non-transacted write appends a Prepare and a Commit record under the all-zero UOW (never a
//!   KTM transaction's) and is forced before the request completes.
//! - A checkpoint appends the whole state; once forced, the records before it are freed.
//!
//! Appends happen under the state lock, so the log's order is the order of the changes and a
//! checkpoint sees exactly the changes of the records before it. Forces happen outside the lock
//! (they wait for the disk). After any append or force failure the log is not appended to again
//! (a torn record followed by good ones would read back as corruption): PREPARE votes no and
//! non-transacted writes fail with the first failure's status until the driver restarts.

use crate::ops::Write as OpWrite;
use crate::port::{EnlistmentKey, TxId};
use crate::state::Pending;
use crate::state::State;
use crate::tree::{NodeId, Tree};
use crate::wal::{
    EntryVisitor, InDoubtVisitor, LogPort, LogWriter, Lsn, OUTCOME_RECORD_LEN, RecordRef,
    SnapshotSource, WriteSource, WriteVisitor,
};
use ktmrm_proto::NtStatus;

mod recover;

pub use crate::wal::AUTOCOMMIT_UOW;
pub use recover::{RecoverError, RecoveryReport};

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

impl DurabilityStats {
    pub(crate) const ZERO: Self = DurabilityStats {
        records: 0,
        bytes_since_checkpoint: 0,
        forces: 0,
        checkpoints: 0,
        presumed_aborts: 0,
        recovered: 0,
        failed: None,
    };
}

/// A transaction's pending writes, visited in place for its Prepare record.
struct TxnWrites<'a> {
    pending: &'a Tree<Pending>,
    writes: &'a [NodeId],
}

impl WriteSource for TxnWrites<'_> {
    fn write_count(&self) -> usize {
        self.writes.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        for id in self.writes {
            let p = self.pending.node(*id).ok_or(NtStatus::UNSUCCESSFUL)?;
            let value = if p.delete {
                None
            } else {
                Some(p.entry.value())
            };
            f(p.entry.key(), value)?;
        }
        Ok(())
    }
}

impl<E> SnapshotSource for State<E> {
    fn entry_count(&self) -> usize {
        self.committed.len()
    }
    fn for_each_entry(&self, f: &mut EntryVisitor<'_>) -> Result<(), NtStatus> {
        self.committed
            .iter()
            .try_for_each(|(_, e)| f(e.key(), e.value()))
    }
    fn in_doubt_count(&self) -> usize {
        self.in_doubt().count()
    }
    fn for_each_in_doubt(&self, f: &mut InDoubtVisitor<'_>) -> Result<(), NtStatus> {
        for t in self.in_doubt() {
            let w = TxnWrites {
                pending: &self.pending,
                writes: &t.writes,
            };
            f(t.id, &w)?;
        }
        Ok(())
    }
}

impl<E> State<E> {
    /// True when this state logs (built by [`State::recover`]).
    #[must_use]
    pub const fn is_durable(&self) -> bool {
        self.log.is_some()
    }

    /// The durable engine's counters.
    #[must_use]
    pub const fn durability(&self) -> DurabilityStats {
        self.durability
    }

    /// Transactions whose Prepare record is in the log with no outcome yet.
    fn in_doubt(&self) -> impl Iterator<Item = &crate::state::Txn<E>> {
        self.slots
            .iter()
            .filter_map(|s| s.txn.as_ref())
            .filter(|t| t.logged)
    }

    pub(crate) fn log_failure(&mut self, st: NtStatus) {
        if self.durability.failed.is_none() {
            self.durability.failed = Some(st);
        }
    }

    /// Counts a force the engine made outside the lock and records its failure, if any.
    pub(crate) fn forced(&mut self, r: Result<(), NtStatus>) {
        self.durability.forces = self.durability.forces.saturating_add(1);
        if let Err(st) = r {
            self.log_failure(st);
        }
    }

    /// Runs `append` with the log writer (taken out of the state, so a record may borrow the
    /// state) unless the log has failed, and keeps the counters. An encoding that runs out of
    /// memory before anything reached the log is only refused; any other failure marks the log
    /// failed.
    fn append_with(
        &mut self,
        log: &dyn LogPort,
        append: impl FnOnce(&Self, &mut LogWriter, &dyn LogPort) -> Result<Lsn, NtStatus>,
    ) -> Result<Lsn, NtStatus> {
        if let Some(st) = self.durability.failed {
            return Err(st);
        }
        let mut writer = self.log.take().ok_or(NtStatus::TM_VOLATILE)?;
        let before = writer.next_lsn();
        let r = append(self, &mut writer, log);
        let (len, unchanged) = (writer.last_len(), writer.next_lsn() == before);
        self.log = Some(writer);
        match r {
            Ok(lsn) => {
                self.durability.records = self.durability.records.saturating_add(1);
                self.durability.bytes_since_checkpoint =
                    self.durability.bytes_since_checkpoint.saturating_add(len);
                Ok(lsn)
            }
            Err(st) => {
                if st != NtStatus::INSUFFICIENT_RESOURCES || !unchanged {
                    self.log_failure(st);
                }
                Err(st)
            }
        }
    }

    fn append(&mut self, log: &dyn LogPort, rec: &RecordRef<'_>) -> Result<Lsn, NtStatus> {
        self.append_with(log, |_, w, log| w.append(log, rec))
    }

    /// Appends `key`'s Prepare record and marks it logged, with the memory of its outcome record
    /// reserved first. `Err` means vote no.
    pub(crate) fn log_prepare(&mut self, key: EnlistmentKey, log: &dyn LogPort) -> Result<Lsn, ()> {
        if self.durability.failed.is_some() || log.reserve(1, OUTCOME_RECORD_LEN).is_err() {
            return Err(());
        }
        let appended = self.append_with(log, |s, w, log| {
            let t = s.txn(key).ok_or(NtStatus::UNSUCCESSFUL)?;
            let src = TxnWrites {
                pending: &s.pending,
                writes: &t.writes,
            };
            w.append(
                log,
                &RecordRef::Prepare {
                    tx: t.id,
                    writes: &src,
                },
            )
        });
        let Ok(lsn) = appended else {
            log.unreserve(1, OUTCOME_RECORD_LEN);
            return Err(());
        };
        if let Some(t) = self.txn_mut(key) {
            t.logged = true;
            t.outcome_reserved = true;
        }
        Ok(lsn)
    }

    /// Appends an outcome record, through the reservation made at PREPARE when there is one
    /// (given back unused if the log has failed and nothing is appended).
    fn append_outcome(
        &mut self,
        log: &dyn LogPort,
        rec: &RecordRef<'_>,
        reserved: bool,
    ) -> Result<Lsn, NtStatus> {
        if reserved && self.durability.failed.is_some() {
            log.unreserve(1, OUTCOME_RECORD_LEN);
        }
        self.append_with(log, |_, w, log| {
            if reserved {
                w.append_reserved(log, rec)
            } else {
                w.append(log, rec)
            }
        })
    }

    /// Takes `key`'s outcome reservation: (its UOW, whether it had one).
    fn take_outcome(&mut self, key: EnlistmentKey) -> Option<(TxId, bool)> {
        let t = self.txn_mut(key)?;
        Some((t.id, core::mem::take(&mut t.outcome_reserved)))
    }

    /// Appends `key`'s Commit record (its writes are applied). `Err`: CommitComplete must wait.
    pub(crate) fn log_commit(&mut self, key: EnlistmentKey, log: &dyn LogPort) -> Result<Lsn, ()> {
        let (tx, reserved) = self.take_outcome(key).ok_or(())?;
        let lsn = self
            .append_outcome(log, &RecordRef::Commit { tx }, reserved)
            .map_err(|_| ())?;
        if let Some(t) = self.txn_mut(key) {
            t.logged = false;
        }
        Ok(lsn)
    }

    /// Appends an Abort record for a logged transaction whose writes were discarded. Not forced
    /// and allowed to fail: a Prepare without an outcome is presumed aborted after a restart.
    pub(crate) fn log_abort(&mut self, key: EnlistmentKey, log: &dyn LogPort) {
        let logged = self.txn(key).is_some_and(|t| t.logged);
        let Some((tx, reserved)) = self.take_outcome(key) else {
            return;
        };
        if !logged {
            if reserved {
                log.unreserve(1, OUTCOME_RECORD_LEN);
            }
            return;
        }
        if let Some(t) = self.txn_mut(key) {
            t.logged = false;
        }
        let _ = self.append_outcome(log, &RecordRef::Abort { tx }, reserved);
    }

    /// A non-transacted write in a durable state: checked, logged as a Prepare and a Commit
    /// record under [`AUTOCOMMIT_UOW`], then applied (with the store slot and the Commit record's
    /// memory reserved first, so neither can fail once the Prepare is in the log). Returns the LSN to force before completing.
    pub(crate) fn write_now_logged(
        &mut self,
        w: OpWrite,
        log: &dyn LogPort,
    ) -> Result<Lsn, NtStatus> {
        if let Some(st) = self.durability.failed {
            return Err(st);
        }
        self.check_write_now(&w)?;
        let (key, value) = match &w {
            OpWrite::Put(e) => (e.key(), Some(e.value())),
            OpWrite::Delete(k) => (k.as_slice(), None),
        };
        let one = [(key, value)];
        let writes: &[(&[u8], Option<&[u8]>)] = &one;
        if matches!(w, OpWrite::Put(_)) {
            self.committed
                .reserve(1)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        }
        let unreserve_slot = |s: &mut Self| {
            if matches!(w, OpWrite::Put(_)) {
                s.committed.unreserve(1);
            }
        };
        // The Commit record's memory first, so that it cannot fail once the Prepare is in.
        if let Err(st) = log.reserve(1, OUTCOME_RECORD_LEN) {
            unreserve_slot(self);
            return Err(st);
        }
        let prepare = RecordRef::Prepare {
            tx: AUTOCOMMIT_UOW,
            writes: &writes,
        };
        if let Err(st) = self.append(log, &prepare) {
            log.unreserve(1, OUTCOME_RECORD_LEN);
            unreserve_slot(self);
            return Err(st);
        }
        let commit = RecordRef::Commit { tx: AUTOCOMMIT_UOW };
        let lsn = match self.append_outcome(log, &commit, true) {
            Ok(lsn) => lsn,
            Err(st) => {
                unreserve_slot(self);
                return Err(st);
            }
        };
        self.apply_now(w, true)?;
        Ok(lsn)
    }

    /// Appends a Checkpoint record of the whole state. The caller forces it, then frees what is
    /// before it.
    pub(crate) fn append_checkpoint(&mut self, log: &dyn LogPort) -> Result<Lsn, NtStatus> {
        let lsn = self.append_with(log, |s, w, log| {
            w.append(log, &RecordRef::Checkpoint { snapshot: s })
        })?;
        self.durability.bytes_since_checkpoint = 0;
        Ok(lsn)
    }
}

/// The log of a volatile engine: there is none. A [`State`] built with [`State::new`] never
/// calls it; every method fails with `STATUS_TM_VOLATILE`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLog;

impl LogPort for NoLog {
    fn append(&self, _: &[u8]) -> Result<Lsn, NtStatus> {
        Err(NtStatus::TM_VOLATILE)
    }
    fn force(&self, _: Lsn) -> Result<(), NtStatus> {
        Err(NtStatus::TM_VOLATILE)
    }
    fn read(
        &self,
        _: Option<Lsn>,
        _: &mut dyn FnMut(Lsn, &[u8]) -> core::ops::ControlFlow<()>,
    ) -> Result<(), NtStatus> {
        Err(NtStatus::TM_VOLATILE)
    }
    fn truncate_before(&self, _: Lsn) -> Result<(), NtStatus> {
        Err(NtStatus::TM_VOLATILE)
    }
    fn discard_from(&self, _: Lsn) -> Result<(), NtStatus> {
        Err(NtStatus::TM_VOLATILE)
    }
}
