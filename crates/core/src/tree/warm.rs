//! A lookup warmed ahead of time ([`Warm`]): a caller with work to do between knowing a key and
//! looking it up (the dispatcher copies the value and resolves the transaction) starts loading
//! the key's nodes first, so that the lookup's cache misses overlap that work.
//!
//! Why: at a million keys the leaves and the level above them no longer stay in the cache, and
//! a cold lookup waits for one miss on each, in turn. Warming reads only the inner nodes above
//! that level, which are few and stay cached.

use super::hint::LeafHint;
use super::{Keyed, NodeIx, Tree};

/// A lookup begun by [`Tree::prefetch_start`]: the node it started loading.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefetch {
    node: NodeIx,
    height: usize,
}

/// How far the warming of one key's lookup has got. [`Warm::advance`] takes one step each time
/// it is called with the tree (under the lock that guards it); [`Warm::hint`] is what the
/// lookup may start from. Any step against a tree changed meanwhile is harmless: at worst it
/// loads a wrong node, and the hint is checked before use.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Warm<'k> {
    /// Nothing to warm: the request names no single key.
    Off,
    /// Not started.
    Cold(&'k [u8]),
    /// The last inner node above the key's leaf is loading.
    Started(&'k [u8], Prefetch),
    /// The leaf is loading; the lookup may start there.
    Leaf(LeafHint),
}

impl<'k> Warm<'k> {
    /// Warming for `key`, not started (`None`: nothing to warm).
    #[must_use]
    pub(crate) const fn new(key: Option<&'k [u8]>) -> Self {
        match key {
            Some(k) => Warm::Cold(k),
            None => Warm::Off,
        }
    }

    /// One step: starts loading the inner node, then the leaf; then nothing.
    pub(crate) fn advance<E: Keyed>(&mut self, tree: &Tree<E>) {
        *self = match *self {
            Warm::Cold(key) => Warm::Started(key, tree.prefetch_start(key)),
            Warm::Started(key, p) => Warm::Leaf(tree.prefetch_leaf(key, p)),
            done @ (Warm::Off | Warm::Leaf(_)) => done,
        };
    }

    /// Where the lookup may start: the leaf once warmed that far, else nowhere in particular.
    #[must_use]
    pub(crate) const fn hint(&self) -> LeafHint {
        match self {
            Warm::Leaf(h) => *h,
            _ => LeafHint::NONE,
        }
    }
}

impl<E: Keyed> Tree<E> {
    /// Starts loading, without waiting, the last inner node on the way to `key` (the first one
    /// a lookup is likely to miss on); [`Tree::prefetch_leaf`] then loads the leaf.
    pub(super) fn prefetch_start(&self, key: &[u8]) -> Prefetch {
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
    pub(super) fn prefetch_leaf(&self, key: &[u8], p: Prefetch) -> LeafHint {
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
}
