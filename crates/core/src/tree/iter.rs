//! Ascending iteration: a fixed stack of (node, position) per level; allocates nothing.

use super::{Keyed, NodeIx, PATH, SlotId, Tree};
use core::iter::FusedIterator;
use core::ops::Bound;

/// Ascending iterator over `(SlotId, &E)`.
pub struct Iter<'a, E: Keyed> {
    tree: &'a Tree<E>,
    /// Per level from the root: the node and, in inner nodes, the child being walked; in the
    /// leaf (the last level), the next entry.
    nodes: [NodeIx; PATH],
    pos: [usize; PATH],
    depth: usize,
}

impl<'a, E: Keyed> Iter<'a, E> {
    pub(super) fn new(tree: &'a Tree<E>, start: Bound<&[u8]>) -> Self {
        let mut it = Iter {
            tree,
            nodes: [NodeIx::NIL; PATH],
            pos: [0; PATH],
            depth: 0,
        };
        let (key, head) = match start {
            Bound::Included(s) | Bound::Excluded(s) => (s, tree.head(s)),
            Bound::Unbounded => (&[][..], 0),
        };
        let mut n = tree.root;
        for _ in 1..tree.height {
            let Some(node) = tree.inner(n) else {
                return it;
            };
            let i = match start {
                Bound::Unbounded => 0,
                _ => match tree.child_pos(node, head, key) {
                    Some((i, _)) => i,
                    None => return it,
                },
            };
            if !it.push(n, i) {
                return it;
            }
            n = node.child_at(i);
        }
        let Some(leaf) = tree.leaf(n) else {
            return it;
        };
        let i = match start {
            Bound::Unbounded => Some(0),
            _ => tree.leaf_pos(leaf, head, key).map(|(i, found)| {
                let skip = found && matches!(start, Bound::Excluded(_));
                i.saturating_add(usize::from(skip))
            }),
        };
        if let Some(i) = i {
            it.push(n, i);
        }
        it
    }

    fn push(&mut self, n: NodeIx, i: usize) -> bool {
        match (self.nodes.get_mut(self.depth), self.pos.get_mut(self.depth)) {
            (Some(dn), Some(dp)) => {
                *dn = n;
                *dp = i;
                self.depth = self.depth.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// Moves to the first entry of the next leaf; false at the end.
    fn next_leaf(&mut self) -> bool {
        let tree = self.tree;
        // Drop the leaf and every exhausted inner level.
        loop {
            self.depth = match self.depth.checked_sub(1) {
                Some(d) => d,
                None => return false,
            };
            let Some(up) = self.depth.checked_sub(1) else {
                return false;
            };
            let (Some(&n), Some(p)) = (self.nodes.get(up), self.pos.get_mut(up)) else {
                return false;
            };
            *p = p.saturating_add(1);
            let next = *p;
            let Some(node) = tree.inner(n) else {
                return false;
            };
            if next < node.len() {
                let mut c = node.child_at(next);
                // Down the leftmost edge to a leaf (the level `height - 1`).
                loop {
                    if !self.push(c, 0) {
                        return false;
                    }
                    if self.depth >= tree.height {
                        return tree.leaf(c).is_some();
                    }
                    let Some(cn) = tree.inner(c) else {
                        return false;
                    };
                    c = cn.child_at(0);
                }
            }
        }
    }
}

impl<'a, E: Keyed> Iterator for Iter<'a, E> {
    type Item = (SlotId, &'a E);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let d = self.depth.checked_sub(1)?;
            let n = *self.nodes.get(d)?;
            let leaf = self.tree.leaf(n)?;
            let p = self.pos.get_mut(d)?;
            if let Some(it) = leaf.item(*p) {
                *p = p.saturating_add(1);
                return Some((SlotId(it.slot), self.tree.payload(it.slot)?));
            }
            if !self.next_leaf() {
                self.depth = 0;
                return None;
            }
        }
    }
}

impl<E: Keyed> FusedIterator for Iter<'_, E> {}

impl<E: Keyed> Clone for Iter<'_, E> {
    fn clone(&self) -> Self {
        Iter {
            tree: self.tree,
            nodes: self.nodes,
            pos: self.pos,
            depth: self.depth,
        }
    }
}

impl<'a, E: Keyed> IntoIterator for &'a Tree<E> {
    type Item = (SlotId, &'a E);
    type IntoIter = Iter<'a, E>;

    fn into_iter(self) -> Iter<'a, E> {
        self.iter()
    }
}
