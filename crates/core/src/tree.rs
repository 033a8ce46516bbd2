//! An ordered map for the engine's committed store and pending writes: an AVL tree whose nodes
//! live in a paged arena and are addressed by `u32` indices.
//!
//! Why this shape:
//! - Kernel pool allocations must be small and fallible, so nodes sit in fixed pages of [`PAGE`]
//!   nodes (each allocated once with `try_reserve_exact`, never grown) plus one page table; growing
//!   the tree never copies nodes.
//! - Each page is split into parallel arrays (struct of arrays), because a large tree's cost is
//!   one cache miss per level: a descent reads only the 16-byte [`Hot`] part of a node (key
//!   prefix and links, four to a cache line, never straddling two), so each level touches one
//!   line, and the array it touches is 16 bytes a node instead of 40 (16 MB for a million keys).
//!   Heights (1 byte) and payloads live in their own arrays: heights are read only while
//!   rebalancing, payloads only to break a tie of key prefixes and to hand out the entry.
//! - Inserts and removals descend once, recording the path on the stack, then relink and
//!   rebalance bottom-up only as far as subtree heights change (usually a level or two), instead
//!   of a second, recursive descent that rebalanced every level.
//! - The engine keeps per-transaction lists of [`NodeId`]s, so an entry never moves to another
//!   slot while it is in the tree: deletion relinks nodes instead of swapping payloads.
//! - Commit must not fail half-way, so callers can [`Tree::reserve`] slots up front and later
//!   [`Tree::insert_reserved`] without allocating.
//!
//! Nothing here panics or uses `unsafe`; an index that does not resolve (which the invariants rule
//! out) is treated as an empty subtree rather than a bugcheck.

use crate::fallible;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::iter::FusedIterator;
use core::ops::Bound;

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

/// log2 of [`PAGE`].
const PAGE_BITS: u32 = 10;
/// Nodes per page: 1024 nodes keep each pool allocation at most 16 KiB (the `Hot` array; the
/// payload array is 16 KiB for 16-byte entries, the height array 1 KiB).
pub const PAGE: usize = 1 << PAGE_BITS;
/// Mask of the in-page part of a node index.
const PAGE_MASK: u32 = (1 << PAGE_BITS) - 1;
/// "No node". Never a valid index: see [`MAX_PAGES`].
const NIL: u32 = u32::MAX;
/// At most this many pages, so every slot index stays below [`NIL`] and the slot count fits `u32`.
const MAX_PAGES: usize = (u32::MAX >> PAGE_BITS) as usize;
/// Depth of the iterator stack. An AVL tree of at most 2^32 nodes has height <= 46
/// (1.44·log2(n+2)), and the stack holds at most one node per level.
const STACK: usize = 64;

/// The part of a node a descent reads: 16 bytes, aligned so that four share a cache line and none
/// straddles two. A free slot (payload `None`) chains the free list through `left`.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Hot {
    /// The key's first 8 bytes (see [`prefix_of`]): most comparisons end here, without
    /// touching the payload or following it to the key's own allocation.
    prefix: u64,
    left: u32,
    right: u32,
}

/// One page of slots as parallel arrays; slot `o` of the page is `hot[o]`, `height[o]` (height
/// of the subtree rooted there: a leaf is 1, an empty subtree 0) and `payload[o]` (`None` when
/// the slot is free). The three arrays always have equal lengths.
struct Page<E> {
    hot: Vec<Hot>,
    height: Vec<u8>,
    payload: Vec<Option<E>>,
}

impl<E> Page<E> {
    /// Bytes allocated for this page's arrays.
    fn bytes(&self) -> usize {
        self.hot
            .capacity()
            .saturating_mul(size_of::<Hot>())
            .saturating_add(self.height.capacity())
            .saturating_add(
                self.payload
                    .capacity()
                    .saturating_mul(size_of::<Option<E>>()),
            )
    }

    /// Slots handed out from this page.
    fn len(&self) -> usize {
        self.hot.len()
    }

    /// True when one more slot can be appended without allocating.
    fn has_room(&self) -> bool {
        let n = self.hot.len();
        n < PAGE
            && n < self.hot.capacity()
            && self.height.len() == n
            && n < self.height.capacity()
            && self.payload.len() == n
            && n < self.payload.capacity()
    }
}

/// An ordered map of `E`s by [`Keyed::key`] with stable [`NodeId`]s and fallible allocation.
///
/// Invariant after every successful operation: [`Tree::reserved`] never exceeds the free slots
/// (free list plus unused page capacity). Pages are only freed by [`Tree::clear`] (and by a failed
/// [`Tree::reserve`], which frees the pages it added).
pub struct Tree<E: Keyed> {
    /// Page table; every page array has capacity >= [`PAGE`] and pages fill in order, so slot `i`
    /// lives at offset `i & PAGE_MASK` of `pages[i >> PAGE_BITS]` and only slots `< used` exist.
    pages: Vec<Page<E>>,
    /// Slots ever handed out from page capacity (= sum of page lengths).
    used: u32,
    root: u32,
    len: usize,
    free_head: u32,
    free_count: usize,
    reserved: usize,
    /// Sum of the pages' [`Page::bytes`], so [`Tree::allocated_bytes`] is O(1).
    page_bytes: usize,
}

impl<E: Keyed> Default for Tree<E> {
    fn default() -> Self {
        Self::new()
    }
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

/// Splits a slot index into (page, offset).
fn split(i: u32) -> (usize, usize) {
    ((i >> PAGE_BITS) as usize, (i & PAGE_MASK) as usize)
}

impl<E: Keyed> Tree<E> {
    /// An empty tree; allocates nothing (usable in `const`/`static` initialisers).
    pub const fn new() -> Self {
        Tree {
            pages: Vec::new(),
            used: 0,
            root: NIL,
            len: 0,
            free_head: NIL,
            free_count: 0,
            reserved: 0,
            page_bytes: 0,
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
    /// allocating, so a later commit cannot fail for memory. Err leaves reservations unchanged.
    pub fn reserve(&mut self, n: usize) -> Result<(), AllocError> {
        let need = self.reserved.checked_add(n).ok_or(AllocError)?;
        let free = self.free_slots();
        if let Some(short) = need.checked_sub(free).filter(|&s| s > 0) {
            self.grow(short.div_ceil(PAGE))?;
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
    /// replaced entry stays the same). Never uses a reserved slot: if free slots <= reserved it
    /// allocates a page first; on allocation failure returns `Err(e)` and the tree is unchanged.
    pub fn insert(&mut self, e: E) -> Result<(NodeId, Option<E>), E> {
        let prefix = prefix_of(e.key());
        let mut path = Path::new();
        let Some(found) = self.find_path(prefix, e.key(), &mut path) else {
            return Err(e);
        };
        if found != NIL {
            return self.replace(found, e);
        }
        if self.free_slots() <= self.reserved && self.grow(1).is_err() {
            return Err(e);
        }
        self.link_new(e, prefix, &path)
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
        let done = match self.find_path(prefix, e.key(), &mut path) {
            Some(NIL) => self.link_new(e, prefix, &path),
            Some(found) => self.replace(found, e),
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
        let gone = self.find_path(prefix_of(key), key, &mut path)?;
        self.unlink(gone, path)?;
        self.len = self.len.saturating_sub(1);
        let next = self.free_head;
        let (hot, height, payload) = self.parts_mut(gone)?;
        let e = payload.take();
        hot.left = next;
        hot.right = NIL;
        *height = 0;
        self.free_head = gone;
        self.free_count = self.free_count.saturating_add(1);
        e
    }

    /// Ascending iteration over the entries with key > or >= `start`.
    pub fn range_from(&self, start: Bound<&[u8]>) -> Iter<'_, E> {
        let mut it = Iter {
            tree: self,
            stack: [NIL; STACK],
            depth: 0,
        };
        let mut n = self.root;
        let (s, sp) = match start {
            Bound::Included(s) | Bound::Excluded(s) => (s, prefix_of(s)),
            Bound::Unbounded => (&[][..], 0),
        };
        while let Some(&h) = self.hot(n) {
            let inside = match start {
                Bound::Unbounded => true,
                Bound::Included(_) | Bound::Excluded(_) => {
                    let Some(ord) = self.cmp_at(sp, s, n, &h) else {
                        break;
                    };
                    match start {
                        Bound::Included(_) => ord.is_le(),
                        _ => ord.is_lt(),
                    }
                }
            };
            if inside {
                it.push(n);
                n = h.left;
            } else {
                n = h.right;
            }
        }
        it
    }

    /// Ascending iteration over all entries.
    pub fn iter(&self) -> Iter<'_, E> {
        self.range_from(Bound::Unbounded)
    }

    /// Bytes allocated for node pages (all three arrays of each) and the page table
    /// (capacity × size), for memory accounting.
    pub fn allocated_bytes(&self) -> usize {
        let table = self.pages.capacity().saturating_mul(size_of::<Page<E>>());
        table.saturating_add(self.page_bytes)
    }

    /// Drops every entry and frees all pages. Reservations are dropped too (no slots remain to
    /// back them).
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    // ---- arena -------------------------------------------------------------------------------

    fn hot(&self, i: u32) -> Option<&Hot> {
        let (p, o) = split(i);
        self.pages.get(p)?.hot.get(o)
    }

    fn hot_mut(&mut self, i: u32) -> Option<&mut Hot> {
        let (p, o) = split(i);
        self.pages.get_mut(p)?.hot.get_mut(o)
    }

    fn payload(&self, i: u32) -> Option<&E> {
        let (p, o) = split(i);
        self.pages.get(p)?.payload.get(o)?.as_ref()
    }

    fn payload_slot_mut(&mut self, i: u32) -> Option<&mut Option<E>> {
        let (p, o) = split(i);
        self.pages.get_mut(p)?.payload.get_mut(o)
    }

    /// All three parts of slot `i`, mutably.
    fn parts_mut(&mut self, i: u32) -> Option<(&mut Hot, &mut u8, &mut Option<E>)> {
        let (p, o) = split(i);
        let page = self.pages.get_mut(p)?;
        Some((
            page.hot.get_mut(o)?,
            page.height.get_mut(o)?,
            page.payload.get_mut(o)?,
        ))
    }

    /// Free list plus slots never handed out.
    fn free_slots(&self) -> usize {
        let capacity = self.pages.len().saturating_mul(PAGE);
        let fresh = capacity.saturating_sub(self.used as usize);
        self.free_count.saturating_add(fresh)
    }

    /// One empty page, or `None` (having freed whatever it got) if any array cannot be had.
    fn new_page() -> Option<Page<E>> {
        if !page_alloc_permitted() {
            return None;
        }
        let mut hot = Vec::new();
        hot.try_reserve_exact(PAGE).ok()?;
        let mut height = Vec::new();
        height.try_reserve_exact(PAGE).ok()?;
        let mut payload = Vec::new();
        payload.try_reserve_exact(PAGE).ok()?;
        Some(Page {
            hot,
            height,
            payload,
        })
    }

    /// Appends `count` empty pages, or none at all.
    fn grow(&mut self, count: usize) -> Result<(), AllocError> {
        let start = self.pages.len();
        if start
            .checked_add(count)
            .is_none_or(|total| total > MAX_PAGES)
        {
            return Err(AllocError);
        }
        self.pages.try_reserve(count).map_err(|_| AllocError)?;
        let mut added = 0usize;
        for _ in 0..count {
            let Some(page) = Self::new_page() else {
                self.pages.truncate(start);
                return Err(AllocError);
            };
            added = added.saturating_add(page.bytes());
            // Capacity for `count` more pages was reserved above: this push does not allocate.
            if fallible::push(&mut self.pages, page).is_err() {
                self.pages.truncate(start);
                return Err(AllocError);
            }
        }
        self.page_bytes = self.page_bytes.saturating_add(added);
        Ok(())
    }

    /// Puts `e` in a free slot (free list first, else page capacity); never allocates.
    fn alloc_slot(&mut self, e: E, prefix: u64) -> Result<u32, E> {
        let head = self.free_head;
        let fresh = Hot {
            prefix,
            left: NIL,
            right: NIL,
        };
        if let Some((hot, height, payload)) = self.parts_mut(head) {
            let next = hot.left;
            *hot = fresh;
            *height = 1;
            *payload = Some(e);
            self.free_head = next;
            self.free_count = self.free_count.saturating_sub(1);
            return Ok(head);
        }
        let i = self.used;
        let Some(next) = i.checked_add(1) else {
            return Err(e);
        };
        let (p, o) = split(i);
        match self.pages.get_mut(p) {
            // `o == len` holds while pages fill in order; room in all three arrays means no
            // allocation.
            Some(page) if page.len() == o && page.has_room() => {
                // has_room() checked spare capacity in all three arrays, so each push succeeds
                // (and none can allocate); `check()` verifies the arrays stay in step.
                let _ = fallible::push(&mut page.hot, fresh);
                let _ = fallible::push(&mut page.height, 1);
                let _ = fallible::push(&mut page.payload, Some(e));
                self.used = next;
                Ok(i)
            }
            _ => Err(e),
        }
    }

    /// Replaces the payload of an existing node, keeping its id.
    fn replace(&mut self, i: u32, e: E) -> Result<(NodeId, Option<E>), E> {
        match self.payload_slot_mut(i) {
            Some(slot) => Ok((NodeId(i), slot.replace(e))),
            None => Err(e),
        }
    }

    /// Inserts `e` (key prefix `prefix`), whose key is known to be absent, into a free slot and
    /// links it below the end of `path`, the descent that missed it.
    fn link_new(&mut self, e: E, prefix: u64, path: &Path) -> Result<(NodeId, Option<E>), E> {
        let i = self.alloc_slot(e, prefix)?;
        self.retrace(path, i);
        self.len = self.len.saturating_add(1);
        Ok((NodeId(i), None))
    }

    // ---- AVL -----------------------------------------------------------------------------------

    /// Compares a key (with its prefix) with the key of node `n`, whose hot part is `h`. Reads
    /// the payload only when the prefixes tie; `None` if that slot is free (broken invariant).
    fn cmp_at(&self, prefix: u64, key: &[u8], n: u32, h: &Hot) -> Option<Ordering> {
        match prefix.cmp(&h.prefix) {
            Ordering::Equal => Some(key.cmp(self.payload(n)?.key())),
            ord => Some(ord),
        }
    }

    fn find_idx(&self, key: &[u8]) -> u32 {
        let prefix = prefix_of(key);
        let mut n = self.root;
        while let Some(&h) = self.hot(n) {
            n = match self.cmp_at(prefix, key, n, &h) {
                Some(Ordering::Less) => h.left,
                Some(Ordering::Greater) => h.right,
                Some(Ordering::Equal) => return n,
                None => return NIL,
            };
        }
        NIL
    }

    fn height(&self, i: u32) -> u8 {
        let (p, o) = split(i);
        self.pages
            .get(p)
            .and_then(|page| page.height.get(o))
            .copied()
            .unwrap_or(0)
    }

    fn set_height(&mut self, i: u32, to: u8) {
        let (p, o) = split(i);
        if let Some(h) = self
            .pages
            .get_mut(p)
            .and_then(|page| page.height.get_mut(o))
        {
            *h = to;
        }
    }

    fn left(&self, i: u32) -> u32 {
        self.hot(i).map_or(NIL, |h| h.left)
    }

    fn right(&self, i: u32) -> u32 {
        self.hot(i).map_or(NIL, |h| h.right)
    }

    fn set_left(&mut self, i: u32, to: u32) {
        if let Some(h) = self.hot_mut(i) {
            h.left = to;
        }
    }

    fn set_right(&mut self, i: u32, to: u32) {
        if let Some(h) = self.hot_mut(i) {
            h.right = to;
        }
    }

    fn update(&mut self, i: u32) {
        let h = self
            .height(self.left(i))
            .max(self.height(self.right(i)))
            .saturating_add(1);
        self.set_height(i, h);
    }

    fn rotate_right(&mut self, i: u32) -> u32 {
        let l = self.left(i);
        if l == NIL {
            return i;
        }
        self.set_left(i, self.right(l));
        self.set_right(l, i);
        self.update(i);
        self.update(l);
        l
    }

    fn rotate_left(&mut self, i: u32) -> u32 {
        let r = self.right(i);
        if r == NIL {
            return i;
        }
        self.set_right(i, self.left(r));
        self.set_left(r, i);
        self.update(i);
        self.update(r);
        r
    }

    /// Fixes the height of `i` and restores balance after one side changed by one level;
    /// returns the new subtree root.
    fn rebalance(&mut self, i: u32) -> u32 {
        self.update(i);
        let (l, r) = (self.left(i), self.right(i));
        let (hl, hr) = (self.height(l), self.height(r));
        if hl > hr.saturating_add(1) {
            if self.height(self.left(l)) < self.height(self.right(l)) {
                let nl = self.rotate_left(l);
                self.set_left(i, nl);
            }
            self.rotate_right(i)
        } else if hr > hl.saturating_add(1) {
            if self.height(self.right(r)) < self.height(self.left(r)) {
                let nr = self.rotate_right(r);
                self.set_right(i, nr);
            }
            self.rotate_left(i)
        } else {
            i
        }
    }

    /// Descends from the root towards `key`, recording the nodes passed in `path`. Returns the
    /// node with `key` (not recorded) or `NIL` (`path` then ends at the parent-to-be); `None` if
    /// the descent meets a free slot or is deeper than [`STACK`], which the invariants rule out.
    fn find_path(&self, prefix: u64, key: &[u8], path: &mut Path) -> Option<u32> {
        // Depth and sides stay in registers during the descent and are stored once at the end.
        let mut depth = path.depth;
        let mut sides = path.left;
        let mut n = self.root;
        let found = loop {
            let Some(&h) = self.hot(n) else {
                break Some(NIL);
            };
            let (Some(slot), Some(bit)) = (
                path.nodes.get_mut(depth),
                u32::try_from(depth).ok().and_then(|d| 1u64.checked_shl(d)),
            ) else {
                break None;
            };
            *slot = n;
            depth = depth.saturating_add(1);
            n = match self.cmp_at(prefix, key, n, &h) {
                Some(Ordering::Less) => {
                    sides |= bit;
                    h.left
                }
                Some(Ordering::Greater) => {
                    sides &= !bit;
                    h.right
                }
                Some(Ordering::Equal) => {
                    depth = depth.saturating_sub(1);
                    break Some(n);
                }
                None => break None,
            };
        };
        path.depth = depth;
        path.left = sides;
        found
    }

    /// Makes `to` the child of `at` on the given side.
    fn set_child(&mut self, at: u32, left: bool, to: u32) {
        if left {
            self.set_left(at, to);
        } else {
            self.set_right(at, to);
        }
    }

    /// Makes `to` the subtree at depth `k` of `path`: the root if `k == 0`, else the child of
    /// `path[k - 1]` on the recorded side.
    fn link_at(&mut self, path: &Path, k: usize, to: u32) {
        match k.checked_sub(1).and_then(|up| path.get(up)) {
            Some((parent, left)) => self.set_child(parent, left, to),
            None => self.root = to,
        }
    }

    /// Puts the subtree `sub` below the end of `path` (where one subtree grew or shrank by one
    /// level) and walks back up, fixing heights and rotating, until a subtree keeps its old
    /// height: nothing above it changes then. AVL inserts stop after a level or two on average,
    /// so the upper levels (and their siblings' heights) are not touched again.
    fn retrace(&mut self, path: &Path, mut sub: u32) {
        let mut k = path.depth;
        while let Some(up) = k.checked_sub(1) {
            k = up;
            let Some((p, left)) = path.get(k) else {
                break;
            };
            self.set_child(p, left, sub);
            let old = self.height(p);
            let top = self.rebalance(p);
            if self.height(top) == old {
                if top != p {
                    self.link_at(path, k, top);
                }
                return;
            }
            sub = top;
        }
        self.root = sub;
    }

    /// Unlinks the node `gone`, found at the end of `path`, replacing it by the minimum node of
    /// its right subtree if it has two children (the node itself, not its payload, so no entry
    /// changes slot). `None` (and nothing changed) if `gone` is `NIL` or the path would overflow.
    fn unlink(&mut self, gone: u32, mut path: Path) -> Option<()> {
        let h = *self.hot(gone)?;
        if h.left == NIL || h.right == NIL {
            let sub = if h.left == NIL { h.right } else { h.left };
            self.retrace(&path, sub);
            return Some(());
        }
        // `gone`'s place on the path; the minimum of its right subtree will take it.
        let at = path.depth;
        path.push(gone, false)?;
        let mut min = h.right;
        loop {
            let l = self.left(min);
            if l == NIL {
                break;
            }
            path.push(min, true)?;
            min = l;
        }
        // Nothing has changed so far; from here on every step succeeds.
        let sub = self.right(min);
        if min != h.right {
            // Detached from its parent (the end of `path`) by the first step of `retrace`.
            self.set_right(min, h.right);
        }
        self.set_left(min, h.left);
        self.set_height(min, self.height(gone));
        path.set(at, min);
        self.link_at(&path, at, min);
        self.retrace(&path, sub);
        Some(())
    }
}

/// The nodes a descent passed, each with the side it went on: enough to relink and rebalance
/// bottom-up without parent links or recursion.
struct Path {
    nodes: [u32; STACK],
    /// Bit `k` set: the descent went left at `nodes[k]`.
    left: u64,
    depth: usize,
}

impl Path {
    fn new() -> Self {
        Path {
            nodes: [NIL; STACK],
            left: 0,
            depth: 0,
        }
    }

    /// Records `n`; `None` if the path is full (deeper than any AVL tree of 2^32 nodes).
    fn push(&mut self, n: u32, left: bool) -> Option<()> {
        let slot = self.nodes.get_mut(self.depth)?;
        *slot = n;
        let bit = 1u64.checked_shl(u32::try_from(self.depth).ok()?)?;
        if left {
            self.left |= bit;
        } else {
            self.left &= !bit;
        }
        self.depth = self.depth.saturating_add(1);
        Some(())
    }

    /// The node at depth `k` and the side the descent took there.
    fn get(&self, k: usize) -> Option<(u32, bool)> {
        if k >= self.depth {
            return None;
        }
        let n = *self.nodes.get(k)?;
        let bit = 1u64.checked_shl(u32::try_from(k).ok()?)?;
        Some((n, self.left & bit != 0))
    }

    /// Replaces the node at depth `k`, keeping its side.
    fn set(&mut self, k: usize, n: u32) {
        if k < self.depth
            && let Some(slot) = self.nodes.get_mut(k)
        {
            *slot = n;
        }
    }
}

/// Test-only fault injection: a per-thread budget of page allocations (also usable by the
/// engine's tests to simulate pool exhaustion).
#[cfg(test)]
pub(crate) mod fault {
    use core::cell::Cell;

    std::thread_local! {
        static PAGE_BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// `None`: unlimited; `Some(n)`: the next `n` page allocations succeed, later ones fail.
    pub(crate) fn set_page_budget(budget: Option<usize>) {
        PAGE_BUDGET.with(|b| b.set(budget));
    }

    pub(crate) fn take_page() -> bool {
        PAGE_BUDGET.with(|b| match b.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                b.set(Some(n - 1));
                true
            }
        })
    }
}

#[cfg(test)]
fn page_alloc_permitted() -> bool {
    fault::take_page()
}

#[cfg(not(test))]
#[inline(always)]
fn page_alloc_permitted() -> bool {
    true
}

/// Ascending iterator over `(NodeId, &E)`; holds a fixed stack, allocates nothing.
pub struct Iter<'a, E: Keyed> {
    tree: &'a Tree<E>,
    /// Nodes whose left part is done and which are still to be yielded; top is the next one.
    stack: [u32; STACK],
    depth: usize,
}

impl<E: Keyed> Iter<'_, E> {
    /// At most one node per tree level is on the stack and the height is <= 46 < [`STACK`], so
    /// the overflow branch is unreachable; it ends the descent instead of panicking.
    fn push(&mut self, n: u32) {
        if let Some(slot) = self.stack.get_mut(self.depth) {
            *slot = n;
            self.depth = self.depth.saturating_add(1);
        }
    }
}

impl<'a, E: Keyed> Iterator for Iter<'a, E> {
    type Item = (NodeId, &'a E);

    fn next(&mut self) -> Option<Self::Item> {
        self.depth = self.depth.checked_sub(1)?;
        let top = *self.stack.get(self.depth)?;
        let tree = self.tree;
        let mut n = tree.right(top);
        while let Some(h) = tree.hot(n) {
            self.push(n);
            n = h.left;
        }
        Some((NodeId(top), tree.payload(top)?))
    }
}

impl<E: Keyed> FusedIterator for Iter<'_, E> {}

impl<E: Keyed> Clone for Iter<'_, E> {
    fn clone(&self) -> Self {
        Iter {
            tree: self.tree,
            stack: self.stack,
            depth: self.depth,
        }
    }
}

impl<'a, E: Keyed> IntoIterator for &'a Tree<E> {
    type Item = (NodeId, &'a E);
    type IntoIter = Iter<'a, E>;

    fn into_iter(self) -> Iter<'a, E> {
        self.iter()
    }
}

#[cfg(test)]
impl<E: Keyed> Tree<E> {
    /// Verifies every structural invariant; panics on the first violation.
    fn check(&self) {
        let slots = self.used as usize;
        let mut seen = std::vec![false; slots];
        let mut count = 0usize;
        let mut prev: Option<&[u8]> = None;
        let h = self.check_subtree(self.root, &mut seen, &mut count, &mut prev);
        assert_eq!(h, self.height(self.root), "root height");
        for (id, e) in self.iter() {
            let hot = self.hot(id.0).expect("linked slot");
            assert_eq!(
                hot.prefix,
                prefix_of(e.key()),
                "stale key prefix at {}",
                id.0
            );
        }
        assert_eq!(count, self.len, "len");

        let mut free = 0usize;
        let mut f = self.free_head;
        while f != NIL {
            let hot = self.hot(f).expect("free list points outside the arena");
            assert!(self.payload(f).is_none(), "free slot {f} holds a payload");
            assert!(!seen[f as usize], "slot {f} both linked and free");
            seen[f as usize] = true;
            free += 1;
            assert!(free <= slots, "free list cycle");
            f = hot.left;
        }
        assert_eq!(free, self.free_count, "free_count");
        assert_eq!(self.len + self.free_count, slots, "slots leaked");
        assert!(seen.iter().all(|&s| s), "slot neither linked nor free");

        assert!(self.pages.len() <= MAX_PAGES);
        let mut bytes = 0;
        for (p, page) in self.pages.iter().enumerate() {
            assert!(page.hot.capacity() >= PAGE, "page {p} hot capacity");
            assert!(page.height.capacity() >= PAGE, "page {p} height capacity");
            assert!(page.payload.capacity() >= PAGE, "page {p} payload capacity");
            let expect = slots.saturating_sub(p * PAGE).min(PAGE);
            assert_eq!(page.hot.len(), expect, "page {p} fill");
            assert_eq!(page.height.len(), expect, "page {p} height fill");
            assert_eq!(page.payload.len(), expect, "page {p} payload fill");
            for h in &page.hot {
                let at = h as *const Hot as usize;
                assert_eq!(at % 16, 0, "page {p}: hot entry not 16-aligned");
            }
            bytes += page.bytes();
        }
        assert_eq!(bytes, self.page_bytes, "page_bytes");
        assert!(self.free_slots() >= self.reserved, "reservation not backed");
        if self.is_empty() {
            assert_eq!(self.root, NIL);
        }
    }

    /// Returns the computed height of the subtree, checking heights, balance, key order and
    /// key prefixes.
    fn check_subtree<'a>(
        &'a self,
        i: u32,
        seen: &mut [bool],
        count: &mut usize,
        prev: &mut Option<&'a [u8]>,
    ) -> u8 {
        if i == NIL {
            return 0;
        }
        let hot = *self.hot(i).expect("link points outside the arena");
        assert!(!seen[i as usize], "slot {i} linked twice");
        seen[i as usize] = true;
        let hl = self.check_subtree(hot.left, seen, count, prev);
        let key = self.payload(i).expect("linked slot without payload").key();
        assert_eq!(hot.prefix, prefix_of(key), "stale key prefix at {i}");
        if let Some(p) = *prev {
            assert!(p < key, "keys out of order");
        }
        *prev = Some(key);
        *count += 1;
        let hr = self.check_subtree(hot.right, seen, count, prev);
        assert!(hl.abs_diff(hr) <= 1, "unbalanced at {i}");
        let h = hl.max(hr) + 1;
        assert_eq!(self.height(i), h, "stored height at {i}");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::fault::set_page_budget;
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Ent {
        key: Box<[u8]>,
        val: u32,
    }

    impl Keyed for Ent {
        fn key(&self) -> &[u8] {
            &self.key
        }
    }

    fn ent(key: &[u8], val: u32) -> Ent {
        Ent {
            key: key.into(),
            val,
        }
    }

    fn k32(i: u32) -> [u8; 4] {
        i.to_be_bytes()
    }

    /// Deterministic xorshift, so the tests need no RNG crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                let j = (self.next() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        }
    }

    /// Resets the fault-injection budget even if a test fails.
    struct Budget;
    impl Budget {
        fn set(b: Option<usize>) -> Budget {
            set_page_budget(b);
            Budget
        }
    }
    impl Drop for Budget {
        fn drop(&mut self) {
            set_page_budget(None);
        }
    }

    fn assert_balanced<E: Keyed>(t: &Tree<E>) {
        t.check();
        let bound = 1.45 * ((t.len() + 2) as f64).log2();
        let h = t.height(t.root);
        assert!(
            f64::from(h) <= bound,
            "height {h} > {bound} for n = {}",
            t.len()
        );
    }

    proptest::proptest! {
        #[test]
        fn prefix_order_agrees_with_key_order(
            a in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::any::<u8>()], 0..12),
            b in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::any::<u8>()], 0..12),
        ) {
            let by_prefix = prefix_of(&a).cmp(&prefix_of(&b)).then_with(|| a.cmp(&b));
            proptest::prop_assert_eq!(by_prefix, a.cmp(&b));
        }
    }

    #[test]
    fn slot_is_33_bytes_for_boxed_slice_payloads() {
        // The descent reads only `Hot`: 8 (key prefix) + 4 + 4 (links), four to a cache line.
        assert_eq!(size_of::<Hot>(), 16);
        assert_eq!(align_of::<Hot>(), 16);
        // Plus 1 (height) and 16 (payload, `None` in the pointer's niche) in their own arrays.
        assert_eq!(size_of::<Option<Box<[u8]>>>(), 16);
        struct BoxKey(#[allow(dead_code)] Box<[u8]>);
        assert_eq!(size_of::<Option<BoxKey>>(), 16);
        let mut t = Tree::new();
        t.insert(ent(b"a", 1)).unwrap();
        assert_eq!(
            t.allocated_bytes(),
            PAGE * (16 + 1 + size_of::<Option<Ent>>())
                + t.pages.capacity() * size_of::<Page<Ent>>()
        );
    }

    #[test]
    fn new_allocates_nothing() {
        const EMPTY: Tree<Ent> = Tree::new();
        let t = EMPTY;
        assert_eq!(t.allocated_bytes(), 0);
        assert!(t.is_empty());
        assert_eq!(t.iter().count(), 0);
        assert_eq!(Tree::<Ent>::default().allocated_bytes(), 0);
        t.check();
    }

    #[test]
    fn replace_keeps_id_and_returns_old() {
        let mut t = Tree::new();
        let (a, old) = t.insert(ent(b"a", 1)).unwrap();
        assert!(old.is_none());
        let (a2, old) = t.insert(ent(b"a", 2)).unwrap();
        assert_eq!(a, a2);
        assert_eq!(old, Some(ent(b"a", 1)));
        assert_eq!(t.node(a).unwrap().val, 2);
        t.node_mut(a).unwrap().val = 3;
        assert_eq!(t.get(b"a").unwrap().val, 3);
        t.get_mut(b"a").unwrap().val = 4;
        assert_eq!(t.node(a).unwrap().val, 4);
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(b"a"), Some(ent(b"a", 4)));
        assert_eq!(t.node(a), None);
        assert_eq!(t.find(b"a"), None);
        assert_eq!(t.remove(b"a"), None);
        t.check();
    }

    #[test]
    fn removal_relinks_successor_nodes() {
        // Every key of a perfect 31-node tree removed in turn, from every shape: a leaf, a node
        // with one child, a node whose successor is its right child, one whose successor lies
        // deeper, and the root.
        for first in 0..31u32 {
            let mut t = Tree::new();
            let mut ids = BTreeMap::new();
            for k in 0..31u32 {
                ids.insert(k, t.insert(ent(&k32(k), k)).unwrap().0);
            }
            t.check();
            let mut order: Vec<u32> = (first..31).chain(0..first).collect();
            if first % 2 == 1 {
                order.reverse();
            }
            for k in order {
                assert_eq!(t.remove(&k32(k)).map(|e| e.val), Some(k));
                ids.remove(&k);
                t.check();
                for (&k, &id) in &ids {
                    assert_eq!(t.find(&k32(k)), Some(id));
                }
            }
            assert!(t.is_empty());
        }
    }

    #[test]
    fn node_ids_stable_across_removals() {
        let mut t = Tree::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut keys: Vec<u32> = (0..5000).map(|_| rng.next() as u32).collect();
        keys.sort_unstable();
        keys.dedup();
        rng.shuffle(&mut keys);
        let ids: Vec<(u32, NodeId)> = keys
            .iter()
            .map(|&k| (k, t.insert(ent(&k32(k), k)).unwrap().0))
            .collect();
        t.check();
        let (gone, kept) = ids.split_at(ids.len() / 2);
        for &(k, _) in gone {
            assert_eq!(t.remove(&k32(k)).unwrap().val, k);
            t.check();
        }
        for &(k, id) in kept {
            assert_eq!(t.node(id).unwrap().key(), &k32(k));
            assert_eq!(t.find(&k32(k)), Some(id));
        }
        for &(k, id) in gone {
            assert_eq!(t.find(&k32(k)), None);
            assert_eq!(t.node(id), None, "freed slot still has a payload");
        }
        // Freed slots are reused without allocating.
        let bytes = t.allocated_bytes();
        for &(k, _) in gone {
            t.insert(ent(&k32(k), 0)).unwrap();
        }
        assert_eq!(t.allocated_bytes(), bytes);
        for &(k, id) in kept {
            assert_eq!(t.find(&k32(k)), Some(id));
        }
        t.check();
    }

    #[test]
    fn insert_reserved_never_allocates() {
        let mut t = Tree::new();
        for i in 0..10 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        t.reserve(3000).unwrap();
        assert_eq!(t.reserved(), 3000);
        t.check();
        let bytes = t.allocated_bytes();
        let _no_pages = Budget::set(Some(0));
        // Existing keys also consume a reservation.
        for i in 0..3000 {
            let (id, old) = t.insert_reserved(ent(&k32(i), i + 1)).unwrap();
            assert_eq!(old.is_some(), i < 10);
            assert_eq!(t.find(&k32(i)), Some(id));
            assert_eq!(t.reserved(), 2999 - i as usize);
        }
        assert_eq!(t.allocated_bytes(), bytes);
        assert_eq!(t.len(), 3000);
        t.check();
        // No reservation left: behaves like insert, which needs a page now and fails cleanly.
        let e = ent(b"new", 7);
        if t.free_slots() == 0 {
            assert_eq!(t.insert_reserved(e.clone()), Err(e));
            assert_eq!(t.len(), 3000);
            t.check();
        }
    }

    #[test]
    fn insert_does_not_use_reserved_slots() {
        let mut t = Tree::new();
        for i in 0..1000 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        let bytes = t.allocated_bytes();
        let free = PAGE - 1000;
        assert_eq!(t.free_slots(), free);
        t.reserve(free).unwrap();
        assert_eq!(
            t.allocated_bytes(),
            bytes,
            "reserve within free slots allocated"
        );

        {
            let _no_pages = Budget::set(Some(0));
            let e = ent(b"x", 1);
            assert_eq!(t.insert(e.clone()), Err(e));
            assert_eq!(t.len(), 1000);
            assert_eq!(t.reserved(), free);
            assert_eq!(t.allocated_bytes(), bytes);
            t.check();
            // Replacing needs no slot, so it succeeds without a page.
            assert!(t.insert(ent(&k32(5), 55)).unwrap().1.is_some());
        }

        t.insert(ent(b"x", 1)).unwrap();
        assert!(t.allocated_bytes() > bytes, "insert took a reserved slot");
        assert_eq!(t.pages.len(), 2);
        assert_eq!(t.reserved(), free);
        t.check();
    }

    #[test]
    fn reserve_failure_leaves_tree_unchanged() {
        let mut t = Tree::new();
        t.insert(ent(b"a", 1)).unwrap();
        t.reserve(10).unwrap();
        assert_eq!(t.reserve(usize::MAX), Err(AllocError));
        assert_eq!(t.reserve(usize::MAX - 5), Err(AllocError));
        assert_eq!(t.reserve(MAX_PAGES * PAGE), Err(AllocError));
        assert_eq!(t.reserved(), 10);
        assert_eq!(t.pages.len(), 1);
        {
            // Needs three pages, only two can be had: all or nothing.
            let _two = Budget::set(Some(2));
            assert_eq!(t.reserve(3 * PAGE), Err(AllocError));
        }
        assert_eq!(t.reserved(), 10);
        assert_eq!(t.pages.len(), 1);
        assert_eq!(t.page_bytes, t.pages[0].bytes());
        t.check();
        t.reserve(3 * PAGE).unwrap();
        assert_eq!(t.pages.len(), 4);
        t.unreserve(usize::MAX);
        assert_eq!(t.reserved(), 0);
        t.check();
    }

    #[test]
    fn clear_frees_everything() {
        let mut t = Tree::new();
        for i in 0..3000 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        t.reserve(5).unwrap();
        t.remove(&k32(7));
        t.clear();
        assert_eq!(t.allocated_bytes(), 0);
        assert_eq!(t.reserved(), 0);
        assert!(t.is_empty());
        t.check();
        t.insert(ent(b"a", 1)).unwrap();
        t.check();
    }

    #[test]
    fn range_from_bounds() {
        let mut t = Tree::new();
        for k in [&b"b"[..], b"d", b"f", b"", b"dd"] {
            t.insert(ent(k, 0)).unwrap();
        }
        let keys = |b: Bound<&[u8]>| -> Vec<Vec<u8>> {
            t.range_from(b).map(|(_, e)| e.key().to_vec()).collect()
        };
        let v = |s: &[&[u8]]| s.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(keys(Bound::Unbounded), v(&[b"", b"b", b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Included(b"d")), v(&[b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Excluded(b"d")), v(&[b"dd", b"f"]));
        assert_eq!(keys(Bound::Included(b"c")), v(&[b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Excluded(b"")), v(&[b"b", b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Excluded(b"f")), v(&[]));
        let ids: Vec<NodeId> = (&t).into_iter().map(|(id, _)| id).collect();
        for (id, (_, e)) in ids.iter().zip(t.iter()) {
            assert_eq!(t.find(e.key()), Some(*id));
        }
    }

    #[test]
    fn hundred_thousand_stay_balanced() {
        const N: u32 = 100_000;
        let mut t = Tree::new();
        for i in 0..N {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        assert_balanced(&t);
        let mut rng = Rng(12345);
        let mut random: Vec<u32> = (0..N).map(|_| rng.next() as u32 | 0x8000_0000).collect();
        for &k in &random {
            t.insert(ent(&k32(k), k)).unwrap();
        }
        assert_balanced(&t);
        assert!(t.iter().map(|(_, e)| e.val).is_sorted());
        // Sequential removals of the lower half, then random removals.
        for i in 0..N / 2 {
            assert!(t.remove(&k32(i)).is_some());
        }
        assert_balanced(&t);
        rng.shuffle(&mut random);
        for &k in &random[..random.len() / 2] {
            t.remove(&k32(k));
        }
        assert_balanced(&t);
        let remaining: Vec<u32> = t.iter().map(|(_, e)| e.val).collect();
        for k in remaining {
            assert!(t.remove(&k32(k)).is_some());
        }
        assert!(t.is_empty());
        t.check();
        // Pages are kept while in use; an emptied tree still reuses them.
        let bytes = t.allocated_bytes();
        for i in 0..N {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        assert_eq!(t.allocated_bytes(), bytes);
        assert_balanced(&t);
    }

    // ---- model test --------------------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, u32),
        InsertReserved(Vec<u8>, u32),
        InsertMany(u16, u16),
        Remove(Vec<u8>),
        Reserve(usize),
        Unreserve(usize),
        Get(Vec<u8>),
        GetMut(Vec<u8>, u32),
        Range(u8, Vec<u8>),
        Budget(Option<usize>),
        Clear,
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => proptest::collection::vec(0u8..3, 0..3),
            1 => proptest::collection::vec(any::<u8>(), 0..4),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            6 => (key(), any::<u32>()).prop_map(|(k, v)| Op::InsertReserved(k, v)),
            1 => (any::<u16>(), 0u16..1500).prop_map(|(s, n)| Op::InsertMany(s, n)),
            8 => key().prop_map(Op::Remove),
            3 => prop_oneof![0usize..4, 0usize..2500].prop_map(Op::Reserve),
            2 => (0usize..6).prop_map(Op::Unreserve),
            2 => key().prop_map(Op::Get),
            1 => (key(), any::<u32>()).prop_map(|(k, v)| Op::GetMut(k, v)),
            2 => (0u8..3, key()).prop_map(|(b, k)| Op::Range(b, k)),
            1 => proptest::option::of(0usize..3).prop_map(Op::Budget),
            1 => Just(Op::Clear),
        ]
    }

    #[derive(Default)]
    struct Model {
        map: BTreeMap<Vec<u8>, u32>,
        ids: BTreeMap<Vec<u8>, NodeId>,
        reserved: usize,
        budget: Option<usize>,
    }

    impl Model {
        /// Checks an insert result against the model and applies it.
        fn insert(
            &mut self,
            t: &Tree<Ent>,
            k: Vec<u8>,
            v: u32,
            r: Result<(NodeId, Option<Ent>), Ent>,
        ) {
            match r {
                Ok((id, old)) => {
                    assert_eq!(old.map(|e| e.val), self.map.insert(k.clone(), v));
                    let prev = self.ids.insert(k, id);
                    assert!(prev.is_none_or(|p| p == id), "replace changed the id");
                }
                Err(e) => {
                    assert_eq!(e, ent(&k, v), "entry not given back");
                    assert!(!self.map.contains_key(&k), "replace failed");
                    assert!(
                        self.budget.is_some(),
                        "insert failed without fault injection"
                    );
                    assert!(t.free_slots() <= t.reserved());
                }
            }
        }
    }

    fn run(ops: Vec<Op>) {
        let _reset = Budget::set(None);
        let mut t: Tree<Ent> = Tree::new();
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    let r = t.insert(ent(&k, v));
                    m.insert(&t, k, v, r);
                }
                Op::InsertReserved(k, v) => {
                    let bytes = t.allocated_bytes();
                    let r = t.insert_reserved(ent(&k, v));
                    if m.reserved > 0 {
                        assert!(r.is_ok(), "reserved insert failed");
                        assert_eq!(t.allocated_bytes(), bytes, "reserved insert allocated");
                        m.reserved -= 1;
                    }
                    m.insert(&t, k, v, r);
                }
                Op::InsertMany(start, n) => {
                    for i in start..start.saturating_add(n) {
                        let k = i.to_be_bytes().to_vec();
                        let r = t.insert(ent(&k, u32::from(i)));
                        m.insert(&t, k, u32::from(i), r);
                    }
                }
                Op::Remove(k) => {
                    assert_eq!(t.remove(&k).map(|e| e.val), m.map.remove(&k));
                    m.ids.remove(&k);
                }
                Op::Reserve(n) => match t.reserve(n) {
                    Ok(()) => m.reserved += n,
                    Err(AllocError) => assert!(m.budget.is_some()),
                },
                Op::Unreserve(n) => {
                    t.unreserve(n);
                    m.reserved = m.reserved.saturating_sub(n);
                }
                Op::Get(k) => {
                    assert_eq!(t.get(&k).map(|e| e.val), m.map.get(&k).copied());
                    assert_eq!(t.find(&k), m.ids.get(&k).copied());
                }
                Op::GetMut(k, v) => {
                    if let Some(e) = t.get_mut(&k) {
                        e.val = v;
                    }
                    if let Some(mv) = m.map.get_mut(&k) {
                        *mv = v;
                    }
                }
                Op::Range(b, k) => {
                    let (bound, model) = match b {
                        0 => (Bound::Included(&k[..]), Bound::Included(&k)),
                        1 => (Bound::Excluded(&k[..]), Bound::Excluded(&k)),
                        _ => (Bound::Unbounded, Bound::Unbounded),
                    };
                    let got: Vec<(Vec<u8>, u32)> = t
                        .range_from(bound)
                        .map(|(_, e)| (e.key.to_vec(), e.val))
                        .collect();
                    let want: Vec<(Vec<u8>, u32)> = m
                        .map
                        .range::<Vec<u8>, _>((model, Bound::Unbounded))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    assert_eq!(got, want);
                }
                Op::Budget(b) => {
                    set_page_budget(b);
                    m.budget = b;
                }
                Op::Clear => {
                    t.clear();
                    m.map.clear();
                    m.ids.clear();
                    m.reserved = 0;
                }
            }
            t.check();
            assert_eq!(t.len(), m.map.len());
            assert_eq!(t.reserved(), m.reserved);
            let got: Vec<(NodeId, Vec<u8>, u32)> = t
                .iter()
                .map(|(id, e)| (id, e.key.to_vec(), e.val))
                .collect();
            let want: Vec<(NodeId, Vec<u8>, u32)> = m
                .map
                .iter()
                .map(|(k, v)| (m.ids[k], k.clone(), *v))
                .collect();
            assert_eq!(got, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_btreemap(ops in proptest::collection::vec(op(), 0..120)) {
            run(ops);
        }
    }
}
