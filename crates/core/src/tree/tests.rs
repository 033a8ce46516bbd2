//! Tests of the tree: invariants, fault injection, and a model test against `BTreeMap`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::node::{Inner, Leaf};
use super::*;

impl<E: Keyed> Tree<E> {
    /// Verifies every structural invariant; panics on the first violation.
    pub(super) fn check(&self) {
        let slots = self.slots.used as usize;
        let mut seen = std::vec![false; slots];
        let mut seen_leaves = std::vec![false; self.nodes.leaves.used as usize];
        let mut seen_inners = std::vec![false; self.nodes.inners.used as usize];
        let mut count = 0usize;
        if self.root == NIL {
            assert_eq!(self.height, 0);
        } else if self.height == 1 {
            assert!(self.leaf(self.root).unwrap().len() >= 1, "empty root leaf");
        } else {
            assert!(
                self.inner(self.root).unwrap().len() >= 2,
                "inner root with one child"
            );
        }
        if self.root != NIL {
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
        n: u32,
        seen: &mut [bool],
        kind: &str,
    ) -> &Node<N, C>
    where
        Node<N, C>: Pooled,
    {
        assert!(!seen[n as usize], "{kind} {n} linked twice");
        seen[n as usize] = true;
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
            node.prefix[node.len()..].iter().all(|&p| p == u64::MAX),
            "{kind} {n} lacks its sentinels"
        );
        node
    }

    /// Checks the subtree at `n` (at `depth`); returns its smallest and largest key.
    fn check_node(
        &self,
        n: u32,
        depth: usize,
        w: &mut Walk<'_>,
    ) -> (std::vec::Vec<u8>, std::vec::Vec<u8>) {
        if depth + 1 == self.height {
            let node: &Leaf = self.check_fill(n, w.leaves, "leaf");
            let mut keys = std::vec::Vec::new();
            for i in 0..node.len() {
                let it = node.item(i).unwrap();
                let e = self.payload(it.k).expect("leaf entry without payload");
                assert_eq!(it.p, self.head(e.key()), "stale prefix");
                assert!(
                    e.key().starts_with(self.shared.prefix()),
                    "key without the shared prefix"
                );
                assert!(!w.seen[it.k as usize], "slot linked twice");
                w.seen[it.k as usize] = true;
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
            let (min, max) = self.check_node(it.c, depth + 1, w);
            if i > 0 {
                let sep = self
                    .payload(it.k)
                    .expect("separator names a free slot")
                    .key();
                assert_eq!(it.p, self.head(sep), "stale separator prefix");
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
        let (p, o) = arena::node_split(f);
        f = pool.pages[p][o].link();
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

mod cases {

    use super::arena::MAX_SLOT_PAGES;
    use super::fault::set_page_budget;
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Ent {
        key: Box<[u8]>,
        val: u32,
    }

    impl Keyed for Ent {
        fn key(&self) -> &[u8] {
            &self.key
        }
    }

    fn ent(key: &[u8], val: u32) -> Ent {
        Ent {
            key: key.into(),
            val,
        }
    }

    fn k32(i: u32) -> [u8; 4] {
        i.to_be_bytes()
    }

    /// Deterministic xorshift, so the tests need no RNG crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                let j = (self.next() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        }
    }

    /// Resets the fault-injection budget even if a test fails.
    struct Budget;
    impl Budget {
        fn set(b: Option<usize>) -> Budget {
            set_page_budget(b);
            Budget
        }
    }
    impl Drop for Budget {
        fn drop(&mut self) {
            set_page_budget(None);
        }
    }

    fn assert_balanced<E: Keyed>(t: &Tree<E>) {
        t.check();
        assert!(t.height <= MAX_HEIGHT, "height {}", t.height);
    }

    proptest::proptest! {
        #[test]
        fn count_less_is_the_partition_point(
            mut v in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u64), proptest::prelude::Just(u64::MAX), 0u64..64, proptest::prelude::any::<u64>()], 0..70),
            p in proptest::prelude::prop_oneof![proptest::prelude::Just(0u64), proptest::prelude::Just(u64::MAX), 0u64..64, proptest::prelude::any::<u64>()],
        ) {
            v.sort_unstable();
            proptest::prop_assert_eq!(count_less(&v, p), v.iter().filter(|&&x| x < p).count());
        }

        #[test]
        fn prefix_order_agrees_with_key_order(
            a in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::any::<u8>()], 0..12),
            b in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::any::<u8>()], 0..12),
        ) {
            let by_prefix = prefix_of(&a).cmp(&prefix_of(&b)).then_with(|| a.cmp(&b));
            proptest::prop_assert_eq!(by_prefix, a.cmp(&b));
        }
    }

    #[test]
    fn slot_and_node_sizes() {
        // A slot is 16 bytes of payload (`None` in the pointer's niche) and a 4-byte free link;
        // a leaf 64 prefixes, 64 slots and a length; an inner node 64 prefixes, 64 slots, 64
        // children and a length.
        assert_eq!(size_of::<Option<Box<[u8]>>>(), 16);
        struct BoxKey(#[allow(dead_code)] Box<[u8]>);
        assert_eq!(size_of::<Option<BoxKey>>(), 16);
        assert_eq!(size_of::<Leaf>(), 776);
        assert_eq!(size_of::<Inner>(), 1032);
        let mut t = Tree::new();
        t.insert(ent(b"a", 1)).unwrap();
        // One leaf page; no inner node page until the root splits.
        assert_eq!(
            t.allocated_bytes(),
            PAGE * (4 + size_of::<Option<Ent>>())
                + t.slots.table_bytes()
                + super::arena::NODE_PAGE * size_of::<Leaf>()
                + t.nodes.leaves.table_bytes()
        );
    }

    #[test]
    fn prefetch_hints_change_nothing_even_when_stale() {
        let mut t: Tree<Ent> = Tree::new();
        let empty = t.prefetch_start(b"k");
        t.prefetch_leaf(b"k", empty);
        let mut stale = Vec::new();
        for i in 0..20_000u32 {
            t.insert(ent(&k32(i.wrapping_mul(2_654_435_761)), i))
                .unwrap();
            if i.is_power_of_two() {
                stale.push(t.prefetch_start(&k32(i)));
            }
        }
        assert!(t.height >= 3);
        let before: Vec<u32> = t.iter().map(|(_, e)| e.val).collect();
        // Hints from every earlier height, and from a tree emptied and rebuilt smaller.
        for (n, &p) in stale.iter().enumerate() {
            t.prefetch_leaf(&k32(n as u32), p);
        }
        assert_eq!(t.iter().map(|(_, e)| e.val).collect::<Vec<_>>(), before);
        t.check();
        t.clear();
        for i in 0..100u32 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        for &p in &stale {
            t.prefetch_leaf(b"zz", p);
        }
        assert_eq!(t.len(), 100);
        t.check();
    }

    #[test]
    fn hinted_lookups_and_inserts_agree_with_plain_ones() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut t: Tree<Ent> = Tree::new();
        let mut model = BTreeMap::new();
        let mut taken = 0usize;
        for i in 0..30_000u32 {
            let k = rng.next().to_be_bytes();
            let (found, leaf) = t.get_hinted(&k, LeafHint::NONE);
            assert_eq!(found.map(|e| e.val), model.get(&k[..]).copied());
            // The leaf the lookup found; every fifth time a stale or foreign one instead.
            let hint = if i % 5 == 0 {
                LeafHint(rng.next() as u32 % 700)
            } else {
                leaf
            };
            t.reserve(1).unwrap();
            let bytes = t.allocated_bytes();
            let (_, old) = t.insert_reserved_hinted(ent(&k, i), hint).unwrap();
            assert_eq!(t.allocated_bytes(), bytes, "a reserved insert allocated");
            assert_eq!(old.map(|e| e.val), model.insert(k.to_vec(), i));
            taken += usize::from(leaf == hint && t.hinted_leaf(leaf, prefix_of(&k)).is_some());
        }
        assert_eq!(t.reserved(), 0);
        assert_eq!(t.len(), model.len());
        t.check();
        // Most commits of a write whose lookup found its leaf start there.
        assert!(taken > 20_000, "hinted path taken {taken} times");
    }

    #[test]
    fn the_shared_prefix_follows_the_keys() {
        let mut rng = Rng(7);
        let mut t: Tree<Ent> = Tree::new();
        let mut keys = Vec::new();
        for i in 0..5_000u32 {
            let k = [&b"HKLM/Software/App/"[..], &rng.next().to_be_bytes()].concat();
            t.insert(ent(&k, i)).unwrap();
            keys.push(k);
        }
        // The random bytes after the path share nothing (with these seeds): the prefix is the
        // path, and nodes compare the 8 bytes after it.
        assert_eq!(t.shared.prefix(), b"HKLM/Software/App/");
        t.check();
        // A key outside the path shortens it and re-heads every node; every lookup still works.
        t.insert(ent(b"HKLM/Software/Bpp", 1)).unwrap();
        assert_eq!(t.shared.prefix(), b"HKLM/Software/");
        t.insert(ent(b"A", 2)).unwrap();
        assert_eq!(t.shared.prefix(), b"");
        t.check();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.get(k).map(|e| e.val), Some(i as u32));
        }
        // Keys below and above every key with the prefix, absent, are found absent.
        assert!(t.get(b"HKLM/Software/Ap").is_none());
        assert!(
            t.get(b"HKLM/Software/App/\xff\xff\xff\xff\xff\xff\xff\xff\xff")
                .is_none()
        );
        // Emptied, the tree takes the next key's bytes as its prefix again.
        for k in keys
            .iter()
            .chain([&b"HKLM/Software/Bpp".to_vec(), &b"A".to_vec()])
        {
            t.remove(k).unwrap();
        }
        assert_eq!(t.len(), 0);
        t.insert(ent(b"0123456789xyz", 3)).unwrap();
        assert_eq!(t.shared.prefix(), b"01234");
        t.check();
    }

    #[test]
    fn new_allocates_nothing() {
        const EMPTY: Tree<Ent> = Tree::new();
        let t = EMPTY;
        assert_eq!(t.allocated_bytes(), 0);
        assert!(t.is_empty());
        assert_eq!(t.iter().count(), 0);
        assert_eq!(Tree::<Ent>::default().allocated_bytes(), 0);
        t.check();
    }

    #[test]
    fn replace_keeps_id_and_returns_old() {
        let mut t = Tree::new();
        let (a, old) = t.insert(ent(b"a", 1)).unwrap();
        assert!(old.is_none());
        let (a2, old) = t.insert(ent(b"a", 2)).unwrap();
        assert_eq!(a, a2);
        assert_eq!(old, Some(ent(b"a", 1)));
        assert_eq!(t.node(a).unwrap().val, 2);
        t.node_mut(a).unwrap().val = 3;
        assert_eq!(t.get(b"a").unwrap().val, 3);
        t.get_mut(b"a").unwrap().val = 4;
        assert_eq!(t.node(a).unwrap().val, 4);
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(b"a"), Some(ent(b"a", 4)));
        assert_eq!(t.node(a), None);
        assert_eq!(t.find(b"a"), None);
        assert_eq!(t.remove(b"a"), None);
        t.check();
    }

    #[test]
    fn entry_finds_or_inserts_with_one_search() {
        let mut t: Tree<Ent> = Tree::new();
        let mut rng = Rng(7);
        let mut model = std::collections::BTreeMap::new();
        for i in 0..3000u32 {
            let k = k32((rng.next() % 2000) as u32);
            match t.entry(&k).unwrap() {
                Slot::Occupied(id) => {
                    assert_eq!(Some(&id), model.get(&k), "occupied id");
                    assert_eq!(t.node(id).unwrap().key(), &k);
                }
                Slot::Vacant(v) => {
                    assert!(!model.contains_key(&k));
                    let id = v.insert(ent(&k, i)).unwrap();
                    model.insert(k, id);
                }
            }
        }
        t.check();
        assert_eq!(t.len(), model.len());
        for (k, id) in &model {
            assert_eq!(t.find(k), Some(*id));
        }
        // A vacant handle refuses an entry with another key, leaving the tree as it was.
        let k = k32(5000);
        let Some(Slot::Vacant(v)) = t.entry(&k) else {
            panic!("5000 is absent")
        };
        assert!(v.insert(ent(&k32(6000), 0)).is_err());
        assert_eq!(t.len(), model.len());
        t.check();
    }

    #[test]
    fn removal_relinks_successor_nodes() {
        // Every key of a perfect 31-node tree removed in turn, from every shape: a leaf, a node
        // with one child, a node whose successor is its right child, one whose successor lies
        // deeper, and the root.
        for first in 0..31u32 {
            let mut t = Tree::new();
            let mut ids = BTreeMap::new();
            for k in 0..31u32 {
                ids.insert(k, t.insert(ent(&k32(k), k)).unwrap().0);
            }
            t.check();
            let mut order: Vec<u32> = (first..31).chain(0..first).collect();
            if first % 2 == 1 {
                order.reverse();
            }
            for k in order {
                assert_eq!(t.remove(&k32(k)).map(|e| e.val), Some(k));
                ids.remove(&k);
                t.check();
                for (&k, &id) in &ids {
                    assert_eq!(t.find(&k32(k)), Some(id));
                }
            }
            assert!(t.is_empty());
        }
    }

    #[test]
    fn node_ids_stable_across_removals() {
        let mut t = Tree::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut keys: Vec<u32> = (0..5000).map(|_| rng.next() as u32).collect();
        keys.sort_unstable();
        keys.dedup();
        rng.shuffle(&mut keys);
        let ids: Vec<(u32, NodeId)> = keys
            .iter()
            .map(|&k| (k, t.insert(ent(&k32(k), k)).unwrap().0))
            .collect();
        t.check();
        let (gone, kept) = ids.split_at(ids.len() / 2);
        for &(k, _) in gone {
            assert_eq!(t.remove(&k32(k)).unwrap().val, k);
            t.check();
        }
        for &(k, id) in kept {
            assert_eq!(t.node(id).unwrap().key(), &k32(k));
            assert_eq!(t.find(&k32(k)), Some(id));
        }
        for &(k, id) in gone {
            assert_eq!(t.find(&k32(k)), None);
            assert_eq!(t.node(id), None, "freed slot still has a payload");
        }
        // Freed slots are reused without allocating.
        let bytes = t.allocated_bytes();
        for &(k, _) in gone {
            t.insert(ent(&k32(k), 0)).unwrap();
        }
        assert_eq!(t.allocated_bytes(), bytes);
        for &(k, id) in kept {
            assert_eq!(t.find(&k32(k)), Some(id));
        }
        t.check();
    }

    #[test]
    fn insert_reserved_never_allocates() {
        let mut t = Tree::new();
        for i in 0..10 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        t.reserve(3000).unwrap();
        assert_eq!(t.reserved(), 3000);
        t.check();
        let bytes = t.allocated_bytes();
        let _no_pages = Budget::set(Some(0));
        // Existing keys also consume a reservation.
        for i in 0..3000 {
            let (id, old) = t.insert_reserved(ent(&k32(i), i + 1)).unwrap();
            assert_eq!(old.is_some(), i < 10);
            assert_eq!(t.find(&k32(i)), Some(id));
            assert_eq!(t.reserved(), 2999 - i as usize);
        }
        assert_eq!(t.allocated_bytes(), bytes);
        assert_eq!(t.len(), 3000);
        t.check();
        // No reservation left: behaves like insert, which needs a page now and fails cleanly.
        let e = ent(b"new", 7);
        if t.free_slots() == 0 {
            assert_eq!(t.insert_reserved(e.clone()), Err(e));
            assert_eq!(t.len(), 3000);
            t.check();
        }
    }

    #[test]
    fn insert_does_not_use_reserved_slots() {
        let mut t = Tree::new();
        for i in 0..1000 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        let free = PAGE - 1000;
        assert_eq!(t.free_slots(), free);
        t.reserve(free).unwrap();
        assert_eq!(
            t.slots.pages.len(),
            1,
            "reserve within free slots allocated"
        );
        let bytes = t.allocated_bytes();

        {
            let _no_pages = Budget::set(Some(0));
            let e = ent(b"x", 1);
            assert_eq!(t.insert(e.clone()), Err(e));
            assert_eq!(t.len(), 1000);
            assert_eq!(t.reserved(), free);
            assert_eq!(t.allocated_bytes(), bytes);
            t.check();
            // Replacing needs no slot, so it succeeds without a page.
            assert!(t.insert(ent(&k32(5), 55)).unwrap().1.is_some());
        }

        t.insert(ent(b"x", 1)).unwrap();
        assert!(t.allocated_bytes() > bytes, "insert took a reserved slot");
        assert_eq!(t.slots.pages.len(), 2);
        assert_eq!(t.reserved(), free);
        t.check();
    }

    #[test]
    fn reserve_failure_leaves_tree_unchanged() {
        let mut t = Tree::new();
        t.insert(ent(b"a", 1)).unwrap();
        t.reserve(10).unwrap();
        assert_eq!(t.reserve(usize::MAX), Err(AllocError));
        assert_eq!(t.reserve(usize::MAX - 5), Err(AllocError));
        assert_eq!(t.reserve(MAX_SLOT_PAGES * PAGE), Err(AllocError));
        assert_eq!(t.reserved(), 10);
        assert_eq!(t.slots.pages.len(), 1);
        {
            // Needs three pages, only two can be had: all or nothing.
            let _two = Budget::set(Some(2));
            assert_eq!(t.reserve(3 * PAGE), Err(AllocError));
        }
        assert_eq!(t.reserved(), 10);
        assert_eq!(t.slots.pages.len(), 1);
        t.check();
        t.reserve(3 * PAGE).unwrap();
        assert_eq!(t.slots.pages.len(), 4);
        t.unreserve(usize::MAX);
        assert_eq!(t.reserved(), 0);
        t.check();
    }

    #[test]
    fn clear_frees_everything() {
        let mut t = Tree::new();
        for i in 0..3000 {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        t.reserve(5).unwrap();
        t.remove(&k32(7));
        t.clear();
        assert_eq!(t.allocated_bytes(), 0);
        assert_eq!(t.reserved(), 0);
        assert!(t.is_empty());
        t.check();
        t.insert(ent(b"a", 1)).unwrap();
        t.check();
    }

    #[test]
    fn range_from_bounds() {
        let mut t = Tree::new();
        for k in [&b"b"[..], b"d", b"f", b"", b"dd"] {
            t.insert(ent(k, 0)).unwrap();
        }
        let keys = |b: Bound<&[u8]>| -> Vec<Vec<u8>> {
            t.range_from(b).map(|(_, e)| e.key().to_vec()).collect()
        };
        let v = |s: &[&[u8]]| s.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(keys(Bound::Unbounded), v(&[b"", b"b", b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Included(b"d")), v(&[b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Excluded(b"d")), v(&[b"dd", b"f"]));
        assert_eq!(keys(Bound::Included(b"c")), v(&[b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Excluded(b"")), v(&[b"b", b"d", b"dd", b"f"]));
        assert_eq!(keys(Bound::Excluded(b"f")), v(&[]));
        let ids: Vec<NodeId> = (&t).into_iter().map(|(id, _)| id).collect();
        for (id, (_, e)) in ids.iter().zip(t.iter()) {
            assert_eq!(t.find(e.key()), Some(*id));
        }
    }

    #[test]
    fn hundred_thousand_stay_balanced() {
        const N: u32 = 100_000;
        let mut t = Tree::new();
        for i in 0..N {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        assert_balanced(&t);
        let mut rng = Rng(12345);
        let mut random: Vec<u32> = (0..N).map(|_| rng.next() as u32 | 0x8000_0000).collect();
        for &k in &random {
            t.insert(ent(&k32(k), k)).unwrap();
        }
        assert_balanced(&t);
        assert!(t.iter().map(|(_, e)| e.val).is_sorted());
        // Sequential removals of the lower half, then random removals.
        for i in 0..N / 2 {
            assert!(t.remove(&k32(i)).is_some());
        }
        assert_balanced(&t);
        rng.shuffle(&mut random);
        for &k in &random[..random.len() / 2] {
            t.remove(&k32(k));
        }
        assert_balanced(&t);
        let remaining: Vec<u32> = t.iter().map(|(_, e)| e.val).collect();
        for k in remaining {
            assert!(t.remove(&k32(k)).is_some());
        }
        assert!(t.is_empty());
        t.check();
        // Pages are kept while in use; an emptied tree still reuses them.
        let bytes = t.allocated_bytes();
        for i in 0..N {
            t.insert(ent(&k32(i), i)).unwrap();
        }
        assert_eq!(t.allocated_bytes(), bytes);
        assert_balanced(&t);
    }

    // ---- model test --------------------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, u32),
        /// With a leaf hint (any leaf id: often stale or wrong) when `Some`.
        InsertReserved(Vec<u8>, u32, Option<u32>),
        InsertMany(u16, u16),
        Remove(Vec<u8>),
        Reserve(usize),
        Unreserve(usize),
        Get(Vec<u8>, Option<u32>),
        GetMut(Vec<u8>, u32),
        Range(u8, Vec<u8>),
        Budget(Option<usize>),
        Clear,
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Keys under a long shared prefix (and cut-off parts of it) move the tree's shared
        // prefix both ways: admitted, shortened (re-heading every node), and reset when empty.
        const SHARED: &[u8] = b"HKLM/Software/App/";
        prop_oneof![
            3 => proptest::collection::vec(0u8..3, 0..3),
            1 => proptest::collection::vec(any::<u8>(), 0..4),
            3 => proptest::collection::vec(0u8..3, 0..3).prop_map(|s| [SHARED, &s].concat()),
            1 => (0usize..=SHARED.len(), proptest::collection::vec(0u8..3, 0..2))
                .prop_map(|(cut, s)| [&SHARED[..cut], &s].concat()),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            6 => (key(), any::<u32>(), proptest::option::of(0u32..200))
                .prop_map(|(k, v, h)| Op::InsertReserved(k, v, h)),
            1 => (any::<u16>(), 0u16..1500).prop_map(|(s, n)| Op::InsertMany(s, n)),
            8 => key().prop_map(Op::Remove),
            3 => prop_oneof![0usize..4, 0usize..2500].prop_map(Op::Reserve),
            2 => (0usize..6).prop_map(Op::Unreserve),
            2 => (key(), proptest::option::of(0u32..200)).prop_map(|(k, h)| Op::Get(k, h)),
            1 => (key(), any::<u32>()).prop_map(|(k, v)| Op::GetMut(k, v)),
            2 => (0u8..3, key()).prop_map(|(b, k)| Op::Range(b, k)),
            1 => proptest::option::of(0usize..3).prop_map(Op::Budget),
            1 => Just(Op::Clear),
        ]
    }

    #[derive(Default)]
    struct Model {
        map: BTreeMap<Vec<u8>, u32>,
        ids: BTreeMap<Vec<u8>, NodeId>,
        reserved: usize,
        budget: Option<usize>,
    }

    impl Model {
        /// Checks an insert result against the model and applies it.
        fn insert(
            &mut self,
            t: &Tree<Ent>,
            k: Vec<u8>,
            v: u32,
            r: Result<(NodeId, Option<Ent>), Ent>,
        ) {
            match r {
                Ok((id, old)) => {
                    assert_eq!(old.map(|e| e.val), self.map.insert(k.clone(), v));
                    let prev = self.ids.insert(k, id);
                    assert!(prev.is_none_or(|p| p == id), "replace changed the id");
                }
                Err(e) => {
                    assert_eq!(e, ent(&k, v), "entry not given back");
                    assert!(!self.map.contains_key(&k), "replace failed");
                    assert!(
                        self.budget.is_some(),
                        "insert failed without fault injection"
                    );
                    // Failed for want of a slot or of nodes beyond those reserved.
                    assert!(
                        t.free_slots() <= t.reserved()
                            || t.free_nodes::<LEAF, 0>() <= t.leaves_needed(1, t.reserved())
                            || t.free_nodes::<INNER, INNER>()
                                <= t.inners_needed(1, t.reserved()) + t.height
                    );
                }
            }
        }
    }

    fn run(ops: Vec<Op>) {
        let _reset = Budget::set(None);
        let mut t: Tree<Ent> = Tree::new();
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    let r = t.insert(ent(&k, v));
                    m.insert(&t, k, v, r);
                }
                Op::InsertReserved(k, v, hint) => {
                    let bytes = t.allocated_bytes();
                    let r = match hint {
                        Some(h) => t.insert_reserved_hinted(ent(&k, v), LeafHint(h)),
                        None => t.insert_reserved(ent(&k, v)),
                    };
                    if m.reserved > 0 {
                        assert!(r.is_ok(), "reserved insert failed");
                        assert_eq!(t.allocated_bytes(), bytes, "reserved insert allocated");
                        m.reserved -= 1;
                    }
                    m.insert(&t, k, v, r);
                }
                Op::InsertMany(start, n) => {
                    for i in start..start.saturating_add(n) {
                        let k = i.to_be_bytes().to_vec();
                        let r = t.insert(ent(&k, u32::from(i)));
                        m.insert(&t, k, u32::from(i), r);
                    }
                }
                Op::Remove(k) => {
                    assert_eq!(t.remove(&k).map(|e| e.val), m.map.remove(&k));
                    m.ids.remove(&k);
                }
                Op::Reserve(n) => match t.reserve(n) {
                    Ok(()) => m.reserved += n,
                    Err(AllocError) => assert!(m.budget.is_some()),
                },
                Op::Unreserve(n) => {
                    t.unreserve(n);
                    m.reserved = m.reserved.saturating_sub(n);
                }
                Op::Get(k, hint) => {
                    assert_eq!(t.get(&k).map(|e| e.val), m.map.get(&k).copied());
                    assert_eq!(t.find(&k), m.ids.get(&k).copied());
                    let (e, leaf) = t.get_hinted(&k, LeafHint(hint.unwrap_or(NIL)));
                    assert_eq!(e.map(|e| e.val), m.map.get(&k).copied(), "hinted get");
                    // The leaf it returns is the key's: a hint from it finds the same.
                    assert_eq!(
                        t.get_hinted(&k, leaf).0.map(|e| e.val),
                        m.map.get(&k).copied()
                    );
                }
                Op::GetMut(k, v) => {
                    if let Some(e) = t.get_mut(&k) {
                        e.val = v;
                    }
                    if let Some(mv) = m.map.get_mut(&k) {
                        *mv = v;
                    }
                }
                Op::Range(b, k) => {
                    let (bound, model) = match b {
                        0 => (Bound::Included(&k[..]), Bound::Included(&k)),
                        1 => (Bound::Excluded(&k[..]), Bound::Excluded(&k)),
                        _ => (Bound::Unbounded, Bound::Unbounded),
                    };
                    let got: Vec<(Vec<u8>, u32)> = t
                        .range_from(bound)
                        .map(|(_, e)| (e.key.to_vec(), e.val))
                        .collect();
                    let want: Vec<(Vec<u8>, u32)> = m
                        .map
                        .range::<Vec<u8>, _>((model, Bound::Unbounded))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    assert_eq!(got, want);
                }
                Op::Budget(b) => {
                    set_page_budget(b);
                    m.budget = b;
                }
                Op::Clear => {
                    t.clear();
                    m.map.clear();
                    m.ids.clear();
                    m.reserved = 0;
                }
            }
            t.check();
            assert_eq!(t.len(), m.map.len());
            assert_eq!(t.reserved(), m.reserved);
            let got: Vec<(NodeId, Vec<u8>, u32)> = t
                .iter()
                .map(|(id, e)| (id, e.key.to_vec(), e.val))
                .collect();
            let want: Vec<(NodeId, Vec<u8>, u32)> = m
                .map
                .iter()
                .map(|(k, v)| (m.ids[k], k.clone(), *v))
                .collect();
            assert_eq!(got, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_btreemap(ops in proptest::collection::vec(op(), 0..120)) {
            run(ops);
        }
    }

    #[test]
    fn shared_prefixes_use_full_keys() {
        // Every key has the same 8-byte prefix, so each comparison (separators included) reads
        // the entry's key; removals must keep separators naming live slots.
        let k = |i: u32| -> Vec<u8> { [&b"samepfx!"[..], &i.to_be_bytes()].concat() };
        let mut t = Tree::new();
        let mut m = BTreeMap::new();
        let mut rng = Rng(77);
        for round in 0..6 {
            for _ in 0..2000 {
                let i = (rng.next() % 5000) as u32;
                if round % 2 == 0 || rng.next().is_multiple_of(3) {
                    t.insert(ent(&k(i), i)).unwrap();
                    m.insert(k(i), i);
                } else {
                    assert_eq!(t.remove(&k(i)).map(|e| e.val), m.remove(&k(i)));
                }
            }
            t.check();
            let got: Vec<u32> = t.iter().map(|(_, e)| e.val).collect();
            let want: Vec<u32> = m.values().copied().collect();
            assert_eq!(got, want);
            for i in (0..5000).step_by(7) {
                assert_eq!(t.get(&k(i)).map(|e| e.val), m.get(&k(i)).copied());
                let r: Vec<u32> = t
                    .range_from(Bound::Excluded(&k(i)))
                    .take(3)
                    .map(|(_, e)| e.val)
                    .collect();
                let w: Vec<u32> = m
                    .range::<Vec<u8>, _>((Bound::Excluded(k(i)), Bound::Unbounded))
                    .take(3)
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(r, w);
            }
        }
        let keys: Vec<Vec<u8>> = m.keys().cloned().collect();
        for key in keys {
            assert!(t.remove(&key).is_some());
        }
        t.check();
        assert!(t.is_empty());
    }
}
