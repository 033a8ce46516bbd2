//! The tree's entry slots and index nodes in their pools: reached by index, taken from and given
//! back to the free lists without allocating, and grown ahead of time so that reserved inserts
//! never allocate.

use super::arena::{
    MAX_NODE_PAGES, MAX_SLOT_PAGES, NODE_PAGE, PAGE, Pool, new_node_page, new_slot_page,
    node_split, slot_split,
};
use super::node::{INNER, Inner, LEAF, Leaf, Node};
use super::{AllocError, INNERS_PER_INSERT, Keyed, MAX_HEIGHT, NIL, NodeIx, Tree};
use alloc::vec::Vec;

/// The node pools: leaves and inner nodes apart.
pub(super) struct Pools {
    pub(super) leaves: Pool<Vec<Leaf>>,
    pub(super) inners: Pool<Vec<Inner>>,
}

impl Pools {
    pub(super) const fn new() -> Self {
        Pools {
            leaves: Pool::new(),
            inners: Pool::new(),
        }
    }
}

/// A node kind's pool.
pub(super) trait Pooled: Sized {
    fn pool(p: &Pools) -> &Pool<Vec<Self>>;
    fn pool_mut(p: &mut Pools) -> &mut Pool<Vec<Self>>;
}

impl Pooled for Leaf {
    fn pool(p: &Pools) -> &Pool<Vec<Self>> {
        &p.leaves
    }
    fn pool_mut(p: &mut Pools) -> &mut Pool<Vec<Self>> {
        &mut p.leaves
    }
}

impl Pooled for Inner {
    fn pool(p: &Pools) -> &Pool<Vec<Self>> {
        &p.inners
    }
    fn pool_mut(p: &mut Pools) -> &mut Pool<Vec<Self>> {
        &mut p.inners
    }
}

/// Most leaves a tree of `n` keys can use: all but the root hold at least [`Leaf::MIN`].
pub(super) fn leaf_bound(n: usize) -> usize {
    (n / (Leaf::MIN - 1)).saturating_add(1)
}

/// Most inner nodes a tree of `n` keys can use: each level above the leaves has at most
/// 1/[`Inner::MIN`] as many nodes as the one below, plus a root.
pub(super) fn inner_bound(n: usize) -> usize {
    (leaf_bound(n) / (Inner::MIN - 1)).saturating_add(MAX_HEIGHT + 1)
}

impl<E: Keyed> Tree<E> {
    // ---- reservations ------------------------------------------------------------------------

    /// Free leaves that `r` more inserts need on top of `extra` inserts already made, beyond
    /// the leaves now in use: at most one each, and never more than the bound on a tree of the
    /// resulting size. Both shrink by at least the leaves an insert takes, so a reservation
    /// stays backed.
    pub(super) fn leaves_needed(&self, extra: usize, r: usize) -> usize {
        let total = self.len.saturating_add(extra).saturating_add(r);
        let by_size = leaf_bound(total).saturating_sub(self.nodes.leaves.in_use());
        by_size.min(r)
    }

    /// Like [`Tree::leaves_needed`] for inner nodes: at most [`INNERS_PER_INSERT`] each.
    pub(super) fn inners_needed(&self, extra: usize, r: usize) -> usize {
        let total = self.len.saturating_add(extra).saturating_add(r);
        let by_size = inner_bound(total).saturating_sub(self.nodes.inners.in_use());
        by_size.min(r.saturating_mul(INNERS_PER_INSERT))
    }

    pub(super) fn free_slots(&self) -> usize {
        self.slots.free(PAGE)
    }

    pub(super) fn free_nodes<const N: usize, const C: usize>(&self) -> usize
    where
        Node<N, C>: Pooled,
    {
        Node::<N, C>::pool(&self.nodes).free(NODE_PAGE)
    }

    /// Makes room for one unreserved insert on top of the reservations: a slot, a leaf, and an
    /// inner node for every inner level's split and a new root (`height` in all).
    pub(super) fn grow_for_insert(&mut self) -> Result<(), AllocError> {
        let r = self.reserved;
        let leaves = self.leaves_needed(1, r).saturating_add(1);
        let inners = self.inners_needed(1, r).saturating_add(self.height);
        self.grow_slots(r.saturating_add(1))?;
        self.grow_nodes::<LEAF, 0>(leaves)?;
        self.grow_nodes::<INNER, INNER>(inners)
    }

    /// Makes at least `want` slots free.
    pub(super) fn grow_slots(&mut self, want: usize) -> Result<(), AllocError> {
        match want.checked_sub(self.free_slots()).filter(|&s| s > 0) {
            Some(short) => {
                self.slots
                    .grow(short.div_ceil(PAGE), MAX_SLOT_PAGES, new_slot_page::<E>)
            }
            None => Ok(()),
        }
    }

    /// Makes at least `want` nodes of one kind free.
    pub(super) fn grow_nodes<const N: usize, const C: usize>(
        &mut self,
        want: usize,
    ) -> Result<(), AllocError>
    where
        Node<N, C>: Pooled,
    {
        match want
            .checked_sub(self.free_nodes::<N, C>())
            .filter(|&s| s > 0)
        {
            Some(short) => Node::<N, C>::pool_mut(&mut self.nodes).grow(
                short.div_ceil(NODE_PAGE),
                MAX_NODE_PAGES,
                new_node_page::<Node<N, C>>,
            ),
            None => Ok(()),
        }
    }

    // ---- slots -------------------------------------------------------------------------------

    pub(super) fn payload(&self, i: u32) -> Option<&E> {
        let (p, o) = slot_split(i);
        self.slots.pages.get(p)?.payload.get(o)?.as_ref()
    }

    pub(super) fn payload_slot_mut(&mut self, i: u32) -> Option<&mut Option<E>> {
        let (p, o) = slot_split(i);
        self.slots.pages.get_mut(p)?.payload.get_mut(o)
    }

    /// Puts `e` in a free slot (free list first, else page capacity); never allocates.
    pub(super) fn alloc_slot(&mut self, e: E) -> Result<u32, E> {
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

    pub(super) fn free_slot(&mut self, i: u32) -> Option<E> {
        let head = self.slots.free_head;
        let (p, o) = slot_split(i);
        let page = self.slots.pages.get_mut(p)?;
        let e = page.payload.get_mut(o)?.take();
        *page.next.get_mut(o)? = head;
        self.slots.free_head = i;
        self.slots.free_count = self.slots.free_count.saturating_add(1);
        e
    }

    // ---- nodes -------------------------------------------------------------------------------

    pub(super) fn nd<const N: usize, const C: usize>(&self, i: NodeIx) -> Option<&Node<N, C>>
    where
        Node<N, C>: Pooled,
    {
        let (p, o) = node_split(i);
        Node::<N, C>::pool(&self.nodes).pages.get(p)?.get(o)
    }

    pub(super) fn nd_mut<const N: usize, const C: usize>(
        &mut self,
        i: NodeIx,
    ) -> Option<&mut Node<N, C>>
    where
        Node<N, C>: Pooled,
    {
        let (p, o) = node_split(i);
        Node::<N, C>::pool_mut(&mut self.nodes)
            .pages
            .get_mut(p)?
            .get_mut(o)
    }

    pub(super) fn leaf(&self, i: NodeIx) -> Option<&Leaf> {
        self.nd(i)
    }

    pub(super) fn leaf_mut(&mut self, i: NodeIx) -> Option<&mut Leaf> {
        self.nd_mut(i)
    }

    pub(super) fn inner(&self, i: NodeIx) -> Option<&Inner> {
        self.nd(i)
    }

    pub(super) fn inner_mut(&mut self, i: NodeIx) -> Option<&mut Inner> {
        self.nd_mut(i)
    }

    /// An empty node from its kind's free list or page capacity; never allocates.
    pub(super) fn alloc_node<const N: usize, const C: usize>(&mut self) -> Option<NodeIx>
    where
        Node<N, C>: Pooled,
    {
        let pool = Node::<N, C>::pool_mut(&mut self.nodes);
        let head = NodeIx(pool.free_head);
        let (p, o) = node_split(head);
        if let Some(n) = pool.pages.get_mut(p).and_then(|page| page.get_mut(o)) {
            let next = n.link();
            *n = Node::EMPTY;
            pool.free_head = next.0;
            pool.free_count = pool.free_count.saturating_sub(1);
            return Some(head);
        }
        let i = NodeIx(pool.used);
        let after = i.0.checked_add(1)?;
        let (p, o) = node_split(i);
        let page = pool.pages.get_mut(p)?;
        if page.len() != o {
            return None;
        }
        crate::fallible::push(page, Node::EMPTY).ok()?;
        pool.used = after;
        Some(i)
    }

    pub(super) fn free_node<const N: usize, const C: usize>(&mut self, i: NodeIx)
    where
        Node<N, C>: Pooled,
    {
        let pool = Node::<N, C>::pool_mut(&mut self.nodes);
        let head = NodeIx(pool.free_head);
        let (p, o) = node_split(i);
        if let Some(n) = pool.pages.get_mut(p).and_then(|page| page.get_mut(o)) {
            n.set_link(head);
            pool.free_head = i.0;
            pool.free_count = pool.free_count.saturating_add(1);
        }
    }
}
