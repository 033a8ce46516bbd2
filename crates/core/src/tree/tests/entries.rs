//! Entries by key and by slot id: insert, replace, lookup, removal, iteration, and balance at
//! scale.

use super::support::*;
use super::*;
use alloc::vec::Vec;
use std::collections::BTreeMap;

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
    assert_eq!(t.slot(a).unwrap().val, 2);
    t.slot_mut(a).unwrap().val = 3;
    assert_eq!(t.get(b"a").unwrap().val, 3);
    t.get_mut(b"a").unwrap().val = 4;
    assert_eq!(t.slot(a).unwrap().val, 4);
    assert_eq!(t.len(), 1);
    assert_eq!(t.remove(b"a"), Some(ent(b"a", 4)));
    assert_eq!(t.slot(a), None);
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
                assert_eq!(t.slot(id).unwrap().key(), &k);
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
fn slot_ids_stable_across_removals() {
    let mut t = Tree::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut keys: Vec<u32> = (0..5000).map(|_| rng.next() as u32).collect();
    keys.sort_unstable();
    keys.dedup();
    rng.shuffle(&mut keys);
    let ids: Vec<(u32, SlotId)> = keys
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
        assert_eq!(t.slot(id).unwrap().key(), &k32(k));
        assert_eq!(t.find(&k32(k)), Some(id));
    }
    for &(k, id) in gone {
        assert_eq!(t.find(&k32(k)), None);
        assert_eq!(t.slot(id), None, "freed slot still has a payload");
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
    let ids: Vec<SlotId> = (&t).into_iter().map(|(id, _)| id).collect();
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
