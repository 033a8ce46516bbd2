//! Reads and writes in a caller's view (README "Semantics"): a transaction sees its own pending
//! writes, everyone else sees committed data only; a key written by one live transaction is
//! locked against every other writer, which fails at once with `STATUS_TRANSACTIONAL_CONFLICT`.

use crate::entry::{Entry, KeyBuf};
use crate::port::EnlistmentKey;
use crate::state::store::Room;
use crate::state::txns::{Owner, Phase, Txns};
use crate::state::writes::Delta;
use crate::state::{Pending, State};
use crate::tree::{LeafHint, Slot, SlotId};
use core::ops::Bound;
use ktmrm_proto::{ListWriter, NtStatus};

/// A write request, with the value already copied into its final allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Write {
    Put(Entry),
    Delete(KeyBuf),
}

impl Write {
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Write::Put(e) => e.key(),
            Write::Delete(k) => k.as_slice(),
        }
    }
}

/// Change of the committed store when `new` (a charge, or `None` for a delete)
/// replaces `old`.
fn effect(old: Option<u64>, new: Option<u64>) -> Delta {
    let b = |v: Option<u64>| i64::try_from(v.unwrap_or(0)).unwrap_or(i64::MAX);
    Delta {
        keys: i64::from(new.is_some()).saturating_sub(i64::from(old.is_some())),
        bytes: b(new).saturating_sub(b(old)),
    }
}

impl<E> State<E> {
    /// Which transaction's view a request reads in: `None` = committed only.
    fn owner_of(key: Option<EnlistmentKey>) -> Option<Owner> {
        key.map(Txns::<E>::owner)
    }

    /// True when growing the committed store by `d` fits the quotas
    /// ([`crate::state::store::Store::fits`]).
    pub(crate) fn fits(&self, d: Delta) -> bool {
        self.store.fits(d.keys, d.bytes)
    }

    /// The value `key` has in the view of `txn` (`None` = committed view).
    /// `hint`: where the committed store's lookup may start.
    pub(crate) fn read(
        &self,
        txn: Option<EnlistmentKey>,
        key: &[u8],
        hint: LeafHint,
    ) -> Option<&[u8]> {
        if let Some(owner) = Self::owner_of(txn)
            && let Some(p) = self.pending.get(key)
            && p.owner == owner
        {
            return if p.delete {
                None
            } else {
                Some(p.entry.value())
            };
        }
        self.store.get_hinted(key, hint).0.map(Entry::value)
    }

    /// Checks a transaction may still be used for a request: writes need it Active; reads work
    /// until ktmrm has its outcome (a vetoed one is as good as rolled back).
    pub(crate) fn usable(&self, key: EnlistmentKey, write: bool) -> Result<(), NtStatus> {
        match self.phase(key) {
            Some(Phase::Active) => Ok(()),
            Some(
                Phase::PrePrepared
                | Phase::Prepared(_)
                | Phase::Committing { .. }
                | Phase::Unlogged { .. },
            ) if !write => Ok(()),
            _ => Err(NtStatus::TRANSACTION_NOT_ACTIVE),
        }
    }

    fn conflict(&mut self) -> NtStatus {
        self.stats.conflicts = self.stats.conflicts.saturating_add(1);
        NtStatus::TRANSACTIONAL_CONFLICT
    }

    fn quota(&mut self) -> NtStatus {
        self.stats.quota_rejections = self.stats.quota_rejections.saturating_add(1);
        NtStatus::QUOTA_EXCEEDED
    }

    /// A write outside any transaction: applied to the committed store at once.
    pub(crate) fn write_now(&mut self, w: Write) -> Result<(), NtStatus> {
        self.check_write_now(&w)?;
        // Accepted: its validation point (`serializable.rs`).
        self.doom_readers_of_key(w.key());
        self.apply_now(w, false)
    }

    /// Refuses a non-transacted write to a locked key, over the quotas, or deleting a key that
    /// is not there.
    pub(crate) fn check_write_now(&mut self, w: &Write) -> Result<(), NtStatus> {
        if self.pending.find(w.key()).is_some() {
            return Err(self.conflict());
        }
        let old = self.store.charge_of(w.key());
        match w {
            Write::Put(e) => {
                if !self.fits(effect(old, Some(e.charge()))) {
                    return Err(self.quota());
                }
            }
            Write::Delete(_) if old.is_none() => return Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            Write::Delete(_) => {}
        }
        Ok(())
    }

    /// Counts (`on`) or uncounts a durable non-transacted write being forced: its growth of the
    /// store against the quotas, like a prepared transaction's, and the write itself. Its
    /// pending write must be in place.
    pub(crate) fn charge_direct(&mut self, key: &[u8], on: bool) {
        let Some(p) = self.pending.get(key) else {
            return;
        };
        let new = (!p.delete).then(|| p.entry.charge());
        let d = effect(self.store.charge_of(key), new);
        self.store.charge_prepared(d.keys, d.bytes, on);
        self.direct_writes = if on {
            self.direct_writes.saturating_add(1)
        } else {
            self.direct_writes.saturating_sub(1)
        };
    }

    /// Applies a checked non-transacted write; `reserved`: a store slot was reserved for a put.
    pub(crate) fn apply_now(&mut self, w: Write, reserved: bool) -> Result<(), NtStatus> {
        match w {
            Write::Put(e) => {
                let room = if reserved {
                    Room::Reserved
                } else {
                    Room::Alloc
                };
                self.store
                    .put(e, room)
                    .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            }
            Write::Delete(k) => {
                if !self.store.remove(k.as_slice()) {
                    return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
                }
            }
        }
        self.stats.non_transacted_writes = self.stats.non_transacted_writes.saturating_add(1);
        Ok(())
    }

    /// A write in transaction `key` (which must be Active): staged in the pending tree, which
    /// also locks the key against every other writer.
    /// `hint`: where the committed store's lookup of the key may start.
    pub(crate) fn write_in(
        &mut self,
        key: EnlistmentKey,
        w: Write,
        hint: LeafHint,
    ) -> Result<(), NtStatus> {
        self.stage(key, w, false, hint)
    }

    /// [`State::write_in`]; `replaying`: a write from the log, staged as it was prepared. A
    /// delete of a key that is not there is then accepted: the transaction deleted its own put
    /// of a new key, which its Prepare record holds as a delete.
    pub(crate) fn stage(
        &mut self,
        key: EnlistmentKey,
        w: Write,
        replaying: bool,
        hint: LeafHint,
    ) -> Result<(), NtStatus> {
        self.usable(key, true)?;
        let owner = Txns::<E>::owner(key);
        let (old, leaf) = self.store.get_hinted(w.key(), hint);
        let old = old.map(Entry::charge);
        let Some(txn) = self.txn(key) else {
            return Err(NtStatus::TRANSACTION_NOT_ACTIVE);
        };
        let cur = txn.writes().delta();
        let nwrites = txn.writes().len();
        let new_charge = match &w {
            Write::Put(e) => Some(e.charge()),
            Write::Delete(_) => None,
        };
        // What a new pending write needs is decided before the lookup (none of it depends on the
        // pending tree), so looking the key up and inserting it is one search.
        let change = effect(old, new_charge);
        let refusal =
            if nwrites >= usize::try_from(self.limits().max_write_set).unwrap_or(usize::MAX) {
                Some(NtStatus::QUOTA_EXCEEDED)
            } else if new_charge.is_none() && old.is_none() && !replaying {
                Some(NtStatus::OBJECT_NAME_NOT_FOUND)
            } else if change.grows() && !self.fits(cur.plus(change)) {
                Some(NtStatus::QUOTA_EXCEEDED)
            } else {
                None
            };
        let oom = NtStatus::INSUFFICIENT_RESOURCES;
        // Room for the new write's id; harmless when the key turns out to be written already.
        self.txn_mut(key)
            .ok_or(oom)?
            .writes_mut()
            .reserve_one()
            .map_err(|()| oom)?;
        let node = match self.pending.entry(w.key()) {
            None => return Err(NtStatus::UNSUCCESSFUL),
            Some(Slot::Occupied(node)) => {
                return self.rewrite(key, owner, node, w, (old, leaf), cur);
            }
            Some(Slot::Vacant(v)) => {
                if let Some(st) = refusal {
                    return Err(if st == NtStatus::QUOTA_EXCEEDED {
                        self.quota()
                    } else {
                        st
                    });
                }
                let (entry, delete) = match w {
                    Write::Put(e) => (e, false),
                    Write::Delete(k) => (Entry::try_new(k.as_slice(), &[])?, true),
                };
                v.insert(Pending {
                    entry,
                    delete,
                    owner,
                    leaf,
                })
                .map_err(|_| oom)?
            }
        };
        let put = new_charge.is_some();
        let pushed = self
            .txn_mut(key)
            .map(|t| t.writes_mut().add(node, put, change).is_ok());
        if pushed != Some(true) {
            // Unreachable (room was reserved above), but never leave a pending write that no
            // transaction tracks: it would lock its key forever.
            let k = self
                .pending
                .slot(node)
                .and_then(|p| KeyBuf::new(p.entry.key()));
            if let Some(k) = k {
                self.pending.remove(k.as_slice());
            }
            return Err(oom);
        }
        Ok(())
    }

    /// A write in transaction `key` to a key that already has a pending write (`node`): allowed
    /// only to the owner, replacing the pending put or delete in place. `(old, leaf)`: the key's
    /// committed charge and the leaf its lookup went to.
    fn rewrite(
        &mut self,
        key: EnlistmentKey,
        owner: Owner,
        node: SlotId,
        w: Write,
        (old, leaf): (Option<u64>, LeafHint),
        cur: Delta,
    ) -> Result<(), NtStatus> {
        let new_charge = match &w {
            Write::Put(e) => Some(e.charge()),
            Write::Delete(_) => None,
        };
        let Some(p) = self.pending.slot(node) else {
            return Err(NtStatus::UNSUCCESSFUL);
        };
        if p.owner != owner {
            return Err(self.conflict());
        }
        let was_delete = p.delete;
        if was_delete && new_charge.is_none() {
            return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
        }
        let prev = if was_delete {
            None
        } else {
            Some(p.entry.charge())
        };
        let change = effect(old, new_charge).minus(effect(old, prev));
        if change.grows() && !self.fits(cur.plus(change)) {
            return Err(self.quota());
        }
        let Some(p) = self.pending.slot_mut(node) else {
            return Err(NtStatus::UNSUCCESSFUL);
        };
        p.leaf = leaf;
        let put_change: isize = match w {
            Write::Put(e) => {
                p.entry = e;
                p.delete = false;
                isize::from(was_delete)
            }
            Write::Delete(_) => {
                p.delete = true;
                -1
            }
        };
        if let Some(t) = self.txn_mut(key) {
            t.writes_mut().rewrote(put_change, change);
        }
        Ok(())
    }

    /// Writes one LIST page of the keys visible in `txn`'s view that start with `prefix` and sort
    /// after `cursor`, merging committed keys with the transaction's own pending writes.
    /// Returns the answer's length.
    /// `last`, when given, receives the page's last key if more keys follow (a serializable
    /// reader's range ends there).
    pub(crate) fn list(
        &self,
        txn: Option<EnlistmentKey>,
        prefix: &[u8],
        cursor: &[u8],
        max_keys: u32,
        out: &mut [u8],
        mut last: Option<&mut Option<KeyBuf>>,
    ) -> Result<usize, NtStatus> {
        let mut w = ListWriter::new(out).map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
        let start = if !cursor.is_empty() && cursor >= prefix {
            Bound::Excluded(cursor)
        } else {
            Bound::Included(prefix)
        };
        let own = Self::owner_of(txn);
        let mut committed = self
            .store
            .range_from(start)
            .map(|(_, e)| e.key())
            .peekable();
        // Only this transaction's pending writes change its view; others' are invisible.
        let mut pending = self
            .pending
            .range_from(start)
            .filter(|(_, p)| Some(p.owner) == own)
            .map(|(_, p)| (p.entry.key(), p.delete))
            .peekable();
        let limit = if max_keys == 0 { u32::MAX } else { max_keys };
        loop {
            let next = match (committed.peek().copied(), pending.peek().copied()) {
                (None, None) => None,
                (Some(c), None) => {
                    committed.next();
                    Some(c)
                }
                (c, Some((p, del))) => {
                    if let Some(c) = c.filter(|c| *c < p) {
                        committed.next();
                        Some(c)
                    } else {
                        if c == Some(p) {
                            committed.next();
                        }
                        pending.next();
                        if del {
                            continue;
                        }
                        Some(p)
                    }
                }
            };
            let Some(key) = next.filter(|k| k.starts_with(prefix)) else {
                // The page reaches the prefix's end: the range has no last key.
                if let Some(l) = last {
                    *l = None;
                }
                return Ok(w.finish(false));
            };
            if w.count() >= limit || w.push(key).is_err() {
                return Ok(w.finish(true));
            }
            if let Some(l) = last.as_deref_mut() {
                *l = KeyBuf::new(key);
            }
        }
    }
}
