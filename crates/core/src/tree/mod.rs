//! An ordered map for the engine's committed store and pending writes: a B+-tree index of packed
//! key prefixes over an arena of entry slots addressed by `u32` indices.
//!
//! Why this shape:
//! - A large tree's cost is one cache miss per level it descends. Index nodes hold up to [`F`]
//!   sorted 8-byte key prefixes in one array (four cache lines), so a million keys are 4–5
//!   levels deep, and all levels but the leaves fit in the last-level cache: a cold lookup
//!   misses about twice instead of once per level of a binary tree.
//! - Entries stay in stable slots of a paged arena (pages of [`PAGE`], allocated once, never
//!   grown), so a [`NodeId`] is the slot index and stays valid while its entry is in the tree;
//!   the index holds only (prefix, slot) pairs. Only equal prefixes read the entry's key.
//! - Kernel pool allocations must be small and fallible: slots and nodes come from fixed pages
//!   with free lists; nothing is copied when the tree grows.
//! - Commit must not fail half-way, so callers can [`Tree::reserve`] up front and later
//!   [`Tree::insert_reserved`] without allocating. Every node but the root is at least half
//!   full, so a tree of `n` keys uses at most `n / (MIN - 1) + MAX_HEIGHT + 1` nodes; a
//!   reservation keeps enough free nodes for the reserved inserts' splits (see
//!   [`Tree::nodes_needed`]).
//!
//! Nothing here panics or uses `unsafe`; an index that does not resolve (which the invariants rule
//! out) is treated as absent rather than a bugcheck.

mod arena;
mod iter;
mod node;
#[cfg(test)]
mod tests;

pub use arena::PAGE;
#[cfg(test)]
pub(crate) use arena::fault;
pub use iter::Iter;

use arena::{
    MAX_NODE_PAGES, MAX_SLOT_PAGES, NODE_PAGE, Pool, SlotPage, new_node_page, new_slot_page,
    node_split, slot_split,
};
use core::cmp::Ordering;
use core::ops::Bound;
use node::{Item, MIN, Node};

/// Types stored in a [`Tree`] expose their key.
pub trait Keyed {
    /// The key the tree orders by (bytewise); it must not change while the value is in a tree.
    fn key(&self) -> &[u8];
}

/// Allocation failed; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

/// A stable handle to an entry; valid until that entry is removed (the slot may then be reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

/// "No slot / no node".
const NIL: u32 = u32::MAX;
/// Levels a tree can have: non-root nodes are at least half full ([`MIN`] = 16 items), so
/// 2^32 slots fit in 8 levels.
const MAX_HEIGHT: usize = 8;
/// Nodes one insert can take: a split on every level plus a new root.
const NODES_PER_INSERT: usize = MAX_HEIGHT + 1;
/// Room in descent paths (more than [`MAX_HEIGHT`]).
const PATH: usize = 12;

/// An ordered map of `E`s by [`Keyed::key`] with stable [`NodeId`]s and fallible allocation.
///
/// Invariants after every successful operation: every node but the root holds at least [`MIN`]
/// items and all leaves are equally deep; free slots >= [`Tree::reserved`] and free nodes >=
/// [`Tree::nodes_needed`]`(reserved)`. Pages are only freed by [`Tree::clear`] (and by a failed
/// [`Tree::reserve`], which frees the pages it added).
pub struct Tree<E: Keyed> {
    slots: Pool<SlotPage<E>>,
    nodes: Pool<alloc::vec::Vec<Node>>,
    root: u32,
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

/// How many of the sorted prefixes are below `p` (= their partition point). A branch-free count
/// rather than a binary search: its loads do not depend on each other, so a cold node's cache
/// lines are fetched in parallel instead of one probe after another (at most 32 prefixes).
fn count_less(sorted: &[u64], p: u64) -> usize {
    sorted
        .iter()
        .fold(0usize, |n, &x| n.wrapping_add(usize::from(x < p)))
}

/// The first 8 bytes of `key`, big-endian, zero-padded. Ordering by prefix agrees with ordering
/// by key whenever two prefixes differ (a shorter key pads with zeros, which sort first), so only
/// equal prefixes need the full comparison.
fn prefix_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(key) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

/// Most nodes a tree of `n` keys can use: levels of at least [`MIN`] items each.
fn node_bound(n: usize) -> usize {
    (n / (MIN - 1)).saturating_add(MAX_HEIGHT + 1)
}

/// Where a descent ended.
struct Found {
    /// The leaf (NIL for an empty tree).
    leaf: u32,
    /// The key's position in the leaf, or where it would go.
    pos: usize,
    found: bool,
}

/// What [`Tree::entry`] found. (Vacant carries the search path on the stack; it lives only
/// until the insert.)
#[allow(clippy::large_enum_variant)]
pub enum Slot<'a, E: Keyed> {
    /// The key is there, with this id.
    Occupied(NodeId),
    /// The key is absent; the handle inserts it where the search ended.
    Vacant(Vacant<'a, E>),
}

/// An absent key's place in the tree, from [`Tree::entry`]; the tree stays borrowed so the place
/// cannot go stale.
pub struct Vacant<'a, E: Keyed> {
    tree: &'a mut Tree<E>,
    prefix: u64,
    at: Found,
    path: Path,
}

impl<E: Keyed> Vacant<'_, E> {
    /// Inserts `e` (which must have the key that was looked up) like [`Tree::insert`]: never
    /// uses reserved room, allocates first if needed; `Err(e)` on allocation failure (or a key
    /// that is not the one looked up) with the entries unchanged.
    pub fn insert(self, e: E) -> Result<NodeId, E> {
        let t = self.tree;
        if prefix_of(e.key()) != self.prefix {
            return Err(e);
        }
        let nodes = t
            .nodes_needed(1, t.reserved)
            .saturating_add(t.height)
            .saturating_add(1);
        if t.grow_slots(t.reserved.saturating_add(1)).is_err() || t.grow_nodes(nodes).is_err() {
            return Err(e);
        }
        t.link_new(e, self.prefix, &self.at, &self.path)
            .map(|(id, _)| id)
    }
}

/// The inner nodes a descent passed, with the child taken in each, and where (if anywhere) a
/// separator equal to the key was passed.
struct Path {
    nodes: [u32; PATH],
    idx: [usize; PATH],
    depth: usize,
    eq: Option<(usize, usize)>,
}

impl Path {
    fn new() -> Self {
        Path {
            nodes: [NIL; PATH],
            idx: [0; PATH],
            depth: 0,
            eq: None,
        }
    }

    fn push(&mut self, n: u32, i: usize) -> Option<()> {
        *self.nodes.get_mut(self.depth)? = n;
        *self.idx.get_mut(self.depth)? = i;
        self.depth = self.depth.saturating_add(1);
        Some(())
    }

    fn get(&self, k: usize) -> Option<(u32, usize)> {
        if k >= self.depth {
            return None;
        }
        Some((*self.nodes.get(k)?, *self.idx.get(k)?))
    }
}

impl<E: Keyed> Tree<E> {
    /// An empty tree; allocates nothing (usable in `const`/`static` initialisers).
    pub const fn new() -> Self {
        Tree {
            slots: Pool::new(),
            nodes: Pool::new(),
            root: NIL,
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
    pub fn find(&self, key: &[u8]) -> Option<NodeId> {
        let i = self.find_idx(key);
        (i != NIL).then_some(NodeId(i))
    }

    /// The entry behind an id (`None` if its slot is free).
    pub fn node(&self, id: NodeId) -> Option<&E> {
        self.payload(id.0)
    }

    /// The entry behind an id, mutably. The caller must not change its key.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut E> {
        self.payload_slot_mut(id.0)?.as_mut()
    }

    /// Guarantees that `n` more inserts (on top of all outstanding reservations) succeed without
    /// allocating, so a later commit cannot fail for memory. Err leaves everything unchanged.
    pub fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        let need = self.reserved.checked_add(n).ok_or(AllocError)?;
        if need > MAX_SLOT_PAGES.saturating_mul(PAGE) {
            return Err(AllocError);
        }
        let (slot_pages, slot_bytes) = (self.slots.pages.len(), self.slots.bytes);
        self.grow_slots(need)?;
        if let Err(e) = self.grow_nodes(self.nodes_needed(0, need)) {
            self.slots.shrink_to(slot_pages, slot_bytes);
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

    /// Inserts, or replaces the entry with an equal key (returning the old one; the NodeId of a
    /// replaced entry stays the same). Never uses reserved room: allocates pages first if needed;
    /// on allocation failure returns `Err(e)` and the entries are unchanged.
    pub fn insert(&mut self, e: E) -> Result<(NodeId, Option<E>), E> {
        let prefix = prefix_of(e.key());
        let mut path = Path::new();
        let Some(at) = self.descend(prefix, e.key(), &mut path) else {
            return Err(e);
        };
        if at.found {
            return self.replace(&at, e);
        }
        let nodes = self
            .nodes_needed(1, self.reserved)
            .saturating_add(self.height)
            .saturating_add(1);
        if self.grow_slots(self.reserved.saturating_add(1)).is_err()
            || self.grow_nodes(nodes).is_err()
        {
            return Err(e);
        }
        self.link_new(e, prefix, &at, &path)
    }

    /// Looks `key` up once: the id of its entry, or a [`Vacant`] handle that inserts it at the
    /// place the search found, without searching again. `None` only on a broken invariant.
    pub fn entry(&mut self, key: &[u8]) -> Option<Slot<'_, E>> {
        let prefix = prefix_of(key);
        let mut path = Path::new();
        let at = self.descend(prefix, key, &mut path)?;
        if at.found {
            let i = self.nd(at.leaf).and_then(|n| n.item(at.pos)).map(|x| x.k)?;
            return Some(Slot::Occupied(NodeId(i)));
        }
        Some(Slot::Vacant(Vacant {
            tree: self,
            prefix,
            at,
            path,
        }))
    }

    /// Like [`Tree::insert`], but consumes one reservation (always, also when the key existed
    /// and no slot was used). Never allocates while a reservation is held, so it cannot fail
    /// then; with no reservation it behaves like [`Tree::insert`].
    pub fn insert_reserved(&mut self, e: E) -> Result<(NodeId, Option<E>), E> {
        let Some(left) = self.reserved.checked_sub(1) else {
            return self.insert(e);
        };
        let prefix = prefix_of(e.key());
        let mut path = Path::new();
        let done = match self.descend(prefix, e.key(), &mut path) {
            Some(at) if at.found => self.replace(&at, e),
            Some(at) => self.link_new(e, prefix, &at, &path),
            None => Err(e),
        };
        // Only an impossible broken-invariant case fails; then keep the reservation.
        if done.is_ok() {
            self.reserved = left;
        }
        done
    }

    /// Removes by key; other NodeIds stay valid. The freed slot goes on the free list.
    pub fn remove(&mut self, key: &[u8]) -> Option<E> {
        let mut path = Path::new();
        let at = self.descend(prefix_of(key), key, &mut path)?;
        if !at.found {
            return None;
        }
        let leaf = self.nd_mut(at.leaf)?;
        let gone = leaf.remove(at.pos)?.k;
        let first = leaf.item(0);
        // The key was the separator in an ancestor: its successor (now first in the leaf)
        // takes its place, so no separator names a free slot.
        if let (Some((lvl, i)), Some(first)) = (path.eq, first)
            && let Some((n, _)) = path.get(lvl)
            && let Some(node) = self.nd_mut(n)
        {
            node.set_sep(i, first.p, first.k);
        }
        self.rebalance(at.leaf, &path);
        self.len = self.len.saturating_sub(1);
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
        self.slots
            .table_bytes()
            .saturating_add(self.slots.bytes)
            .saturating_add(self.nodes.table_bytes())
            .saturating_add(self.nodes.bytes)
    }

    /// Drops every entry and frees all pages. Reservations are dropped too (no slots remain to
    /// back them).
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    // ---- reservations ------------------------------------------------------------------------

    /// Free nodes that `r` more inserts need on top of `extra` inserts already made, beyond the
    /// nodes now in use: at most [`NODES_PER_INSERT`] each, and never more than the bound on
    /// a tree of the resulting size. Both shrink by at least the nodes an insert takes, so a
    /// reservation stays backed.
    fn nodes_needed(&self, extra: usize, r: usize) -> usize {
        let total = self.len.saturating_add(extra).saturating_add(r);
        let by_size = node_bound(total).saturating_sub(self.nodes.in_use());
        by_size.min(r.saturating_mul(NODES_PER_INSERT))
    }

    fn free_slots(&self) -> usize {
        self.slots.free(PAGE)
    }

    fn free_nodes(&self) -> usize {
        self.nodes.free(NODE_PAGE)
    }

    /// Makes at least `want` slots free.
    fn grow_slots(&mut self, want: usize) -> Result<(), AllocError> {
        match want.checked_sub(self.free_slots()).filter(|&s| s > 0) {
            Some(short) => {
                self.slots
                    .grow(short.div_ceil(PAGE), MAX_SLOT_PAGES, new_slot_page::<E>)
            }
            None => Ok(()),
        }
    }

    /// Makes at least `want` nodes free.
    fn grow_nodes(&mut self, want: usize) -> Result<(), AllocError> {
        match want.checked_sub(self.free_nodes()).filter(|&s| s > 0) {
            Some(short) => {
                self.nodes
                    .grow(short.div_ceil(NODE_PAGE), MAX_NODE_PAGES, new_node_page)
            }
            None => Ok(()),
        }
    }

    // ---- slots -------------------------------------------------------------------------------

    fn payload(&self, i: u32) -> Option<&E> {
        let (p, o) = slot_split(i);
        self.slots.pages.get(p)?.payload.get(o)?.as_ref()
    }

    fn payload_slot_mut(&mut self, i: u32) -> Option<&mut Option<E>> {
        let (p, o) = slot_split(i);
        self.slots.pages.get_mut(p)?.payload.get_mut(o)
    }

    /// Puts `e` in a free slot (free list first, else page capacity); never allocates.
    fn alloc_slot(&mut self, e: E) -> Result<u32, E> {
        let head = self.slots.free_head;
        let (p, o) = slot_split(head);
        if let Some(page) = self.slots.pages.get_mut(p)
            && let (Some(slot), Some(&next)) = (page.payload.get_mut(o), page.next.get(o))
        {
            *slot = Some(e);
            self.slots.free_head = next;
            self.slots.free_count = self.slots.free_count.saturating_sub(1);
            return Ok(head);
        }
        let i = self.slots.used;
        let Some(after) = i.checked_add(1) else {
            return Err(e);
        };
        let (p, o) = slot_split(i);
        match self.slots.pages.get_mut(p) {
            Some(page)
                if page.payload.len() == o
                    && page.next.len() == o
                    && o < page.payload.capacity()
                    && o < page.next.capacity() =>
            {
                // Spare capacity in both arrays was checked, so neither push can fail.
                let _ = crate::fallible::push(&mut page.payload, Some(e));
                let _ = crate::fallible::push(&mut page.next, NIL);
                self.slots.used = after;
                Ok(i)
            }
            _ => Err(e),
        }
    }

    fn free_slot(&mut self, i: u32) -> Option<E> {
        let head = self.slots.free_head;
        let (p, o) = slot_split(i);
        let page = self.slots.pages.get_mut(p)?;
        let e = page.payload.get_mut(o)?.take();
        *page.next.get_mut(o)? = head;
        self.slots.free_head = i;
        self.slots.free_count = self.slots.free_count.saturating_add(1);
        e
    }

    fn replace(&mut self, at: &Found, e: E) -> Result<(NodeId, Option<E>), E> {
        let Some(i) = self.nd(at.leaf).and_then(|n| n.item(at.pos)).map(|x| x.k) else {
            return Err(e);
        };
        match self.payload_slot_mut(i) {
            Some(slot) => Ok((NodeId(i), slot.replace(e))),
            None => Err(e),
        }
    }

    // ---- nodes -------------------------------------------------------------------------------

    fn nd(&self, i: u32) -> Option<&Node> {
        let (p, o) = node_split(i);
        self.nodes.pages.get(p)?.get(o)
    }

    fn nd_mut(&mut self, i: u32) -> Option<&mut Node> {
        let (p, o) = node_split(i);
        self.nodes.pages.get_mut(p)?.get_mut(o)
    }

    /// An empty node from the free list or page capacity; never allocates.
    fn alloc_node(&mut self, leaf: bool) -> Option<u32> {
        let head = self.nodes.free_head;
        if let Some(n) = self.nd_mut(head) {
            let next = n.child.first().copied().unwrap_or(NIL);
            *n = Node::EMPTY;
            n.leaf = leaf;
            self.nodes.free_head = next;
            self.nodes.free_count = self.nodes.free_count.saturating_sub(1);
            return Some(head);
        }
        let i = self.nodes.used;
        let after = i.checked_add(1)?;
        let (p, o) = node_split(i);
        let page = self.nodes.pages.get_mut(p)?;
        if page.len() != o {
            return None;
        }
        let mut n = Node::EMPTY;
        n.leaf = leaf;
        crate::fallible::push(page, n).ok()?;
        self.nodes.used = after;
        Some(i)
    }

    fn free_node(&mut self, i: u32) {
        let head = self.nodes.free_head;
        if let Some(n) = self.nd_mut(i) {
            n.len = 0;
            if let Some(c) = n.child.first_mut() {
                *c = head;
            }
            self.nodes.free_head = i;
            self.nodes.free_count = self.nodes.free_count.saturating_add(1);
        }
    }

    // ---- search ------------------------------------------------------------------------------

    /// Compares a key (with its prefix) with the entry `(ep, slot)`; reads the entry only when
    /// the prefixes tie. `None` if that slot is free (broken invariant).
    fn cmp_entry(&self, prefix: u64, key: &[u8], ep: u64, slot: u32) -> Option<Ordering> {
        match prefix.cmp(&ep) {
            Ordering::Equal => Some(key.cmp(self.payload(slot)?.key())),
            ord => Some(ord),
        }
    }

    /// In a leaf: the key's position and whether it is there.
    fn leaf_pos(&self, n: &Node, prefix: u64, key: &[u8]) -> Option<(usize, bool)> {
        let len = n.len();
        let below = count_less(n.prefix.get(..len)?, prefix);
        self.past_equal_prefixes(n, prefix, key, below, len)
    }

    /// In an inner node: the child whose range holds the key, and whether its separator equals
    /// the key.
    fn child_pos(&self, n: &Node, prefix: u64, key: &[u8]) -> Option<(usize, bool)> {
        let len = n.len();
        let below = count_less(n.prefix.get(1..len)?, prefix).saturating_add(1);
        match self.past_equal_prefixes(n, prefix, key, below, len)? {
            (i, true) => Some((i, true)),
            (i, false) => Some((i.checked_sub(1)?, false)),
        }
    }

    /// From position `i` (the first prefix not below the key's), steps over the items whose
    /// prefix ties with the key's but whose full key is smaller: the key's position among the
    /// first `len` items, and whether an item equals it.
    fn past_equal_prefixes(
        &self,
        n: &Node,
        prefix: u64,
        key: &[u8],
        mut i: usize,
        len: usize,
    ) -> Option<(usize, bool)> {
        while i < len {
            let (Some(&ep), Some(&slot)) = (n.prefix.get(i), n.key.get(i)) else {
                break;
            };
            if ep != prefix {
                break;
            }
            match self.cmp_entry(prefix, key, ep, slot)? {
                Ordering::Less => break,
                Ordering::Equal => return Some((i, true)),
                Ordering::Greater => i = i.saturating_add(1),
            }
        }
        Some((i, false))
    }

    fn find_idx(&self, key: &[u8]) -> u32 {
        let prefix = prefix_of(key);
        let mut n = self.root;
        while let Some(node) = self.nd(n) {
            if node.leaf {
                return match self.leaf_pos(node, prefix, key) {
                    Some((i, true)) => node.key.get(i).copied().unwrap_or(NIL),
                    _ => NIL,
                };
            }
            match self.child_pos(node, prefix, key) {
                Some((i, _)) => n = node.child_at(i),
                None => return NIL,
            }
        }
        NIL
    }

    /// Descends from the root towards `key`, recording the inner nodes passed in `path`. `None`
    /// if the descent meets a broken invariant (a free slot, a path deeper than [`PATH`]).
    fn descend(&self, prefix: u64, key: &[u8], path: &mut Path) -> Option<Found> {
        let mut n = self.root;
        if n == NIL {
            return Some(Found {
                leaf: NIL,
                pos: 0,
                found: false,
            });
        }
        loop {
            let node = self.nd(n)?;
            if node.leaf {
                let (pos, found) = self.leaf_pos(node, prefix, key)?;
                return Some(Found {
                    leaf: n,
                    pos,
                    found,
                });
            }
            let (i, eq) = self.child_pos(node, prefix, key)?;
            if eq {
                path.eq = Some((path.depth, i));
            }
            path.push(n, i)?;
            n = node.child_at(i);
        }
    }

    // ---- insert ------------------------------------------------------------------------------

    /// Inserts `e`, whose key is known to be absent, at the end of the descent `at`/`path`.
    /// Checks first that a slot and nodes for every split are free, so it never fails half-way.
    fn link_new(
        &mut self,
        e: E,
        prefix: u64,
        at: &Found,
        path: &Path,
    ) -> Result<(NodeId, Option<E>), E> {
        if self.free_nodes() <= self.height || self.free_slots() == 0 {
            return Err(e);
        }
        let slot = self.alloc_slot(e)?;
        let mut carry = Some(Item {
            p: prefix,
            k: slot,
            c: NIL,
        });
        if at.leaf == NIL {
            // Empty tree: the entry becomes a root leaf (a node is free: checked above).
            if let Some(n) = self.alloc_node(true) {
                if let (Some(node), Some(it)) = (self.nd_mut(n), carry) {
                    node.insert(0, it);
                }
                self.root = n;
                self.height = 1;
            }
            carry = None;
        } else if let Some(it) = carry {
            carry = self.insert_item(at.leaf, at.pos, it);
        }
        let mut lvl = path.depth;
        while let Some(it) = carry {
            match lvl.checked_sub(1).and_then(|up| Some((up, path.get(up)?))) {
                Some((up, (n, i))) => {
                    lvl = up;
                    carry = self.insert_item(n, i.saturating_add(1), it);
                }
                None => {
                    self.new_root(it);
                    carry = None;
                }
            }
        }
        self.len = self.len.saturating_add(1);
        Ok((NodeId(slot), None))
    }

    /// Inserts `it` at `pos` of node `n`, splitting it if full; returns the item to insert in
    /// the parent (separator and new right node) after a split.
    fn insert_item(&mut self, n: u32, pos: usize, it: Item) -> Option<Item> {
        let node = self.nd_mut(n)?;
        if node.insert(pos, it) {
            return None;
        }
        let leaf = node.leaf;
        let m = self.alloc_node(leaf)?;
        let mut right = Node::EMPTY;
        self.nd_mut(n)?.split_insert(pos, it, &mut right);
        let first = right.item(0)?;
        *self.nd_mut(m)? = right;
        Some(Item {
            p: first.p,
            k: first.k,
            c: m,
        })
    }

    /// Grows the tree by a level: a new root over the old one and `right`.
    fn new_root(&mut self, right: Item) {
        let old = self.root;
        let Some(r) = self.alloc_node(false) else {
            return;
        };
        if let Some(node) = self.nd_mut(r) {
            node.insert(
                0,
                Item {
                    p: 0,
                    k: NIL,
                    c: old,
                },
            );
            node.insert(1, right);
        }
        self.root = r;
        self.height = self.height.saturating_add(1);
    }

    // ---- remove ------------------------------------------------------------------------------

    /// Restores the fill of node `n` (at the end of `path`) after it lost an item, borrowing
    /// from or merging with a sibling, upwards as far as needed.
    fn rebalance(&mut self, mut n: u32, path: &Path) {
        let mut lvl = path.depth;
        loop {
            let Some(len) = self.nd(n).map(Node::len) else {
                return;
            };
            let Some((up, (parent, idx))) =
                lvl.checked_sub(1).and_then(|u| Some((u, path.get(u)?)))
            else {
                self.shrink_root();
                return;
            };
            if len >= MIN {
                return;
            }
            let Some(p) = self.nd(parent).copied() else {
                return;
            };
            // Merge with or borrow from the left sibling, or the right one for child 0.
            let left_idx = idx.checked_sub(1).unwrap_or(idx);
            let (l, r) = (p.child_at(left_idx), p.child_at(left_idx.saturating_add(1)));
            let sib = if idx > 0 { l } else { r };
            let Some(sib_len) = self.nd(sib).map(Node::len) else {
                return;
            };
            if sib_len > MIN {
                if idx > 0 {
                    self.borrow_left(parent, idx, l, n);
                } else {
                    self.borrow_right(parent, idx, n, r);
                }
                return;
            }
            self.merge(parent, left_idx, l, r);
            n = parent;
            lvl = up;
        }
    }

    /// Moves the last item of `l` to the front of `n` (child `idx` of `parent`).
    fn borrow_left(&mut self, parent: u32, idx: usize, l: u32, n: u32) {
        let Some(ln) = self.nd_mut(l) else { return };
        let Some(moved) = ln.len().checked_sub(1).and_then(|last| ln.remove(last)) else {
            return;
        };
        let Some(old) = self.nd(parent).and_then(|p| p.item(idx)) else {
            return;
        };
        if let Some(nn) = self.nd_mut(n) {
            nn.insert(0, moved);
            if !nn.leaf {
                // Its old first child is now second, bounded below by the old separator.
                nn.set_sep(1, old.p, old.k);
            }
        }
        if let Some(p) = self.nd_mut(parent) {
            p.set_sep(idx, moved.p, moved.k);
        }
    }

    /// Moves the first item of `r` (child `idx + 1`) to the end of `n` (child `idx`).
    fn borrow_right(&mut self, parent: u32, idx: usize, n: u32, r: u32) {
        let right_idx = idx.saturating_add(1);
        let Some(old) = self.nd(parent).and_then(|p| p.item(right_idx)) else {
            return;
        };
        let Some(rn) = self.nd_mut(r) else { return };
        let (Some(moved), Some(first)) = (rn.remove(0), rn.item(0)) else {
            return;
        };
        if let Some(nn) = self.nd_mut(n) {
            let it = if nn.leaf {
                moved
            } else {
                Item {
                    p: old.p,
                    k: old.k,
                    c: moved.c,
                }
            };
            nn.insert(nn.len(), it);
        }
        if let Some(p) = self.nd_mut(parent) {
            p.set_sep(right_idx, first.p, first.k);
        }
    }

    /// Appends `r` (child `i + 1` of `parent`) to `l` (child `i`) and frees it.
    fn merge(&mut self, parent: u32, i: usize, l: u32, r: u32) {
        let right_idx = i.saturating_add(1);
        let (Some(mut rn), Some(sep)) = (
            self.nd(r).copied(),
            self.nd(parent).and_then(|p| p.item(right_idx)),
        ) else {
            return;
        };
        if !rn.leaf {
            rn.set_sep(0, sep.p, sep.k);
        }
        let Some(ln) = self.nd_mut(l) else { return };
        if !ln.append(&rn) {
            return;
        }
        if let Some(p) = self.nd_mut(parent) {
            p.remove(right_idx);
        }
        self.free_node(r);
    }

    /// Drops an empty root leaf, or an inner root with one child.
    fn shrink_root(&mut self) {
        let root = self.root;
        let Some(node) = self.nd(root) else { return };
        if node.leaf && node.len() == 0 {
            self.free_node(root);
            self.root = NIL;
            self.height = 0;
        } else if !node.leaf && node.len() == 1 {
            let child = node.child_at(0);
            self.free_node(root);
            self.root = child;
            self.height = self.height.saturating_sub(1);
        }
    }
}
