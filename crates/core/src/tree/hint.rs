//! Lookups and inserts that start at the leaf an earlier lookup found ([`LeafHint`]); the
//! lookup warmed ahead of time that finds one early is in `warm`.

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

impl<E: Keyed> Tree<E> {
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
