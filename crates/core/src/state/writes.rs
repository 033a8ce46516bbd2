//! What one transaction has written: the ids of its pending writes (its key locks) and their
//! net effect on the committed store, kept together so that the count of puts and the key and
//! byte deltas always describe the ids listed.

use crate::fallible;
use crate::tree::SlotId;
use alloc::vec::Vec;

/// The net change a set of writes makes to the committed store's key count and byte count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub(crate) keys: i64,
    pub(crate) bytes: i64,
}

impl Delta {
    /// `self` then `more`, saturating (a transaction's quota check refuses long before).
    pub(crate) const fn plus(self, more: Delta) -> Delta {
        Delta {
            keys: self.keys.saturating_add(more.keys),
            bytes: self.bytes.saturating_add(more.bytes),
        }
    }

    /// `self` without `less`.
    pub(crate) const fn minus(self, less: Delta) -> Delta {
        Delta {
            keys: self.keys.saturating_sub(less.keys),
            bytes: self.bytes.saturating_sub(less.bytes),
        }
    }

    /// It makes the store bigger in keys or in bytes (a quota must be checked).
    pub(crate) const fn grows(self) -> bool {
        self.keys > 0 || self.bytes > 0
    }
}

/// A transaction's writes.
#[derive(Default)]
pub(crate) struct WriteSet {
    /// Pending-tree nodes this transaction owns (stable ids).
    ids: Vec<SlotId>,
    /// How many of `ids` are puts: the committed-tree slots commit may need.
    puts: usize,
    /// Net change to the committed store if it commits.
    delta: Delta,
}

impl WriteSet {
    pub(crate) fn ids(&self) -> &[SlotId] {
        &self.ids
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Read-only so far.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// How many committed-tree slots its commit may need.
    pub(crate) const fn puts(&self) -> usize {
        self.puts
    }

    pub(crate) const fn delta(&self) -> Delta {
        self.delta
    }

    /// Room for one more write, so that [`WriteSet::add`] cannot fail for want of memory.
    pub(crate) fn reserve_one(&mut self) -> Result<(), ()> {
        self.ids.try_reserve(1).map_err(|_| ())
    }

    /// Lists a new pending write `id` whose commit changes the store by `change`: a put or a
    /// delete. Gives `id` back (nothing changed) if [`WriteSet::reserve_one`] was not called.
    pub(crate) fn add(&mut self, id: SlotId, put: bool, change: Delta) -> Result<(), SlotId> {
        fallible::push(&mut self.ids, id)?;
        self.delta = self.delta.plus(change);
        if put {
            self.puts = self.puts.saturating_add(1);
        }
        Ok(())
    }

    /// An listed write was replaced in place: `puts` changes by `put_change` (a delete became a
    /// put: +1; a put became a delete: -1), the store's change by `change`.
    pub(crate) fn rewrote(&mut self, put_change: isize, change: Delta) {
        self.delta = self.delta.plus(change);
        self.puts = self.puts.saturating_add_signed(put_change);
    }

    /// Takes the ids out (commit or rollback is consuming them); the counts stay, since a
    /// commit's hold still names its delta.
    pub(crate) fn take_ids(&mut self) -> Vec<SlotId> {
        core::mem::take(&mut self.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(keys: i64, bytes: i64) -> Delta {
        Delta { keys, bytes }
    }

    #[test]
    fn counts_follow_the_writes() {
        let mut w = WriteSet::default();
        assert!(w.is_empty());
        assert_eq!(
            w.add(SlotId::from_raw(7), true, d(1, 10)),
            Err(SlotId::from_raw(7)),
            "nothing reserved"
        );
        assert_eq!((w.len(), w.puts(), w.delta()), (0, 0, Delta::default()));
        w.reserve_one().unwrap();
        w.add(SlotId::from_raw(7), true, d(1, 10)).unwrap();
        w.reserve_one().unwrap();
        w.add(SlotId::from_raw(9), false, d(-1, -4)).unwrap();
        assert_eq!(
            (w.ids(), w.puts(), w.delta()),
            (&[SlotId::from_raw(7), SlotId::from_raw(9)][..], 1, d(0, 6))
        );
        w.rewrote(1, d(1, 5));
        assert_eq!((w.puts(), w.delta()), (2, d(1, 11)));
        w.rewrote(-1, d(-1, -5));
        assert_eq!((w.puts(), w.delta()), (1, d(0, 6)));
        assert_eq!(w.take_ids(), [SlotId::from_raw(7), SlotId::from_raw(9)]);
        assert!(w.is_empty());
        assert_eq!(w.delta(), d(0, 6), "a commit's hold still names its delta");
    }

    #[test]
    fn delta_arithmetic_saturates() {
        assert_eq!(d(i64::MAX, 1).plus(d(1, 1)), d(i64::MAX, 2));
        assert_eq!(d(3, 5).minus(d(1, 6)), d(2, -1));
        assert!(d(0, 1).grows() && d(1, -9).grows() && !d(0, 0).grows() && !d(-1, 0).grows());
    }
}
