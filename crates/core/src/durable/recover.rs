//! Restart: rebuilding a durable state from its log, and KTM's recovery notifications
//! (docs/ktm.md §1 "In-doubt / recovery", §7 step 4): RECOVER for each enlistment KTM logged,
//! LAST_RECOVER (presumed abort for the rest), then the outcomes, through the usual paths.

use super::OUTCOME_RECORD_LEN;
use crate::entry::KeyBuf;
use crate::ops::Write as OpWrite;
use crate::port::{EnlistmentKey, TxId};
use crate::state::State;
use crate::state::store::Room;
use crate::state::txns::{Phase, Prepared, Txn};
use crate::wal::{DroppedTail, LogPort, LogWriter, Lsn, ReplayError};
use ktmrm_proto::{Isolation, Limits, NtStatus};

/// What a restart found in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Committed entries loaded.
    pub entries: u64,
    /// Prepared transactions without an outcome, held locked until KTM's recovery says.
    pub in_doubt: u64,
    /// Valid records replayed.
    pub records: u64,
    /// The checkpoint replay started from.
    pub checkpoint: Option<Lsn>,
    /// A torn tail that was dropped (a crash during an append; never a record that was forced).
    pub dropped_tail: Option<DroppedTail>,
    /// The LSN the next record gets.
    pub next_lsn: Lsn,
}

/// Why a restart failed. The driver does not start then: the log needs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverError {
    /// The log could not be read or is corrupt (see [`ReplayError`]).
    Replay(ReplayError),
    /// An in-doubt transaction could not be held again: out of memory, or over quotas smaller
    /// than the ones it was prepared under.
    Rebuild {
        /// The transaction.
        tx: TxId,
        /// Why.
        status: NtStatus,
    },
    /// Out of memory loading the committed store.
    NoMemory,
}

impl RecoverError {
    /// The NTSTATUS a host reports.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        match self {
            RecoverError::Replay(e) => e.status(),
            RecoverError::Rebuild { status, .. } => *status,
            RecoverError::NoMemory => NtStatus::INSUFFICIENT_RESOURCES,
        }
    }
}

impl core::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecoverError::Replay(e) => write!(f, "log replay failed: {e}"),
            RecoverError::Rebuild { tx, status } => write!(
                f,
                "in-doubt transaction {:02x?} could not be held again: {status}",
                tx.0
            ),
            RecoverError::NoMemory => write!(f, "out of memory loading the store"),
        }
    }
}

impl<E> State<E> {
    /// LAST_RECOVER: every transaction rebuilt as in doubt that KTM sent no RECOVER for was
    /// never recorded as prepared by KTM, so it is rolled back (presumed abort, docs/ktm.md §1).
    pub(crate) fn last_recover(&mut self, log: &dyn LogPort) {
        self.durability.recovered();
        let mut from = 0usize;
        while let Some((next, key)) = self.txns.first_from(from, Txn::awaiting_recover) {
            self.discard(key);
            self.log_abort(key, log);
            self.stats.rollbacks = self.stats.rollbacks.saturating_add(1);
            self.durability.count_presumed_abort();
            let _ = self.end(key);
            from = next;
        }
    }

    /// RECOVER for `uow`: the key KTM is to use from now on. An in-doubt transaction from the
    /// log keeps its own; an unknown one (its Commit or Abort record is already in the log; KTM
    /// just had not recorded the answer) gets a new, empty prepared slot, so the outcome KTM
    /// redelivers is answered and its enlistment closed like any other.
    /// A RECOVER after LAST_RECOVER came too late: the presumed abort already ran, and may have
    /// rolled back a transaction KTM committed (KTM may send LAST_RECOVER as soon as every
    /// RECOVER callback returned, docs/ktm.md §9); it is answered, and counted as a protocol
    /// error so that STATS shows it.
    pub(crate) fn recover_key(&mut self, uow: TxId) -> Result<EnlistmentKey, NtStatus> {
        if !self.durability.recovering() {
            self.protocol_error();
        }
        if let Some(key) = self.find_txn(&uow) {
            if let Some(p) = self.txn_mut(key).and_then(Txn::prepared_mut)
                && p.awaiting_recover
            {
                p.awaiting_recover = false;
                self.durability.count_recovered();
                return Ok(key);
            }
            return Err(NtStatus::TRANSACTION_REQUEST_NOT_VALID);
        }
        let key = self.create_txn(uow, Isolation::ReadCommitted)?;
        if let Some(t) = self.txn_mut(key) {
            t.set_enlisted(None);
        }
        self.set_phase(key, Phase::Prepared(Prepared::default()));
        self.durability.count_recovered();
        Ok(key)
    }

    /// Records the enlistment kept for `key`, recovered; returns what the caller must close
    /// outside the lock: the one it replaced, or `en` itself if the transaction is gone.
    pub(crate) fn attach(&mut self, key: EnlistmentKey, en: E) -> Option<E> {
        match self.txn_mut(key) {
            Some(t) => {
                let old = t.take_enlistment();
                t.set_enlisted(Some(en));
                old
            }
            None => Some(en),
        }
    }

    /// Rebuilds a durable state from `log`: replays it (dropping a torn tail), loads the
    /// committed store, and holds every in-doubt transaction's keys locked as a prepared
    /// transaction awaiting KTM's RECOVER. Requests are refused until LAST_RECOVER.
    pub fn recover(
        limits: Limits,
        log: &dyn LogPort,
    ) -> Result<(Self, RecoveryReport), RecoverError> {
        let mut s = State::new(limits);
        let report = s.recover_into(log)?;
        Ok((s, report))
    }

    /// [`State::recover`] into `self`, which must be fresh from [`State::new`]: for a host that
    /// keeps the state where it will live (the driver keeps it in pool, never on its 24 KiB
    /// kernel stack).
    pub fn recover_into(&mut self, log: &dyn LogPort) -> Result<RecoveryReport, RecoverError> {
        let rec = crate::wal::recover(log, None).map_err(RecoverError::Replay)?;
        let report = RecoveryReport {
            entries: rec.store.len() as u64,
            in_doubt: rec.in_doubt.len() as u64,
            records: rec.records,
            checkpoint: rec.checkpoint,
            dropped_tail: rec.dropped_tail,
            next_lsn: rec.next_lsn,
        };
        for e in rec.store {
            self.store
                .put(e, Room::Alloc)
                .map_err(|_| RecoverError::NoMemory)?;
        }
        for p in rec.in_doubt {
            let tx = p.tx;
            self.hold_in_doubt(p, log)
                .map_err(|status| RecoverError::Rebuild { tx, status })?;
        }
        self.durability.start(LogWriter::new(rec.next_lsn));
        Ok(report)
    }

    /// Stages an in-doubt transaction's writes as a prepared transaction's (locks, reservations,
    /// quota charge), exactly as PREPARE left them before the restart.
    fn hold_in_doubt(
        &mut self,
        p: crate::wal::Prepared,
        log: &dyn LogPort,
    ) -> Result<(), NtStatus> {
        let key = self.create_txn(p.tx, Isolation::ReadCommitted)?;
        if let Some(t) = self.txn_mut(key) {
            t.set_enlisted(None);
        }
        for w in p.writes {
            let op = match KeyBuf::new(w.key()) {
                None => return Err(NtStatus::INVALID_PARAMETER),
                Some(k) => match w.into_put() {
                    Some(e) => OpWrite::Put(e),
                    None => OpWrite::Delete(k),
                },
            };
            self.stage(key, op, true, crate::tree::LeafHint::NONE)?;
        }
        let hold = self
            .reserve_for_commit(key)
            .ok_or(NtStatus::QUOTA_EXCEEDED)?;
        log.reserve(1, OUTCOME_RECORD_LEN)?;
        let prepared = Prepared {
            hold,
            logged: true,
            outcome_reserved: true,
            awaiting_recover: true,
        };
        self.set_phase(key, Phase::Prepared(prepared));
        Ok(())
    }
}
