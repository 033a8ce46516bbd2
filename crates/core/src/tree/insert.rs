//! Linking a new entry into the index: into its leaf, splitting full nodes upwards and growing a
//! new root when the old one splits; and replacing the entry of a key that is there.

use super::node::{INNER, Item, LEAF, Node};
use super::pools::Pooled;
use super::search::{Found, Path};
use super::{Keyed, NIL, NodeIx, SlotId, Tree};

impl<E: Keyed> Tree<E> {
    /// Puts `e`, about to be linked, in a free slot, and returns its leaf item. The shared prefix
    /// admits the key first and the head is taken after (a descent's positions hold whatever the
    /// prefix is).
    fn place(&mut self, e: E) -> Result<Item, E> {
        self.admit(e.key());
        let head = self.head(e.key());
        let slot = self.alloc_slot(e)?;
        Ok(Item {
            head,
            slot,
            child: NodeIx::NIL,
        })
    }

    /// Puts `e` (absent, reserved for) at `at` in a leaf known to have room.
    pub(super) fn link_in_leaf(&mut self, e: E, at: &Found) -> Result<(SlotId, Option<E>), E> {
        let it = self.place(e)?;
        let slot = it.slot;
        if self.leaf_mut(at.leaf).is_some_and(|l| l.insert(at.pos, it)) {
            self.len = self.len.saturating_add(1);
            return Ok((SlotId(slot), None));
        }
        // Unreachable (room was checked); give the entry back rather than lose it.
        match self.free_slot(slot) {
            Some(e) => Err(e),
            None => Ok((SlotId(slot), None)),
        }
    }

    /// Inserts `e`, whose key is known to be absent, at the end of the descent `at`/`path`.
    /// Checks first that a slot and nodes for every split are free, so it never fails half-way.
    pub(super) fn link_new(
        &mut self,
        e: E,
        at: &Found,
        path: &Path,
    ) -> Result<(SlotId, Option<E>), E> {
        if self.free_nodes::<LEAF, 0>() == 0
            || self.free_nodes::<INNER, INNER>() < self.height
            || self.free_slots() == 0
        {
            return Err(e);
        }
        let it = self.place(e)?;
        let slot = it.slot;
        let mut carry = None;
        if at.leaf == NodeIx::NIL {
            // Empty tree: the entry becomes a root leaf (a leaf is free: checked above).
            if let Some(n) = self.alloc_node::<LEAF, 0>() {
                if let Some(node) = self.leaf_mut(n) {
                    node.insert(0, it);
                }
                self.root = n;
                self.height = 1;
            }
        } else {
            carry = self.insert_item::<LEAF, 0>(at.leaf, at.pos, it);
        }
        let mut lvl = path.depth;
        while let Some(it) = carry {
            match lvl.checked_sub(1).and_then(|up| Some((up, path.get(up)?))) {
                Some((up, (n, i))) => {
                    lvl = up;
                    carry = self.insert_item::<INNER, INNER>(n, i.saturating_add(1), it);
                }
                None => {
                    self.new_root(it);
                    carry = None;
                }
            }
        }
        self.len = self.len.saturating_add(1);
        Ok((SlotId(slot), None))
    }

    /// Inserts `it` at `pos` of node `n`, splitting it if full; returns the item to insert in
    /// the parent (separator and new right node) after a split.
    fn insert_item<const N: usize, const C: usize>(
        &mut self,
        n: NodeIx,
        pos: usize,
        it: Item,
    ) -> Option<Item>
    where
        Node<N, C>: Pooled,
    {
        let node = self.nd_mut::<N, C>(n)?;
        if node.insert(pos, it) {
            return None;
        }
        let m = self.alloc_node::<N, C>()?;
        let mut right = Node::<N, C>::EMPTY;
        self.nd_mut::<N, C>(n)?.split_insert(pos, it, &mut right);
        let first = right.item(0)?;
        *self.nd_mut::<N, C>(m)? = right;
        Some(Item {
            head: first.head,
            slot: first.slot,
            child: m,
        })
    }

    /// Grows the tree by a level: a new root over the old one and `right`.
    fn new_root(&mut self, right: Item) {
        let old = self.root;
        let Some(r) = self.alloc_node::<INNER, INNER>() else {
            debug_assert!(false, "new root: no free inner node (link_new checked)");
            return;
        };
        if let Some(node) = self.inner_mut(r) {
            node.insert(
                0,
                Item {
                    head: 0,
                    slot: NIL,
                    child: old,
                },
            );
            node.insert(1, right);
        }
        self.root = r;
        self.height = self.height.saturating_add(1);
    }

    /// Puts `e` in the slot of the equal key the descent `at` found; returns the entry it
    /// replaces.
    pub(super) fn replace(&mut self, at: &Found, e: E) -> Result<(SlotId, Option<E>), E> {
        let Some(i) = self
            .leaf(at.leaf)
            .and_then(|n| n.item(at.pos))
            .map(|x| x.slot)
        else {
            return Err(e);
        };
        match self.payload_slot_mut(i) {
            Some(slot) => Ok((SlotId(i), slot.replace(e))),
            None => Err(e),
        }
    }
}
