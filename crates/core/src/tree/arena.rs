//! Storage of a [`Tree`](super::Tree): entry slots and index nodes, each in fixed pages that are
//! allocated once (`try_reserve_exact`), never grown or moved, and chained into free lists.

use super::{AllocError, NIL, NodeIx};
use crate::fallible;
use alloc::vec::Vec;

/// log2 of [`PAGE`].
pub(super) const PAGE_BITS: u32 = 10;
/// Entry slots per page.
pub const PAGE: usize = 1 << PAGE_BITS;
const PAGE_MASK: u32 = (1 << PAGE_BITS) - 1;
/// log2 of [`NODE_PAGE`].
const NODE_BITS: u32 = 5;
/// Index nodes per page (32 leaves of 776 bytes or inner nodes of 1,032 bytes: 24–32 KiB).
pub(super) const NODE_PAGE: usize = 1 << NODE_BITS;
const NODE_MASK: u32 = (1 << NODE_BITS) - 1;

/// One page of entry slots: `payload[o]` (`None` when free) and `next[o]` (free-list link).
pub(super) struct SlotPage<E> {
    pub(super) payload: Vec<Option<E>>,
    pub(super) next: Vec<u32>,
}

/// Pages of slots or nodes, filled in order, with a free list.
pub(super) struct Pool<P> {
    pub(super) pages: Vec<P>,
    /// Items ever handed out from page capacity.
    pub(super) used: u32,
    pub(super) free_head: u32,
    pub(super) free_count: usize,
    /// Sum of the pages' sizes in bytes.
    pub(super) bytes: usize,
}

impl<P> Pool<P> {
    pub(super) const fn new() -> Self {
        Pool {
            pages: Vec::new(),
            used: 0,
            free_head: NIL,
            free_count: 0,
            bytes: 0,
        }
    }

    /// Free-list items plus page capacity never handed out.
    pub(super) fn free(&self, per_page: usize) -> usize {
        let cap = self.pages.len().saturating_mul(per_page);
        cap.saturating_sub(self.used as usize)
            .saturating_add(self.free_count)
    }

    /// Items handed out and not freed.
    pub(super) fn in_use(&self) -> usize {
        (self.used as usize).saturating_sub(self.free_count)
    }

    pub(super) fn table_bytes(&self) -> usize {
        self.pages.capacity().saturating_mul(size_of::<P>())
    }

    /// Appends `count` pages made by `make` (with their sizes), or none at all.
    pub(super) fn grow(
        &mut self,
        count: usize,
        max_pages: usize,
        make: impl Fn() -> Option<(P, usize)>,
    ) -> Result<(), AllocError> {
        let start = self.pages.len();
        if start.checked_add(count).is_none_or(|t| t > max_pages) {
            return Err(AllocError);
        }
        self.pages.try_reserve(count).map_err(|_| AllocError)?;
        let mut added = 0usize;
        for _ in 0..count {
            let Some((page, bytes)) = make() else {
                self.pages.truncate(start);
                return Err(AllocError);
            };
            added = added.saturating_add(bytes);
            // Room for `count` more pages was reserved above: this push does not allocate.
            if fallible::push(&mut self.pages, page).is_err() {
                self.pages.truncate(start);
                return Err(AllocError);
            }
        }
        self.bytes = self.bytes.saturating_add(added);
        Ok(())
    }

    /// Undoes a [`Pool::grow`] from `start` pages and `bytes` (only pages nothing was handed
    /// out from).
    pub(super) fn shrink_to(&mut self, start: usize, bytes: usize) {
        self.pages.truncate(start);
        self.bytes = bytes;
    }
}

/// Splits a slot index into (page, offset).
pub(super) fn slot_split(i: u32) -> (usize, usize) {
    ((i >> PAGE_BITS) as usize, (i & PAGE_MASK) as usize)
}

/// Splits a node index into (page, offset).
pub(super) fn node_split(i: NodeIx) -> (usize, usize) {
    ((i.0 >> NODE_BITS) as usize, (i.0 & NODE_MASK) as usize)
}

/// At most this many slot pages, so every slot index stays below [`NIL`].
pub(super) const MAX_SLOT_PAGES: usize = (u32::MAX >> PAGE_BITS) as usize;
/// At most this many node pages.
pub(super) const MAX_NODE_PAGES: usize = (u32::MAX >> NODE_BITS) as usize;

pub(super) fn new_slot_page<E>() -> Option<(SlotPage<E>, usize)> {
    if !page_alloc_permitted() {
        return None;
    }
    let mut payload = Vec::new();
    payload.try_reserve_exact(PAGE).ok()?;
    let mut next = Vec::new();
    next.try_reserve_exact(PAGE).ok()?;
    let bytes = payload
        .capacity()
        .saturating_mul(size_of::<Option<E>>())
        .saturating_add(next.capacity().saturating_mul(size_of::<u32>()));
    Some((SlotPage { payload, next }, bytes))
}

pub(super) fn new_node_page<T>() -> Option<(Vec<T>, usize)> {
    if !page_alloc_permitted() {
        return None;
    }
    let mut nodes = Vec::new();
    nodes.try_reserve_exact(NODE_PAGE).ok()?;
    let bytes = nodes.capacity().saturating_mul(size_of::<T>());
    Some((nodes, bytes))
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
