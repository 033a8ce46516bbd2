//! One node of the B+-tree index: up to [`F`] items in parallel fixed arrays.
//!
//! A leaf's item `i` is an entry: its key prefix and slot. An inner node's item `i` is child
//! `i` with its separator (prefix and the slot of the separator key); item 0's separator is
//! unused, so child `i` holds the keys `k` with `sep[i] <= k < sep[i + 1]`. Keeping children and
//! separators at the same index makes splits, merges and rotations the same for both kinds.

use super::NIL;

/// Most items a node holds.
pub(super) const F: usize = 32;
/// Fewest items a node other than the root holds.
pub(super) const MIN: usize = F / 2;

/// One item: (prefix, slot) of an entry or separator, and a child (inner nodes only).
#[derive(Clone, Copy)]
pub(super) struct Item {
    pub(super) p: u64,
    pub(super) k: u32,
    pub(super) c: u32,
}

#[derive(Clone, Copy)]
pub(super) struct Node {
    /// Key prefixes, sorted: what a search reads (four cache lines).
    pub(super) prefix: [u64; F],
    /// Slots of the entries (leaf) or of the separator keys (inner).
    pub(super) key: [u32; F],
    /// Children (inner); the free list's link in a free node.
    pub(super) child: [u32; F],
    pub(super) len: u32,
    pub(super) leaf: bool,
}

impl Node {
    pub(super) const EMPTY: Node = Node {
        prefix: [0; F],
        key: [NIL; F],
        child: [NIL; F],
        len: 0,
        leaf: true,
    };

    pub(super) fn len(&self) -> usize {
        (self.len as usize).min(F)
    }

    fn set_len(&mut self, n: usize) {
        self.len = u32::try_from(n.min(F)).unwrap_or(0);
    }

    pub(super) fn item(&self, i: usize) -> Option<Item> {
        if i >= self.len() {
            return None;
        }
        Some(Item {
            p: *self.prefix.get(i)?,
            k: *self.key.get(i)?,
            c: *self.child.get(i)?,
        })
    }

    pub(super) fn child_at(&self, i: usize) -> u32 {
        if i >= self.len() {
            return NIL;
        }
        self.child.get(i).copied().unwrap_or(NIL)
    }

    pub(super) fn set(&mut self, i: usize, it: Item) {
        if let (Some(p), Some(k), Some(c)) = (
            self.prefix.get_mut(i),
            self.key.get_mut(i),
            self.child.get_mut(i),
        ) {
            *p = it.p;
            *k = it.k;
            *c = it.c;
        }
    }

    /// Sets the separator (prefix and key slot) of item `i`, keeping its child.
    pub(super) fn set_sep(&mut self, i: usize, p: u64, k: u32) {
        if let (Some(dp), Some(dk)) = (self.prefix.get_mut(i), self.key.get_mut(i)) {
            *dp = p;
            *dk = k;
        }
    }

    /// Inserts at `pos` (shifting the rest right); false if full or `pos` is past the end.
    pub(super) fn insert(&mut self, pos: usize, it: Item) -> bool {
        let len = self.len();
        if len >= F || pos > len {
            return false;
        }
        let mut i = len;
        while let Some(j) = i.checked_sub(1).filter(|&j| j >= pos) {
            if let Some(x) = self.item_raw(j) {
                self.set(i, x);
            }
            i = j;
        }
        self.set(pos, it);
        self.set_len(len.saturating_add(1));
        true
    }

    /// Removes item `pos`, shifting the rest left.
    pub(super) fn remove(&mut self, pos: usize) -> Option<Item> {
        let it = self.item(pos)?;
        let len = self.len();
        let mut i = pos;
        while let Some(j) = i.checked_add(1).filter(|&j| j < len) {
            if let Some(x) = self.item_raw(j) {
                self.set(i, x);
            }
            i = j;
        }
        self.set_len(len.saturating_sub(1));
        Some(it)
    }

    /// Item `i` regardless of `len` (for shifting).
    fn item_raw(&self, i: usize) -> Option<Item> {
        Some(Item {
            p: *self.prefix.get(i)?,
            k: *self.key.get(i)?,
            c: *self.child.get(i)?,
        })
    }

    /// Appends every item of `other`; false (nothing changed) if they do not fit.
    pub(super) fn append(&mut self, other: &Node) -> bool {
        let (len, more) = (self.len(), other.len());
        if len.saturating_add(more) > F {
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

    /// Splits a full node while inserting `it` at `pos`: `self` keeps the first `F/2 + 1` of
    /// the `F + 1` items and `right` (empty, of the same kind) gets the rest.
    pub(super) fn split_insert(&mut self, pos: usize, it: Item, right: &mut Node) {
        let mut all = [Item {
            p: 0,
            k: NIL,
            c: NIL,
        }; F + 1];
        let len = self.len();
        let mut src = 0usize;
        for (i, slot) in all.iter_mut().enumerate() {
            if i == pos {
                *slot = it;
            } else if let Some(x) = self.item(src) {
                *slot = x;
                src = src.saturating_add(1);
            }
        }
        let keep = F / 2 + 1;
        let total = len.saturating_add(1).min(F + 1);
        right.leaf = self.leaf;
        for (i, x) in all.iter().take(total).enumerate() {
            match i.checked_sub(keep) {
                None => self.set(i, *x),
                Some(j) => right.set(j, *x),
            }
        }
        self.set_len(keep.min(total));
        right.set_len(total.saturating_sub(keep));
    }
}
