//! The committed store: the entries every reader sees, their byte count, and the quotas, which
//! also count the growth that prepared transactions (and non-transacted writes being forced)
//! will apply, so that their commit cannot exceed them.

use crate::entry::Entry;
use crate::tree::{AllocError, Iter, LeafHint, Tree, Warm};
use core::ops::Bound;
use ktmrm_proto::Limits;

/// The committed entries with what they are charged against the quotas. The byte count always
/// equals the sum of the entries' charges: every change goes through this type.
pub(crate) struct Store {
    tree: Tree<Entry>,
    /// Sum of [`Entry::charge`] over `tree`.
    bytes: u64,
    /// Growth (keys, bytes) that prepared transactions and non-transacted writes being forced
    /// will apply: counted against the quotas before it is applied.
    prepared_keys: u64,
    prepared_bytes: u64,
    max_keys: u64,
    max_bytes: u64,
}

/// How a put reaches its slot in the tree.
#[derive(Clone, Copy)]
pub(crate) enum Room {
    /// May allocate (and fail).
    Alloc,
    /// Takes a slot [`Store::reserve`] reserved.
    Reserved,
    /// Takes a reserved slot, starting the search at the leaf a lookup of the key went to.
    ReservedAt(LeafHint),
}

impl Store {
    /// Empty, with `limits`' key and byte quotas. Allocates nothing.
    pub(crate) const fn new(limits: &Limits) -> Self {
        Store {
            tree: Tree::new(),
            bytes: 0,
            prepared_keys: 0,
            prepared_bytes: 0,
            max_keys: limits.max_keys,
            max_bytes: limits.max_bytes,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    /// The charge of every committed entry (STATS' bytes).
    pub(crate) const fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.tree.get(key)
    }

    /// The charge of `key`'s committed entry, if any.
    pub(crate) fn charge_of(&self, key: &[u8]) -> Option<u64> {
        self.tree.get(key).map(Entry::charge)
    }

    /// A lookup starting at `hint`; also returns the leaf it went to.
    pub(crate) fn get_hinted(&self, key: &[u8], hint: LeafHint) -> (Option<&Entry>, LeafHint) {
        self.tree.get_hinted(key, hint)
    }

    /// Takes the next step of warming a lookup in the store ([`Warm::advance`]).
    pub(crate) fn warm(&self, w: &mut Warm<'_>) {
        w.advance(&self.tree);
    }

    /// True when growing the store by (`keys`, `bytes`) on top of what is committed and what
    /// is prepared stays within the quotas. Shrinking always fits.
    pub(crate) fn fits(&self, keys: i64, bytes: i64) -> bool {
        let base_k = (self.tree.len() as u64).saturating_add(self.prepared_keys);
        let base_b = self.bytes.saturating_add(self.prepared_bytes);
        (keys <= 0 || base_k.saturating_add_signed(keys) <= self.max_keys)
            && (bytes <= 0 || base_b.saturating_add_signed(bytes) <= self.max_bytes)
    }

    /// Counts (`on`) or uncounts growth of (`keys`, `bytes`) that will be applied (shrinking
    /// counts as nothing).
    pub(crate) fn charge_prepared(&mut self, keys: i64, bytes: i64, on: bool) {
        let (k, b) = (keys.max(0).unsigned_abs(), bytes.max(0).unsigned_abs());
        if on {
            self.prepared_keys = self.prepared_keys.saturating_add(k);
            self.prepared_bytes = self.prepared_bytes.saturating_add(b);
        } else {
            self.prepared_keys = self.prepared_keys.saturating_sub(k);
            self.prepared_bytes = self.prepared_bytes.saturating_sub(b);
        }
    }

    /// Reserves `n` slots, so that as many later puts cannot fail.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        self.tree.reserve(n)
    }

    /// Gives back `n` reserved slots.
    pub(crate) fn unreserve(&mut self, n: usize) {
        self.tree.unreserve(n);
    }

    /// Puts `e`, replacing any entry with its key. `Err` gives it back (no memory, or no
    /// reserved slot left).
    pub(crate) fn put(&mut self, e: Entry, room: Room) -> Result<(), Entry> {
        let charge = e.charge();
        let (_, old) = match room {
            Room::Alloc => self.tree.insert(e),
            Room::Reserved => self.tree.insert_reserved(e),
            Room::ReservedAt(hint) => self.tree.insert_reserved_hinted(e, hint),
        }?;
        let old = old.map_or(0, |o| o.charge());
        self.bytes = self.bytes.saturating_sub(old).saturating_add(charge);
        Ok(())
    }

    /// Removes `key`'s entry; false when there was none.
    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        let Some(gone) = self.tree.remove(key) else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(gone.charge());
        true
    }

    /// The entries in key order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.tree.iter().map(|(_, e)| e)
    }

    /// The entries from `start` on, in key order.
    pub(crate) fn range_from<'a>(&'a self, start: Bound<&[u8]>) -> Iter<'a, Entry> {
        self.tree.range_from(start)
    }

    /// Bytes allocated for the tree's nodes.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.tree.allocated_bytes()
    }
}
