//! The two kinds of node of the B+-tree index, each an array of items in parallel fixed arrays.
//!
//! A leaf's item `i` is an entry: its key's head and its slot. An inner node's item `i` is child
//! `i` with its separator (the head and slot of the separator key); item 0's separator is
//! unused, so child `i` holds the keys `k` with `sep[i] <= k < sep[i + 1]`. Keeping children and
//! separators at the same index makes splits, merges and rotations the same code for both kinds:
//! [`Node`] is generic over its width `N` and its child array's length `C` (0 for a leaf, which
//! so carries no child array).
//!
//! Why the two kinds differ: a lookup's cost at scale is the cache and TLB misses of the nodes it
//! reads. Leaves are most of the index and are read once per lookup, so they are wide ([`LEAF`]
//! entries) and hold no children; inner nodes are few and live in a pool of their own, so they
//! stay packed together in cache and TLB.

use super::{NIL, NodeIx};

/// Entries a leaf holds.
pub(super) const LEAF: usize = 64;
/// Children an inner node holds.
pub(super) const INNER: usize = 64;

/// A leaf: entries only.
pub(super) type Leaf = Node<LEAF, 0>;
/// An inner node: children and separators.
pub(super) type Inner = Node<INNER, INNER>;

/// One item: the head and slot of an entry or separator, and a child (inner nodes only;
/// [`NodeIx::NIL`] in a leaf).
#[derive(Clone, Copy)]
pub(super) struct Item {
    pub(super) head: u64,
    pub(super) slot: u32,
    pub(super) child: NodeIx,
}

/// A node of width `N`; `C` is `N` for an inner node and 0 for a leaf.
#[derive(Clone, Copy)]
pub(super) struct Node<const N: usize, const C: usize> {
    /// Key heads, sorted; `u64::MAX` past `len`, so a search can count over the whole array
    /// without reading `len` first.
    pub(super) heads: [u64; N],
    /// Slots of the entries (leaf) or of the separator keys (inner); a free node's free-list
    /// link in `slots[0]`.
    pub(super) slots: [u32; N],
    /// Children (inner nodes only).
    child: [NodeIx; C],
    len: u32,
}

impl<const N: usize, const C: usize> Node<N, C> {
    /// Most items.
    pub(super) const CAP: usize = N;
    /// Fewest items a node other than the root holds.
    pub(super) const MIN: usize = N / 2;

    pub(super) const EMPTY: Self = Node {
        heads: [u64::MAX; N],
        slots: [NIL; N],
        child: [NodeIx::NIL; C],
        len: 0,
    };

    pub(super) fn len(&self) -> usize {
        (self.len as usize).min(N)
    }

    /// Sets the length; shrinking refills the heads past it with the `u64::MAX` sentinel.
    fn set_len(&mut self, n: usize) {
        let (old, n) = (self.len(), n.min(N));
        if let Some(past) = self.heads.get_mut(n..old) {
            past.fill(u64::MAX);
        }
        self.len = u32::try_from(n).unwrap_or(0);
    }

    /// The free-list link of a free node.
    pub(super) fn link(&self) -> NodeIx {
        NodeIx(self.slots.first().copied().unwrap_or(NIL))
    }

    /// Empties the node and makes it a free-list entry pointing at `next`.
    pub(super) fn set_link(&mut self, next: NodeIx) {
        self.set_len(0);
        if let Some(s) = self.slots.first_mut() {
            *s = next.0;
        }
    }

    /// Prefetches the cache lines a search of this node reads (its heads and length).
    pub(super) fn prefetch_search(&self) {
        let base = core::ptr::from_ref(self).cast::<u8>();
        let mut off = 0usize;
        while off <= size_of::<[u64; N]>() {
            prefetch(base.wrapping_add(off));
            off = off.saturating_add(64);
        }
        prefetch(core::ptr::from_ref(&self.len).cast::<u8>());
    }

    /// Recomputes the items' heads with `f` (the tree's shared prefix changed).
    pub(super) fn rehead(&mut self, f: &impl Fn(u64) -> u64) {
        let len = self.len();
        for h in self.heads.iter_mut().take(len) {
            *h = f(*h);
        }
    }

    pub(super) fn item(&self, i: usize) -> Option<Item> {
        if i >= self.len() {
            return None;
        }
        self.item_raw(i)
    }

    pub(super) fn child_at(&self, i: usize) -> NodeIx {
        if i >= self.len() {
            return NodeIx::NIL;
        }
        self.child.get(i).copied().unwrap_or(NodeIx::NIL)
    }

    pub(super) fn set(&mut self, i: usize, it: Item) {
        if let (Some(h), Some(s)) = (self.heads.get_mut(i), self.slots.get_mut(i)) {
            *h = it.head;
            *s = it.slot;
        }
        if let Some(c) = self.child.get_mut(i) {
            *c = it.child;
        }
    }

    /// Sets the separator (head and slot of its key) of item `i`, keeping its child.
    pub(super) fn set_sep(&mut self, i: usize, head: u64, slot: u32) {
        if let (Some(dh), Some(ds)) = (self.heads.get_mut(i), self.slots.get_mut(i)) {
            *dh = head;
            *ds = slot;
        }
    }

    /// Inserts at `pos` (shifting the rest right); false if full or `pos` is past the end.
    pub(super) fn insert(&mut self, pos: usize, it: Item) -> bool {
        let len = self.len();
        if len >= N || pos > len {
            return false;
        }
        shift_right(&mut self.heads, pos, len);
        shift_right(&mut self.slots, pos, len);
        shift_right(&mut self.child, pos, len);
        self.set(pos, it);
        self.set_len(len.saturating_add(1));
        true
    }

    /// Removes item `pos`, shifting the rest left.
    pub(super) fn remove(&mut self, pos: usize) -> Option<Item> {
        let it = self.item(pos)?;
        let len = self.len();
        shift_left(&mut self.heads, pos, len);
        shift_left(&mut self.slots, pos, len);
        shift_left(&mut self.child, pos, len);
        self.set_len(len.saturating_sub(1));
        Some(it)
    }

    /// Item `i` regardless of `len`.
    fn item_raw(&self, i: usize) -> Option<Item> {
        Some(Item {
            head: *self.heads.get(i)?,
            slot: *self.slots.get(i)?,
            child: self.child.get(i).copied().unwrap_or(NodeIx::NIL),
        })
    }

    /// Appends every item of `other`; false (nothing changed) if they do not fit.
    pub(super) fn append(&mut self, other: &Self) -> bool {
        let (len, more) = (self.len(), other.len());
        if len.saturating_add(more) > N {
            return false;
        }
        for i in 0..more {
            if let Some(x) = other.item(i) {
                self.set(len.saturating_add(i), x);
            }
        }
        self.set_len(len.saturating_add(more));
        true
    }

    /// Splits a full node while inserting `it` at `pos`: `self` keeps the first `N/2 + 1` of
    /// the `N + 1` items and `right` (empty) gets the rest.
    pub(super) fn split_insert(&mut self, pos: usize, it: Item, right: &mut Self) {
        let len = self.len();
        let keep = (N / 2).saturating_add(1);
        // Items from `from` on move to `right`; `it` then goes to whichever side `pos` is on.
        let from = if pos < keep {
            keep.saturating_sub(1)
        } else {
            keep
        };
        for (j, i) in (from..len).enumerate() {
            if let Some(x) = self.item_raw(i) {
                right.set(j, x);
            }
        }
        right.set_len(len.saturating_sub(from));
        self.set_len(from.min(len));
        if pos < keep {
            self.insert(pos, it);
        } else {
            right.insert(pos.saturating_sub(keep), it);
        }
    }
}

/// A hint to load the cache line at `p`; never faults and changes nothing observable.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
fn prefetch(p: *const u8) {
    use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: PREFETCHT0 is part of SSE, which every x86_64 CPU has; a prefetch of any address,
    // valid or not, neither faults nor reads memory observably.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
}

/// Elsewhere (and under Miri) there is no stable prefetch; the lookup just waits for its miss.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
#[inline(always)]
fn prefetch(_: *const u8) {}

/// Moves `a[pos..len]` one place right (`a[len]` is overwritten); nothing if out of range.
fn shift_right<T: Copy>(a: &mut [T], pos: usize, len: usize) {
    if let Some(s) = a.get_mut(pos..=len)
        && let Some(n) = s.len().checked_sub(1)
    {
        s.copy_within(..n, 1);
    }
}

/// Moves `a[pos + 1..len]` one place left (over `a[pos]`); nothing if out of range.
fn shift_left<T: Copy>(a: &mut [T], pos: usize, len: usize) {
    if let Some(s) = a.get_mut(pos..len)
        && s.len() > 1
    {
        s.copy_within(1.., 0);
    }
}
