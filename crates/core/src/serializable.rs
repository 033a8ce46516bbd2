//! Serializable transactions (README "Isolation levels"): reads never wait; a commit that
//! changes what a serializable transaction read dooms it, so it cannot commit.
//!
//! The order the committed transactions are equivalent to is the order of their validation
//! points: a transaction's PREPARE (its yes vote), a single-phase commit, or a non-transacted
//! write being accepted. At its validation point a writer dooms every serializable transaction
//! not yet validated that read a key it wrote (a value, an absence, or a LIST range the key
//! falls in). A serializable transaction that reads a key a validated writer still holds (its
//! commit not yet applied) sees the old value, which that writer's commit replaces: it is
//! doomed at the read. So a serializable transaction that reaches its own validation point
//! undoomed read exactly what the store held there, and its writes, locked since they were
//! made, land there too. A doomed transaction votes no at PREPARE (its CommitTransaction
//! reports STATUS_TRANSACTION_ABORTED), and its writes are refused at once with
//! STATUS_TRANSACTIONAL_CONFLICT; its reads still answer. Read committed transactions are
//! never doomed and cost one branch here.

use crate::port::EnlistmentKey;
use crate::state::State;
use crate::state::txns::{Owner, Phase, Txn, Txns};
use core::ops::Bound;
use ktmrm_proto::{Isolation, NtStatus};

impl<E> State<E> {
    /// Bytes the live transactions' read sets count against their quota
    /// ([`crate::MAX_READ_SET_BYTES`] each), for hosts, benchmarks and tests.
    #[must_use]
    pub fn read_set_bytes(&self) -> usize {
        self.txns.iter().fold(0usize, |n, (_, t)| {
            n.saturating_add(t.serial().map_or(0, |s| s.reads.bytes()))
        })
    }

    /// Whether `key` is serializable.
    pub(crate) fn is_serializable(&self, key: EnlistmentKey) -> bool {
        self.txn(key)
            .is_some_and(|t| t.isolation() == Isolation::Serializable)
    }

    /// A serializable transaction past its validation point reads no more (what it would read
    /// now is not what its place in the order saw): `STATUS_TRANSACTION_NOT_ACTIVE`.
    pub(crate) fn check_serializable_read(&self, key: EnlistmentKey) -> Result<(), NtStatus> {
        match self.txn(key) {
            Some(t)
                if t.isolation() == Isolation::Serializable
                    && !matches!(t.phase(), Phase::Active | Phase::PrePrepared) =>
            {
                Err(NtStatus::TRANSACTION_NOT_ACTIVE)
            }
            _ => Ok(()),
        }
    }

    /// Refuses a write in a doomed transaction: `STATUS_TRANSACTIONAL_CONFLICT` (counted as a
    /// conflict).
    pub(crate) fn check_not_doomed(&mut self, key: EnlistmentKey) -> Result<(), NtStatus> {
        if self.txn(key).is_some_and(Txn::doomed) {
            self.stats.conflicts = self.stats.conflicts.saturating_add(1);
            return Err(NtStatus::TRANSACTIONAL_CONFLICT);
        }
        Ok(())
    }

    /// Whether a pending write's owner has passed its validation point (its commit will replace
    /// the committed value a reader sees now).
    fn validated(&self, owner: Owner) -> bool {
        owner == Owner::DIRECT
            || self.txns.by_owner(owner).is_some_and(|t| {
                matches!(
                    t.phase(),
                    Phase::Prepared(_) | Phase::Committing { .. } | Phase::Unlogged { .. }
                )
            })
    }

    /// Records that `key`'s transaction read `k` (its value or its absence) when it is
    /// serializable and the read was not of its own write; dooms it if a validated writer
    /// holds `k`. `STATUS_QUOTA_EXCEEDED` past the read-set quota,
    /// `STATUS_INSUFFICIENT_RESOURCES` when memory runs out: the read is not answered then.
    pub(crate) fn note_read(&mut self, key: EnlistmentKey, k: &[u8]) -> Result<(), NtStatus> {
        if !self.is_serializable(key) {
            return Ok(());
        }
        let own = Txns::<E>::owner(key);
        let holder = self.pending.get(k).map(|p| p.owner);
        if holder == Some(own) {
            return Ok(());
        }
        let doomed = holder.is_some_and(|o| self.validated(o));
        let Some(t) = self.txn_mut(key).and_then(Txn::serial_mut) else {
            return Ok(());
        };
        if let Err(st) = t.reads.note_point(k) {
            if st == NtStatus::QUOTA_EXCEEDED {
                self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
            }
            return Err(st);
        }
        t.doomed |= doomed;
        Ok(())
    }

    /// Records a LIST page `key`'s transaction read: keys starting with `prefix` after
    /// `cursor` (as LIST takes it: ignored when empty or before `prefix`), through `through`
    /// (`None`: to the prefix's last key); dooms it if a validated writer holds a key there.
    pub(crate) fn note_list(
        &mut self,
        key: EnlistmentKey,
        prefix: &[u8],
        cursor: &[u8],
        through: Option<&[u8]>,
    ) -> Result<(), NtStatus> {
        if !self.is_serializable(key) {
            return Ok(());
        }
        let own = Txns::<E>::owner(key);
        let (start, after) = if !cursor.is_empty() && cursor >= prefix {
            (Bound::Excluded(cursor), cursor)
        } else {
            (Bound::Included(prefix), &[][..])
        };
        let doomed = self
            .pending
            .range_from(start)
            .map(|(_, p)| p)
            .take_while(|p| {
                let k = p.entry.key();
                k.starts_with(prefix) && through.is_none_or(|t| k <= t)
            })
            .any(|p| p.owner != own && self.validated(p.owner));
        let Some(t) = self.txn_mut(key).and_then(Txn::serial_mut) else {
            return Ok(());
        };
        if let Err(st) = t.reads.note_range(prefix, after, through) {
            if st == NtStatus::QUOTA_EXCEEDED {
                self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
            }
            return Err(st);
        }
        t.doomed |= doomed;
        Ok(())
    }

    /// `writer` reached its validation point: dooms every serializable transaction not yet
    /// validated that read a key it wrote.
    pub(crate) fn doom_readers_of(&mut self, writer: EnlistmentKey) {
        if self.txns.serializable() == 0 {
            return;
        }
        let mut from = 0;
        while let Some((next, reader)) = self.txns.first_from(from, |t| t.is_exposed_reader()) {
            from = next;
            if reader == writer {
                continue;
            }
            let hit = match (self.txns.get(writer), self.txns.get(reader)) {
                (Some(w), Some(r)) => r.serial().is_some_and(|r| {
                    w.writes().ids().iter().any(|id| {
                        self.pending
                            .slot(*id)
                            .is_some_and(|p| r.reads.touches(p.entry.key()))
                    })
                }),
                _ => false,
            };
            if hit && let Some(r) = self.txn_mut(reader).and_then(Txn::serial_mut) {
                r.doomed = true;
            }
        }
    }

    /// A non-transacted write of `k` was accepted: dooms every serializable transaction not
    /// yet validated that read `k`.
    pub(crate) fn doom_readers_of_key(&mut self, k: &[u8]) {
        if self.txns.serializable() == 0 {
            return;
        }
        let mut from = 0;
        while let Some((next, reader)) = self.txns.first_from(from, |t| t.is_exposed_reader()) {
            from = next;
            if let Some(r) = self.txn_mut(reader).and_then(Txn::serial_mut)
                && r.reads.touches(k)
            {
                r.doomed = true;
            }
        }
    }
}
