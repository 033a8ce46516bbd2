//! Tests of the tree: the invariant checker here; the cases by concern in the submodules, and a
//! model test against `BTreeMap`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod entries;
mod model;
mod reserve;
mod search;
mod support;

use super::arena::{self, Pool};
use super::node::{INNER, Inner, LEAF, Leaf, Node};
use super::pools::{Pooled, inner_bound, leaf_bound};
use super::search::count_less;
use super::shared::head_of;
use super::*;

/// Node indices print as numbers in the messages below.
impl core::fmt::Display for NodeIx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Keyed> Tree<E> {
    /// Verifies every structural invariant; panics on the first violation.
    pub(super) fn check(&self) {
        let slots = self.slots.used as usize;
        let mut seen = std::vec![false; slots];
        let mut seen_leaves = std::vec![false; self.nodes.leaves.used as usize];
        let mut seen_inners = std::vec![false; self.nodes.inners.used as usize];
        let mut count = 0usize;
        if self.root == NodeIx::NIL {
            assert_eq!(self.height, 0);
        } else if self.height == 1 {
            assert!(self.leaf(self.root).unwrap().len() >= 1, "empty root leaf");
        } else {
            assert!(
                self.inner(self.root).unwrap().len() >= 2,
                "inner root with one child"
            );
        }
        if self.root != NodeIx::NIL {
            let mut walk = Walk {
                seen: &mut seen,
                leaves: &mut seen_leaves,
                inners: &mut seen_inners,
                count: &mut count,
            };
            self.check_node(self.root, 0, &mut walk);
        }
        assert_eq!(count, self.len, "len");
        let prev: std::vec::Vec<std::vec::Vec<u8>> =
            self.iter().map(|(_, e)| e.key().to_vec()).collect();
        assert!(
            prev.windows(2).all(|w| w[0] < w[1]),
            "iteration out of order"
        );
        assert_eq!(prev.len(), self.len, "iteration length");

        let mut free = 0usize;
        let mut f = self.slots.free_head;
        while f != NIL {
            assert!(self.payload(f).is_none(), "free slot {f} holds a payload");
            assert!(!seen[f as usize], "slot {f} both linked and free");
            seen[f as usize] = true;
            free += 1;
            assert!(free <= slots, "free list cycle");
            let (p, o) = arena::slot_split(f);
            f = self.slots.pages[p].next[o];
        }
        assert_eq!(free, self.slots.free_count, "free_count");
        assert!(seen.iter().all(|&s| s), "slot neither linked nor free");

        check_free_nodes(&self.nodes.leaves, &mut seen_leaves, "leaf");
        check_free_nodes(&self.nodes.inners, &mut seen_inners, "inner");
        assert!(
            self.nodes.leaves.in_use() <= leaf_bound(self.len),
            "leaves over bound"
        );
        assert!(
            self.nodes.inners.in_use() <= inner_bound(self.len),
            "inner nodes over bound"
        );

        let mut bytes = 0;
        for (p, page) in self.slots.pages.iter().enumerate() {
            assert!(page.payload.capacity() >= PAGE, "page {p} capacity");
            let expect = slots.saturating_sub(p * PAGE).min(PAGE);
            assert_eq!(page.payload.len(), expect, "page {p} fill");
            assert_eq!(page.next.len(), expect, "page {p} link fill");
            bytes += page.payload.capacity() * size_of::<Option<E>>() + page.next.capacity() * 4;
        }
        assert_eq!(bytes, self.slots.bytes, "slot bytes");
        assert!(
            self.free_slots() >= self.reserved,
            "reservation not backed by slots"
        );
        assert!(
            self.free_nodes::<LEAF, 0>() >= self.leaves_needed(0, self.reserved),
            "reservation not backed by leaves"
        );
        assert!(
            self.free_nodes::<INNER, INNER>() >= self.inners_needed(0, self.reserved),
            "reservation not backed by inner nodes"
        );
        assert!(self.height <= MAX_HEIGHT);
    }

    /// Checks node `n` of one kind: linked once (marked in `seen`), at least half full unless it
    /// is the root, within its capacity, and `u64::MAX` past its length.
    fn check_fill<const N: usize, const C: usize>(
        &self,
        n: NodeIx,
        seen: &mut [bool],
        kind: &str,
    ) -> &Node<N, C>
    where
        Node<N, C>: Pooled,
    {
        assert!(!seen[n.0 as usize], "{kind} {n} linked twice");
        seen[n.0 as usize] = true;
        let node = self.nd::<N, C>(n).expect("node outside the arena");
        if n != self.root {
            assert!(
                node.len() >= Node::<N, C>::MIN,
                "{kind} {n} under-full: {}",
                node.len()
            );
        }
        assert!(node.len() <= Node::<N, C>::CAP);
        assert!(
            node.heads[node.len()..].iter().all(|&p| p == u64::MAX),
            "{kind} {n} lacks its sentinels"
        );
        node
    }

    /// Checks the subtree at `n` (at `depth`); returns its smallest and largest key.
    fn check_node(
        &self,
        n: NodeIx,
        depth: usize,
        w: &mut Walk<'_>,
    ) -> (std::vec::Vec<u8>, std::vec::Vec<u8>) {
        if depth + 1 == self.height {
            let node: &Leaf = self.check_fill(n, w.leaves, "leaf");
            let mut keys = std::vec::Vec::new();
            for i in 0..node.len() {
                let it = node.item(i).unwrap();
                let e = self.payload(it.slot).expect("leaf entry without payload");
                assert_eq!(it.head, self.head(e.key()), "stale head");
                assert!(
                    e.key().starts_with(self.shared.prefix()),
                    "key without the shared prefix"
                );
                assert!(!w.seen[it.slot as usize], "slot linked twice");
                w.seen[it.slot as usize] = true;
                *w.count += 1;
                keys.push(e.key().to_vec());
            }
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "leaf out of order");
            return (keys[0].clone(), keys[keys.len() - 1].clone());
        }
        let node: Inner = *self.check_fill(n, w.inners, "inner node");
        let mut lo = None;
        let mut prev_max: Option<std::vec::Vec<u8>> = None;
        let mut hi = std::vec::Vec::new();
        for i in 0..node.len() {
            let it = node.item(i).unwrap();
            let (min, max) = self.check_node(it.child, depth + 1, w);
            if i > 0 {
                let sep = self
                    .payload(it.slot)
                    .expect("separator names a free slot")
                    .key();
                assert_eq!(it.head, self.head(sep), "stale separator head");
                assert!(
                    prev_max.as_deref().unwrap() < sep,
                    "separator not above left child"
                );
                assert!(sep <= &min[..], "separator above right child");
            }
            lo.get_or_insert(min);
            prev_max = Some(max.clone());
            hi = max;
        }
        (lo.unwrap(), hi)
    }
}

/// What [`Tree::check_node`] has seen so far.
struct Walk<'a> {
    seen: &'a mut [bool],
    leaves: &'a mut [bool],
    inners: &'a mut [bool],
    count: &'a mut usize,
}

/// A pool's free list: no node both linked and free, every node one or the other, counts and
/// bytes right.
fn check_free_nodes<const N: usize, const C: usize>(
    pool: &Pool<std::vec::Vec<Node<N, C>>>,
    seen: &mut [bool],
    kind: &str,
) {
    let mut free = 0usize;
    let mut f = pool.free_head;
    while f != NIL {
        assert!(!seen[f as usize], "{kind} {f} both linked and free");
        seen[f as usize] = true;
        free += 1;
        let (p, o) = arena::node_split(NodeIx(f));
        f = pool.pages[p][o].link().0;
    }
    assert_eq!(free, pool.free_count, "{kind} free_count");
    assert!(seen.iter().all(|&s| s), "{kind} neither linked nor free");
    let bytes: usize = pool
        .pages
        .iter()
        .map(|p| p.capacity() * size_of::<Node<N, C>>())
        .sum();
    assert_eq!(bytes, pool.bytes, "{kind} bytes");
}
