//! The durable engine's side of the write-ahead log: what it appends, when, and how a
//! restart rebuilds the state from the log.
//!
//! The rules (docs/ktm.md §1, §3, §8, S22):
//! - PREPARE appends a Prepare record with the transaction's writes; the engine forces it before
//!   the yes vote. A failure to append or force is a no vote.
//! - COMMIT applies the writes and appends a Commit record; the engine forces it before
//!   CommitComplete, because KTM forgets the transaction once it has that answer.
//! - ROLLBACK of a logged transaction appends an Abort record, not forced (presumed abort).
//! - A non-transacted write appends a Prepare and a Commit record under the all-zero UOW (never a
//!   KTM transaction's) and is forced before it is applied and the request completes; in
//!   between its key is locked by a pending write no transaction owns.
//! - So a change is visible only once it is durable, and a failure reported to the caller
//!   (or a single-phase commit rejected) leaves nothing applied.
//! - A checkpoint appends the whole state; once forced, the records before it are freed.
//!
//! Appends happen under the state lock, so the log's order is the order of the changes and a
//! checkpoint sees exactly the changes of the records before it. Forces happen outside the lock
//! (they wait for the disk). After any append or force failure the log is not appended to again
//! (a torn record followed by good ones would read back as corruption): PREPARE votes no and
//! non-transacted writes fail with the first failure's status until the driver restarts.

use crate::entry::{Entry, KeyBuf};
use crate::ops::Write as OpWrite;
use crate::port::EnlistmentKey;
use crate::state::txns::{Owner, Phase, Txn};
use crate::state::{Pending, State};
use crate::tree::{LeafHint, SlotId, Tree};
use crate::wal::{
    EntryVisitor, InDoubtVisitor, LogPort, LogWriter, Lsn, OUTCOME_RECORD_LEN, RecordRef,
    SnapshotSource, WriteSource, WriteVisitor,
};
use ktmrm_proto::NtStatus;

mod recover;

use crate::state::durability::DurabilityStats;
pub use crate::wal::AUTOCOMMIT_UOW;
pub use recover::{RecoverError, RecoveryReport};

/// Whether a transaction's Prepare or Commit record went into the log.
#[must_use]
pub(crate) enum Appended {
    /// Appended: force the log up to this LSN before answering.
    Force(Lsn),
    /// Not appended (the log failed or is out of memory): a PREPARE votes no, a COMMIT's
    /// CommitComplete is withheld, a single-phase commit is rejected.
    Refused,
}

/// A transaction's pending writes, visited in place for its Prepare record.
struct TxnWrites<'a> {
    pending: &'a Tree<Pending>,
    writes: &'a [SlotId],
}

impl WriteSource for TxnWrites<'_> {
    fn write_count(&self) -> usize {
        self.writes.len()
    }
    fn for_each_write(&self, f: &mut WriteVisitor<'_>) -> Result<(), NtStatus> {
        for id in self.writes {
            let p = self.pending.slot(*id).ok_or(NtStatus::UNSUCCESSFUL)?;
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

impl<E> State<E> {
    /// A pending write that is decided and logged, waiting only for its force to be applied: a
    /// single-phase commit's or a non-transacted write's. A checkpoint counts it as applied,
    /// since the checkpoint replaces the records that hold it and is forced after them.
    fn forcing(&self, p: &Pending) -> bool {
        p.owner == Owner::DIRECT
            || self
                .txns
                .by_owner(p.owner)
                .is_some_and(|t| matches!(t.phase(), Phase::Committing { .. }))
    }

    /// The forcing writes, in key order.
    fn forcing_writes(&self) -> impl Iterator<Item = &Pending> {
        self.pending
            .iter()
            .map(|(_, p)| p)
            .filter(|p| self.forcing(p))
    }
}

/// The committed store as a checkpoint records it: with the forcing writes applied.
impl<E> SnapshotSource for State<E> {
    fn entry_count(&self) -> usize {
        self.forcing_writes().fold(self.store.len(), |n, p| {
            match (p.delete, self.store.get(p.entry.key()).is_some()) {
                (false, false) => n.saturating_add(1),
                (true, true) => n.saturating_sub(1),
                _ => n,
            }
        })
    }
    fn for_each_entry(&self, f: &mut EntryVisitor<'_>) -> Result<(), NtStatus> {
        let mut committed = self.store.entries().peekable();
        let mut forcing = self.forcing_writes().peekable();
        loop {
            let committed_first = match (committed.peek(), forcing.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(c), Some(p)) => c.key() < p.entry.key(),
            };
            if committed_first {
                if let Some(c) = committed.next() {
                    f(c.key(), c.value())?;
                }
                continue;
            }
            let Some(p) = forcing.next() else { continue };
            // It replaces (or deletes) the committed value of its key.
            if committed.peek().is_some_and(|c| c.key() == p.entry.key()) {
                committed.next();
            }
            if !p.delete {
                f(p.entry.key(), p.entry.value())?;
            }
        }
    }
    fn in_doubt_count(&self) -> usize {
        self.in_doubt().count()
    }
    fn for_each_in_doubt(&self, f: &mut InDoubtVisitor<'_>) -> Result<(), NtStatus> {
        for t in self.in_doubt() {
            let w = TxnWrites {
                pending: &self.pending,
                writes: t.writes().ids(),
            };
            f(t.id(), &w)?;
        }
        Ok(())
    }
}

impl<E> State<E> {
    /// True when this state logs (built by [`State::recover`]).
    #[must_use]
    pub const fn is_durable(&self) -> bool {
        self.durability.is_durable()
    }

    /// The durable engine's counters.
    #[must_use]
    pub const fn durability(&self) -> DurabilityStats {
        self.durability.stats()
    }

    /// Transactions whose Prepare record is in the log with no outcome yet.
    fn in_doubt(&self) -> impl Iterator<Item = &Txn<E>> {
        self.txns.iter().map(|(_, t)| t).filter(|t| t.logged())
    }

    /// Counts a force the engine made outside the lock and records its failure, if any.
    pub(crate) fn forced(&mut self, r: Result<(), NtStatus>) {
        self.durability.forced(r);
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
        if let Some(st) = self.durability.failed() {
            return Err(st);
        }
        let mut writer = self.durability.take_writer().ok_or(NtStatus::TM_VOLATILE)?;
        let before = writer.next_lsn();
        let r = append(self, &mut writer, log);
        let (len, unchanged) = (writer.last_len(), writer.next_lsn() == before);
        self.durability.put_writer(writer);
        match r {
            Ok(lsn) => {
                self.durability.appended(len);
                Ok(lsn)
            }
            Err(st) => {
                if st != NtStatus::INSUFFICIENT_RESOURCES || !unchanged {
                    self.durability.fail(st);
                }
                Err(st)
            }
        }
    }

    /// Appends `key`'s Prepare record, with the memory of its outcome record reserved first (held
    /// from then on when this says [`Appended::Force`]).
    pub(crate) fn log_prepare(&mut self, key: EnlistmentKey, log: &dyn LogPort) -> Appended {
        if self.durability.failed().is_some() || log.reserve(1, OUTCOME_RECORD_LEN).is_err() {
            return Appended::Refused;
        }
        let appended = self.append_with(log, |s, w, log| {
            let t = s.txn(key).ok_or(NtStatus::UNSUCCESSFUL)?;
            let src = TxnWrites {
                pending: &s.pending,
                writes: t.writes().ids(),
            };
            w.append(
                log,
                &RecordRef::Prepare {
                    tx: t.id(),
                    writes: &src,
                },
            )
        });
        let Ok(lsn) = appended else {
            log.unreserve(1, OUTCOME_RECORD_LEN);
            return Appended::Refused;
        };
        Appended::Force(lsn)
    }

    /// Appends an outcome record, through the reservation made at PREPARE when there is one
    /// (given back unused if the log has failed and nothing is appended).
    fn append_outcome(
        &mut self,
        log: &dyn LogPort,
        rec: &RecordRef<'_>,
        reserved: bool,
    ) -> Result<Lsn, NtStatus> {
        if reserved && self.durability.failed().is_some() {
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

    /// Appends `key`'s Commit record (its writes are applied), through the memory its PREPARE
    /// reserved when `reserved`.
    pub(crate) fn log_commit(
        &mut self,
        key: EnlistmentKey,
        log: &dyn LogPort,
        reserved: bool,
    ) -> Appended {
        let Some(tx) = self.txn(key).map(Txn::id) else {
            return Appended::Refused;
        };
        match self.append_outcome(log, &RecordRef::Commit { tx }, reserved) {
            Ok(lsn) => Appended::Force(lsn),
            Err(_) => Appended::Refused,
        }
    }

    /// Appends an Abort record for a logged transaction whose writes were discarded, and gives
    /// back its outcome reservation. Not forced and allowed to fail: a Prepare without an
    /// outcome is presumed aborted after a restart.
    pub(crate) fn log_abort(&mut self, key: EnlistmentKey, log: &dyn LogPort) {
        let Some(t) = self.txn_mut(key) else { return };
        let tx = t.id();
        let Some(p) = t.prepared_mut() else { return };
        let logged = core::mem::take(&mut p.logged);
        let reserved = core::mem::take(&mut p.outcome_reserved);
        if !logged {
            if reserved {
                log.unreserve(1, OUTCOME_RECORD_LEN);
            }
            return;
        }
        let _ = self.append_outcome(log, &RecordRef::Abort { tx }, reserved);
    }

    /// A non-transacted write in a durable state: checked, staged as a pending write that no
    /// transaction owns (it locks the key, and no reader sees it), then logged as a Prepare and
    /// a Commit record under [`AUTOCOMMIT_UOW`], with the store slot and the Commit record's
    /// memory reserved first so that neither can fail once the Prepare is in. Returns the LSN to
    /// force and the key to pass to [`State::finish_write_now`] after the force, which applies
    /// it only if the force succeeded: a write reported failed leaves no trace.
    pub(crate) fn write_now_logged(
        &mut self,
        w: OpWrite,
        log: &dyn LogPort,
    ) -> Result<(Lsn, KeyBuf), NtStatus> {
        if let Some(st) = self.durability.failed() {
            return Err(st);
        }
        self.check_write_now(&w)?;
        let oom = |_| NtStatus::INSUFFICIENT_RESOURCES;
        // Accepted: its validation point (`serializable.rs`); a write that fails after this
        // dooms readers it did not need to, which costs them a retry, never correctness.
        self.doom_readers_of_key(w.key());
        let (key, put) = match &w {
            OpWrite::Put(e) => (
                KeyBuf::new(e.key()).ok_or(NtStatus::INVALID_PARAMETER)?,
                true,
            ),
            OpWrite::Delete(k) => (*k, false),
        };
        if put {
            self.store.reserve(1).map_err(oom)?;
        }
        let undo = |s: &mut Self, staged: bool| {
            if staged {
                s.pending.remove(key.as_slice());
            }
            if put {
                s.store.unreserve(1);
            }
        };
        // The Commit record's memory first, so that it cannot fail once the Prepare is in.
        if let Err(st) = log.reserve(1, OUTCOME_RECORD_LEN) {
            undo(self, false);
            return Err(st);
        }
        let (entry, delete) = match w {
            OpWrite::Put(e) => (Ok(e), false),
            OpWrite::Delete(k) => (Entry::try_new(k.as_slice(), &[]), true),
        };
        let staged = entry.and_then(|entry| {
            let p = Pending {
                entry,
                delete,
                owner: Owner::DIRECT,
                leaf: LeafHint::NONE,
            };
            self.pending
                .insert(p)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
        });
        let node = match staged {
            Ok((node, _)) => node,
            Err(st) => {
                log.unreserve(1, OUTCOME_RECORD_LEN);
                undo(self, false);
                return Err(st);
            }
        };
        let appended = self.append_with(log, |s, w, log| {
            let writes = [node];
            let src = TxnWrites {
                pending: &s.pending,
                writes: &writes,
            };
            let prepare = RecordRef::Prepare {
                tx: AUTOCOMMIT_UOW,
                writes: &src,
            };
            w.append(log, &prepare)
        });
        if let Err(st) = appended {
            log.unreserve(1, OUTCOME_RECORD_LEN);
            undo(self, true);
            return Err(st);
        }
        let commit = RecordRef::Commit { tx: AUTOCOMMIT_UOW };
        let lsn = match self.append_outcome(log, &commit, true) {
            Ok(lsn) => lsn,
            Err(st) => {
                undo(self, true);
                return Err(st);
            }
        };
        self.charge_direct(key.as_slice(), true);
        Ok((lsn, key))
    }

    /// After the force of a non-transacted write staged by [`State::write_now_logged`]:
    /// applies it when `forced` is `Ok`, else drops it (and the log is failed from then on).
    pub(crate) fn finish_write_now(
        &mut self,
        key: &KeyBuf,
        forced: Result<(), NtStatus>,
    ) -> Result<(), NtStatus> {
        self.forced(forced);
        self.charge_direct(key.as_slice(), false);
        let p = self.pending.remove(key.as_slice());
        let Some(p) = p.filter(|p| p.owner == Owner::DIRECT) else {
            return Err(NtStatus::UNSUCCESSFUL);
        };
        if let Err(st) = forced {
            if !p.delete {
                self.store.unreserve(1);
            }
            return Err(st);
        }
        let w = if p.delete {
            OpWrite::Delete(*key)
        } else {
            OpWrite::Put(p.entry)
        };
        self.apply_now(w, !p.delete)
    }

    /// Appends a Checkpoint record of the whole state. The caller forces it, then frees what is
    /// before it.
    pub(crate) fn append_checkpoint(&mut self, log: &dyn LogPort) -> Result<Lsn, NtStatus> {
        let lsn = self.append_with(log, |s, w, log| {
            w.append(log, &RecordRef::Checkpoint { snapshot: s })
        })?;
        self.durability.checkpoint_appended();
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
