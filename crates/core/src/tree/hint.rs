//! Lookups that warm the cache ahead of time: a lookup begun early ([`Tree::prefetch_start`],
//! [`Tree::prefetch_leaf`]), and lookups and inserts that start at the leaf an earlier lookup
//! found ([`LeafHint`]).

use super::node::Leaf;
use super::search::Found;
use super::{Keyed, NodeIx, SlotId, Tree};

/// A leaf a lookup went to, so that a later lookup or insert of the same key can start there
/// instead of at the root ([`Tree::get_hinted`], [`Tree::insert_reserved_hinted`]). Any value
/// is safe: a hint is used only when the leaf it names is certainly the key's (see
/// `Tree::hinted_leaf`), however stale it is or whichever tree it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafHint(pub(super) NodeIx);

impl LeafHint {
    /// No hint.
    pub const NONE: LeafHint = LeafHint(NodeIx::NIL);
}

/// A lookup begun by [`Tree::prefetch_start`]: the node it started loading.
#[derive(Clone, Copy, Debug)]
pub struct Prefetch {
    node: NodeIx,
    height: usize,
}

impl<E: Keyed> Tree<E> {
    /// Starts loading, without waiting, the last inner node on the way to `key` (the first one
    /// a lookup is likely to miss on); [`Tree::prefetch_leaf`] then loads the leaf. A caller
    /// with work to do between knowing a key and looking it up (the dispatcher copies the value
    /// and resolves the transaction) overlaps the lookup's two cache misses with that work.
    ///
    /// Why: at a million keys the leaves and the level above them no longer stay in the cache,
    /// and a cold lookup waits for one miss on each, in turn. Reads only the inner nodes above
    /// that level, which are few and stay cached.
    pub fn prefetch_start(&self, key: &[u8]) -> Prefetch {
        let n = self.down(self.head(key), key, self.height.saturating_sub(2));
        match self.height {
            0 => {}
            1 => {
                if let Some(leaf) = self.leaf(n) {
                    leaf.prefetch_search();
                }
            }
            _ => {
                if let Some(inner) = self.inner(n) {
                    inner.prefetch_search();
                }
            }
        }
        Prefetch {
            node: n,
            height: self.height,
        }
    }

    /// Second step of [`Tree::prefetch_start`]: reads the inner node it loaded and starts
    /// loading the leaf below it, which it returns as a hint for the lookup. If the tree changed
    /// meanwhile, this loads a wrong leaf at worst (nothing is read from it, and the hint is
    /// checked before use).
    pub fn prefetch_leaf(&self, key: &[u8], p: Prefetch) -> LeafHint {
        if p.height < 2 || p.height != self.height {
            return LeafHint::NONE;
        }
        let id = self.down_from(p.node, self.head(key), key, 1);
        match self.leaf(id) {
            Some(leaf) => {
                leaf.prefetch_search();
                LeafHint(id)
            }
            None => LeafHint::NONE,
        }
    }

    /// The leaf `hint` names if it is certainly the one `key` (with this head) belongs in: a
    /// leaf in use whose first and last entries' heads lie strictly below and above the key's.
    /// Leaves hold contiguous ranges of keys, so a leaf holding keys on both sides of a key is
    /// that key's leaf, whatever happened to the tree since the hint was taken.
    pub(super) fn hinted_leaf(&self, hint: LeafHint, head: u64) -> Option<&Leaf> {
        let leaf = self.leaf(hint.0)?;
        let last = leaf.len().checked_sub(1)?;
        let (first, last) = (*leaf.heads.first()?, *leaf.heads.get(last)?);
        (first < head && head < last).then_some(leaf)
    }

    /// The entry with this key, and the leaf searched (a hint for a later insert of the key).
    /// Starts at the leaf `hint` if that is the key's leaf, else at the root.
    pub fn get_hinted(&self, key: &[u8], hint: LeafHint) -> (Option<&E>, LeafHint) {
        let (slot, leaf) = self.find_hinted(key, hint);
        (self.payload(slot), leaf)
    }

    /// [`Tree::insert_reserved`] that starts at the leaf `hint` when that is the key's leaf and
    /// has room, with no descent from the root (the commit of a write its lookup hinted).
    pub fn insert_reserved_hinted(
        &mut self,
        e: E,
        hint: LeafHint,
    ) -> Result<(SlotId, Option<E>), E> {
        let head = self.head(e.key());
        let at = match self.hinted_leaf(hint, head) {
            Some(leaf) if self.reserved > 0 && leaf.len() < Leaf::CAP => self
                .leaf_pos(leaf, head, e.key())
                .map(|(pos, found)| Found {
                    leaf: hint.0,
                    pos,
                    found,
                }),
            _ => None,
        };
        let Some(at) = at else {
            return self.insert_reserved(e);
        };
        let done = if at.found {
            self.replace(&at, e)
        } else {
            self.link_in_leaf(e, &at)
        };
        if done.is_ok() {
            self.reserved = self.reserved.saturating_sub(1);
        }
        done
    }
}
