//! An ordered map for the engine's committed store and pending writes: a B+-tree index of packed
//! key heads over an arena of entry slots addressed by `u32` indices.
//!
//! Why this shape:
//! - A large tree's cost is one cache miss per level it descends. Nodes hold sorted 8-byte key
//!   heads in one array (64 per node), so a million keys are four levels deep. A head is the 8
//!   bytes after the prefix all the tree's keys share (`Shared`), so keys under one path do
//!   not tie on every comparison.
//!   Leaves and inner nodes live in separate pools: the few inner nodes stay packed together, so
//!   all levels but the leaves stay in cache and TLB, and a cold lookup misses about once (the
//!   leaf) instead of once per level. (Measured: inner nodes mixed in with leaves cost a second
//!   miss per lookup at a million keys.)
//! - Entries stay in stable slots of a paged arena (pages of [`PAGE`], allocated once, never
//!   grown), so a [`SlotId`] is the slot index and stays valid while its entry is in the tree;
//!   the index holds only (head, slot) pairs. Only equal heads read the entry's key.
//! - Kernel pool allocations must be small and fallible: slots and nodes come from fixed pages
//!   with free lists; nothing is copied when the tree grows.
//! - Commit must not fail half-way, so callers can [`Tree::reserve`] up front and later
//!   [`Tree::insert_reserved`] without allocating. Every node but the root is at least half
//!   full, which bounds the nodes a tree of `n` keys uses (`leaf_bound`, `inner_bound`); a
//!   reservation keeps enough free nodes of each kind for the reserved inserts' splits (see
//!   `Tree::leaves_needed`, `Tree::inners_needed`).
//!
//! Where things are: this file is the public API; `node` the node layout; `arena` the pages and
//! free lists, `pools` the tree's slots and nodes in them and the growth that backs reservations;
//! `search` the descent; `hint` the lookups that start at a known leaf, `warm` the lookup warmed
//! ahead of time that finds one; `insert` and `rebalance` the changes
//! to the index; `shared` the key prefix every key shares and the heads computed after it; `iter`
//! ascending iteration.
//!
//! Nothing here panics; the one `unsafe` is a cache prefetch hint (`node::prefetch`). An index
//! that does not resolve (which the invariants rule out) is treated as absent rather than a
//! bugcheck; on the paths that change the index, a test build also stops there
//! (`debug_assert!`).

mod arena;
mod hint;
mod insert;
mod iter;
mod node;
mod pools;
mod rebalance;
mod search;
mod shared;
#[cfg(test)]
mod tests;
mod warm;

pub use arena::PAGE;
#[cfg(test)]
pub(crate) use arena::fault;
pub use hint::LeafHint;
pub use iter::Iter;
pub(crate) use warm::Warm;

use arena::{MAX_SLOT_PAGES, Pool, SlotPage};
use core::ops::Bound;
use node::{INNER, LEAF};
use pools::Pools;
use search::{Found, Path};
use shared::Shared;

/// Types stored in a [`Tree`] expose their key.
pub trait Keyed {
    /// The key the tree orders by (bytewise); it must not change while the value is in a tree.
    fn key(&self) -> &[u8];
}

/// Allocation failed; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

/// A stable handle to an entry: the index of its slot; valid until that entry is removed (the
/// slot may then be reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(u32);

#[cfg(test)]
impl SlotId {
    /// An id for tests of code that only stores ids.
    pub(crate) const fn from_raw(n: u32) -> SlotId {
        SlotId(n)
    }
}

/// The index of an index node in its kind's pool (leaves and inner nodes are numbered apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodeIx(u32);

impl NodeIx {
    /// "No node".
    const NIL: NodeIx = NodeIx(NIL);
}

/// "No slot" (and, as [`NodeIx::NIL`], "no node").
const NIL: u32 = u32::MAX;
/// Levels a tree can have: non-root nodes are at least half full (leaves 32 entries, inner
/// nodes 32 children), so 2^32 slots fit in 8 levels.
const MAX_HEIGHT: usize = 8;
/// Inner nodes one insert can take: a split on every inner level plus a new root. (It takes at
/// most one leaf.)
const INNERS_PER_INSERT: usize = MAX_HEIGHT;
/// Room in descent paths (more than [`MAX_HEIGHT`]).
const PATH: usize = 12;

/// An ordered map of `E`s by [`Keyed::key`] with stable [`SlotId`]s and fallible allocation.
///
/// Invariants after every successful operation: every node but the root is at least half full
/// and all leaves are equally deep (`height` levels: the last is the leaves, so a node's kind
/// follows from its depth); free slots >= [`Tree::reserved`], free leaves >=
/// `Tree::leaves_needed(0, reserved)` and free inner nodes >=
/// `Tree::inners_needed(0, reserved)`. Pages are only freed by [`Tree::clear`] (and by a
/// failed [`Tree::reserve`], which frees the pages it added).
pub struct Tree<E: Keyed> {
    slots: Pool<SlotPage<E>>,
    nodes: Pools,
    /// The bytes every key in the tree starts with; nodes hold the 8 bytes after them.
    shared: Shared,
    root: NodeIx,
    /// Levels (0 when empty, 1 when the root is a leaf).
    height: usize,
    len: usize,
    reserved: usize,
}

impl<E: Keyed> Default for Tree<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Tree::entry`] found. (Vacant carries the search path on the stack; it lives only
/// until the insert.)
#[allow(clippy::large_enum_variant)]
pub enum Slot<'a, E: Keyed> {
    /// The key is there, with this id.
    Occupied(SlotId),
    /// The key is absent; the handle inserts it where the search ended.
    Vacant(Vacant<'a, E>),
}

/// An absent key's place in the tree, from [`Tree::entry`]; the tree stays borrowed so the place
/// cannot go stale.
pub struct Vacant<'a, E: Keyed> {
    tree: &'a mut Tree<E>,
    head: u64,
    at: Found,
    path: Path,
}

impl<E: Keyed> Vacant<'_, E> {
    /// Inserts `e` (which must have the key that was looked up) like [`Tree::insert`]: never
    /// uses reserved room, allocates first if needed; `Err(e)` on allocation failure (or a key
    /// that is not the one looked up) with the entries unchanged.
    pub fn insert(self, e: E) -> Result<SlotId, E> {
        let t = self.tree;
        if t.head(e.key()) != self.head {
            return Err(e);
        }
        if t.grow_for_insert().is_err() {
            return Err(e);
        }
        t.link_new(e, &self.at, &self.path).map(|(id, _)| id)
    }
}

impl<E: Keyed> Tree<E> {
    /// An empty tree; allocates nothing (usable in `const`/`static` initialisers).
    pub const fn new() -> Self {
        Tree {
            slots: Pool::new(),
            nodes: Pools::new(),
            shared: Shared::NONE,
            root: NodeIx::NIL,
            height: 0,
            len: 0,
            reserved: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry with this key.
    pub fn get(&self, key: &[u8]) -> Option<&E> {
        self.payload(self.find_idx(key))
    }

    /// The entry with this key, mutably. The caller must not change its key.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut E> {
        let i = self.find_idx(key);
        self.payload_slot_mut(i)?.as_mut()
    }

    /// The id of the entry with this key.
    pub fn find(&self, key: &[u8]) -> Option<SlotId> {
        let i = self.find_idx(key);
        (i != NIL).then_some(SlotId(i))
    }

    /// The entry in slot `id` (`None` if that slot is free).
    pub fn slot(&self, id: SlotId) -> Option<&E> {
        self.payload(id.0)
    }

    /// The entry in slot `id`, mutably. The caller must not change its key.
    pub fn slot_mut(&mut self, id: SlotId) -> Option<&mut E> {
        self.payload_slot_mut(id.0)?.as_mut()
    }

    /// Guarantees that `n` more inserts (on top of all outstanding reservations) succeed without
    /// allocating, so a later commit cannot fail for memory. Err leaves everything unchanged.
    pub fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        let need = self.reserved.checked_add(n).ok_or(AllocError)?;
        if need > MAX_SLOT_PAGES.saturating_mul(PAGE) {
            return Err(AllocError);
        }
        let slots = (self.slots.pages.len(), self.slots.bytes);
        let leaves = (self.nodes.leaves.pages.len(), self.nodes.leaves.bytes);
        let inners = (self.nodes.inners.pages.len(), self.nodes.inners.bytes);
        let grown = self
            .grow_slots(need)
            .and_then(|()| self.grow_nodes::<LEAF, 0>(self.leaves_needed(0, need)))
            .and_then(|()| self.grow_nodes::<INNER, INNER>(self.inners_needed(0, need)));
        if let Err(e) = grown {
            self.slots.shrink_to(slots.0, slots.1);
            self.nodes.leaves.shrink_to(leaves.0, leaves.1);
            self.nodes.inners.shrink_to(inners.0, inners.1);
            return Err(e);
        }
        self.reserved = need;
        Ok(())
    }

    /// Gives back `n` reservations (saturating). The slots stay allocated for later inserts.
    pub fn unreserve(&mut self, n: usize) {
        self.reserved = self.reserved.saturating_sub(n);
    }

    /// Outstanding reservations.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Inserts, or replaces the entry with an equal key (returning the old one; the SlotId of a
    /// replaced entry stays the same). Never uses reserved room: allocates pages first if needed;
    /// on allocation failure returns `Err(e)` and the entries are unchanged.
    pub fn insert(&mut self, e: E) -> Result<(SlotId, Option<E>), E> {
        let head = self.head(e.key());
        let mut path = Path::new();
        let Some(at) = self.descend(head, e.key(), &mut path) else {
            return Err(e);
        };
        if at.found {
            return self.replace(&at, e);
        }
        if self.grow_for_insert().is_err() {
            return Err(e);
        }
        self.link_new(e, &at, &path)
    }

    /// Looks `key` up once: the id of its entry, or a [`Vacant`] handle that inserts it at the
    /// place the search found, without searching again. `None` only on a broken invariant.
    pub fn entry(&mut self, key: &[u8]) -> Option<Slot<'_, E>> {
        let head = self.head(key);
        let mut path = Path::new();
        let at = self.descend(head, key, &mut path)?;
        if at.found {
            let i = self
                .leaf(at.leaf)
                .and_then(|n| n.item(at.pos))
                .map(|x| x.slot)?;
            return Some(Slot::Occupied(SlotId(i)));
        }
        Some(Slot::Vacant(Vacant {
            tree: self,
            head,
            at,
            path,
        }))
    }

    /// Like [`Tree::insert`], but consumes one reservation (always, also when the key existed
    /// and no slot was used). Never allocates while a reservation is held, so it cannot fail
    /// then; with no reservation it behaves like [`Tree::insert`].
    pub fn insert_reserved(&mut self, e: E) -> Result<(SlotId, Option<E>), E> {
        let Some(left) = self.reserved.checked_sub(1) else {
            return self.insert(e);
        };
        let head = self.head(e.key());
        let mut path = Path::new();
        let done = match self.descend(head, e.key(), &mut path) {
            Some(at) if at.found => self.replace(&at, e),
            Some(at) => self.link_new(e, &at, &path),
            None => Err(e),
        };
        // Only an impossible broken-invariant case fails; then keep the reservation.
        if done.is_ok() {
            self.reserved = left;
        }
        done
    }

    /// Removes by key; other SlotIds stay valid. The freed slot goes on the free list.
    pub fn remove(&mut self, key: &[u8]) -> Option<E> {
        let mut path = Path::new();
        let at = self.descend(self.head(key), key, &mut path)?;
        if !at.found {
            return None;
        }
        let leaf = self.leaf_mut(at.leaf)?;
        let gone = leaf.remove(at.pos)?.slot;
        let first = leaf.item(0);
        // The key was the separator in an ancestor: its successor (now first in the leaf)
        // takes its place, so no separator names a free slot.
        if let (Some((lvl, i)), Some(first)) = (path.eq, first)
            && let Some((n, _)) = path.get(lvl)
            && let Some(node) = self.inner_mut(n)
        {
            node.set_sep(i, first.head, first.slot);
        }
        self.rebalance(at.leaf, &path);
        self.len = self.len.saturating_sub(1);
        if self.len == 0 {
            self.shared.len = 0;
        }
        self.free_slot(gone)
    }

    /// Ascending iteration over the entries with key > or >= `start`.
    pub fn range_from(&self, start: Bound<&[u8]>) -> Iter<'_, E> {
        Iter::new(self, start)
    }

    /// Ascending iteration over all entries.
    pub fn iter(&self) -> Iter<'_, E> {
        self.range_from(Bound::Unbounded)
    }

    /// Bytes allocated for slot and node pages and their page tables, for memory accounting.
    pub fn allocated_bytes(&self) -> usize {
        let (l, i) = (&self.nodes.leaves, &self.nodes.inners);
        self.slots
            .table_bytes()
            .saturating_add(self.slots.bytes)
            .saturating_add(l.table_bytes())
            .saturating_add(l.bytes)
            .saturating_add(i.table_bytes())
            .saturating_add(i.bytes)
    }

    /// Drops every entry and frees all pages. Reservations are dropped too (no slots remain to
    /// back them).
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}
