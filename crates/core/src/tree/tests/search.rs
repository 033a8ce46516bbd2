//! Searching: the node search, heads and the shared prefix, and the cache-warming lookups.

use super::support::*;
use super::*;
use alloc::vec::Vec;
use std::collections::BTreeMap;

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
    fn head_order_agrees_with_key_order(
        a in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::any::<u8>()], 0..12),
        b in proptest::collection::vec(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(1u8), proptest::prelude::any::<u8>()], 0..12),
    ) {
        let by_head = head_of(&a).cmp(&head_of(&b)).then_with(|| a.cmp(&b));
        proptest::prop_assert_eq!(by_head, a.cmp(&b));
    }
}

#[test]
fn warming_steps_to_the_leaf_a_lookup_goes_to_and_stays_there() {
    let mut t: Tree<Ent> = Tree::new();
    for i in 0..20_000u32 {
        t.insert(ent(&k32(i.wrapping_mul(2_654_435_761)), i))
            .unwrap();
    }
    assert!(t.height >= 2);
    for i in [0u32, 1, 777, 19_999] {
        let key = k32(i.wrapping_mul(2_654_435_761));
        let mut w = Warm::new(Some(&key));
        assert_eq!(w.hint(), LeafHint::NONE, "cold");
        w.advance(&t);
        assert_eq!(
            w.hint(),
            LeafHint::NONE,
            "started: only the inner node is loading"
        );
        w.advance(&t);
        let (found, leaf) = t.get_hinted(&key, LeafHint::NONE);
        assert_eq!(found.map(|e| e.val), Some(i));
        assert_eq!(w.hint(), leaf, "the leaf a lookup from the root goes to");
        w.advance(&t);
        assert_eq!(w.hint(), leaf, "a warmed lookup stays warmed");
    }
    let mut off = Warm::new(None);
    off.advance(&t);
    off.advance(&t);
    assert_eq!(off.hint(), LeafHint::NONE, "nothing to warm");
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
            LeafHint(NodeIx(rng.next() as u32 % 700))
        } else {
            leaf
        };
        t.reserve(1).unwrap();
        let bytes = t.allocated_bytes();
        let (_, old) = t.insert_reserved_hinted(ent(&k, i), hint).unwrap();
        assert_eq!(t.allocated_bytes(), bytes, "a reserved insert allocated");
        assert_eq!(old.map(|e| e.val), model.insert(k.to_vec(), i));
        taken += usize::from(leaf == hint && t.hinted_leaf(leaf, head_of(&k)).is_some());
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
