//! The shared prefix: the bytes every key in the tree starts with, and the 8-byte heads that
//! nodes compare, taken after it.

use super::{Keyed, Tree};

/// The longest prefix every key in the tree shares (up to a key's most, 255 bytes), so that
/// nodes compare the 8 bytes after it rather than 8 bytes every key may share.
///
/// Why: keys often share a long prefix (`HKLM/Software/App/...`). Compared by their first 8
/// bytes, such keys tie at every step of every search, and each tie reads a whole key from its
/// entry: a lookup at a million keys took 6.9 µs against 0.37 µs. The prefix only shrinks while
/// the tree has keys (a key that does not share it shrinks it, and every node's heads are
/// recomputed from the old ones, without reading entries); it is set afresh when the tree is
/// empty.
pub(super) struct Shared {
    pub(super) len: usize,
    pub(super) bytes: [u8; 255],
}

impl Shared {
    pub(super) const NONE: Shared = Shared {
        len: 0,
        bytes: [0; 255],
    };

    pub(super) fn prefix(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// `a == b`, eight bytes at a time and without a library call: a head is computed several
/// times per request, and the shared prefix is short.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails = ca.remainder() == cb.remainder();
    tails
        && ca.zip(cb).all(|(x, y)| {
            let w = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            w(x) == w(y)
        })
}

/// The first 8 bytes of `key`, big-endian, zero-padded. Ordering by head agrees with ordering
/// by key whenever two heads differ (a shorter key pads with zeros, which sort first), so only
/// equal heads need the full comparison.
pub(super) fn head_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(key) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

impl<E: Keyed> Tree<E> {
    /// What nodes compare for `key`: the 8 bytes after the shared prefix (big-endian,
    /// zero-padded). A key without that prefix is below or above every key in the tree; it gets
    /// 0 or `u64::MAX`, which order it right, since equal heads are settled by comparing whole
    /// keys.
    #[inline]
    pub(super) fn head(&self, key: &[u8]) -> u64 {
        let n = self.shared.len;
        if n == 0 {
            return head_of(key);
        }
        let pre = self.shared.prefix();
        match key.get(..n) {
            Some(k) if same_bytes(k, pre) => head_of(key.get(n..).unwrap_or(&[])),
            _ if key < pre => 0,
            _ => u64::MAX,
        }
    }

    /// Makes the shared prefix one that `key`, about to be inserted, has too: in an empty tree,
    /// all of the key but its last 8 bytes (so its head still tells it from other keys), else
    /// the part of the prefix `key` shares, with every node's heads recomputed for it. Never
    /// allocates.
    pub(super) fn admit(&mut self, key: &[u8]) {
        if self.len == 0 {
            let n = key.len().saturating_sub(8).min(self.shared.bytes.len());
            if let (Some(d), Some(s)) = (self.shared.bytes.get_mut(..n), key.get(..n)) {
                d.copy_from_slice(s);
                self.shared.len = n;
            }
            return;
        }
        let pre = self.shared.prefix();
        let common = pre.iter().zip(key).take_while(|(a, b)| a == b).count();
        if common < pre.len() {
            self.rehead(common);
        }
    }

    /// Shortens the shared prefix to `to` bytes and recomputes every head: the new head of a key
    /// is the old prefix's bytes from `to` on, then its old head, cut to 8 bytes.
    fn rehead(&mut self, to: usize) {
        // The first 8 bytes that move from the prefix into the heads (all a head can hold).
        let mut moved = [0u8; 8];
        let from = self.shared.bytes.get(to..self.shared.len).unwrap_or(&[]);
        let n = from.len().min(8);
        if let (Some(d), Some(s)) = (moved.get_mut(..n), from.get(..n)) {
            d.copy_from_slice(s);
        }
        let rehead = |h: u64| -> u64 {
            let mut b = [0u8; 16];
            if let (Some(d), Some(m)) = (b.get_mut(..n), moved.get(..n)) {
                d.copy_from_slice(m);
            }
            if let Some(d) = b.get_mut(n..n.saturating_add(8)) {
                d.copy_from_slice(&h.to_be_bytes());
            }
            head_of(&b)
        };
        for page in &mut self.nodes.leaves.pages {
            for n in page.iter_mut() {
                n.rehead(&rehead);
            }
        }
        for page in &mut self.nodes.inners.pages {
            for n in page.iter_mut() {
                n.rehead(&rehead);
            }
        }
        self.shared.len = to;
    }
}
