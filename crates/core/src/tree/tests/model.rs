//! The model test: random operations on a tree and on a `BTreeMap`, compared after each.

use super::fault::set_page_budget;
use super::support::*;
use super::*;
use alloc::vec::Vec;
use proptest::prelude::*;
use std::collections::BTreeMap;

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
    ids: BTreeMap<Vec<u8>, SlotId>,
    reserved: usize,
    budget: Option<usize>,
}

impl Model {
    /// Checks an insert result against the model and applies it.
    fn insert(&mut self, t: &Tree<Ent>, k: Vec<u8>, v: u32, r: Result<(SlotId, Option<Ent>), Ent>) {
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
                    Some(h) => t.insert_reserved_hinted(ent(&k, v), LeafHint(NodeIx(h))),
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
                let (e, leaf) = t.get_hinted(&k, LeafHint(NodeIx(hint.unwrap_or(NIL))));
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
        let got: Vec<(SlotId, Vec<u8>, u32)> = t
            .iter()
            .map(|(id, e)| (id, e.key.to_vec(), e.val))
            .collect();
        let want: Vec<(SlotId, Vec<u8>, u32)> = m
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
