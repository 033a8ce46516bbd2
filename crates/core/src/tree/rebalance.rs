//! Keeping every node but the root at least half full after a removal: borrowing an item from a
//! sibling, merging with one, and dropping a root left with no keys or one child.
//!
//! The invariants rule out every early `return` below (a node, parent or item that is not
//! there); a test build stops at them (`debug_assert!`), and a release build leaves the tree as
//! it is rather than bugchecking.

use super::node::{INNER, Item, LEAF, Node};
use super::pools::Pooled;
use super::search::Path;
use super::{Keyed, NodeIx, Tree};

impl<E: Keyed> Tree<E> {
    /// Restores the fill of `leaf` (at the end of `path`) after it lost an item, borrowing
    /// from or merging with a sibling, upwards as far as needed.
    pub(super) fn rebalance(&mut self, leaf: NodeIx, path: &Path) {
        let mut lvl = path.depth;
        let mut next = self.rebalance_node::<LEAF, 0>(leaf, lvl, path);
        while let Some(parent) = next {
            lvl = lvl.saturating_sub(1);
            next = self.rebalance_node::<INNER, INNER>(parent, lvl, path);
        }
    }

    /// Restores the fill of node `n` at depth `lvl`; returns its parent if a merge took an item
    /// from it (so the parent needs the same).
    fn rebalance_node<const N: usize, const C: usize>(
        &mut self,
        n: NodeIx,
        lvl: usize,
        path: &Path,
    ) -> Option<NodeIx>
    where
        Node<N, C>: Pooled,
    {
        let len = self.nd::<N, C>(n)?.len();
        let Some((parent, idx)) = lvl.checked_sub(1).and_then(|u| path.get(u)) else {
            self.shrink_root();
            return None;
        };
        if len >= Node::<N, C>::MIN {
            return None;
        }
        let p = self.inner(parent)?;
        // Merge with or borrow from the left sibling, or the right one for child 0.
        let left_idx = idx.checked_sub(1).unwrap_or(idx);
        let (l, r) = (p.child_at(left_idx), p.child_at(left_idx.saturating_add(1)));
        let sib = if idx > 0 { l } else { r };
        let sib_len = self.nd::<N, C>(sib)?.len();
        if sib_len > Node::<N, C>::MIN {
            if idx > 0 {
                self.borrow_left::<N, C>(parent, idx, l, n);
            } else {
                self.borrow_right::<N, C>(parent, idx, n, r);
            }
            return None;
        }
        self.merge::<N, C>(parent, left_idx, l, r);
        Some(parent)
    }

    /// Moves the last item of `l` to the front of `n` (child `idx` of `parent`).
    fn borrow_left<const N: usize, const C: usize>(
        &mut self,
        parent: NodeIx,
        idx: usize,
        l: NodeIx,
        n: NodeIx,
    ) where
        Node<N, C>: Pooled,
    {
        let Some(ln) = self.nd_mut::<N, C>(l) else {
            debug_assert!(false, "borrow_left: no left sibling");
            return;
        };
        let Some(moved) = ln.len().checked_sub(1).and_then(|last| ln.remove(last)) else {
            debug_assert!(false, "borrow_left: empty left sibling");
            return;
        };
        let Some(old) = self.inner(parent).and_then(|p| p.item(idx)) else {
            debug_assert!(false, "borrow_left: no separator in the parent");
            return;
        };
        if let Some(nn) = self.nd_mut::<N, C>(n) {
            nn.insert(0, moved);
            if C > 0 {
                // Its old first child is now second, bounded below by the old separator.
                nn.set_sep(1, old.head, old.slot);
            }
        } else {
            debug_assert!(false, "borrow_left: no node to borrow into");
        }
        if let Some(p) = self.inner_mut(parent) {
            p.set_sep(idx, moved.head, moved.slot);
        }
    }

    /// Moves the first item of `r` (child `idx + 1`) to the end of `n` (child `idx`).
    fn borrow_right<const N: usize, const C: usize>(
        &mut self,
        parent: NodeIx,
        idx: usize,
        n: NodeIx,
        r: NodeIx,
    ) where
        Node<N, C>: Pooled,
    {
        let right_idx = idx.saturating_add(1);
        let Some(old) = self.inner(parent).and_then(|p| p.item(right_idx)) else {
            debug_assert!(false, "borrow_right: no separator in the parent");
            return;
        };
        let Some(rn) = self.nd_mut::<N, C>(r) else {
            debug_assert!(false, "borrow_right: no right sibling");
            return;
        };
        let (Some(moved), Some(first)) = (rn.remove(0), rn.item(0)) else {
            debug_assert!(false, "borrow_right: right sibling with under two items");
            return;
        };
        if let Some(nn) = self.nd_mut::<N, C>(n) {
            let it = if C == 0 {
                moved
            } else {
                Item {
                    head: old.head,
                    slot: old.slot,
                    child: moved.child,
                }
            };
            nn.insert(nn.len(), it);
        } else {
            debug_assert!(false, "borrow_right: no node to borrow into");
        }
        if let Some(p) = self.inner_mut(parent) {
            p.set_sep(right_idx, first.head, first.slot);
        }
    }

    /// Appends `r` (child `i + 1` of `parent`) to `l` (child `i`) and frees it.
    fn merge<const N: usize, const C: usize>(
        &mut self,
        parent: NodeIx,
        i: usize,
        l: NodeIx,
        r: NodeIx,
    ) where
        Node<N, C>: Pooled,
    {
        let right_idx = i.saturating_add(1);
        let (Some(mut rn), Some(sep)) = (
            self.nd::<N, C>(r).copied(),
            self.inner(parent).and_then(|p| p.item(right_idx)),
        ) else {
            debug_assert!(false, "merge: no right node or no separator");
            return;
        };
        if C > 0 {
            rn.set_sep(0, sep.head, sep.slot);
        }
        let Some(ln) = self.nd_mut::<N, C>(l) else {
            debug_assert!(false, "merge: no left node");
            return;
        };
        if !ln.append(&rn) {
            debug_assert!(false, "merge: the two nodes do not fit in one");
            return;
        }
        if let Some(p) = self.inner_mut(parent) {
            p.remove(right_idx);
        }
        self.free_node::<N, C>(r);
    }

    /// Drops an empty root leaf, or an inner root with one child.
    fn shrink_root(&mut self) {
        let root = self.root;
        if self.height == 1 {
            if self.leaf(root).is_some_and(|n| n.len() == 0) {
                self.free_node::<LEAF, 0>(root);
                self.root = NodeIx::NIL;
                self.height = 0;
            }
        } else if let Some(node) = self.inner(root)
            && node.len() == 1
        {
            let child = node.child_at(0);
            self.free_node::<INNER, INNER>(root);
            self.root = child;
            self.height = self.height.saturating_sub(1);
        }
    }
}
