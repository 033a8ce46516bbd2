//! Replay: rebuilds the durable state from the log after a restart.
//!
//! One pass, record by record, so memory is what the result holds plus a bounded backlog of
//! committed writes not yet merged into the sorted store (at most as many as the store has
//! entries, or 256). A Checkpoint replaces everything before it, so replay effectively starts at
//! the last valid checkpoint. Damage at the tail is dropped and reported; everything else that
//! does not fit (damage followed by a valid record, LSNs not consecutive, an outcome without its
//! Prepare, a second Prepare, an unknown version) is an error, never silently applied.

use super::reader::{push, reserve};
use super::record::{Damage, DecodeError, Prepared, RECORD_VERSION, Record, Write};
use super::record::{check_frame, decode_frame};
use super::sort::heapsort;
use super::{LogPort, Lsn, STATUS_LOG_CORRUPTION_DETECTED};
use crate::entry::Entry;
use crate::fallible;
use crate::port::TxId;
use alloc::vec::Vec;
use core::ops::ControlFlow;
use ktmrm_proto::NtStatus;

/// Committed writes kept unmerged before they are folded into the sorted store, at least.
const MIN_BACKLOG: usize = 256;

/// The torn or corrupt tail replay dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedTail {
    /// LSN (the port's) of the first dropped record; pass it to [`LogPort::discard_from`].
    pub from: Lsn,
    /// How many records were dropped.
    pub records: u64,
    /// How many bytes were dropped.
    pub bytes: u64,
    /// What was wrong with the first of them.
    pub damage: Damage,
}

/// What replay rebuilt.
pub struct Recovered {
    /// The committed store: keys strictly increasing.
    pub store: Vec<Entry>,
    /// Prepared transactions with no outcome in the log, sorted by id, with their writes: hold
    /// their keys locked until KTM's recovery delivers COMMIT or ROLLBACK.
    pub in_doubt: Vec<Prepared>,
    /// The LSN the next append gets (after [`LogPort::discard_from`] of any dropped tail).
    pub next_lsn: Lsn,
    /// The checkpoint replay started from, if any.
    pub checkpoint: Option<Lsn>,
    /// Valid records replayed.
    pub records: u64,
    /// The damaged tail that was dropped, if any.
    pub dropped_tail: Option<DroppedTail>,
}

/// Which outcome record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A Commit record.
    Commit,
    /// An Abort record.
    Abort,
}

/// Why the log cannot be replayed. [`ReplayError::status`] gives the NTSTATUS; `Display` a
/// sentence for the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The port failed to read.
    Port(NtStatus),
    /// Allocation failed.
    NoMemory,
    /// A damaged record is followed by a valid one: not a torn tail.
    CorruptBeforeTail {
        /// The damaged record.
        lsn: Lsn,
        /// What was wrong with it.
        damage: Damage,
        /// The valid record after it.
        valid_after: Lsn,
    },
    /// A CRC-valid record of a version this code does not read.
    UnsupportedVersion {
        /// The record.
        lsn: Lsn,
        /// Its version.
        version: u16,
    },
    /// A CRC-valid record that breaks the format's rules.
    Malformed {
        /// The record.
        lsn: Lsn,
        /// Which rule.
        what: &'static str,
    },
    /// The LSN inside a record is not where the port found it.
    LsnMismatch {
        /// Where the port found it.
        port: Lsn,
        /// The LSN it carries.
        record: Lsn,
    },
    /// LSNs not consecutive: reordered, duplicated or missing records.
    OutOfOrder {
        /// The record before.
        prev: Lsn,
        /// The record found after it.
        found: Lsn,
    },
    /// The log does not begin at LSN 1 or with a valid checkpoint (at the LSN asked for), so
    /// the state before its first record is unknown.
    MissingStart {
        /// The first record read (or the checkpoint asked for, if nothing was read).
        first: Lsn,
    },
    /// A Commit or Abort for a transaction with no pending Prepare.
    UnknownTransaction {
        /// The outcome record.
        lsn: Lsn,
        /// The transaction.
        tx: TxId,
        /// Which outcome.
        outcome: Outcome,
    },
    /// A Prepare for a transaction already prepared and undecided.
    DuplicatePrepare {
        /// The second Prepare.
        lsn: Lsn,
        /// The transaction.
        tx: TxId,
    },
}

impl ReplayError {
    /// The NTSTATUS to report: the port's own, `STATUS_INSUFFICIENT_RESOURCES`,
    /// `STATUS_REVISION_MISMATCH` for a version, else `STATUS_LOG_CORRUPTION_DETECTED`.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        match self {
            ReplayError::Port(s) => *s,
            ReplayError::NoMemory => NtStatus::INSUFFICIENT_RESOURCES,
            ReplayError::UnsupportedVersion { .. } => NtStatus::REVISION_MISMATCH,
            _ => STATUS_LOG_CORRUPTION_DETECTED,
        }
    }
}

impl From<NtStatus> for ReplayError {
    fn from(_: NtStatus) -> Self {
        ReplayError::NoMemory
    }
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ReplayError::Port(s) => write!(f, "reading the log failed: {s}"),
            ReplayError::NoMemory => write!(f, "out of memory replaying the log"),
            ReplayError::CorruptBeforeTail {
                lsn,
                damage,
                valid_after,
            } => write!(
                f,
                "log corrupt before its tail: record {lsn}: {damage}, but record {valid_after} after it is valid"
            ),
            ReplayError::UnsupportedVersion { lsn, version } => write!(
                f,
                "record {lsn} has version {version}; this driver reads version {RECORD_VERSION}"
            ),
            ReplayError::Malformed { lsn, what } => write!(f, "record {lsn} is malformed: {what}"),
            ReplayError::LsnMismatch { port, record } => {
                write!(f, "record at LSN {port} carries LSN {record}")
            }
            ReplayError::OutOfOrder { prev, found } => {
                let what = if found == prev {
                    "duplicated"
                } else if found < prev {
                    "reordered"
                } else {
                    "missing records"
                };
                write!(f, "log {what}: record {found} follows record {prev}")
            }
            ReplayError::MissingStart { first } => write!(
                f,
                "log does not begin at LSN 1 or with a valid checkpoint (first: LSN {first})"
            ),
            ReplayError::UnknownTransaction { lsn, tx, outcome } => write!(
                f,
                "record {lsn}: {outcome:?} for transaction {:02x?} with no pending Prepare",
                tx.0
            ),
            ReplayError::DuplicatePrepare { lsn, tx } => write!(
                f,
                "record {lsn}: second Prepare for transaction {:02x?}",
                tx.0
            ),
        }
    }
}

/// The replay state machine, fed one record at a time: [`replay`] drives it from a
/// [`LogPort`]; a host with its own reader can feed it directly.
pub struct Replayer {
    from: Option<Lsn>,
    base: Vec<Entry>,
    /// Committed writes not yet merged, with a sequence number so the last write wins.
    backlog: Vec<(u64, Write)>,
    seq: u64,
    /// Prepared and undecided, sorted by transaction id.
    pending: Vec<Prepared>,
    prev: Option<Lsn>,
    seen: u64,
    records: u64,
    checkpoint: Option<Lsn>,
    tail: Option<DroppedTail>,
}

impl Replayer {
    /// A replay of a log read from its start (`from: None`) or from the checkpoint at `from`.
    #[must_use]
    pub const fn new(from: Option<Lsn>) -> Self {
        Replayer {
            from,
            base: Vec::new(),
            backlog: Vec::new(),
            seq: 0,
            pending: Vec::new(),
            prev: None,
            seen: 0,
            records: 0,
            checkpoint: None,
            tail: None,
        }
    }

    /// Takes the next record, as the port read it at `lsn`.
    pub fn feed(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<(), ReplayError> {
        let first = self.seen == 0;
        self.seen = self.seen.saturating_add(1);
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let frame = check_frame(bytes);
        if let Some(t) = &mut self.tail {
            return match frame {
                Ok(_) => Err(ReplayError::CorruptBeforeTail {
                    lsn: t.from,
                    damage: t.damage,
                    valid_after: lsn,
                }),
                Err(_) => {
                    t.records = t.records.saturating_add(1);
                    t.bytes = t.bytes.saturating_add(len);
                    Ok(())
                }
            };
        }
        let f = match frame {
            Ok(f) => f,
            Err(damage) => {
                // A damaged first record can be dropped only if nothing came before it.
                if first && (self.from.is_some() || lsn != Lsn::FIRST) {
                    return Err(ReplayError::MissingStart { first: lsn });
                }
                self.tail = Some(DroppedTail {
                    from: lsn,
                    records: 1,
                    bytes: len,
                    damage,
                });
                return Ok(());
            }
        };
        if f.version != RECORD_VERSION {
            return Err(ReplayError::UnsupportedVersion {
                lsn,
                version: f.version,
            });
        }
        if f.lsn != lsn {
            return Err(ReplayError::LsnMismatch {
                port: lsn,
                record: f.lsn,
            });
        }
        match self.prev {
            Some(prev) if lsn != prev.next() => {
                return Err(ReplayError::OutOfOrder { prev, found: lsn });
            }
            Some(_) => {}
            None => {
                let ok = match self.from {
                    Some(at) => f.is_checkpoint() && lsn == at,
                    None => f.is_checkpoint() || lsn == Lsn::FIRST,
                };
                if !ok {
                    return Err(ReplayError::MissingStart { first: lsn });
                }
            }
        }
        let rec = decode_frame(&f).map_err(|e| match e {
            DecodeError::Damaged(_) => ReplayError::Malformed {
                lsn,
                what: "damaged contents",
            },
            DecodeError::UnsupportedVersion(version) => {
                ReplayError::UnsupportedVersion { lsn, version }
            }
            DecodeError::Malformed(what) => ReplayError::Malformed { lsn, what },
            DecodeError::NoMemory => ReplayError::NoMemory,
        })?;
        self.apply(lsn, rec)?;
        self.prev = Some(lsn);
        self.records = self.records.saturating_add(1);
        Ok(())
    }

    fn apply(&mut self, lsn: Lsn, rec: Record) -> Result<(), ReplayError> {
        match rec {
            Record::Prepare(p) => match self.pending.binary_search_by_key(&p.tx, |q| q.tx) {
                // Non-transacted writes are logged one at a time under the null UOW: an undecided
                // one followed by the next failed before its Commit record (its write returned an
                // error and was never applied), so the newer one replaces it.
                Ok(i) if p.tx == super::AUTOCOMMIT_UOW => {
                    if let Some(slot) = self.pending.get_mut(i) {
                        *slot = p;
                    }
                }
                Ok(_) => return Err(ReplayError::DuplicatePrepare { lsn, tx: p.tx }),
                Err(i) => {
                    push(&mut self.pending, p)?;
                    if let Some(s) = self.pending.get_mut(i..)
                        && !s.is_empty()
                    {
                        s.rotate_right(1);
                    }
                }
            },
            Record::Commit(tx) => {
                let p = self.take_pending(lsn, tx, Outcome::Commit)?;
                reserve(&mut self.backlog, p.writes.len())?;
                for w in p.writes {
                    self.seq = self.seq.saturating_add(1);
                    fallible::push(&mut self.backlog, (self.seq, w))
                        .map_err(|_| ReplayError::NoMemory)?;
                }
                if self.backlog.len() > self.base.len().max(MIN_BACKLOG) {
                    self.merge()?;
                }
            }
            Record::Abort(tx) => {
                self.take_pending(lsn, tx, Outcome::Abort)?;
            }
            Record::Checkpoint(s) => {
                self.base = s.store;
                self.backlog = Vec::new();
                self.pending = s.in_doubt;
                self.checkpoint = Some(lsn);
            }
        }
        Ok(())
    }

    fn take_pending(
        &mut self,
        lsn: Lsn,
        tx: TxId,
        outcome: Outcome,
    ) -> Result<Prepared, ReplayError> {
        let i = self
            .pending
            .binary_search_by_key(&tx, |q| q.tx)
            .map_err(|_| ReplayError::UnknownTransaction { lsn, tx, outcome })?;
        if let Some(s) = self.pending.get_mut(i..)
            && !s.is_empty()
        {
            s.rotate_left(1);
        }
        self.pending
            .pop()
            .ok_or(ReplayError::UnknownTransaction { lsn, tx, outcome })
    }

    /// Folds the backlog into the sorted store: the last write to each key wins; deletes
    /// remove. Heapsort in place (by key, then sequence) allocates nothing; the merged
    /// store is one fallible allocation.
    fn merge(&mut self) -> Result<(), ReplayError> {
        let mut backlog = core::mem::take(&mut self.backlog);
        heapsort(&mut backlog, |a, b| (a.1.key(), a.0) < (b.1.key(), b.0));
        let mut out: Vec<Entry> = Vec::new();
        reserve(&mut out, self.base.len().saturating_add(backlog.len()))?;
        let mut base = core::mem::take(&mut self.base).into_iter().peekable();
        let mut new = backlog.into_iter().peekable();
        loop {
            let take_base = match (base.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(b), Some((_, w))) => b.key() < w.key(),
            };
            if take_base {
                if let Some(e) = base.next() {
                    fallible::push(&mut out, e).map_err(|_| ReplayError::NoMemory)?;
                }
                continue;
            }
            let Some((_, mut last)) = new.next() else {
                break;
            };
            while let Some((_, w)) = new.next_if(|(_, w)| w.key() == last.key()) {
                last = w;
            }
            if base.peek().is_some_and(|b| b.key() == last.key()) {
                base.next();
            }
            if let Some(e) = last.into_put() {
                fallible::push(&mut out, e).map_err(|_| ReplayError::NoMemory)?;
            }
        }
        self.base = out;
        Ok(())
    }

    /// Ends the replay: the state, where to append next, and what tail was dropped.
    pub fn finish(mut self) -> Result<Recovered, ReplayError> {
        if self.seen == 0
            && let Some(at) = self.from
        {
            return Err(ReplayError::MissingStart { first: at });
        }
        if !self.backlog.is_empty() {
            self.merge()?;
        }
        // A non-transacted write without its Commit record never completed: not in doubt.
        self.pending.retain(|p| p.tx != super::AUTOCOMMIT_UOW);
        let next_lsn = match (&self.tail, self.prev) {
            (Some(t), _) => t.from,
            (None, Some(p)) => p.next(),
            (None, None) => Lsn::FIRST,
        };
        Ok(Recovered {
            store: self.base,
            in_doubt: self.pending,
            next_lsn,
            checkpoint: self.checkpoint,
            records: self.records,
            dropped_tail: self.tail,
        })
    }
}

/// Replays the log from its start (`from: None`) or from the checkpoint at `from`. Reads only;
/// see [`recover`] to also discard a dropped tail.
pub fn replay<P: LogPort + ?Sized>(port: &P, from: Option<Lsn>) -> Result<Recovered, ReplayError> {
    let mut r = Replayer::new(from);
    let mut err = None;
    port.read(from, &mut |lsn, bytes| match r.feed(lsn, bytes) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            err = Some(e);
            ControlFlow::Break(())
        }
    })
    .map_err(ReplayError::Port)?;
    if let Some(e) = err {
        return Err(e);
    }
    r.finish()
}

/// [`replay`], then [`LogPort::discard_from`] the dropped tail, so a [`super::LogWriter`] at
/// [`Recovered::next_lsn`] can append.
pub fn recover<P: LogPort + ?Sized>(port: &P, from: Option<Lsn>) -> Result<Recovered, ReplayError> {
    let r = replay(port, from)?;
    if let Some(t) = &r.dropped_tail {
        port.discard_from(t.from).map_err(ReplayError::Port)?;
    }
    Ok(r)
}
